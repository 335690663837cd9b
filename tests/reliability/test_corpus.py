"""The hostile corpus (tests/reliability/corpus.py) through the CLI, in process.

For every case: the exit code of the contract (0 ok, 1 alerts, 2 bad input / config /
output location; 3, a crash, only for an injected bug), exactly one line on stderr naming
what to fix (or exactly the expected warning lines), no Python warning that would reach the
user's terminal, every run folder one whole run and no temp file left behind.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import LOG_DIR_ENV, app
from tests.reliability.corpus import CASES, OUT, Case, Data, make_data
from tests.run_checks import assert_clean, one_error_line

# Categories Python shows a user by default (the others are ignored outside __main__).
_HIDDEN = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return make_data(tmp_path_factory.mktemp("corpus-data"))


def test_the_corpus_is_large_and_labelled() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert len(CASES) >= 100
    assert {c.category for c in CASES} == {"files", "config", "names", "paths", "report",
                                           "models", "bugs"}


def _crash(case: Case, tmp: Path) -> str:
    logs = sorted((tmp / "logs").glob("*.log")) if (tmp / "logs").is_dir() else []
    return logs[0].read_text() if logs else "(no crash log)"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case: Case, data: Data, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))
    monkeypatch.chdir(tmp_path)  # whatever a case gets wrong, it writes nothing elsewhere
    args = case.build(data, tmp_path)
    if case.bug:
        def bug(*_args: object, **_kwargs: object) -> None:
            raise ZeroDivisionError("injected")

        monkeypatch.setattr(case.bug, bug)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in _HIDDEN:
            warnings.simplefilter("ignore", category)
        result = CliRunner().invoke(app, args)
    stderr = result.stderr
    if result.exit_code == 3 and not case.bug:
        pytest.fail(f"crash: {stderr}\n{_crash(case, tmp_path)}")
    assert result.exit_code == case.exit, (stderr, result.stdout, result.exception)
    if case.exit == 2:
        one_error_line(stderr, *(n.format(tmp=tmp_path) for n in case.names))
    elif case.exit == 3:
        (line,) = stderr.splitlines()
        assert line.startswith("kl-drift: internal error: ZeroDivisionError"), line
        assert "Traceback" in _crash(case, tmp_path)
    else:
        lines = stderr.splitlines()
        assert len(lines) == len(case.warns), stderr
        for line, name in zip(lines, case.warns, strict=True):
            assert line.startswith("kl-drift: warning: ") and name in line, line
    shown = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    assert not shown, shown  # a user would see these on stderr
    assert_clean(tmp_path / OUT, whole=case.whole)
    if case.check is not None:
        case.check(data, tmp_path)
