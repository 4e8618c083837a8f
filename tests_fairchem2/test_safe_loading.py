"""Safe loading under fairchem 2.x: nothing stored in an inference checkpoint runs before it is refused.

fairchem's loader has Hydra instantiate every ``_target_`` of the stored model and task configs and its
registry import the module of any dotted backbone or head name. A converted LEIGNN checkpoint is given
``builtins.open`` and ``torch.load`` targets (in the backbone, a head and a task), an OmegaConf
interpolation that builds such a target, a fine-tuning reference and a head name from a module in the
current folder: each is refused with one line naming the file and the object, the payload's marker file
never appears, and the line does not offer ``--trust-checkpoint`` as the way out. Trained and converted
checkpoints still load. The converter refuses its own input as output, an existing output without
``--overwrite`` and malformed normalizers, each in one line.
"""

from __future__ import annotations

import base64
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, Payload, run

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem2.checkpoint import load_predict_unit, read_inference_checkpoint
from leignn_plugin.fairchem2.convert import convert_checkpoint
from leignn_plugin.testing.commands import error_line

PROG = "leignn-fairchem2"
FIXTURE = REPO / "tests" / "fixtures" / "demo_checkpoint" / "checkpoint.pt"
LAMMPS_INPUT = REPO / "configs" / "fairchem2" / "lammps" / "nve_cu_slab.in"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The 1.10 demo fixture converted to a 2.x inference checkpoint (task ``demo``)."""
    return convert_checkpoint(FIXTURE, tmp_path_factory.mktemp("converted") / "leignn.pt", dataset="demo")


def opens(marker: Path) -> dict:
    """A config value that makes Hydra create ``marker``."""
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


def unpickles(marker: Path) -> dict:
    """A config value that makes Hydra call ``torch.load`` on pickled bytes whose payload creates
    ``marker`` (the bytes decoded by ``base64.b64decode``, as in the issue)."""
    encoded = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    return {"_target_": "torch.load", "weights_only": False,
            "f": {"_target_": "io.BytesIO", "_args_": [{"_target_": "base64.b64decode", "s": encoded}]}}


# where a crafted value goes, and the location the refusal names
PLACES = {
    "backbone": ("model_config.backbone.max_neighbors", lambda saved, v: saved.model_config["backbone"].update(
        max_neighbors=v)),
    "head": ("model_config.heads.energy.scale", lambda saved, v: saved.model_config["heads"]["energy"].update(
        scale=v)),
    "task": ("tasks_config[0].normalizer.mean", lambda saved, v: saved.tasks_config[0]["normalizer"].update(
        mean=v)),
}
GADGETS = {"builtins.open": opens, "torch.load": unpickles}


def crafted(converted: Path, folder: Path, change) -> Path:
    """The converted checkpoint with ``change(saved)`` applied to what it stores."""
    saved = read_inference_checkpoint(converted)
    change(saved)
    path = folder / "crafted.pt"
    torch.save(saved, path)
    return path


def assert_refusal(line: str, path: Path, *parts: str) -> None:
    assert len(line.splitlines()) == 1, line
    for part in (str(path), *parts):
        assert part in line, line
    assert "trust" not in line, line


# --- crafted configs: refused before fairchem instantiates anything -------------------------------------


@pytest.mark.parametrize("gadget", sorted(GADGETS))
@pytest.mark.parametrize("place", sorted(PLACES))
def test_crafted_target_is_refused(place, gadget, converted, tmp_path, payload_marker):
    where, put = PLACES[place]
    path = crafted(converted, tmp_path, lambda saved: put(saved, GADGETS[gadget](payload_marker)))
    with pytest.raises(CheckpointError) as refused:
        load_predict_unit(path)
    assert_refusal(str(refused.value), path, "refused to load", gadget, where)
    assert not payload_marker.exists()


def test_interpolation_that_builds_a_target_is_refused(converted, tmp_path, payload_marker):
    """OmegaConf's oc.create resolver turns a string into a new config with a _target_."""
    value = f"${{oc.create:{{_target_: builtins.open, _args_: [{payload_marker}, w]}}}}"
    path = crafted(converted, tmp_path, lambda saved: saved.model_config["backbone"].update(max_neighbors=value))
    with pytest.raises(CheckpointError) as refused:
        load_predict_unit(path)
    assert_refusal(str(refused.value), path, "model_config.backbone.max_neighbors", "interpolation")
    assert not payload_marker.exists()


def test_finetune_reference_is_refused(converted, tmp_path, payload_marker):
    """fairchem's HydraModel would torch.load (weights_only=False) the file finetune_config names."""
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Payload(payload_marker)))
    path = crafted(converted, tmp_path, lambda saved: saved.model_config.update(
        finetune_config={"starting_checkpoint": str(evil)}))
    with pytest.raises(CheckpointError) as refused:
        load_predict_unit(path)
    assert_refusal(str(refused.value), path, "model_config.finetune_config")
    assert not payload_marker.exists()


def test_head_name_is_matched_without_importing(converted, tmp_path, payload_marker, monkeypatch):
    """A dotted head name would make fairchem's registry import that module from the current folder."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    (folder / "leignn_evilmod.py").write_text(f"from pathlib import Path\nPath({str(payload_marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "leignn_evilmod", raising=False)
    path = crafted(converted, tmp_path, lambda saved: saved.model_config["heads"]["energy"].update(
        module="leignn_evilmod.LEIGNNEnergyHead"))
    try:
        with pytest.raises(CheckpointError) as refused:
            load_predict_unit(path)
    finally:
        sys.modules.pop("leignn_evilmod", None)
    assert_refusal(str(refused.value), path, "'leignn_evilmod.LEIGNNEnergyHead' head", "not one of LEIGNN's")
    assert not payload_marker.exists()


def test_crafted_checkpoint_to_evaluate(converted, demo_data, tmp_path, payload_marker, bad_input):
    where, put = PLACES["backbone"]
    path = crafted(converted, tmp_path, lambda saved: put(saved, unpickles(payload_marker)))
    done = run([PROG, "evaluate", str(demo_data / "oc20_s2ef" / "val"), "--checkpoint", str(path), "--task", "demo",
                "--quiet"])
    line = error_line(done.returncode, done.stderr, PROG)
    assert_refusal(line, path, "torch.load", where)
    assert not payload_marker.exists()
    bad_input("crafted 2.x checkpoint (a torch.load target in its stored config)",
              "leignn-fairchem2 evaluate DATA --checkpoint crafted.pt --task demo", line)


def test_crafted_checkpoint_to_lammps(converted, tmp_path, payload_marker, bad_input):
    where, put = PLACES["task"]
    path = crafted(converted, tmp_path, lambda saved: put(saved, opens(payload_marker)))
    done = run([PROG, "lammps", str(LAMMPS_INPUT), "--checkpoint", str(path), "--task", "demo"], cwd=tmp_path)
    line = error_line(done.returncode, done.stderr, PROG)
    assert_refusal(line, path, "builtins.open", where)
    assert not payload_marker.exists()
    bad_input("crafted 2.x checkpoint given to LAMMPS (a builtins.open target in its stored config)",
              "leignn-fairchem2 lammps INPUT --checkpoint crafted.pt --task demo", line)


# --- what must still load -------------------------------------------------------------------------------


def test_trained_and_converted_checkpoints_load(direct_run, conservative_run, converted):
    for path in (direct_run.checkpoint, conservative_run.checkpoint, converted):
        unit = load_predict_unit(path)
        assert "demo" in unit.dataset_to_tasks


def test_every_load_while_building_is_checked(converted, tmp_path, payload_marker, monkeypatch):
    """fairchem reads the file again itself: a file swapped after the check is checked again."""
    _, put = PLACES["head"]
    swapped = crafted(converted, tmp_path, lambda saved: put(saved, opens(payload_marker)))
    path = tmp_path / "swapped_after_the_check.pt"
    path.write_bytes(converted.read_bytes())
    import leignn_plugin.fairchem2.checkpoint as checkpoint

    def read_then_swap(*args, **kwargs):
        checked = read_inference_checkpoint(*args, **kwargs)
        os.replace(swapped, path)
        return checked

    monkeypatch.setattr(checkpoint, "read_inference_checkpoint", read_then_swap)
    with pytest.raises(CheckpointError, match=r"builtins\.open"):
        checkpoint.load_predict_unit(path)
    assert not payload_marker.exists()


# --- the converter's output and malformed normalizers ----------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_convert_refuses_its_own_input_as_output(tmp_path, bad_input, monkeypatch):
    src = tmp_path / "c.pt"
    src.write_bytes(FIXTURE.read_bytes())
    (tmp_path / "link.pt").symlink_to(src)
    os.link(src, tmp_path / "hard.pt")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    for dst in (tmp_path / "link.pt", tmp_path / "hard.pt", Path("c.pt"), Path("../") / tmp_path.name / "c.pt"):
        with pytest.raises(UsageError, match="is the input"):
            convert_checkpoint(src, dst, overwrite=True)
    done = run([PROG, "convert", str(src), str(src), "--overwrite"])
    line = error_line(done.returncode, done.stderr, PROG)
    assert str(src) in line and "is the input" in line
    assert snapshot(tmp_path) == before
    bad_input("the converter's own input as its output", "leignn-fairchem2 convert c.pt c.pt", line)


def test_convert_refuses_an_existing_output_without_overwrite(tmp_path, bad_input):
    dst = tmp_path / "leignn.pt"
    dst.write_bytes(b"an earlier conversion")
    done = run([PROG, "convert", str(FIXTURE), str(dst)])
    line = error_line(done.returncode, done.stderr, PROG)
    assert str(dst) in line and "--overwrite" in line
    assert dst.read_bytes() == b"an earlier conversion"
    bad_input("an existing converter output without --overwrite", "leignn-fairchem2 convert SRC leignn.pt", line)
    convert_checkpoint(FIXTURE, dst, dataset="demo", overwrite=True)
    assert read_inference_checkpoint(dst).tasks_config[0]["datasets"] == ["demo"]


MALFORMED = {
    "a string": (lambda c: c.update(normalizers="energy"), "its 'normalizers' entry is a str"),
    "a normalizer without its mean": (lambda c: c["normalizers"]["energy"].pop("mean"),
                                      "normalizers['energy']['mean'] is missing"),
    "a normalizer that is not a number": (lambda c: c["normalizers"]["forces"].update(rmsd="x"),
                                          "normalizers['forces']['rmsd'] is a str, not one number"),
    "element references that are not a tensor": (
        lambda c: c.update(elementrefs={"energy": {"element_references": [0.0, 1.0]}}),
        "elementrefs['energy']['element_references'] is a list"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_convert_refuses_malformed_normalizers(kind, tmp_path, bad_input):
    change, problem = MALFORMED[kind]
    checkpoint = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    change(checkpoint)
    src = tmp_path / "malformed.pt"
    torch.save(checkpoint, src)
    with pytest.raises(CheckpointError) as refused:
        convert_checkpoint(src, tmp_path / "out.pt")
    assert str(src) in str(refused.value) and problem in str(refused.value), str(refused.value)
    assert not (tmp_path / "out.pt").exists()
    if kind == "a normalizer without its mean":
        done = run([PROG, "convert", str(src), str(tmp_path / "out.pt")])
        line = error_line(done.returncode, done.stderr, PROG)
        assert problem in line
        bad_input("checkpoint with a malformed normalizer (no mean)", "leignn-fairchem2 convert malformed.pt OUT.pt",
                  line)
