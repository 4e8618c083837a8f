"""``leignn-md analyze``: all analyses of one run folder, compared with a reference trajectory if given.

Writes ``<run>/analysis/summary.json`` and PNG plots next to it: into a fresh hidden folder renamed
into place when complete (``data.staging``), so an earlier analysis is replaced only with ``overwrite``
and only by a whole new one, and no symbolic link in the run folder is written through.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from leignn_plugin.data.staging import check_output_free, staged_output
from leignn_plugin.md.analysis import plots
from leignn_plugin.md.analysis.distances import distance_distribution
from leignn_plugin.md.analysis.energy_drift import energy_drift
from leignn_plugin.md.analysis.msd import ANGSTROM2_PER_PS_TO_CM2_PER_S, diffusion
from leignn_plugin.md.analysis.rdf import default_r_max, radial_distribution
from leignn_plugin.md.analysis.stability import stability_time
from leignn_plugin.md.analysis.trajectory import Frames, read_frames, read_log, read_run_info
from leignn_plugin.md.files import ANALYSIS_DIR, SUMMARY


@dataclass
class AnalysisSettings:
    """Grids, windows and thresholds of the analyses (lengths in Å, times in ps)."""

    rdf_r_max: float | None = None
    rdf_bins: int = 200
    hr_r_max: float = 10.0
    hr_bins: int = 500
    window_ps: float = 2.0
    rdf_threshold: float = 0.1
    hr_threshold: float = 0.01
    msd_fit: tuple[float, float] = (0.2, 1.0)
    skip_ps: float = 0.0
    plots: bool = True


def _skip(frames: Frames, skip_ps: float) -> Frames:
    start = round(skip_ps / frames.frame_ps)
    if start >= frames.positions.shape[0] - 1:
        raise ValueError(f"--skip {skip_ps} ps leaves fewer than two frames of {frames.source}")
    return Frames(frames.source, frames.positions[start:], frames.cells[start:], frames.numbers, frames.pbc,
                  frames.fixed, frames.frame_ps)


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def _observables(frames: Frames, settings: AnalysisSettings, rdf_r_max: float | None) -> dict:
    out = {"hr": distance_distribution(frames.positions, frames.cells, frames.pbc, settings.hr_r_max,
                                       settings.hr_bins)}
    if frames.periodic:
        out["rdf"] = radial_distribution(frames.positions, frames.cells, frames.pbc, frames.numbers, rdf_r_max,
                                         settings.rdf_bins)
    if frames.positions.shape[0] >= 4:
        out["msd"] = diffusion(frames.positions, frames.cells, frames.pbc, frames.numbers, frames.frame_ps,
                               settings.msd_fit, fixed=frames.fixed)
    return out


def _check_comparable(run: Frames, ref: Frames) -> None:
    if sorted(run.numbers.tolist()) != sorted(ref.numbers.tolist()):
        raise ValueError(f"the reference {ref.source} holds other atoms than the run; comparisons need the same system")
    if bool(run.periodic) != bool(ref.periodic):
        raise ValueError(f"the run and the reference {ref.source} differ in periodicity")


def analyze_run(run_dir: str | Path, reference: str | Path | None = None,
                reference_frame_ps: float | None = None, settings: AnalysisSettings | None = None,
                overwrite: bool = False) -> dict:
    """Analyse ``run_dir`` (written by ``leignn-md run``); returns the summary also written to JSON.
    An earlier analysis in ``run_dir`` is refused unless ``overwrite``."""
    settings = settings or AnalysisSettings()
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    out = run_dir / ANALYSIS_DIR
    check_output_free(out, overwrite=overwrite)
    run = _skip(read_frames(run_dir), settings.skip_ps)
    ref = _skip(read_frames(Path(reference), reference_frame_ps), settings.skip_ps) if reference else None
    if ref is not None:
        _check_comparable(run, ref)

    rdf_r_max = settings.rdf_r_max
    if run.periodic and rdf_r_max is None:
        cells = run.cells if ref is None else np.concatenate([run.cells, ref.cells])
        rdf_r_max = default_r_max(cells, run.pbc)
    obs = _observables(run, settings, rdf_r_max)
    ref_obs = _observables(ref, settings, rdf_r_max) if ref is not None else None

    natoms = int(run.numbers.shape[0])
    result = (info.get("result") or {})
    summary: dict = {
        "run": str(run_dir),
        "reference": str(reference) if reference else None,
        "ensemble": info["settings"]["ensemble"]["name"],
        "natoms": natoms,
        "frames": int(run.positions.shape[0]),
        "frame_interval_ps": run.frame_ps,
        "skipped_ps": settings.skip_ps,
        "run_status": info.get("status"),
        "stop_reason": result.get("stop_reason"),
    }

    observable = "rdf" if "rdf" in obs else "hr"
    curve = obs[observable]
    threshold = settings.rdf_threshold if observable == "rdf" else settings.hr_threshold
    reference_curve = None
    if ref_obs is not None:
        reference_curve = ref_obs[observable].total if observable == "rdf" else ref_obs[observable].h
    run_ps = float(result.get("simulated_ps", (run.positions.shape[0] - 1) * run.frame_ps))
    stab = stability_time(curve.per_frame, run.frame_ps, reference_curve, settings.window_ps, threshold,
                          run_ps=max(run_ps - settings.skip_ps, 0.0))
    stable = stab.stable and info.get("status") != "stopped"
    summary["stability"] = {
        "observable": "g(r)" if observable == "rdf" else "h(r)",
        "metric": "mean absolute error over bins of the window-averaged curve",
        "against": "reference trajectory" if reference_curve is not None else "first window of the run",
        "window_ps": stab.window_ps,
        "window_shortened_to_run": bool(stab.window_ps < settings.window_ps - 1e-9),
        "threshold": threshold,
        "time_ps": stab.time_ps,
        "stable": bool(stable),
        "max_error": float(stab.error.max()),
    }

    if "rdf" in obs:
        rdf = obs["rdf"]
        summary["rdf"] = {
            "r_max_A": float(rdf_r_max),
            "bins": settings.rdf_bins,
            "first_peak_A": {"all": float(rdf.r[np.argmax(rdf.total)]),
                             **{k: float(rdf.r[np.argmax(v)]) for k, v in rdf.pairs.items()}},
        }
    hr = obs["hr"]
    summary["h_r"] = {"r_max_A": settings.hr_r_max, "bins": settings.hr_bins,
                      "mean_distance_A": float(np.sum(hr.r * hr.h) * hr.dr)}
    if "msd" in obs:
        msd = obs["msd"]
        summary["diffusion"] = {
            "fit_window_ps": list(msd.fit_ps),
            "diffusivity_A2_per_ps": msd.diffusivity,
            "diffusivity_cm2_per_s": {k: v * ANGSTROM2_PER_PS_TO_CM2_PER_S for k, v in msd.diffusivity.items()},
            "loglog_slope": msd.loglog_slope,
        }

    log = read_log(run_dir)
    if log:
        summary["temperature_K"] = {"mean": float(np.nanmean(log["temperature_K"])),
                                    "std": float(np.nanstd(log["temperature_K"]))}
        if summary["ensemble"] == "nve" and len(log["time_ps"]) >= 2:
            summary["energy_drift"] = asdict(energy_drift(log["time_ps"], log["total_energy_eV"], natoms))

    if ref_obs is not None:
        summary["errors_vs_reference"] = _errors(obs, ref_obs)

    with staged_output(out, overwrite=overwrite) as folder:
        if settings.plots:
            made = _plot(folder, obs, ref_obs, log, natoms, stab, observable)
            summary["plots"] = [str(out / path.name) for path in made]
        (folder / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def _errors(obs: dict, ref_obs: dict) -> dict:
    """MAE of every observable against the reference (same grids by construction)."""
    errors: dict = {"h_r_mae": _mae(obs["hr"].h, ref_obs["hr"].h)}
    if "rdf" in obs:
        errors["rdf_mae"] = _mae(obs["rdf"].total, ref_obs["rdf"].total)
        errors["rdf_mae_pairs"] = {k: _mae(v, ref_obs["rdf"].pairs[k]) for k, v in obs["rdf"].pairs.items()
                                   if k in ref_obs["rdf"].pairs}
    if "msd" in obs and "msd" in ref_obs:
        run_msd, ref_msd = obs["msd"], ref_obs["msd"]
        common = sorted(set(run_msd.diffusivity) & set(ref_msd.diffusivity))
        errors["diffusivity_mae_A2_per_ps"] = float(np.mean(
            [abs(run_msd.diffusivity[k] - ref_msd.diffusivity[k]) for k in common])) if common else None
        lags = min(run_msd.lag_ps.shape[0], ref_msd.lag_ps.shape[0])
        if np.isclose(run_msd.lag_ps[1], ref_msd.lag_ps[1]):
            errors["msd_mae_A2"] = {k: _mae(run_msd.msd[k][:lags], ref_msd.msd[k][:lags]) for k in common}
    return errors


def _plot(folder: Path, obs: dict, ref_obs: dict | None, log: dict, natoms: int, stab, observable: str
          ) -> list[Path]:
    made = [plots.plot_distance_distribution(obs["hr"], ref_obs["hr"] if ref_obs else None, folder / "h_r.png")]
    if "rdf" in obs:
        made.append(plots.plot_rdf(obs["rdf"], ref_obs["rdf"] if ref_obs else None, folder / "rdf.png"))
    if "msd" in obs:
        made.append(plots.plot_msd(obs["msd"], ref_obs.get("msd") if ref_obs else None, folder / "msd.png"))
    if log:
        made.append(plots.plot_energies(log, natoms, folder / "energy.png"))
    made.append(plots.plot_stability(stab, "g(r)" if observable == "rdf" else "h(r)", folder / "stability.png"))
    return made
