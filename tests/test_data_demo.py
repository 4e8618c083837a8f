"""The embedded demo data: fixed layout, OC20/fairchem fields, real EMT labels, reproducible bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.emt import EMT
from fairchem.core.datasets import LmdbDataset

from leignn_plugin.data.cli import main
from leignn_plugin.data.demo import SlabSpec, build_demo
from leignn_plugin.data.demo.build import DATA_VERSION
from leignn_plugin.data.demo.slabs import TAG_SUBSURFACE, relax_all

LAYOUT = {
    "oc20_s2ef": ("train", "val", "test"),
    "oc20_is2re": ("train", "val"),
    "molecules": ("train", "val", "test"),
}


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def samples(directory: Path) -> list:
    dataset = LmdbDataset({"src": str(directory)})
    return [dataset[index] for index in range(len(dataset))]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    build_demo(out, seed=0, size="small", progress=False)
    return out


def test_layout_and_manifest(small_demo: Path) -> None:
    manifest = json.loads((small_demo / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["size"] == "small"
    assert manifest["data_version"] == DATA_VERSION == 2
    assert manifest["datasets"]["oc20_s2ef"]["rattled"]["frames"] == 0  # small: the frames of data version 1
    assert set(manifest["software"]) >= {"ase", "tblite", "fairchem-core"}
    for dataset, splits in LAYOUT.items():
        assert tuple(manifest["datasets"][dataset]["splits"]) == splits
        for split in splits:
            directory = small_demo / dataset / split
            assert (directory / "data.0000.lmdb").is_file()
            natoms = np.load(directory / "metadata.npz")["natoms"]
            read = samples(directory)
            assert len(read) == manifest["datasets"][dataset]["splits"][split]["samples"] > 0
            assert natoms.tolist() == [s.natoms for s in read]
    assert manifest["datasets"]["molecules"]["calculator"].startswith("GFN2-xTB")
    assert sorted(p.name for p in small_demo.iterdir()) == ["manifest.json", "molecules", "oc20_is2re", "oc20_s2ef"]


def test_s2ef_frames_follow_oc20_and_match_emt(small_demo: Path) -> None:
    train = samples(small_demo / "oc20_s2ef" / "train")
    for sample in train[:: max(1, len(train) // 8)]:
        assert isinstance(sample.y, float) and "energy" not in sample
        assert sample.force.shape == (sample.natoms, 3) and sample.force.dtype == torch.float32
        assert sample.atomic_numbers.dtype == torch.float32
        assert sample.cell.shape == (1, 3, 3) and sample.pbc.shape == (1, 3) and bool(sample.pbc.all())
        assert set(sample.tags.tolist()) == {0, 1, 2}
        np.testing.assert_array_equal(sample.fixed.numpy(), (sample.tags == 0).int().numpy())
        atoms = Atoms(
            numbers=sample.atomic_numbers.long().numpy(),
            positions=sample.pos.double().numpy(),
            cell=sample.cell[0].double().numpy(),
            pbc=True,
        )
        atoms.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(sample.y, abs=1e-3)
        np.testing.assert_allclose(atoms.get_forces(), sample.force.numpy(), atol=2e-3)
    val_sids = {s.sid for s in samples(small_demo / "oc20_s2ef" / "val")}
    assert val_sids.isdisjoint({s.sid for s in train})


def test_is2re_records(small_demo: Path) -> None:
    s2ef = {(s.sid, s.fid): s for split in LAYOUT["oc20_s2ef"] for s in samples(small_demo / "oc20_s2ef" / split)}
    for split in LAYOUT["oc20_is2re"]:
        for record in samples(small_demo / "oc20_is2re" / split):
            assert "y" not in record and "force" not in record
            assert record.y_relaxed < record.y_init + 1e-6
            assert record.pos_relaxed.shape == record.pos.shape
            fixed = record.fixed.bool()
            torch.testing.assert_close(record.pos_relaxed[fixed], record.pos[fixed], atol=1e-5, rtol=0)
            first = s2ef[(record.sid, 0)]
            assert first.y == pytest.approx(record.y_init)
            torch.testing.assert_close(first.pos, record.pos)
            last = max((s for (sid, _), s in s2ef.items() if sid == record.sid), key=lambda s: s.fid)
            assert last.y == pytest.approx(record.y_relaxed)
            assert float(last.force[~fixed].norm(dim=1).max()) < 0.05 + 1e-4


def test_molecules_are_nonperiodic_gfn2_frames(small_demo: Path) -> None:
    reference = {5: -113.6, 3: -137.97}  # GFN2-xTB minimum energies (eV) of CH4 and H2O
    for sample in samples(small_demo / "molecules" / "train"):
        assert isinstance(sample.energy, float) and sample.forces.dtype == torch.float32
        assert not bool(sample.pbc.any())
        np.testing.assert_allclose(sample.cell[0].numpy(), np.eye(3))
        assert sample.atomic_numbers.dtype == torch.uint8
        assert 0.0 < sample.energy - reference[sample.natoms] < 1.5
        assert float(sample.forces.sum(dim=0).abs().max()) < 1e-3


def test_same_seed_gives_identical_bytes(small_demo: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["demo", str(again), "--size", "small", "--seed", "0", "--quiet"]) == 0
    assert file_hashes(again) == file_hashes(small_demo)
    other = tmp_path / "other"
    build_demo(other, seed=1, size="small", progress=False)
    assert file_hashes(other) != file_hashes(small_demo)
    assert main(["demo", str(again), "--size", "small", "--quiet"]) == 2


def test_rattled_frames_carry_large_emt_forces() -> None:
    """Rattled copies of frames along a relaxation: own sid, fixed atoms in place, EMT labels, and many
    force components above 1 eV/Å (which a relaxation has only in its first steps)."""
    spec = SlabSpec(metals=("Cu",), facets=("111",), adsorbates=("CO",), sites_per_combination=1,
                    rattled_per_system=4)
    (relaxation,) = relax_all(spec, seed=0)
    assert [(f.sid, f.fid) for f in relaxation.rattled] == [(1, 0), (1, 1), (1, 2), (1, 3)]
    bases = {frame.fid: frame for frame in relaxation.frames}
    large = 0
    for frame in relaxation.rattled:
        base = bases[int(frame.origin.split("frame ")[1].split()[0])]
        fixed = frame.atoms.get_tags() == TAG_SUBSURFACE
        moved = np.linalg.norm(frame.atoms.positions - base.atoms.positions, axis=1)  # [N]
        assert moved[fixed].max() == 0.0 and moved[~fixed].min() > 0.0
        atoms = frame.atoms.copy()
        atoms.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(frame.energy, abs=1e-9)
        np.testing.assert_allclose(atoms.get_forces(apply_constraint=False), frame.forces, atol=1e-9)
        large += int((np.abs(frame.forces[~fixed]) > 1.0).sum())
    assert large >= 8, large
    assert relaxation.rattled[0].origin.startswith(f"demo slab 0 rattled: frame {relaxation.frames[0].fid} ")
    (again,) = relax_all(spec, seed=0)
    np.testing.assert_array_equal(again.rattled[3].atoms.positions, relaxation.rattled[3].atoms.positions)


@pytest.mark.slow
def test_default_size_holds_the_documented_counts(tmp_path: Path) -> None:
    """The documented demo's frame counts (its build time is reported by the demo, not asserted here)."""
    manifest = build_demo(tmp_path / "demo", progress=False)
    counts = {name: sum(s["samples"] for s in d["splits"].values()) for name, d in manifest["datasets"].items()}
    assert 2400 <= counts["oc20_s2ef"] <= 3200
    assert manifest["datasets"]["oc20_s2ef"]["rattled"]["frames"] == 144 * 4
    assert counts["oc20_is2re"] >= 140
    assert counts["molecules"] == 5 * 3 * 100
