"""``leignn-bench``: LEIGNN's cost against fairchem's baselines, MD scaling, the compiled path, accuracy.

    leignn-bench [models] [--models leignn,painn,...] [--repeats 3]   # table, JSON, bar chart
    leignn-bench md [--sizes 1000,10000,100000]                        # MD step time / memory vs size
    leignn-bench compiled [--repeats 5]                                # eager vs torch.compile
    leignn-bench accuracy [--quick] [--seeds 0,1,2]                    # trains every model at equal budget
    leignn-bench graph-parallel [--sizes ...] [--ranks 1,2,4]          # fairchem 2.x: ranks sharing a structure
    leignn-bench gpu                                                   # the GPU check (make gpu-check)

Every command writes ``<out>/<command>.{md,json,png}`` and prints the table; an ``<out>`` that already
holds the command's files is refused (before anything is measured) unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from leignn_plugin.bench.accuracy.options import add_arguments as add_accuracy_arguments
from leignn_plugin.bench.accuracy.options import default_out as accuracy_out
from leignn_plugin.bench.accuracy.options import run as run_accuracy
from leignn_plugin.console import run_command
from leignn_plugin.outputs import inside_output, write_text

DESCRIPTION = __doc__.split("\n\n")[0]
SHARED_CPU_NOTE = ("Repetitions are interleaved across models and medians reported; on a machine shared "
                   "with other processes the absolute times are noisy, the ratios less so.")


OUTPUTS = {
    "models": ("models.md", "models.json", "models.png"),
    "md": ("md.md", "md.json", "md.png"),
    "compiled": ("compiled.md", "compiled.json"),
    "accuracy": ("accuracy.md", "accuracy.json", "learning_curves.png", "parity.png", "configs"),
    "graph-parallel": ("graph-parallel.md", "graph-parallel.json"),
    "gpu": ("gpu.md", "gpu.json"),
}
"""What each command writes into ``--out``."""


class BenchError(ValueError):
    """A bad option: reported as one line."""


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"{what}: expected comma-separated numbers, got '{text}'") from None
    if not values or min(values) < 1:
        raise BenchError(f"{what}: expected positive numbers, got '{text}'")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leignn-bench", description=DESCRIPTION)
    parser.add_argument("command", nargs="?", default="models",
                        choices=("models", "md", "compiled", "accuracy", "graph-parallel", "gpu"),
                        help="what to measure (default: models)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default benchmarks/results; accuracy: benchmarks/results/accuracy; "
                             "gpu: benchmarks/results/gpu/fairchem<major>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files an earlier run of the same command left in --out")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per model (medians)")
    group = parser.add_argument_group("models and compiled")
    group.add_argument("--models", default=None,
                       help="comma-separated subset of: leignn, painn-512x4, painn-512x4-flushed, painn, schnet, "
                            "dimenet++, gemnet-oc, equiformer-v2 (default: all; painn-512x4 is always added); "
                            "accuracy: of leignn, vanilla, vanilla-nmu, painn, schnet, dimenet++, gemnet-oc")
    group.add_argument("--structures", type=int, default=8, help="OC20-like slabs in the batch")
    group.add_argument("--slab-size", default="4,4,4", help="slab repeats a,b,layers (default 4,4,4)")
    group.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    group.add_argument("--memory-budget-gib", type=float, default=None,
                       help="skip models needing more memory than this (default: 60%% of available memory)")
    group = parser.add_argument_group("md, graph-parallel and gpu")
    group.add_argument("--sizes", default=None, help="approximate atom counts (default 1000,10000,100000; "
                                                      "graph-parallel: 10000,30000,100000; gpu: 10000,100000)")
    group.add_argument("--steps", type=int, default=None,
                       help="timed MD steps per size (default 1; graph-parallel: 3; gpu: 5)")
    group.add_argument("--ranks", default="1,2,4",
                       help="graph-parallel: gloo ranks sharing each structure (1: one process; always measured)")
    group.add_argument("--chunk-mib", type=float, default=512.0, help="memory of one [chunk, 3F] edge tensor")
    group.add_argument("--hidden", type=int, default=512, help="LEIGNN channels (md, compiled)")
    group.add_argument("--layers", type=int, default=4, help="LEIGNN layers (md, compiled)")
    add_accuracy_arguments(parser)
    # gpu on another device than CUDA: how the test suites take every code path of the check on the CPU
    parser.add_argument("--check-device", default="cuda", help=argparse.SUPPRESS)
    return parser


def _header(args: argparse.Namespace, title: str) -> str:
    command = "leignn-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return "\n".join([
        f"## {title}",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; host: {platform.node()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {args.device}",
        f"- {SHARED_CPU_NOTE}",
        "",
    ])


@dataclass
class ModelsRun:
    """What ``models`` measured: the title, the Markdown table, the JSON payload and the results."""

    title: str
    table: str
    payload: dict
    results: list
    reference: object


def measure_models(args: argparse.Namespace) -> ModelsRun:
    """Measure the chosen models on the OC20-like batch (``leignn-bench models``; ``gpu`` reuses it)."""
    from leignn_plugin.bench.baselines import resolve
    from leignn_plugin.bench.batch import oc20_like_batch
    from leignn_plugin.bench.compare import default_budget_gib, reference_of, run_comparison
    from leignn_plugin.bench.report import comparison_table
    from leignn_plugin.tools_host import installed

    names = None if args.models is None else [n.strip() for n in args.models.split(",") if n.strip()]
    specs = resolve(names, installed().major)
    size = tuple(_int_list(args.slab_size, "--slab-size"))
    if len(size) != 3:
        raise BenchError(f"--slab-size: expected three numbers a,b,layers, got '{args.slab_size}'")
    device = torch.device(args.device)
    budget = None
    if device.type == "cpu":
        budget = args.memory_budget_gib if args.memory_budget_gib is not None else default_budget_gib()
        print(f"memory budget: {budget:.1f} GiB per model warm-up (models needing more are skipped)")
    batch = oc20_like_batch(args.structures, args.seed, size)
    results = run_comparison(specs, batch, args.repeats, device, args.seed, train=not args.no_train,
                             memory_budget_gib=budget)
    reference = reference_of(results)
    title = (f"Cost on one OC20-like batch ({args.structures} slabs, {int(batch.natoms.sum())} atoms), "
             f"ratios to {reference.label if reference else specs[0].label}")
    payload = {
        "command": sys.argv, "batch": {"structures": args.structures, "atoms": int(batch.natoms.sum()),
                                       "natoms": batch.natoms.tolist()},
        "repeats": args.repeats, "threads": torch.get_num_threads(), "note": SHARED_CPU_NOTE,
        "memory_budget_gib": budget,
        "reference": reference.name if reference else None,
        "results": [r.to_dict(reference) for r in results],
    }
    return ModelsRun(title, comparison_table(results, reference), payload, results, reference)


def _run_models(args: argparse.Namespace) -> str:
    from leignn_plugin.bench.report import comparison_figure, write_json

    run = measure_models(args)
    write_json(args.out / "models.json", run.payload)
    comparison_figure(run.results, run.reference, args.out / "models.png", run.title)
    return _header(args, run.title) + run.table + "\n"


def _run_md(args: argparse.Namespace) -> str:
    from leignn_plugin.bench.md_scaling import run_md_scaling
    from leignn_plugin.bench.report import fit_exponent, scaling_figure, write_json

    sizes = _int_list("1000,10000,100000" if args.sizes is None else args.sizes, "--sizes")
    steps = 1 if args.steps is None else args.steps
    points = run_md_scaling(sizes, steps, args.seed, args.chunk_mib, hidden_channels=args.hidden,
                            num_layers=args.layers)
    atoms = [p.atoms for p in points]
    step_s = [p.step_s for p in points]
    peak_gib = [p.peak_rss_mib / 1024 for p in points]
    several = len(set(atoms)) > 1
    exponent = fit_exponent(atoms, step_s) if several else None
    cpu_exponent = fit_exponent(atoms, [p.step_cpu_s for p in points]) if several else None
    mem_exponent = fit_exponent(atoms, peak_gib) if several else None
    title = (f"LEIGNN {args.hidden}x{args.layers} direct-force MD step, fcc Cu, cutoff 5 Å, "
             f"<= 50 neighbours, vesin graph, edge chunks of {args.chunk_mib:g} MiB")
    rows = ["| atoms | edges | step (s) | step CPU (s) | neighbour search (s) | peak RSS (GiB) |",
            "|---|---|---|---|---|---|"]
    rows += [f"| {p.atoms} | {p.edges} | {p.step_s:.3g} | {p.step_cpu_s:.3g} | {p.graph_s:.3g} | "
             f"{p.peak_rss_mib / 1024:.2f} |" for p in points]
    if exponent is not None:
        rows.append("")
        rows.append(f"Fitted exponents: step wall time ~ N^{exponent:.2f}, step CPU time ~ N^{cpu_exponent:.2f}, "
                    f"peak RSS ~ N^{mem_exponent:.2f}.")
    write_json(args.out / "md.json", {"command": sys.argv, "points": [p.to_dict() for p in points],
                                      "time_exponent": exponent, "cpu_time_exponent": cpu_exponent,
                                      "memory_exponent": mem_exponent,
                                      "threads": torch.get_num_threads(), "note": SHARED_CPU_NOTE})
    scaling_figure(atoms, step_s, peak_gib, args.out / "md.png", title)
    return _header(args, title) + "\n".join(rows) + "\n"


def _run_compiled(args: argparse.Namespace) -> str:
    from torch import nn

    from leignn_plugin.bench.baselines import host_leignn, leignn_kwargs
    from leignn_plugin.bench.batch import oc20_like_batch
    from leignn_plugin.bench.compiled_speed import run_compiled_speed
    from leignn_plugin.bench.report import write_json
    from leignn_plugin.core.heads import EnergyHead

    torch.manual_seed(args.seed)
    model = host_leignn(**leignn_kwargs(hidden_channels=args.hidden, num_layers=args.layers))
    # an untrained energy head starts at zero; give it weights so that the parity check covers energies
    energy_head = next(m for m in model.modules() if isinstance(m, EnergyHead))
    nn.init.normal_(energy_head.mlp[-1].weight, std=0.05)
    batch = oc20_like_batch(args.structures, args.seed, tuple(_int_list(args.slab_size, "--slab-size")))
    res = run_compiled_speed(model, batch, args.repeats, torch.device(args.device))
    title = f"Compiled (torch.compile, inductor) against eager inference, LEIGNN {args.hidden}x{args.layers}"
    dev = ", ".join(f"{k} {v:.1e}" for k, v in res.max_rel_deviation.items())
    rows = ["| eager (s) | compiled (s) | speed-up | first call incl. compile (s) | max rel. deviation |",
            "|---|---|---|---|---|",
            f"| {res.eager_s:.3g} | {res.compiled_s:.3g} | {res.speedup:.2f}x | {res.compile_s:.3g} | {dev} |"]
    write_json(args.out / "compiled.json", {"command": sys.argv, "atoms": int(batch.natoms.sum()),
                                            "threads": torch.get_num_threads(), **res.to_dict()})
    return _header(args, title) + "\n".join(rows) + "\n"


def _run_gpu(args: argparse.Namespace) -> str:
    from leignn_plugin.bench.gpu_check import ModelsMeasurement, markdown, run_checks
    from leignn_plugin.bench.report import write_json

    device = torch.device(args.device)

    def models() -> ModelsMeasurement:
        run = measure_models(args)
        return ModelsMeasurement(run.title, run.table, run.payload)

    report = run_checks(device, models, _int_list(args.sizes, "--sizes"), args.steps, args.chunk_mib, args.hidden,
                        args.layers, args.seed)
    md_title = (f"LEIGNN {args.hidden}x{args.layers} direct-force leapfrog MD step on {device}, fcc Cu, cutoff 5 Å, "
                f"<= 50 neighbours, edge chunks of {args.chunk_mib:g} MiB")
    name = report.environment.get("device_name", str(device))
    title = f"GPU check: LEIGNN under fairchem {report.environment['fairchem_major']}.x on {name}"
    write_json(args.out / "gpu.json", {"command": sys.argv, **report.to_dict()})
    args.failures = report.failures()
    return markdown(report, _header(args, title), md_title)


def main(argv: list[str] | None = None) -> int:
    """Run ``leignn-bench``; a bad option ends in one line and status 2 (``console.run_command``)."""
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run_command("leignn-bench", lambda: _bench(args), errors=(ValueError,))


def check_out(out: Path, command: str, overwrite: bool) -> None:
    """Refuse, before measuring, an ``out`` holding the command's files (unless ``overwrite``) or a
    symbolic link where one of its folders goes."""
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder")
    inside_output(out, "configs")
    found = [name for name in OUTPUTS[command] if os.path.lexists(out / name)]
    if found and not overwrite:
        raise BenchError(f"--out {out} already holds {', '.join(found)} of an earlier `leignn-bench {command}`; "
                         "pass --overwrite to replace them, or choose another folder")


def _host_graph_parallel(args: argparse.Namespace) -> Callable[[argparse.Namespace], str]:
    """The installed host's graph-parallel benchmark, its options checked (one line if there is none)."""
    from leignn_plugin.tools_host import installed_or_none

    host = installed_or_none()
    if host is None or host.graph_parallel is None:
        raise BenchError("leignn-bench graph-parallel runs on fairchem 2.x's graph parallelism: run it in the "
                         "fairchem 2.x environment (make install-fairchem2)")
    args.sizes = "10000,30000,100000" if args.sizes is None else args.sizes
    _int_list(args.sizes, "--sizes")
    _int_list(args.ranks, "--ranks")
    args.steps = 3 if args.steps is None else args.steps
    if args.steps < 1:
        raise BenchError(f"--steps must be at least 1, got {args.steps}")
    return host.graph_parallel


def _bench(args: argparse.Namespace) -> int:
    """Run the chosen benchmark, write its files and print its table."""
    if args.repeats < 1:
        raise BenchError(f"--repeats must be at least 1, got {args.repeats}")
    if args.command == "gpu":
        if not _gpu_ready(args):
            return 0
    elif args.check_device != "cuda":
        raise BenchError("--check-device is an option of leignn-bench gpu only")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available on this machine")
    runs = {"models": _run_models, "md": _run_md, "compiled": _run_compiled, "accuracy": run_accuracy,
            "gpu": _run_gpu}
    figures = {"compiled": "", "gpu": "", "accuracy": ", learning_curves.png, parity.png"}.get(args.command, ", .png")
    if args.command == "accuracy":
        from leignn_plugin.tools_host import installed_or_none

        host = installed_or_none()
        if host is None or (host.trainer_evaluation is None and host.accuracy is None):
            raise BenchError("leignn-bench accuracy trains models with fairchem's trainer: install fairchem-core "
                             "(make install or make install-fairchem2)")
        if host.accuracy is not None:  # the host's own benchmark (fairchem 2.x: fairchem -c)
            host.accuracy.check(args)
            runs["accuracy"] = host.accuracy.run
            figures = ", learning_curves.png"
            if args.out is None:
                args.out = host.accuracy.default_out(bool(args.quick))
    if args.command == "graph-parallel":
        runs["graph-parallel"] = _host_graph_parallel(args)
        figures = ""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = (accuracy_out(args) if args.command == "accuracy" else _gpu_out() if args.command == "gpu"
                    else Path("benchmarks/results"))
    check_out(args.out, args.command, args.overwrite)
    args.out.mkdir(parents=True, exist_ok=True)
    args.failures = []
    text = runs[args.command](args)
    write_text(args.out / f"{args.command}.md", text)
    print(text)
    print(f"written: {args.out}/{args.command}.md, .json" + figures)
    if args.failures:
        print(f"gpu-check: FAILED: {'; '.join(args.failures)}", file=sys.stderr)
        return 1
    return 0


def _gpu_ready(args: argparse.Namespace) -> bool:
    """For ``gpu``: print the one line saying there is nothing to check and return False where CUDA is not
    usable; otherwise point ``--device`` at the device checked and check the MD options (gpu's defaults:
    10,000 and 100,000 atoms, 5 steps) before anything is written."""
    from leignn_plugin.bench.gpu_check import no_gpu_line

    if args.check_device == "cuda":
        line = no_gpu_line()
        if line is not None:
            print(line)
            return False
    args.device = args.check_device
    args.sizes = "10000,100000" if args.sizes is None else args.sizes
    _int_list(args.sizes, "--sizes")
    args.steps = 5 if args.steps is None else args.steps
    if args.steps < 1:
        raise BenchError(f"--steps must be at least 1, got {args.steps}")
    return True


def _gpu_out() -> Path | None:
    """``gpu``'s default output folder: one per host, so that both environments' reports stay."""
    from leignn_plugin.tools_host import installed

    return Path("benchmarks/results/gpu") / f"fairchem{installed().major}"


if __name__ == "__main__":
    sys.exit(main())
