"""``leignn-fairchem2`` and the other commands of this environment: one line, never a traceback, and
before the work, not after it.

- ``evaluate --json FILE`` checks FILE's folder (and that FILE is new, unless ``--overwrite``) before
  evaluating anything;
- Ctrl-C while a command still imports fairchem (seconds on a cold start) ends it with one line and
  exit status 130, and what that import prints without meaning to the user is not shown.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ase.build import bulk
from ase.io import write
from conftest import BIN, REPO

from leignn_plugin.testing.commands import error_line


def command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_evaluate_checks_the_json_folder_first(tmp_path, bad_input):
    """Before, a missing --json folder failed after the whole evaluation (here: on the unreadable checkpoint)."""
    checkpoint = tmp_path / "inference_ckpt.pt"
    checkpoint.write_bytes(b"not read before the output is checked")
    missing = tmp_path / "nowhere" / "x.json"
    done = command("leignn-fairchem2", "evaluate", str(tmp_path), "--checkpoint", str(checkpoint), "--task", "demo",
                   "--json", str(missing))
    line = error_line(done.returncode, done.stderr, "leignn-fairchem2")
    assert line == f"leignn-fairchem2: error: --json {missing}: the folder {missing.parent} does not exist"
    assert done.stderr.splitlines() == [line]  # nothing else: the import's noise (warp without CUDA) is dropped
    bad_input("an evaluate --json whose folder does not exist",
              "leignn-fairchem2 evaluate DATA --checkpoint CKPT --task T --json /nonexistent/x.json", line)


def test_evaluate_keeps_an_existing_json(tmp_path, bad_input):
    checkpoint = tmp_path / "inference_ckpt.pt"
    checkpoint.write_bytes(b"not read before the output is checked")
    report = tmp_path / "errors.json"
    report.write_text("earlier errors")
    done = command("leignn-fairchem2", "evaluate", str(tmp_path), "--checkpoint", str(checkpoint), "--task", "demo",
                   "--json", str(report))
    line = error_line(done.returncode, done.stderr, "leignn-fairchem2")
    assert line.endswith(f"--json {report} already exists; pass --overwrite to replace it, or choose another path")
    assert report.read_text() == "earlier errors"
    bad_input("an existing evaluate --json without --overwrite",
              "leignn-fairchem2 evaluate DATA --checkpoint CKPT --task T --json FILE", line)


def interrupting_fairchem(folder: Path) -> dict:
    """An environment whose ``import fairchem`` raises KeyboardInterrupt: Ctrl-C during that import."""
    package = folder / "fairchem"
    package.mkdir()
    (package / "__init__.py").write_text("raise KeyboardInterrupt\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def test_ctrl_c_during_the_fairchem_import(tmp_path):
    env = interrupting_fairchem(tmp_path)
    for args in (["leignn-fairchem2", "train", "-c", "configs/fairchem2/demo.yaml"],
                 ["leignn-fairchem2", "evaluate", str(tmp_path), "--checkpoint", "x.pt", "--task", "demo"],
                 ["leignn-data", "inspect", str(tmp_path)]):
        done = command(*args, env=env)
        assert done.returncode == 130, done.stderr[-2000:]
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1] == f"{args[0]}: interrupted during start-up", done.stderr


def test_leignn_md_in_this_environment(tmp_path, bad_input):
    """Both commands run here; a missing checkpoint or run folder is one line."""
    structure = tmp_path / "x.extxyz"
    write(structure, bulk("Cu", "fcc", a=3.6, cubic=True))
    done = command("leignn-md", "run", "--checkpoint", str(tmp_path / "ckpt.pt"), "--structure", str(structure),
                   "--steps", "1", "--out", str(tmp_path / "run"))
    line = error_line(done.returncode, done.stderr, "leignn-md")
    assert line == f"leignn-md: error: checkpoint not found: {tmp_path / 'ckpt.pt'}"
    assert not (tmp_path / "run").exists()
    bad_input("leignn-md run with a missing checkpoint (fairchem 2.x environment)",
              "leignn-md run --checkpoint MISSING.pt ... (.venv-fairchem2)", line)
    done = command("leignn-md", "analyze", str(tmp_path))
    assert error_line(done.returncode, done.stderr, "leignn-md").endswith("is not an MD run folder (no run.json; "
                                                                          "run `leignn-md run` first)")
