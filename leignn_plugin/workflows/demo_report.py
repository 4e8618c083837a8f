"""What the two demos share: whether a demo dataset folder holds the current data, the line of test
errors both print, the line that compares one host's demo with the other's, and the command line.

``make demo`` (fairchem 1.10) writes ``<out>/summary.json`` and ``make demo-fairchem2`` writes
``<out>/summary_fairchem2.json``; both score the same test frames (the S2EF test split of the demo
data, built from the same seed in each host's format) with the same functions, so their numbers compare.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from leignn_plugin.data.demo.build import DATA_VERSION
from leignn_plugin.errors import UsageError
from leignn_plugin.workflows.evaluation import LARGE_FORCE

SUMMARY_1X = "summary.json"
SUMMARY_2X = "summary_fairchem2.json"


def stale_data(data: Path, size: str) -> str | None:
    """Why the demo dataset folder ``data`` must be (re)built for ``size``, or None when it is current."""
    manifest = data / "manifest.json"
    if not manifest.is_file():
        return "no demo data there yet"
    try:
        found = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its manifest.json does not read"
    if found.get("size") != size:
        return f"it holds the '{found.get('size')}' size, not '{size}'"
    if found.get("data_version", 1) != DATA_VERSION:
        return f"it holds data version {found.get('data_version', 1)}, not {DATA_VERSION}"
    return None


def test_errors_text(test: dict) -> str:
    """``energy MAE .. eV, force MAE .. eV/Å (components above 1 eV/Å: .. eV/Å)`` of a summary's scores."""
    text = f"energy MAE {test['energy_mae']:.3f} eV, force MAE {test['forces_mae']:.3f} eV/Å"
    if test.get("forces_mae_above_1") is not None:
        text += f" (components above {LARGE_FORCE:g} eV/Å: {test['forces_mae_above_1']:.3f} eV/Å)"
    return text


def read_summary(path: Path) -> dict | None:
    """A demo's summary, or None when that demo has not run here (or its file does not read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def comparison_line(mine: dict, other: dict | None, other_name: str, other_path: Path) -> str | None:
    """One line with the other host's demo's test errors, when it ran on the same test frames."""
    if other is None or "test" not in other:
        return None
    same = (other["test"].get("frames") == mine["test"].get("frames")
            and other.get("data_version") == mine.get("data_version"))
    if not same:
        return (f"  {other_name}: its summary ({other_path}) is of other test frames "
                f"({other['test'].get('frames')}); run both demos on the same data to compare")
    return f"  {other_name}: test {test_errors_text(other['test'])} ({other_path})"


def demo_main(prog: str, description: str | None, epochs_help: str, run_demo: Callable[..., dict],
              report: Callable[[dict, Path], str], argv: Sequence[str] | None = None) -> int:
    """The command line of either demo: ``--out``, ``--size``, ``--epochs``; runs ``run_demo(out, size,
    epochs)`` and prints ``report(summary, out)``. A bad input is one line and exit 2, a failed step
    (a training or data command that stopped) one line and exit 1."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--size", choices=("default", "small"), default="default", help="demo dataset size")
    parser.add_argument("--epochs", type=int, help=epochs_help)
    args = parser.parse_args(argv)
    try:
        summary = run_demo(args.out, args.size, args.epochs)
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.CalledProcessError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    print(report(summary, args.out.resolve()))
    return 0
