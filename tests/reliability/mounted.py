"""Run kl-drift commands on a small or read-only tmpfs, without being root.

``unshare --user --map-root-user --mount python -m tests.reliability.mounted STEPS RESULTS``
runs in a private user and mount namespace, where mounting a tmpfs is allowed; nothing is
visible outside it and the mounts vanish with the process. STEPS is a JSON list, executed in
order:

- ``{"op": "mount", "at": DIR, "options": "size=64k"}`` mounts a tmpfs (``mount -o``);
- ``{"op": "remount", "at": DIR, "options": "ro"}`` changes its options (e.g. ``size=``);
- ``{"op": "umount", "at": DIR}``;
- ``{"op": "seed", "from": DIR, "to": DIR}`` copies a folder tree (e.g. a previous run);
- ``{"op": "run", "name": NAME, "args": [...]}`` runs ``kl-drift ARGS`` in this process;
- ``{"op": "copy", "from": DIR, "to": DIR}`` copies a tree out, for the test to inspect.

RESULTS gets ``{NAME: {"exit": int, "stderr": str, "warnings": [str]}}`` for the runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flows.cli import app


def _run(args: list[str]) -> dict[str, Any]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                         ResourceWarning):
            warnings.simplefilter("ignore", category)
        result = CliRunner().invoke(app, args)
    return {"exit": result.exit_code, "stderr": result.stderr,
            "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}


def main(steps_file: str, results_file: str) -> None:
    results: dict[str, Any] = {}
    for step in json.loads(Path(steps_file).read_text()):
        op = step["op"]
        if op == "mount":
            subprocess.run(["mount", "-t", "tmpfs", "-o", step["options"], "tmpfs",
                            step["at"]], check=True)
        elif op == "remount":
            subprocess.run(["mount", "-o", f"remount,{step['options']}", step["at"]],
                           check=True)
        elif op == "umount":
            subprocess.run(["umount", step["at"]], check=True)
        elif op == "seed":
            shutil.copytree(step["from"], step["to"], symlinks=True, dirs_exist_ok=True)
        elif op == "copy":
            shutil.copytree(step["from"], step["to"], symlinks=True)
        elif op == "run":
            results[step["name"]] = _run(step["args"])
        else:
            raise ValueError(f"unknown step {op!r}")
    Path(results_file).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
