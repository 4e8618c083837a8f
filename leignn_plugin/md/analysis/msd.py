"""Mean-squared displacement per element and the diffusivity from the Einstein relation.

MSD(tau) = < |r_i(t + tau) - r_i(t)|^2 >, averaged over atoms of an element and over all time origins
t (computed with FFTs, O(T log T) per atom), on positions unwrapped across periodic faces and, by
default, with the centre-of-mass drift removed. D = slope / 6 from a linear fit of MSD(tau) over the
diffusive part of the curve (by default lags between 20% and 100% of the largest lag, which is half
the trajectory), skipping the ballistic start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.data import atomic_masses, chemical_symbols

from leignn_plugin.md.analysis.distances import minimum_image

ANGSTROM2_PER_PS_TO_CM2_PER_S = 1e-4


def unwrap(positions: np.ndarray, cells: np.ndarray, pbc) -> np.ndarray:
    """Positions [T, N, 3] made continuous: each step adds the minimum-image displacement."""
    steps = np.diff(positions, axis=0)  # [T-1, N, 3]
    steps = np.stack([minimum_image(steps[t], cells[t + 1], pbc) for t in range(steps.shape[0])]) \
        if steps.shape[0] else steps
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps, axis=0)], axis=0)


def msd_all_origins(trajectory: np.ndarray) -> np.ndarray:
    """MSD [T] of one set of trajectories [T, M, 3] averaged over M and all time origins (FFT method)."""
    frames = trajectory.shape[0]
    sq = np.sum(trajectory**2, axis=-1)  # [T, M]
    padded = 2 * frames
    spectrum = np.fft.rfft(trajectory, n=padded, axis=0)  # [T+1, M, 3]
    autocorr = np.fft.irfft(spectrum * spectrum.conj(), n=padded, axis=0)[:frames].sum(axis=-1)  # [T, M]
    autocorr /= (frames - np.arange(frames))[:, None]
    total = 2.0 * sq.sum(axis=0)  # [M]
    s1 = np.empty_like(autocorr)
    for lag in range(frames):
        if lag > 0:
            total = total - sq[lag - 1] - sq[frames - lag]
        s1[lag] = total / (frames - lag)
    return (s1 - 2.0 * autocorr).mean(axis=-1)


@dataclass
class Diffusion:
    """MSD curves per element on ``lag_ps`` [L], with D (Å^2/ps) and the fit window per element."""

    lag_ps: np.ndarray
    msd: dict[str, np.ndarray] = field(default_factory=dict)
    diffusivity: dict[str, float] = field(default_factory=dict)
    fit_ps: tuple[float, float] = (0.0, 0.0)
    loglog_slope: dict[str, float] = field(default_factory=dict)
    intercept: dict[str, float] = field(default_factory=dict)


def diffusion(
    positions: np.ndarray,
    cells: np.ndarray,
    pbc,
    numbers: np.ndarray,
    frame_ps: float,
    fit: tuple[float, float] = (0.2, 1.0),
    remove_drift: bool = True,
    fixed: np.ndarray | None = None,
) -> Diffusion:
    """MSD and diffusivity per element of frames [T, N, 3] spaced ``frame_ps`` apart.

    ``fit`` is the fit window as fractions of the largest lag (T // 2 frames); ``fixed`` [N] marks
    atoms held in place, which are left out.
    """
    frames = positions.shape[0]
    if frames < 4:
        raise ValueError(f"the MSD needs at least 4 frames, got {frames}")
    if not 0.0 <= fit[0] < fit[1] <= 1.0:
        raise ValueError(f"the MSD fit window must satisfy 0 <= start < end <= 1 (fractions), got {fit}")
    numbers = np.asarray(numbers)
    mobile = np.ones(numbers.shape[0], dtype=bool) if fixed is None else ~np.asarray(fixed, dtype=bool)
    traj = unwrap(positions, cells, pbc)
    if remove_drift:
        masses = atomic_masses[numbers][mobile]
        com = np.einsum("tnk,n->tk", traj[:, mobile], masses) / masses.sum()  # [T, 3]
        traj = traj - (com - com[0])[:, None, :]
    max_lag = frames // 2
    lag_ps = np.arange(max_lag + 1) * frame_ps
    lo, hi = round(fit[0] * max_lag), round(fit[1] * max_lag)
    lo, hi = max(lo, 1), max(hi, min(lo + 2, max_lag))
    out = Diffusion(lag_ps=lag_ps, fit_ps=(float(lag_ps[lo]), float(lag_ps[hi])))
    for z in sorted(set(numbers[mobile].tolist())):
        symbol = chemical_symbols[z]
        curve = msd_all_origins(traj[:, mobile & (numbers == z)])[: max_lag + 1]
        out.msd[symbol] = curve
        slope, intercept = np.polyfit(lag_ps[lo : hi + 1], curve[lo : hi + 1], 1)
        out.diffusivity[symbol] = float(slope / 6.0)
        out.intercept[symbol] = float(intercept)
        positive = curve[lo : hi + 1] > 0
        if positive.sum() >= 2:
            out.loglog_slope[symbol] = float(
                np.polyfit(np.log(lag_ps[lo : hi + 1][positive]), np.log(curve[lo : hi + 1][positive]), 1)[0]
            )
    return out
