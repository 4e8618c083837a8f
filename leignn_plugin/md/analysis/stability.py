"""Stability time: when a structural fingerprint, averaged over a sliding window, departs from its reference.

For each window of ``window_ps`` (sliding by one frame) the window-averaged curve (g(r) for periodic
systems, h(r) for molecules) is compared with the reference curve by the mean absolute error over
bins; the run counts as stable until the end of the first window whose error exceeds ``threshold``.
The reference is the reference trajectory's curve when one is given, else the run's own first window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Stability:
    """Window end times [W] and errors [W]; ``time_ps`` is the stability time (run length if stable)."""

    window_end_ps: np.ndarray
    error: np.ndarray
    threshold: float
    window_ps: float
    time_ps: float
    stable: bool


def window_means(per_frame: np.ndarray, width: int) -> np.ndarray:
    """Means over every run of ``width`` consecutive frames of per-frame curves [T, B] -> [T - width + 1, B]."""
    csum = np.concatenate([np.zeros((1, per_frame.shape[1])), np.cumsum(per_frame, axis=0)], axis=0)
    return (csum[width:] - csum[:-width]) / width


def stability_time(
    per_frame: np.ndarray,
    frame_ps: float,
    reference: np.ndarray | None,
    window_ps: float = 2.0,
    threshold: float = 0.1,
    run_ps: float | None = None,
) -> Stability:
    """Stability of per-frame curves [T, B] spaced ``frame_ps`` apart (frame 0 at t = 0)."""
    frames = per_frame.shape[0]
    width = int(np.clip(round(window_ps / frame_ps), 1, frames))
    means = window_means(per_frame, width)  # [W, B]
    ref = means[0] if reference is None else reference
    error = np.abs(means - ref).mean(axis=-1)  # [W]
    ends = (np.arange(means.shape[0]) + width - 1) * frame_ps
    above = np.flatnonzero(error > threshold)
    length = (frames - 1) * frame_ps if run_ps is None else run_ps
    if above.size:
        return Stability(ends, error, threshold, width * frame_ps, float(ends[above[0]]), False)
    return Stability(ends, error, threshold, width * frame_ps, float(length), True)
