"""Run fairchem's ``main.py`` modes in a subprocess and find what they wrote.

fairchem names every run directory by a timestamp + identifier; these helpers pass a fresh
``--identifier`` and find the run's checkpoint, results and tensorboard folders by it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_PY = REPO_ROOT / "main.py"


@dataclass
class RunOutputs:
    """Where one ``main.py`` run put its files."""

    run_dir: Path
    identifier: str
    log: str

    def _one(self, sub: str) -> Path:
        matches = sorted((self.run_dir / sub).glob(f"*-{self.identifier}"))
        if not matches:
            raise FileNotFoundError(f"no {sub} folder for run '{self.identifier}' under {self.run_dir}")
        return matches[-1]

    @property
    def checkpoint_dir(self) -> Path:
        return self._one("checkpoints")

    @property
    def results_dir(self) -> Path:
        return self._one("results")

    @property
    def tensorboard_dir(self) -> Path:
        return self._one("logs/tensorboard")


def fresh_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``, ...: the first that does not exist yet (a dangling
    symbolic link exists: fairchem would write through it)."""
    candidate, n = parent / name, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = parent / f"{name}-{n}"
    return candidate


def run_main(mode: str, config: Path, run_dir: Path, identifier: str, overrides: list[str],
             checkpoint: Path | None = None, extra: list[str] | None = None, echo: bool = True) -> RunOutputs:
    """``python main.py --mode MODE --config-yml CONFIG --cpu ...``; raises with the log tail on failure."""
    cmd = [sys.executable, str(MAIN_PY), "--mode", mode, "--config-yml", str(config), "--cpu",
           "--run-dir", str(run_dir), "--identifier", identifier, *(extra or []), *overrides]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    if echo:
        print("$ " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(log.strip().splitlines()[-25:])
        raise RuntimeError(f"main.py --mode {mode} failed (exit {proc.returncode}):\n{tail}")
    return RunOutputs(run_dir=run_dir, identifier=identifier, log=log)
