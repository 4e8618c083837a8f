"""The files of an MD run folder: their names (written by the runner, read by the analyses), and how a new
run takes the place of an old one without losing it.

A run is written into a hidden folder of its own (inside ``--out`` when that exists, else beside it)
and moved into ``--out`` once it has started: only then are the old run's files removed. A run that
fails before leaves the old run as it was and nothing of its own; files are only ever created in that
fresh folder and renamed into ``--out``, so no symbolic link in ``--out`` is written through.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from leignn_plugin.errors import UsageError

TRAJECTORY = "md.traj"
LOG = "md_log.csv"
RUN_INFO = "run.json"
ANALYSIS_DIR = "analysis"
SUMMARY = "summary.json"
RUN_OUTPUTS = (RUN_INFO, TRAJECTORY, LOG, ANALYSIS_DIR)  # what a run (and its analysis) puts in --out


def previous_run(out: Path) -> list[str]:
    """The entries of an earlier run (or its analysis) in ``out``, links included; other files do not count."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    return [name for name in RUN_OUTPUTS if os.path.lexists(out / name)]


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that holds a run unless ``overwrite``; nothing is deleted here."""
    found = previous_run(out)
    if found and not overwrite:
        raise UsageError(f"--out {out} already holds an MD run ({', '.join(found)}); pass --overwrite to "
                         "replace it, or choose another folder")


class StagedRun:
    """The folder a new run is written to (:attr:`folder`) until :meth:`publish` moves it into ``out``."""

    def __init__(self, out: Path, overwrite: bool) -> None:
        check_output(out, overwrite)
        self.out, self.overwrite, self.published = Path(out), overwrite, False
        self._into_existing = self.out.exists()
        try:
            if self._into_existing:
                self.staging = Path(tempfile.mkdtemp(prefix=".leignn-md-new-", dir=self.out))
            else:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                self.staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.leignn-md-new-", dir=self.out.parent))
        except OSError as err:
            raise UsageError(f"--out {out}: cannot create the run's folder ({err.strerror})") from None

    @property
    def folder(self) -> Path:
        """Where the run's files are now: the staging folder, then ``out``."""
        return self.out if self.published else self.staging

    def publish(self) -> None:
        """Move the new run into ``out``; the old run's files are deleted only now."""
        if self.published:
            return
        if not self._into_existing:
            if os.path.lexists(self.out):  # made meanwhile: refuse rather than guess
                raise UsageError(f"--out {self.out} appeared while the run started; its files are in {self.staging}")
            os.rename(self.staging, self.out)
            self.published = True
            return
        check_output(self.out, self.overwrite)
        old = Path(tempfile.mkdtemp(prefix=".leignn-md-old-", dir=self.out))
        for name in previous_run(self.out):
            os.rename(self.out / name, old / name)
        for entry in os.listdir(self.staging):
            os.rename(self.staging / entry, self.out / entry)
        self.staging.rmdir()
        self.published = True
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove an unpublished run (the old one in ``out`` stays as it was)."""
        if not self.published:
            shutil.rmtree(self.staging, ignore_errors=True)
