"""Names of the files an MD run folder holds (written by the runner, read by the analyses)."""

from __future__ import annotations

TRAJECTORY = "md.traj"
LOG = "md_log.csv"
RUN_INFO = "run.json"
ANALYSIS_DIR = "analysis"
SUMMARY = "summary.json"
