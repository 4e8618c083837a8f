"""Property checks for a model: each takes a model, ASE structures and a tolerance, and asserts.

Every check compares numbers with tolerances scaled to the magnitude of the reference values.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from leignn_plugin.testing.structures import to_batch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    """|actual - expected| <= rtol * max(1, max|expected|), elementwise."""
    actual = actual.detach().double()
    expected = expected.detach().double()
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    err = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert err <= rtol * scale, f"{what}: max deviation {err:.3e} exceeds {rtol:.1e} x {scale:.3g}"


def predict(model: torch.nn.Module, atoms_list: list[Atoms], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Run ``model`` on the structures as one batch and return detached outputs."""
    batch = to_batch(atoms_list, dtype)
    out = model(batch)
    return {k: v.detach() for k, v in out.items()}


def check_rotation(model, atoms: Atoms, dtype: torch.dtype, rtol: float, seed: int = 0) -> None:
    """E invariant, forces rotate with the structure, stress transforms as R sigma R^T."""
    rot = Rotation.random(random_state=seed).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    turned.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    ref, out = predict(model, [atoms], dtype), predict(model, [turned], dtype)
    r = torch.as_tensor(rot, dtype=torch.float64)
    assert_close(out["energy"], ref["energy"], rtol, "energy under rotation")
    if "forces" in ref:
        assert_close(out["forces"], ref["forces"].double() @ r.T, rtol, "forces under rotation")
    if "stress" in ref:
        assert_close(out["stress"][0], r @ ref["stress"][0].double() @ r.T, rtol, "stress under rotation")


def check_translation(model, atoms: Atoms, dtype: torch.dtype, rtol: float) -> None:
    """A rigid shift of all atoms changes nothing."""
    moved = atoms.copy()
    moved.positions += np.array([0.37, -1.21, 0.58])
    ref, out = predict(model, [atoms], dtype), predict(model, [moved], dtype)
    for key in ref:
        assert_close(out[key], ref[key], rtol, f"{key} under translation")


def check_permutation(model, atoms: Atoms, dtype: torch.dtype, rtol: float, seed: int = 0) -> None:
    """Reordering the atoms reorders the forces and leaves energy and stress unchanged."""
    perm = np.random.default_rng(seed).permutation(len(atoms))
    shuffled = atoms[perm]
    ref, out = predict(model, [atoms], dtype), predict(model, [shuffled], dtype)
    assert_close(out["energy"], ref["energy"], rtol, "energy under permutation")
    if "forces" in ref:
        assert_close(out["forces"], ref["forces"][torch.as_tensor(perm)], rtol, "forces under permutation")
    if "stress" in ref:
        assert_close(out["stress"], ref["stress"], rtol, "stress under permutation")


def check_image_wrapping(model, atoms: Atoms, dtype: torch.dtype, rtol: float) -> None:
    """Moving an atom by a lattice vector (to a periodic image) changes nothing."""
    moved = atoms.copy()
    moved.positions[0] += moved.cell.array[0] - moved.cell.array[1]
    ref, out = predict(model, [atoms], dtype), predict(model, [moved], dtype)
    for key in ref:
        assert_close(out[key], ref[key], rtol, f"{key} after moving an atom to its image")


def check_batch_consistency(model, atoms_list: list[Atoms], dtype: torch.dtype, rtol: float) -> None:
    """A batch gives what its structures give one by one."""
    together = predict(model, atoms_list, dtype)
    alone = [predict(model, [a], dtype) for a in atoms_list]
    assert_close(together["energy"], torch.cat([o["energy"] for o in alone]), rtol, "batched energy")
    if "forces" in together:
        assert_close(together["forces"], torch.cat([o["forces"] for o in alone]), rtol, "batched forces")


def check_no_cross_talk(model, atoms_list: list[Atoms], dtype: torch.dtype) -> None:
    """The outputs of structure 0 do not depend on the atoms of any other structure in the batch."""
    batch = to_batch(atoms_list, dtype)
    batch.pos.requires_grad_(True)
    with torch.enable_grad():
        out = model(batch)
        n0 = int(batch.natoms[0])
        target = out["energy"][0] + (out["forces"][:n0].sum() if "forces" in out else 0)
        (grad,) = torch.autograd.grad(target, batch.pos, allow_unused=True)
    if grad is not None:
        leak = float(grad[n0:].abs().max())
        assert leak == 0.0, f"structure 0 depends on other structures (gradient {leak:.3e})"


def check_supercell(model, atoms: Atoms, dtype: torch.dtype, rtol: float) -> None:
    """E(2x1x1 supercell) = 2 E(cell), forces repeated."""
    ref, out = predict(model, [atoms], dtype), predict(model, [atoms * (2, 1, 1)], dtype)
    assert_close(out["energy"], 2 * ref["energy"], rtol, "supercell energy")
    if "forces" in ref:
        assert_close(out["forces"], torch.cat([ref["forces"], ref["forces"]]), rtol, "supercell forces")


def check_smooth_cutoff(model, cutoff: float, dtype: torch.dtype, tol: float) -> None:
    """A dimer's energy and forces change continuously as the partner crosses the cutoff."""
    def dimer(d: float) -> Atoms:
        return Atoms("CO", positions=[[0, 0, 0], [d, 0, 0]], pbc=False)

    delta = 1e-6
    inside = predict(model, [dimer(cutoff - delta)], dtype)
    outside = predict(model, [dimer(cutoff + delta)], dtype)
    for key in inside:
        assert_close(inside[key], outside[key], tol, f"{key} across the cutoff")


def check_forces_are_energy_gradient(model, atoms: Atoms, rtol: float, h: float = 1e-5) -> None:
    """Conservative forces equal central finite differences of the energy (float64)."""
    ref = predict(model, [atoms], torch.float64)
    fd = np.zeros((len(atoms), 3))
    for a in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, k] += h
            minus.positions[a, k] -= h
            e_p = float(predict(model, [plus], torch.float64)["energy"][0])
            e_m = float(predict(model, [minus], torch.float64)["energy"][0])
            fd[a, k] = -(e_p - e_m) / (2 * h)
    assert_close(ref["forces"], torch.as_tensor(fd), rtol, "forces vs finite differences")


def check_stress_is_strain_derivative(model, atoms: Atoms, rtol: float, h: float = 1e-6) -> None:
    """sigma = (1/V) dE/d(epsilon) by central differences of a homogeneous strain (float64)."""
    ref = predict(model, [atoms], torch.float64)
    volume = abs(np.linalg.det(atoms.cell.array))
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += sign * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ strain, scale_atoms=False)
                strained.positions = atoms.positions @ strain
                energies.append(float(predict(model, [strained], torch.float64)["energy"][0]))
            fd[a, b] = (energies[0] - energies[1]) / (2 * h) / volume
    assert_close(ref["stress"][0], torch.as_tensor(fd), rtol, "stress vs strain derivative")


def check_all_parameters_used(model, atoms_list: list[Atoms], dtype: torch.dtype) -> None:
    """Every parameter gets a gradient from an energy + force loss (DDP without unused parameters)."""
    model.train()
    out = model(to_batch(atoms_list, dtype))
    loss = out["energy"].square().sum() + (out["forces"].square().sum() if "forces" in out else 0)
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    model.zero_grad(set_to_none=True)
    model.eval()
    assert not missing, f"parameters without gradient: {missing}"


def energy_difference_force(calc, atoms: Atoms, atom: int, axis: int, h: float = 1e-3) -> float:
    """-dE/dx of one coordinate by central differences of an ASE calculator's energy."""
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[atom, axis] += sign * h
        moved.calc = calc
        energies.append(moved.get_potential_energy())
    return -(energies[0] - energies[1]) / (2 * h)
