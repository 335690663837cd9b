"""The same guarantees from Python: `pipeline.run.run_drift` refuses what it cannot do,
and library warnings are warnings a caller can see and filter."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from pipeline.bins.binning import Binned
from pipeline.bins.profile import Profile
from pipeline.config import InputConfig, RunConfig, load_config
from pipeline.errors import ConfigError, InputError, KLDriftWarning
from pipeline.run import bin_current_locally, run_drift
from pipeline.write.reports import write_reports
from tests.reliability.corpus import Data, make_data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return make_data(tmp_path_factory.mktemp("api-data"))


def _config(data: Data, out: Path, **overrides: object) -> RunConfig:
    return load_config(None, {"input.baseline": str(data.profile),
                              "input.current": str(data.drifted), "output.dir": str(out),
                              "output.run_id": "r", **overrides})


def test_dask_executor_with_local_binning_is_a_config_error(data: Data, tmp_path: Path
                                                             ) -> None:
    """Without the Prefect flow there is no Dask cluster: binning locally would silently
    ignore input.executor."""
    config = _config(data, tmp_path, **{"input.executor": "dask"})
    with pytest.raises(ConfigError, match=r"^input\.executor: 'dask' bins on a Dask cluster"):
        run_drift(config)
    assert not (tmp_path / "r").exists()

    def on_my_cluster(profile: Profile, settings: InputConfig, features: list[str]) -> Binned:
        return bin_current_locally(profile, settings, features)  # a stand-in for Dask

    assert run_drift(config, bin_current=on_my_cluster).drift is not None


def test_sources_that_are_not_files_are_named_as_sources(tmp_path: Path) -> None:
    assert str(InputError("x", source="s3://b/a.parquet")) == "source 's3://b/a.parquet': x"
    assert str(InputError("x", source="postgresql://u:***@db/w#t", column="c")) == (
        "source 'postgresql://u:***@db/w#t', column 'c': x")
    assert str(InputError("x", source=str(tmp_path / "a:b.parquet"))).startswith("file '")


def test_an_unreadable_history_partition_is_a_warning_naming_it(data: Data, tmp_path: Path
                                                                ) -> None:
    for run_id in ("old", "r"):
        run_drift(_config(data, tmp_path, **{"output.run_id": run_id}))
    partition = tmp_path / "history" / "run_id=old" / "part.parquet"
    partition.write_bytes(b"not parquet")
    with pytest.warns(KLDriftWarning, match=r"history partition .*run_id=old/part\.parquet is "
                                            r"unreadable and was skipped") as caught:
        write_reports(tmp_path / "r", history_dir=tmp_path / "history")
    assert len(caught) == 1
    with warnings.catch_warnings():  # a caller can silence them
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", KLDriftWarning)
        write_reports(tmp_path / "r", history_dir=tmp_path / "history")
