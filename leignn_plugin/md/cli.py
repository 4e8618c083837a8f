"""``leignn-md``: run MD with a LEIGNN checkpoint (``run``) and analyse a run (``analyze``).

Exit codes: 0 done, 2 bad input (one line on stderr), 3 the run stopped early because the
temperature left its sane range (the files up to that point are complete and can be analysed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from leignn_plugin.console import run_command
from leignn_plugin.md.ensembles import DESCRIPTIONS, ENSEMBLES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leignn-md", description="Molecular dynamics with a LEIGNN checkpoint.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run NVE/NVT/NPT dynamics", formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Ensembles:\n" + "\n".join(f"  {k:17s}{v}" for k, v in DESCRIPTIONS.items()))
    run.add_argument("--checkpoint", required=True, type=Path, help="a LEIGNN checkpoint: fairchem 1.10 checkpoint.pt or a fairchem 2.x inference checkpoint")
    run.add_argument("--trust-checkpoint", action="store_true",
                     help="read --checkpoint with full unpickling, which can run code stored in it: only for files "
                          "from a source you trust (by default it is read weights-only)")
    run.add_argument("--structure", required=True, type=Path,
                     help="starting structure: any ASE-readable file, or a fairchem LMDB (file or folder)")
    run.add_argument("--index", type=int, default=-1, help="frame of --structure to start from (default: last)")
    run.add_argument("--repeat", type=int, nargs=3, default=(1, 1, 1), metavar=("NX", "NY", "NZ"),
                     help="build a supercell of the structure first (periodic axes only)")
    run.add_argument("--ensemble", choices=ENSEMBLES, default="nvt-langevin")
    run.add_argument("--temperature", type=float, default=300.0,
                     help="K; thermostat target and initial Maxwell-Boltzmann velocities")
    run.add_argument("--timestep", type=float, default=1.0, help="fs")
    run.add_argument("--steps", type=int, required=True)
    run.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    run.add_argument("--tdamp", type=float, default=100.0, help="thermostat time constant in fs (Nosé-Hoover, "
                     "Bussi, Berendsen)")
    run.add_argument("--pressure", type=float, default=1.01325, help="bar (npt, npt-mtk)")
    run.add_argument("--pdamp", type=float, default=1000.0, help="barostat time constant in fs")
    run.add_argument("--compressibility", type=float, default=4.57e-5, help="1/bar (npt, Berendsen barostat)")
    run.add_argument("--seed", type=int, default=0, help="seed of the initial velocities and stochastic thermostats")
    run.add_argument("--interval", type=int, default=10, help="write a frame and a log line every N steps")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    run.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    run.add_argument("--skin", type=float, default=1.0, help="Verlet-list skin in Å (0: new graph every step)")
    run.add_argument("--graph-method", choices=("vesin", "fairchem", "cell_list"), default=None,
                     help="neighbour search for the list builds (default: the model's; vesin is linear in atoms, cell_list is its old name)")
    run.add_argument("--compile", action="store_true",
                     help="evaluate a torch.compile'd copy of the model (faster steps; the first one compiles)")
    run.add_argument("--edge-chunk-mib", type=float, default=512.0,
                     help="stream each message step's edges in chunks of about this many MiB per per-edge tensor "
                          "(exact; bounds the memory of large cells; 0: never chunk)")
    run.add_argument("--t-min", type=float, default=0.1, help="stop when the temperature falls below this (K)")
    run.add_argument("--t-max", type=float, default=1.0e5, help="stop when the temperature exceeds this (K)")
    run.add_argument("--keep-velocities", action="store_true",
                     help="start from the momenta stored in --structure instead of drawing new ones")
    run.add_argument("--min-distance", type=float, default=None, metavar="ANGSTROM",
                     help="refuse (at the start) or stop (during the run) when two atoms, or an atom and a periodic "
                          "image, come closer than this (default: the model's min_distance, 0.3 Å unless its "
                          "config says otherwise; 0: no check)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--out", required=True, type=Path,
                     help="output folder; one that already holds a run (md.traj, md_log.csv, run.json, analysis/) "
                          "is refused unless --overwrite is given")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run already in --out: the new run is written beside it and takes its place "
                          "after its first step; a run that fails before leaves the old one as it was (other "
                          "files in --out are kept)")

    analyze = sub.add_parser("analyze", help="g(r), h(r), stability, MSD/diffusivity, energy drift")
    analyze.add_argument("run_dir", type=Path, help="folder written by `leignn-md run`")
    analyze.add_argument("--reference", type=Path, default=None,
                         help="reference: another run folder or a trajectory file (any ASE format)")
    analyze.add_argument("--reference-interval-fs", type=float, default=None,
                         help="time between reference frames (fs), when it is not a run folder")
    analyze.add_argument("--rmax", type=float, default=None, help="g(r) range in Å (default: min(6, half the cell))")
    analyze.add_argument("--bins", type=int, default=200, help="g(r) bins")
    analyze.add_argument("--hr-rmax", type=float, default=10.0, help="h(r) range in Å")
    analyze.add_argument("--hr-bins", type=int, default=500, help="h(r) bins")
    analyze.add_argument("--window", type=float, default=2.0, help="stability window in ps")
    analyze.add_argument("--threshold", type=float, default=None,
                         help="stability threshold on the windowed MAE (default 0.1 for g(r), 0.01 1/Å for h(r))")
    analyze.add_argument("--msd-fit", type=float, nargs=2, default=(0.2, 1.0), metavar=("START", "END"),
                         help="MSD fit window as fractions of the largest lag (half the run)")
    analyze.add_argument("--skip", type=float, default=0.0, help="ps of equilibration to leave out")
    analyze.add_argument("--no-plots", action="store_true")
    analyze.add_argument("--overwrite", action="store_true",
                         help="replace an earlier analysis in RUN/analysis (once the new one is complete)")
    return parser


def _run(args: argparse.Namespace) -> int:
    from leignn_plugin.md.ensembles import EnsembleSettings
    from leignn_plugin.md.runner import RunSettings, run_md

    ensemble = EnsembleSettings(name=args.ensemble, timestep_fs=args.timestep, temperature_K=args.temperature,
                                friction_per_fs=args.friction, tdamp_fs=args.tdamp, pressure_bar=args.pressure,
                                pdamp_fs=args.pdamp, compressibility_per_bar=args.compressibility, seed=args.seed)
    settings = RunSettings(checkpoint=args.checkpoint, structure=args.structure, out=args.out, ensemble=ensemble,
                           steps=args.steps, index=args.index, repeat=tuple(args.repeat), device=args.device,
                           dtype=args.dtype, skin=args.skin, graph_method=args.graph_method, compiled=args.compile,
                           edge_chunk_mib=args.edge_chunk_mib or None, interval=args.interval,
                           t_min=args.t_min, t_max=args.t_max, keep_velocities=args.keep_velocities,
                           progress=not args.no_progress, min_distance=args.min_distance,
                           overwrite=args.overwrite, trust_checkpoint=args.trust_checkpoint)
    result = run_md(settings)
    speed = result.extra.get("ns_per_day")
    if result.stopped:
        print(f"leignn-md: stopped: {result.stop_reason}; the run up to there is in {args.out}", file=sys.stderr)
        return 3
    print(f"leignn-md: {result.steps_done} steps ({result.simulated_ps:g} ps) in {result.wall_s:.1f} s"
          f"{f' ({speed:.3g} ns/day)' if speed else ''}, {result.neighbor_builds} neighbour-list builds, "
          f"peak memory {result.extra['peak_rss_gib']:.2f} GiB; output in {args.out}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from leignn_plugin.md.analysis.summary import AnalysisSettings, analyze_run

    defaults = AnalysisSettings()
    settings = AnalysisSettings(
        rdf_r_max=args.rmax, rdf_bins=args.bins, hr_r_max=args.hr_rmax, hr_bins=args.hr_bins, window_ps=args.window,
        rdf_threshold=args.threshold if args.threshold is not None else defaults.rdf_threshold,
        hr_threshold=args.threshold if args.threshold is not None else defaults.hr_threshold,
        msd_fit=tuple(args.msd_fit), skip_ps=args.skip, plots=not args.no_plots,
    )
    ref_ps = args.reference_interval_fs / 1000.0 if args.reference_interval_fs else None
    summary = analyze_run(args.run_dir, args.reference, ref_ps, settings, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``leignn-md``; bad input ends in one line and status 2 (``console.run_command``)."""
    args = _parser().parse_args(argv)
    return run_command("leignn-md", lambda: _run(args) if args.command == "run" else _analyze(args),
                       errors=(ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
