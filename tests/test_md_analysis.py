"""MD analyses against analytic results: ideal gas, fcc shells, random walks, known drifts and windows."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from leignn_plugin.md.analysis.distances import distance_distribution, half_width, minimum_image
from leignn_plugin.md.analysis.energy_drift import energy_drift
from leignn_plugin.md.analysis.msd import diffusion, msd_all_origins, unwrap
from leignn_plugin.md.analysis.rdf import radial_distribution
from leignn_plugin.md.analysis.stability import stability_time


def test_ideal_gas_has_flat_rdf():
    rng = np.random.default_rng(0)
    frames, natoms, box = 12, 300, 16.0
    cell = np.diag([box, box, box])
    positions = rng.uniform(0.0, box, size=(frames, natoms, 3))
    numbers = np.where(np.arange(natoms) < 100, 8, 1)
    rdf = radial_distribution(positions, np.repeat(cell[None], frames, 0), [True] * 3, numbers, r_max=7.5, bins=30)
    far = rdf.r > 2.0
    assert abs(rdf.total[far].mean() - 1.0) < 0.02
    assert np.abs(rdf.total[far] - 1.0).max() < 0.12
    for name, curve in rdf.pairs.items():
        assert abs(curve[far].mean() - 1.0) < 0.05, name


def test_fcc_lattice_peaks_at_its_shells():
    a = 3.6
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (4, 4, 4)
    cell = atoms.cell.array
    rdf = radial_distribution(atoms.positions[None], cell[None], [True] * 3, atoms.numbers, r_max=7.0, bins=700)
    shells = a * np.sqrt(np.array([1, 2, 3, 4, 5, 6, 7]) / 2.0)  # 2.546, 3.6, 4.409, 5.091, 5.692, 6.235, 6.735
    counts = [12, 6, 24, 12, 24, 8, 48]
    occupied = rdf.r[rdf.total > 0]
    assert np.all(np.min(np.abs(occupied[:, None] - shells[None]), axis=1) < rdf.dr)  # nothing between shells
    density = (len(atoms) - 1) / atoms.get_volume()  # the density g is normalized to (N - 1 partners)
    for shell, count in zip(shells, counts):
        near = np.abs(rdf.r - shell) < 2 * rdf.dr
        edges_lo, edges_hi = rdf.r[near] - rdf.dr / 2, rdf.r[near] + rdf.dr / 2
        neighbours = density * np.sum(rdf.total[near] * 4.0 / 3.0 * np.pi * (edges_hi**3 - edges_lo**3))
        assert neighbours == pytest.approx(count, rel=1e-9)


def test_rdf_refuses_a_range_beyond_half_the_cell():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    assert half_width(atoms.cell.array, [True] * 3) == pytest.approx(3.6)
    with pytest.raises(ValueError, match="exceeds half the smallest cell width"):
        radial_distribution(atoms.positions[None], atoms.cell.array[None], [True] * 3, atoms.numbers, r_max=4.0)


def test_minimum_image_in_a_triclinic_cell():
    cell = np.array([[5.0, 0.0, 0.0], [2.0, 5.0, 0.0], [0.5, 1.0, 6.0]])
    rng = np.random.default_rng(1)
    short = rng.uniform(-1.0, 1.0, size=(50, 3))
    images = rng.integers(-2, 3, size=(50, 3))
    mapped = minimum_image(short + images @ cell, cell, [True] * 3)
    np.testing.assert_allclose(mapped, short, atol=1e-12)


def test_h_of_r_for_a_square_and_its_normalization():
    side = 2.0
    square = np.array([[0, 0, 0], [side, 0, 0], [side, side, 0], [0, side, 0]], dtype=float)
    dist = distance_distribution(square[None], np.eye(3)[None], [False] * 3, r_max=4.0, bins=400)
    assert np.sum(dist.h) * dist.dr == pytest.approx(1.0)
    weight_side = np.sum(dist.h[np.abs(dist.r - side) < dist.dr]) * dist.dr
    weight_diag = np.sum(dist.h[np.abs(dist.r - side * np.sqrt(2)) < dist.dr]) * dist.dr
    assert weight_side == pytest.approx(4 / 6) and weight_diag == pytest.approx(2 / 6)


def test_msd_fft_equals_direct_average():
    rng = np.random.default_rng(2)
    traj = np.cumsum(rng.normal(size=(40, 5, 3)), axis=0)
    direct = [np.mean(np.sum((traj[lag:] - traj[: len(traj) - lag]) ** 2, axis=-1)) for lag in range(40)]
    np.testing.assert_allclose(msd_all_origins(traj), direct, rtol=1e-10, atol=1e-10)


def test_random_walk_gives_its_diffusivity_through_wrapping():
    """Gaussian steps of variance sigma^2 per axis every dt: D = sigma^2 / (2 dt), whatever the box."""
    rng = np.random.default_rng(3)
    frames, walkers, sigma, dt = 2001, 200, 0.05, 0.01  # Å, ps
    box = 6.0
    walk = np.cumsum(rng.normal(0.0, sigma, size=(frames, walkers, 3)), axis=0) + rng.uniform(0, box, (walkers, 3))
    wrapped = np.mod(walk, box)
    cells = np.repeat(np.diag([box] * 3)[None], frames, 0)
    np.testing.assert_allclose(unwrap(wrapped, cells, [True] * 3), walk - (walk[0] - wrapped[0]), atol=1e-9)
    numbers = np.where(np.arange(walkers) % 2 == 0, 18, 10)
    result = diffusion(wrapped, cells, [True] * 3, numbers, dt)
    expected = sigma**2 / (2 * dt)  # 0.125 Å^2/ps
    for symbol in ("Ar", "Ne"):
        assert result.diffusivity[symbol] == pytest.approx(expected, rel=0.06)
        assert result.loglog_slope[symbol] == pytest.approx(1.0, abs=0.1)


def test_energy_drift_of_a_known_line():
    t = np.linspace(0.0, 2.0, 201)  # ps
    natoms = 10
    energy = -50.0 + natoms * 1e-3 * 0.7 * t  # 0.7 meV/atom/ps
    drift = energy_drift(t, energy, natoms)
    assert drift.drift_meV_per_atom_ps == pytest.approx(0.7)
    assert drift.max_deviation_meV_per_atom == pytest.approx(1.4)


def test_stability_time_finds_the_first_bad_window():
    frame_ps, frames = 0.1, 100  # 10 ps
    curves = np.ones((frames, 20))
    curves[60:] += 0.45  # structure changes at 6 ps
    stab = stability_time(curves, frame_ps, reference=np.ones(20), window_ps=2.0, threshold=0.1)
    # windows of 20 frames: the first one whose mean error exceeds 0.1 holds 5 changed frames (error 0.1125)
    assert not stab.stable and stab.time_ps == pytest.approx(6.4)
    steady = stability_time(np.ones((frames, 20)), frame_ps, reference=None, window_ps=2.0, threshold=0.1)
    assert steady.stable and steady.time_ps == pytest.approx(9.9) and np.all(steady.error == 0)
