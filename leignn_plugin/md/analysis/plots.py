"""PNG figures of an analysed run (matplotlib, Agg backend): g(r), h(r), MSD, energies, stability."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from leignn_plugin.md.analysis.distances import DistanceDistribution
from leignn_plugin.md.analysis.msd import Diffusion
from leignn_plugin.md.analysis.rdf import RDF
from leignn_plugin.md.analysis.stability import Stability

RUN_STYLE = dict(color="tab:blue", lw=1.6, label="run")
REF_STYLE = dict(color="black", lw=1.2, ls="--", label="reference")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_rdf(run: RDF, reference: RDF | None, path: Path) -> Path:
    """Total g(r) and one panel per element pair, the reference dashed on top."""
    panels = ["all", *run.pairs] if len(run.pairs) > 1 else ["all"]
    cols = min(3, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, panels):
        curve = run.total if name == "all" else run.pairs[name]
        ax.plot(run.r, curve, **RUN_STYLE)
        if reference is not None:
            ref = reference.total if name == "all" else reference.pairs.get(name)
            if ref is not None:
                ax.plot(reference.r, ref, **REF_STYLE)
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_title(f"g(r), {name} pairs" if name != "all" else "g(r), all atoms")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.set_xlim(0, run.r[-1] + 0.5 * run.dr)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_distance_distribution(run: DistanceDistribution, reference: DistanceDistribution | None,
                               path: Path) -> Path:
    """h(r) of the run, the reference dashed on top."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(run.r, run.h, **RUN_STYLE)
    if reference is not None:
        ax.plot(reference.r, reference.h, **REF_STYLE)
    ax.set_title("h(r): distribution of interatomic distances")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("h(r) (1/Å)")
    occupied = run.r[run.h > 0] if reference is None else np.concatenate([run.r[run.h > 0], reference.r[reference.h > 0]])
    right = min(run.r[-1] + 0.5 * run.dr, occupied.max() * 1.05) if occupied.size else run.r[-1]
    ax.set_xlim(0, right)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_msd(run: Diffusion, reference: Diffusion | None, path: Path) -> Path:
    """MSD per element with the Einstein fit over its window; reference curves dashed."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (symbol, curve) in enumerate(run.msd.items()):
        color = colors[k % len(colors)]
        d = run.diffusivity[symbol]
        ax.plot(run.lag_ps, curve, color=color, lw=1.6, label=f"{symbol}: D = {d:.3g} Å²/ps")
        lo, hi = run.fit_ps
        t = np.linspace(lo, hi, 20)
        ax.plot(t, 6.0 * d * t + run.intercept[symbol], color=color, lw=0.9, ls=":")
        if reference is not None and symbol in reference.msd:
            ax.plot(reference.lag_ps, reference.msd[symbol], color=color, lw=1.0, ls="--",
                    label=f"{symbol} reference")
    ax.axvspan(*run.fit_ps, color="grey", alpha=0.12, label="fit window")
    ax.set_title("mean-squared displacement")
    ax.set_xlabel("lag time (ps)")
    ax.set_ylabel("MSD (Å²)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_energies(log: dict[str, np.ndarray], natoms: int, path: Path) -> Path:
    """Potential, kinetic and total energy per atom (relative to the start) and temperature vs time."""
    t = log["time_ps"]
    fig, (ax_e, ax_t) = plt.subplots(2, 1, figsize=(6.0, 5.2), sharex=True)
    for key, name, color in (("potential_energy_eV", "potential", "tab:orange"),
                             ("kinetic_energy_eV", "kinetic", "tab:green"),
                             ("total_energy_eV", "total", "black")):
        values = 1000.0 * (log[key] - log[key][0]) / natoms
        ax_e.plot(t, values, color=color, lw=1.3, label=name)
    ax_e.set_ylabel("E - E(0) (meV/atom)")
    ax_e.set_title("energies")
    ax_e.legend(fontsize=8)
    ax_t.plot(t, log["temperature_K"], color="tab:red", lw=1.3)
    ax_t.set_ylabel("temperature (K)")
    ax_t.set_xlabel("time (ps)")
    return _save(fig, path)


def plot_stability(stability: Stability, observable: str, path: Path) -> Path:
    """Windowed error of g(r) or h(r) against its reference, with the threshold."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    marker = "o" if stability.error.shape[0] < 50 else None
    ax.plot(stability.window_end_ps, stability.error, color="tab:blue", lw=1.4, marker=marker, ms=3,
            label=f"{observable} MAE")
    ax.axhline(stability.threshold, color="tab:red", ls="--", lw=1.0, label="threshold")
    if not stability.stable:
        ax.axvline(stability.time_ps, color="tab:red", lw=0.8, ls=":", label="unstable from here")
    ax.set_title(f"stability ({stability.window_ps:.3g} ps windows)")
    ax.set_xlabel("window end (ps)")
    ax.set_ylabel("MAE vs reference")
    ax.set_xlim(0, max(stability.window_end_ps[-1], stability.time_ps) * 1.05 + 1e-9)
    ax.set_ylim(0, max(stability.error.max(), stability.threshold) * 1.15)
    ax.legend(fontsize=8)
    return _save(fig, path)
