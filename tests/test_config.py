"""Run configuration: TOML loading, defaults, overrides, one-line errors, thresholds, hash."""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from pipeline.config import METRICS, RunConfig, load_config
from pipeline.errors import ConfigError

FULL = """
[input]
baseline = "profiles/baseline.parquet"
current = "incoming/*.parquet"
current_format = "raw"
timestamp = "ts"
period = "1d"
segments = ["region"]
exclude = ["id"]
duplicates = "sum"

[profile]
strategy = "uniform"
bins = 10
max_categories = 5
min_category_count = 2
fixed_edges = { score = [0.0, 0.5, 1.0] }

[drift]
metric = "psi"
base = "e"
eps = 1e-4

[alerts]
warn = 0.1
critical = 0.25
fdr_q = 0.05
min_count = 10
calibrated = false
null_draws = 500
persistence = 2
seed = 7

[alerts.features."dep_*"]
warn = 0.05
critical = 0.15

[alerts.features."dep_delay"]
critical = 0.3

[alerts.features."*delay"]
warn = 0.2
critical = 0.4

[output]
dir = "/abs/runs"
run_id = "nightly"
fail_on = "warn"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def config_error(path: Path | None = None, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_match_the_documented_values() -> None:
    config = load_config(None)
    assert (config.drift.metric, config.drift.base, config.drift.eps) == ("js_distance", 2, 1e-6)
    assert (config.alerts.warn, config.alerts.critical, config.alerts.fdr_q) == (0.1, 0.2, 0.01)
    assert (config.profile.strategy, config.profile.bins, config.profile.max_categories,
            config.profile.min_category_count, config.profile.category_limit) == (
        "quantile", 20, 1000, 1, 1000)
    assert config.output.dir == "runs" and config.output.run_id is None
    assert config.output.fail_on == "critical"
    assert config.alerts.null_quantile == 0.999 and config.alerts.persistence == 1


def test_every_default_is_documented() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    for section, field in RunConfig.model_fields.items():
        # Optional sections ([models], [estimate]) are `Section | None`.
        model = next(a for a in (field.annotation, *typing.get_args(field.annotation))
                     if isinstance(a, type) and issubclass(a, BaseModel))
        assert f"`[{section}]`" in doc, f"section [{section}] missing from docs/config.md"
        for key in model.model_fields:
            assert f"`{key}`" in doc, f"{section}.{key} missing from docs/config.md"


def test_full_file_loads_and_resolves_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.input.baseline == str(tmp_path / "profiles/baseline.parquet")
    assert config.input.current == str(tmp_path / "incoming/*.parquet")
    assert config.output.dir == "/abs/runs"
    assert config.drift.log_base is None and config.drift.metric == "psi"
    assert config.profile.fixed_edges == {"score": [0.0, 0.5, 1.0]}
    assert config.alerts.persistence == 2 and not config.alerts.calibrated


def test_models_and_estimate_sections_are_optional_and_resolve_paths(tmp_path: Path) -> None:
    assert load_config(None).models is None and load_config(None).estimate is None
    config = load_config(write(tmp_path, FULL + """
[models]
baseline = "v1.parquet"
current = "/abs/v2.parquet"
outputs = ["p_a", "p_b"]
kind = "probabilities"
timestamp = "ts"
period = "1w"

[estimate]
source = "samples/*.parquet"
base = 2
"""))
    assert config.models.baseline == str(tmp_path / "v1.parquet")
    assert config.models.current == "/abs/v2.parquet"
    assert config.models.outputs == ["p_a", "p_b"] and config.models.log_base == 2.0
    assert config.estimate.source == str(tmp_path / "samples/*.parquet")
    assert config.estimate.log_base == 2.0 and config.estimate.period is None
    assert load_config(None, {"estimate.source": "s"}).estimate.log_base is None  # nats


def test_overrides_win_dotted_or_nested_and_none_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load_config(path, {"alerts.warn": 0.2, "output": {"fail_on": "never"},
                                "output.run_id": None})
    assert config.alerts.warn == 0.2
    assert config.output.fail_on == "never"
    assert config.output.run_id == "nightly"
    # Override paths are taken as given (relative to the working folder, like CLI flags).
    assert load_config(path, {"input.current": "x.parquet"}).input.current == "x.parquet"


def test_thresholds_exact_name_then_first_glob_then_global(tmp_path: Path) -> None:
    alerts = load_config(write(tmp_path, FULL)).alerts
    # Exact key wins even though "dep_*" comes first; its missing warn is the global one.
    assert alerts.thresholds_for("dep_delay") == (0.1, 0.3)
    # "dep_*" precedes "*delay" in the file, so it wins for dep_time and dep_xdelay.
    assert alerts.thresholds_for("dep_time") == (0.05, 0.15)
    assert alerts.thresholds_for("dep_xdelay") == (0.05, 0.15)
    assert alerts.thresholds_for("arr_delay") == (0.2, 0.4)
    assert alerts.thresholds_for("distance") == (0.1, 0.25)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"alerts.wran": 0.1}, "unknown key 'alerts.wran' (did you mean 'alerts.warn'?)"),
    ({"alert": {"warn": 0.1}}, "unknown key 'alert' (did you mean 'alerts'?)"),
    ({"alerts.features": {"dep_*": {"wran": 0.1}}},
     "unknown key 'alerts.features.\"dep_*\".wran'"),
    ({"alerts.warn": 0.3}, "alerts.warn: must be < alerts.critical (0.3 >= 0.2)"),
    ({"alerts.features": {"x": {"critical": 0.05}}}, "alerts.features.x: warn must be <"),
    ({"drift.metric": "js"}, "drift.metric: unknown metric 'js'"),
    ({"alerts.features": {"dep_[": {"warn": 0.01}}}, "alerts.features.\"dep_[\": not a valid"),
    ({"alerts.features": {"": {"warn": 0.01}}}, "not a valid glob"),
    ({"alerts.fdr_q": 0.0}, "alerts.fdr_q:"),
    ({"alerts.warn": "0.1"}, "alerts.warn: Input should be a valid number"),
    ({"input.period": "1x"}, "input.period: '1x' is not a duration"),
    ({"input.period": "1d"}, "input.period: needs timestamp"),
    ({"input.period": "0d", "input.timestamp": "ts"}, "input.period: '0d' is not a duration"),
    ({"models.baseline": "a"}, "models.current: required"),
    ({"models.baseline": "a", "models.current": "b"},
     "models.outputs: set exactly one of outputs"),
    ({"models.baseline": "a", "models.current": "b", "models.outputs": "z",
      "models.kind": "probs"}, "models.kind: Input should be 'logits' or 'probabilities'"),
    ({"models.baseline": "a", "models.current": "b", "models.outputs": "z",
      "models.period": "1w"}, "models.period: needs timestamp"),
    ({"models.baseline": "a", "models.current": "b", "models.outputs": "z",
      "models.metric": "js"}, "models.metric: unknown metric 'js'"),
    ({"models.baselin": "a"}, "unknown key 'models.baselin' (did you mean 'models.baseline'?)"),
    ({"estimate.source": "s", "estimate.per": "sequence"}, "estimate.sequence_id: required"),
    ({"estimate.source": "s", "estimate.period": "1 day", "estimate.timestamp": "t"},
     "estimate.period: '1 day' is not a duration"),
    ({"input.duplicates": "keep"}, "input.duplicates:"),
    ({"output.fail_on": "always"}, "output.fail_on:"),
    ({"drift.base": 10}, "drift.base:"),
    ({"alerts.critical": 1.5}, "alerts.critical: 1.5 is above the largest possible js_distance"),
    ({"profile.fixed_edges": {"score": [1.0, 0.0]}}, "profile.fixed_edges.score: edges must"),
    ({"alerts.null_quantile": 1.0}, "alerts.null_quantile:"),
])
def test_errors_are_one_line_and_name_the_key(overrides: dict, expected: str) -> None:
    assert expected in config_error(None, overrides)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[alerts]\nwran = 0.1\n")
    assert config_error(path).startswith(f"config '{path}': unknown key 'alerts.wran'")
    assert "invalid TOML" in config_error(write(tmp_path, "[alerts\nwarn = 1"))
    assert "file not found" in config_error(tmp_path / "absent.toml")


def test_js_bound_depends_on_base() -> None:
    # In nats js_distance reaches sqrt(ln 2) = 0.83, so 0.9 can never be reached.
    assert "0.8326" in config_error(None, {"drift.base": "e", "alerts.critical": 0.9})
    assert load_config(None, {"drift.metric": "kl", "alerts.critical": 5.0}).alerts.critical == 5


@given(warn=st.floats(0, 10, allow_nan=False), critical=st.floats(0, 10, allow_nan=False))
def test_threshold_consistency_property(warn: float, critical: float) -> None:
    overrides = {"drift.metric": "kl", "alerts.warn": warn, "alerts.critical": critical}
    if warn < critical:
        assert load_config(None, overrides).alerts.thresholds_for("f") == (warn, critical)
    else:
        assert "alerts.warn: must be < alerts.critical" in config_error(None, overrides)


def test_config_hash_is_canonical_and_ignores_run_id(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    data = config.model_dump(mode="json")
    del data["output"]["run_id"]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert config.config_hash() == hashlib.sha256(canonical.encode()).hexdigest()
    assert load_config(write(tmp_path, FULL), {"output.run_id": "other"}).config_hash() == (
        config.config_hash())
    assert load_config(write(tmp_path, FULL), {"alerts.seed": 8}).config_hash() != (
        config.config_hash())


def test_metric_names_match_kl_metrics() -> None:
    from kl_metrics import DEFAULT_METRICS

    assert tuple(DEFAULT_METRICS) == METRICS
