"""No run is lost, nothing is written outside an output folder, no command replaces its input.

- ``leignn-md run`` checks every setting before it touches anything, writes a new run beside the old
  one and replaces it only after the first step: a bad setting or a failure before that step leaves
  the old run byte-identical (and nothing of the new one);
- symbolic links in an output folder, dangling or not, are never written through (``leignn-md run``
  and ``analyze``, ``leignn-data`` writers, the demo's plots and summary, ``leignn-bench``);
- an output that is an input, or that already exists without ``--overwrite``, is refused
  (``leignn-submission``, ``leignn-data``, ``leignn-md analyze``, ``leignn-bench``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from conftest import error_line

from leignn_plugin.errors import UsageError
from leignn_plugin.md.calculator import LEIGNNCalculator
from leignn_plugin.md.cli import main as md_main
from leignn_plugin.outputs import (
    check_output_file,
    inside_output,
    refuse_input_as_output,
    replace_file,
    write_text,
)

FIXTURE = Path(__file__).parent / "fixtures" / "demo_checkpoint"
CHECKPOINT, FRAMES = FIXTURE / "checkpoint.pt", FIXTURE / "frames.extxyz"


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under ``folder``: a file's bytes, a link's target (links are not followed)."""
    found: dict[str, object] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_file():
                found[key] = path.read_bytes()
    return found


def hidden(folder: Path) -> list[str]:
    """Hidden entries a command left in ``folder`` (staging folders, temporary files)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


def md_run(out: Path, *extra: str) -> list[str]:
    return ["run", "--checkpoint", str(CHECKPOINT), "--structure", str(FRAMES), "--index", "0", "--steps", "3",
            "--interval", "1", "--out", str(out), "--no-progress", *extra]


def refused(code: int, capsys, prog: str) -> str:
    """The one error line of an in-process command that returned ``code``."""
    return error_line(code, capsys.readouterr().err, prog)


@pytest.fixture
def earlier_run(tmp_path, capsys) -> Path:
    """A finished run with its analysis, and a file of the user's, in ``tmp_path/run``."""
    out = tmp_path / "run"
    assert md_main(md_run(out)) == 0
    assert md_main(["analyze", str(out), "--window", "0.001", "--no-plots"]) == 0
    (out / "notes.txt").write_text("the user's own file")
    capsys.readouterr()
    return out


# --- leignn-md run: a run is lost neither to a bad setting nor to a failure before its first step -----------


BAD_SETTINGS = [
    ("--skin", "nan"), ("--skin", "-1"), ("--timestep", "0"), ("--timestep", "inf"), ("--temperature", "nan"),
    ("--friction", "nan"), ("--tdamp", "-5"), ("--pdamp", "0"), ("--pressure", "nan"), ("--compressibility", "inf"),
    ("--t-max", "nan"), ("--t-min", "-1"), ("--min-distance", "nan"), ("--edge-chunk-mib", "nan"),
    ("--interval", "0"), ("--seed", "-1"), ("--steps", "0"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_SETTINGS, ids=[f"{f}={v}" for f, v in BAD_SETTINGS])
def test_bad_setting_keeps_the_earlier_run(earlier_run, capsys, bad_input, flag, value):
    before = snapshot(earlier_run)
    line = refused(md_main(md_run(earlier_run, flag, value, "--overwrite")), capsys, "leignn-md")
    assert line.startswith(f"leignn-md: error: {flag} must be"), line
    assert snapshot(earlier_run) == before and not hidden(earlier_run) and not hidden(earlier_run.parent)
    if (flag, value) == ("--skin", "nan"):
        bad_input("a non-finite MD setting with --overwrite (--skin nan)",
                  "leignn-md run ... --skin nan --out RUN --overwrite", line)


def failing_calculate(monkeypatch, calls: int, error: BaseException) -> None:
    """The calculator raises ``error`` on its ``calls``-th evaluation."""
    original, count = LEIGNNCalculator.calculate, [0]

    def calculate(self, *args, **kwargs):
        count[0] += 1
        if count[0] == calls:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LEIGNNCalculator, "calculate", calculate)


def test_failure_before_the_first_step_keeps_the_earlier_run(earlier_run, monkeypatch):
    before = snapshot(earlier_run)
    failing_calculate(monkeypatch, 2, RuntimeError("the first step failed"))  # 1: step 0's energy, 2: step 1
    with pytest.raises(RuntimeError, match="the first step failed"):
        md_main(md_run(earlier_run, "--overwrite"))
    assert snapshot(earlier_run) == before and not hidden(earlier_run)


def test_failure_before_the_first_step_leaves_no_run_folder(tmp_path, monkeypatch):
    failing_calculate(monkeypatch, 2, RuntimeError("the first step failed"))
    with pytest.raises(RuntimeError):
        md_main(md_run(tmp_path / "new"))
    assert not (tmp_path / "new").exists() and not hidden(tmp_path)


def test_interrupted_run_replaced_the_old_one_and_says_so(earlier_run, monkeypatch, capsys):
    failing_calculate(monkeypatch, 4, KeyboardInterrupt())  # after the first step: the new run is published
    assert md_main(md_run(earlier_run, "--overwrite")) == 130
    info = json.loads((earlier_run / "run.json").read_text())
    assert info["status"] == "interrupted" and info["steps_done"] >= 1
    assert not (earlier_run / "analysis").exists()  # the old run's analysis went with it
    assert (earlier_run / "notes.txt").read_text() == "the user's own file" and not hidden(earlier_run)


def test_overwrite_replaces_the_run_and_keeps_other_files(earlier_run):
    old_log = (earlier_run / "md_log.csv").read_bytes()
    assert md_main(md_run(earlier_run, "--overwrite", "--seed", "7")) == 0
    assert json.loads((earlier_run / "run.json").read_text())["status"] == "finished"
    assert (earlier_run / "md_log.csv").read_bytes() != old_log
    assert not (earlier_run / "analysis").exists() and not hidden(earlier_run)
    assert (earlier_run / "notes.txt").read_text() == "the user's own file"


def test_a_run_does_not_replace_its_own_starting_structure(earlier_run, capsys, bad_input):
    before = snapshot(earlier_run)
    argv = ["run", "--checkpoint", str(CHECKPOINT), "--structure", str(earlier_run / "md.traj"), "--keep-velocities",
            "--steps", "2", "--out", str(earlier_run), "--overwrite", "--no-progress"]
    line = refused(md_main(argv), capsys, "leignn-md")
    assert f"--out {earlier_run / 'md.traj'} is the input {earlier_run / 'md.traj'}" in line
    assert snapshot(earlier_run) == before
    bad_input("an MD run continued into its own folder with --overwrite",
              "leignn-md run --structure RUN/md.traj ... --out RUN --overwrite", line)


# --- symbolic links in an output folder are never written through -------------------------------------


def test_dangling_links_in_out_are_not_written_through(tmp_path, capsys, bad_input):
    out, outside = tmp_path / "run", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "md.traj").symlink_to(outside / "stolen.traj")
    (out / "md_log.csv").symlink_to(outside / "stolen.csv")
    line = refused(md_main(md_run(out)), capsys, "leignn-md")
    assert "already holds an MD run (md.traj, md_log.csv)" in line
    bad_input("a dangling symbolic link in an MD --out (md.traj -> elsewhere)", "leignn-md run ... --out RUN", line)
    assert md_main(md_run(out, "--overwrite")) == 0
    assert not list(outside.iterdir())
    assert not (out / "md.traj").is_symlink() and (out / "md_log.csv").is_file()


def test_analysis_link_is_not_written_through(earlier_run, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    for path in sorted((earlier_run / "analysis").iterdir()):
        path.unlink()
    (earlier_run / "analysis").rmdir()
    (earlier_run / "analysis").symlink_to(outside, target_is_directory=True)
    line = refused(md_main(["analyze", str(earlier_run), "--window", "0.001"]), capsys, "leignn-md")
    assert "analysis: output directory already exists" in line
    assert md_main(["analyze", str(earlier_run), "--window", "0.001", "--overwrite"]) == 0
    assert not list(outside.iterdir())
    summary = json.loads((earlier_run / "analysis" / "summary.json").read_text())
    assert not (earlier_run / "analysis").is_symlink() and not hidden(earlier_run)
    assert all(Path(p).parent == earlier_run / "analysis" and Path(p).is_file() for p in summary["plots"])


# --- leignn-md analyze: an earlier analysis needs --overwrite; a broken run.json is one line ----------------


def test_earlier_analysis_is_kept_without_overwrite(earlier_run, capsys, bad_input):
    before = snapshot(earlier_run)
    line = refused(md_main(["analyze", str(earlier_run), "--window", "0.001"]), capsys, "leignn-md")
    assert line.endswith("analysis: output directory already exists (use --overwrite to replace it)")
    assert snapshot(earlier_run) == before
    bad_input("an MD run that already holds an analysis", "leignn-md analyze RUN (again)", line)


RUN_JSON_DAMAGE = {
    "missing settings.ensemble.name": (lambda info: info["settings"]["ensemble"].pop("name"),
                                       "lacks the key settings.ensemble.name"),
    "missing frame_interval_fs": (lambda info: info.pop("frame_interval_fs"), "lacks the key frame_interval_fs"),
    "frame_interval_fs a string": (lambda info: info.update(frame_interval_fs="1 fs"),
                                   "frame_interval_fs must be a positive number, got '1 fs'"),
    "result a list": (lambda info: info.update(result=[1]), "result must be a mapping"),
}


@pytest.mark.parametrize("damage", sorted(RUN_JSON_DAMAGE))
def test_run_json_missing_keys_is_one_line(earlier_run, capsys, bad_input, damage):
    change, message = RUN_JSON_DAMAGE[damage]
    path = earlier_run / "run.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))
    line = refused(md_main(["analyze", str(earlier_run), "--overwrite"]), capsys, "leignn-md")
    assert line.startswith(f"leignn-md: error: {path}") and message in line, line
    if damage == "missing settings.ensemble.name":
        bad_input("run.json without a key analyze reads (settings.ensemble.name)", "leignn-md analyze RUN", line)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe"])
def test_run_json_that_is_not_a_run_record(earlier_run, capsys, bad_input, text):
    path = earlier_run / "run.json"
    path.write_bytes(text.encode("latin-1"))
    line = refused(md_main(["analyze", str(earlier_run), "--overwrite"]), capsys, "leignn-md")
    assert line.startswith(f"leignn-md: error: {path}"), line
    if text == "{not json":
        bad_input("run.json that is not JSON", "leignn-md analyze RUN", line)


def test_log_with_a_word_for_a_number(earlier_run, capsys):
    log = earlier_run / "md_log.csv"
    rows = [line.split(",") for line in log.read_text().splitlines()]
    rows[2][2] = "hot"
    log.write_text("".join(",".join(row) + "\n" for row in rows))
    line = refused(md_main(["analyze", str(earlier_run), "--overwrite", "--no-plots"]), capsys, "leignn-md")
    assert f"{log}, line 3: column potential_energy_eV holds 'hot', not a number" in line


# --- leignn-submission: never its own input, never an existing file without --overwrite ----------------------


def predictions(path: Path) -> Path:
    """A small, valid S2EF predictions file (two frames of two atoms)."""
    np.savez(path, ids=np.array(["1_0", "2_0"]), energy=np.array([1.0, 2.0]),
             forces=np.zeros((4, 3)), chunk_idx=np.array([2]))
    return path


def submission_args(inputs: list[Path]) -> list[str]:
    return [arg for flag, path in zip(("--id", "--ood-ads", "--ood-cat", "--ood-both"), inputs)
            for arg in (flag, str(path))]


@pytest.mark.parametrize("how", ["same path", "relative path", "symbolic link"])
def test_submission_refuses_its_own_input(tmp_path, monkeypatch, capsys, bad_input, how):
    from leignn_plugin.workflows.submission import main as submission_main

    inputs = [predictions(tmp_path / f"{split}.npz") for split in ("id", "ads", "cat", "both")]
    out = {"same path": inputs[2], "relative path": Path("sub/../cat.npz"),
           "symbolic link": tmp_path / "link.npz"}[how]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.npz").symlink_to(inputs[2])
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    line = refused(submission_main([*submission_args(inputs), "--out", str(out), "--overwrite"]), capsys,
                   "leignn-submission")
    assert f"--out {out} is the input {inputs[2]}" in line
    assert snapshot(tmp_path) == before
    if how == "same path":
        bad_input("a submission --out that is one of its inputs", "leignn-submission ... --ood-cat CAT.npz "
                  "--out CAT.npz --overwrite", line)


def test_submission_refuses_an_existing_out(tmp_path, capsys, bad_input):
    from leignn_plugin.workflows.submission import main as submission_main

    inputs = [predictions(tmp_path / f"{split}.npz") for split in ("id", "ads", "cat", "both")]
    out = tmp_path / "submission.npz"
    out.write_bytes(b"an earlier submission")
    line = refused(submission_main([*submission_args(inputs), "--out", str(out)]), capsys, "leignn-submission")
    assert line.endswith(f"--out {out} already exists; pass --overwrite to replace it, or choose another path")
    assert out.read_bytes() == b"an earlier submission"
    bad_input("an existing submission --out without --overwrite", "leignn-submission ... --out submission.npz", line)
    assert submission_main([*submission_args(inputs), "--out", str(out), "--overwrite"]) == 0
    assert sorted(np.load(out).files)[0] == "id_chunk_idx" and not hidden(tmp_path)


# --- leignn-data: not its input, not through a link --------------------------------------------------------


def labelled_frames(path: Path) -> Path:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((len(atoms), 3)))
    write(path, [atoms, atoms])
    return path


def test_data_writer_refuses_an_out_holding_its_input(tmp_path, capsys, bad_input):
    from leignn_plugin.data.cli import main as data_main

    out = tmp_path / "dataset"
    out.mkdir()
    source = labelled_frames(out / "frames.extxyz")
    before = snapshot(out)
    line = refused(data_main(["from-ase", str(source), "--out", str(out), "--overwrite", "--quiet"]), capsys,
                   "leignn-data")
    assert f"--out {out} holds the input {source}" in line
    assert snapshot(out) == before
    bad_input("an output folder that holds the input (--overwrite would delete it)",
              "leignn-data from-ase DIR/frames.extxyz --out DIR --overwrite", line)


def test_to_aselmdb_refuses_its_input_as_output(tmp_path, capsys):
    from leignn_plugin.data.cli import main as data_main

    src = tmp_path / "lmdbs"
    src.mkdir()
    (src / "data.0000.lmdb").write_bytes(b"an input that must survive")
    line = refused(data_main(["to-aselmdb", str(src), f"{tmp_path}/./lmdbs", "--overwrite", "--quiet"]), capsys,
                   "leignn-data")
    assert f"OUT {src} is the input {src}: writing it would replace the input" in line
    assert (src / "data.0000.lmdb").read_bytes() == b"an input that must survive"


def test_data_writer_does_not_follow_a_dangling_out_link(tmp_path, capsys):
    from leignn_plugin.data.cli import main as data_main

    source = labelled_frames(tmp_path / "frames.extxyz")
    out, target = tmp_path / "dataset", tmp_path / "elsewhere"
    out.symlink_to(target, target_is_directory=True)
    line = refused(data_main(["from-ase", str(source), "--out", str(out), "--quiet"]), capsys, "leignn-data")
    assert "output directory already exists" in line
    assert data_main(["from-ase", str(source), "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert not target.exists() and out.is_dir() and not out.is_symlink()


def test_inspect_json_needs_overwrite(tmp_path, capsys, bad_input):
    from leignn_plugin.data.cli import main as data_main

    source = labelled_frames(tmp_path / "frames.extxyz")
    assert data_main(["from-ase", str(source), "--out", str(tmp_path / "dataset"), "--quiet"]) == 0
    report = tmp_path / "stats.json"
    report.write_text("earlier statistics")
    capsys.readouterr()
    line = refused(data_main(["inspect", str(tmp_path / "dataset"), "--json", str(report)]), capsys, "leignn-data")
    assert line.endswith(f"--json {report} already exists; pass --overwrite to replace it, or choose another path")
    assert report.read_text() == "earlier statistics"
    bad_input("an existing --json file without --overwrite", "leignn-data inspect DIR --json FILE", line)
    assert data_main(["inspect", str(tmp_path / "dataset"), "--json", str(report), "--overwrite"]) == 0
    (dataset,) = json.loads(report.read_text())["datasets"].values()
    assert dataset["samples"] == 2 and not hidden(tmp_path)


# --- leignn-bench and the demo ---------------------------------------------------------------------------


def test_bench_refuses_earlier_results_before_measuring(tmp_path, capsys, bad_input):
    from leignn_plugin.bench.cli import main as bench_main

    (tmp_path / "models.json").write_text("earlier results")
    line = refused(bench_main(["models", "--models", "leignn", "--out", str(tmp_path)]), capsys, "leignn-bench")
    assert "already holds models.json of an earlier `leignn-bench models`; pass --overwrite" in line
    assert (tmp_path / "models.json").read_text() == "earlier results"
    bad_input("a leignn-bench --out that holds the command's earlier results", "leignn-bench models --out DIR", line)


def test_demo_refuses_a_link_where_it_writes(tmp_path):
    from leignn_plugin.workflows.demo import run_demo

    out, outside = tmp_path / "demo_out", tmp_path / "outside"
    (out / "runs").mkdir(parents=True)
    outside.mkdir()
    (out / "runs" / "checkpoints").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UsageError, match=r"runs/checkpoints is a symbolic link .*refusing to write through it"):
        run_demo(out)
    assert not list(outside.iterdir()) and not (out / "data").exists()


# --- the shared rules (leignn_plugin/outputs.py) ----------------------------------------------------------


def test_replace_file_replaces_a_link_instead_of_writing_through_it(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("not yours")
    link = tmp_path / "summary.json"
    link.symlink_to(target)
    write_text(link, "{}")
    assert target.read_text() == "not yours" and not link.is_symlink() and link.read_text() == "{}"
    with pytest.raises(RuntimeError), replace_file(tmp_path / "half.png"):
        raise RuntimeError("failed while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "target.txt"]


def test_output_rules(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.npz").write_bytes(b"input")
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    with pytest.raises(UsageError, match="is the input"):
        refuse_input_as_output(tmp_path / "link" / "in.npz", [tmp_path / "data" / "in.npz"])
    with pytest.raises(UsageError, match="holds the input"):
        refuse_input_as_output(tmp_path / "link", [tmp_path / "data" / "in.npz"], replaced_folder=True)
    refuse_input_as_output(tmp_path / "data" / "out.npz", [tmp_path / "data" / "in.npz"])
    with pytest.raises(UsageError, match="is a symbolic link"):
        inside_output(tmp_path, "link", "out.npz")
    assert inside_output(tmp_path / "link", "out.npz") == tmp_path / "link" / "out.npz"  # the root may be a link
    with pytest.raises(UsageError, match=r"the folder .*nowhere does not exist"):
        check_output_file(tmp_path / "nowhere" / "x.json", False, "--json")
    with pytest.raises(UsageError, match="is a folder"):
        check_output_file(tmp_path / "data", True, "--json")
    with pytest.raises(UsageError, match="already exists"):
        check_output_file(tmp_path / "data" / "in.npz", False, "--json")
    check_output_file(tmp_path / "data" / "in.npz", True, "--json")
