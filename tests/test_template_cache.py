"""report.html's template is compiled once per user, not in every run: Jinja2's bytecode cache
in the user's cache folder (pipeline/write/reports/template_cache.py), and a cache that cannot
be written or read never stops a report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jinja2 import DictLoader, Environment, Template
from jinja2.bccache import bc_magic

from pipeline.write.reports import html
from pipeline.write.reports.template_cache import (
    CACHE_HOME_ENV,
    TemplateCache,
    cache_folder,
    template_cache,
)

ROOT = Path(__file__).parents[1]
TEMPLATE = "report.html.j2"


def _env(folder: Path) -> Environment:
    """report.html's environment with its own cache folder and no in-memory cache, so every
    get_template goes through the bytecode cache."""
    return html._ENV.overlay(bytecode_cache=TemplateCache(str(folder), "%s.jinja"),
                             cache_size=0)


def _no_compiling(env: Environment) -> None:
    def compile_fails(*args: object, **kwargs: object) -> None:
        raise AssertionError("the template was compiled, not loaded from the cache")

    env.compile = compile_fails  # type: ignore[method-assign]


def test_a_compiled_template_is_loaded_from_the_cache(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "kl-drift" / "templates"
    first = _env(folder).get_template(TEMPLATE)  # compiles and writes the folder
    assert [p.suffix for p in folder.iterdir()] == [".jinja"]
    assert folder.stat().st_mode & 0o777 == 0o700  # the user's own
    again = _env(folder)
    _no_compiling(again)
    loaded = again.get_template(TEMPLATE)
    assert loaded.root_render_func.__code__.co_code == first.root_render_func.__code__.co_code


def test_a_changed_template_is_compiled_again(tmp_path: Path) -> None:
    # an upgrade changes the template under the same name: the cached code must not be used
    def render(source: str) -> str:
        env = Environment(loader=DictLoader({"page": source}), cache_size=0,
                          bytecode_cache=TemplateCache(str(tmp_path), "%s.jinja"))
        return env.get_template("page").render(x=1)

    assert render("old {{ x }}") == "old 1"
    assert render("new {{ x }}") == "new 1"
    assert len(list(tmp_path.iterdir())) == 1  # replaced, not added


@pytest.mark.parametrize("damage", ["empty", "foreign", "truncated", "unwritable"])
def test_a_damaged_or_unwritable_cache_costs_only_the_compile(tmp_path: Path,
                                                              damage: str) -> None:
    folder = tmp_path / "templates"
    if damage == "unwritable":  # the folder cannot be created: a file is in its way
        folder.write_text("in the way")
    else:
        _env(folder).get_template(TEMPLATE)
        [cached] = folder.iterdir()
        whole = cached.read_bytes()
        cached.write_bytes({"empty": b"", "foreign": b"not a cache file",
                            "truncated": whole[:len(bc_magic) + 3]}[damage])
    assert isinstance(_env(folder).get_template(TEMPLATE), Template)
    if damage != "unwritable":  # compiled again and written back whole
        again = _env(folder)
        _no_compiling(again)
        again.get_template(TEMPLATE)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_folder_others_can_write_to_is_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    _env(folder).get_template(TEMPLATE)
    folder.chmod(0o777)  # anyone could have put code there
    shared = _env(folder)
    compiled = []
    real_compile = shared.compile

    def counted(*args: Any, **kwargs: Any) -> Any:
        compiled.append(args[1])
        return real_compile(*args, **kwargs)

    shared.compile = counted  # type: ignore[method-assign]
    shared.get_template(TEMPLATE)
    assert compiled == [TEMPLATE]


def test_the_report_uses_the_cache_in_the_users_cache_folder(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    assert isinstance(html._ENV.bytecode_cache, TemplateCache)
    monkeypatch.setenv(CACHE_HOME_ENV, str(tmp_path))
    assert cache_folder() == tmp_path / "kl-drift" / "templates"
    monkeypatch.delenv(CACHE_HOME_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "kl-drift" / "templates"
    cache = template_cache()
    assert cache is not None and Path(cache.directory) == cache_folder()


def test_two_processes_render_from_one_compile(tmp_path: Path) -> None:
    # A fresh process (as every `kl-drift run` is) finds the template compiled by the first.
    probe = ("import sys; from pipeline.write.reports import html\n"
             "if sys.argv[1] == 'load':\n"
             "    def fail(*a, **k): raise SystemExit('compiled again')\n"
             "    html._ENV.compile = fail\n"
             "html._ENV.get_template('report.html.j2')")
    env = {**os.environ, CACHE_HOME_ENV: str(tmp_path), "PYTHONPATH": str(ROOT)}
    for step in ("compile", "load"):
        done = subprocess.run([sys.executable, "-c", probe, step], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "kl-drift" / "templates").iterdir())) == 1
