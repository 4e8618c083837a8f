"""The ``leignn-fairchem2`` command: LEIGNN under fairchem 2.x.

Subcommands:
  train -c CONFIG [OVERRIDES...]   check the config (LEIGNN options, heads, tasks, dataset paths), then
                                   run it with fairchem's own ``fairchem -c`` entry point (a progress bar
                                   and a line per epoch; ``--verbose`` for fairchem's own log); with
                                   ``scheduler=slurm`` it submits the job and names it
  convert SRC DST [--dataset NAME] a 1.10 checkpoint (main.py training) as a 2.x inference checkpoint
  evaluate DATA... --checkpoint CKPT --task NAME
                                   energy and force errors on labelled .aselmdb data, via FAIRChemCalculator
  lammps INPUT --checkpoint CKPT --task NAME
                                   LAMMPS with LEIGNN forces through fairchem-lammps

Bad input gets one line, ``leignn-fairchem2: error: <message>``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from leignn_plugin.console import run_command
from leignn_plugin.errors import UsageError
from leignn_plugin.outputs import check_output_file, refuse_input_as_output, write_text

PROG = "leignn-fairchem2"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="LEIGNN under fairchem 2.x.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="check a fairchem -c config, then run it with fairchem")
    train.add_argument("-c", "--config", type=Path, required=True, help="the fairchem -c YAML config")
    train.add_argument("--check-only", action="store_true", help="check the config and stop")
    train.add_argument("--verbose", action="store_true",
                       help="fairchem's own log (a dict every print_every steps) instead of a progress bar and "
                            "one line per epoch")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="Hydra overrides (key=value, +key=value, ~key), as for fairchem -c; anywhere on the line")

    convert = commands.add_parser("convert", help="a fairchem 1.10 LEIGNN checkpoint as a 2.x inference checkpoint")
    convert.add_argument("src", type=Path, help="checkpoint.pt or best_checkpoint.pt of main.py")
    convert.add_argument("dst", type=Path, help="the 2.x inference checkpoint to write")
    convert.add_argument("--dataset", default="leignn",
                         help="task (dataset) name of the 2.x model, FAIRChemCalculator's task_name (default leignn)")
    convert.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA ones")
    convert.add_argument("--overwrite", action="store_true", help="replace DST if it exists (never SRC itself)")
    convert.add_argument("--trust-checkpoint", action="store_true",
                         help="load SRC with full unpickling, which can run code: only for files you trust")

    evaluate = commands.add_parser("evaluate", help="energy and force errors of a checkpoint on .aselmdb data")
    evaluate.add_argument("data", type=Path, nargs="+", help=".aselmdb files or folders of them")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="2.x inference checkpoint")
    evaluate.add_argument("--task", required=True, help="the checkpoint's task (dataset) name")
    evaluate.add_argument("--json", type=Path, help="also write the errors to this JSON file (its folder is checked "
                          "before the evaluation starts)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("--trust-checkpoint", action="store_true",
                          help="load the checkpoint with full unpickling, which can run code: only for files you trust")

    predict = commands.add_parser("predict", help="S2EF predictions of a checkpoint on .aselmdb data, as main.py "
                                                  "--mode predict writes them (for leignn-submission)")
    predict.add_argument("data", type=Path, nargs="+", help=".aselmdb files or folders of them")
    predict.add_argument("--checkpoint", type=Path, required=True, help="2.x inference checkpoint")
    predict.add_argument("--task", required=True, help="the checkpoint's task (dataset) name")
    predict.add_argument("--out", type=Path, required=True, help="the predictions npz to write")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--trust-checkpoint", action="store_true",
                         help="load the checkpoint with full unpickling, which can run code: only for files you trust")

    lammps = commands.add_parser("lammps", help="run a LAMMPS input with LEIGNN forces (fairchem-lammps)")
    lammps.add_argument("input", type=Path, help="LAMMPS input script (no pair_style: LEIGNN gives the forces)")
    lammps.add_argument("--checkpoint", type=Path, required=True, help="2.x inference checkpoint")
    lammps.add_argument("--task", required=True, help="the checkpoint's task (dataset) name")
    lammps.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    lammps.add_argument("--workers", type=int, default=1,
                        help="Ray workers sharing each step's structure by graph parallelism (default 1: none)")
    lammps.add_argument("--trust-checkpoint", action="store_true",
                        help="load the checkpoint with full unpickling, which can run code: only for files you trust")

    inputs = commands.add_parser("calculate-inputs",
                                 help="small inputs for every calculate runner (configs/fairchem2/calculate)")
    inputs.add_argument("out", type=Path, help="the folder to write (refused if it exists, unless --overwrite)")
    inputs.add_argument("--overwrite", action="store_true", help="replace OUT once the new inputs are complete")
    return parser


def _calculate_inputs(args: argparse.Namespace) -> int:
    from leignn_plugin.fairchem2.calculate import write_demo_inputs

    written = write_demo_inputs(args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: " + ", ".join(f"{name} ({path.name})" for name, path in written.items()))
    return 0


def _train(args: argparse.Namespace) -> int:
    from fairchem.core.common.utils import get_timestamp_uid

    from leignn_plugin.fairchem2.config_check import check_config

    overrides = list(args.overrides)
    if not any(item.lstrip("+").startswith("job.timestamp_id=") for item in overrides):
        # fixed here, so that the check and the run agree on the run's folder and it can be named below
        overrides.append(f"++job.timestamp_id={get_timestamp_uid()}")
    config = check_config(args.config, overrides)
    if args.check_only:
        print(f"{args.config}: ok")
        return 0
    from fairchem.core._cli import main as fairchem_main
    from fairchem.core.launchers.api import SchedulerType

    from leignn_plugin.fairchem2.train_progress import training_progress

    runner = config.get("runner") or {}
    with training_progress(runner.get("max_epochs"), runner.get("max_steps"),
                           Path(config.job.metadata.log_dir), verbose=args.verbose):
        fairchem_main(argparse.Namespace(config=str(args.config)), overrides)
    if config.job.scheduler.mode == SchedulerType.SLURM:
        print(submitted_jobs(config))
        return 0
    final = Path(config.job.metadata.checkpoint_dir) / "final" / "inference_ckpt.pt"
    if final.is_file():
        print(f"inference checkpoint: {final}")
    return 0


def submitted_jobs(config) -> str:
    """What a SLURM submission (``scheduler=slurm``) left: the job ids submitit recorded in the run's log
    folder, and where the logs and the checkpoints will be."""
    log_dir = Path(config.job.metadata.log_dir)
    jobs = sorted(path.name.removesuffix("_submitted.pkl") for path in log_dir.glob("*_submitted.pkl"))
    scheduler = config.job.scheduler
    return (f"submitted SLURM job {', '.join(jobs) or '(none found)'} ({scheduler.num_nodes} nodes x "
            f"{scheduler.ranks_per_node} ranks): logs in {log_dir}, checkpoints in {config.job.metadata.checkpoint_dir}")


def _convert(args: argparse.Namespace) -> int:
    from leignn_plugin.fairchem2.convert import convert_checkpoint

    dst = convert_checkpoint(args.src, args.dst, dataset=args.dataset, use_ema=not args.no_ema,
                             trust_checkpoint=args.trust_checkpoint, overwrite=args.overwrite)
    print(f"wrote {dst} (task name '{args.dataset}')")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from leignn_plugin.fairchem2.evaluate import evaluate, format_errors

    if args.json is not None:  # before the evaluation, not after it
        check_output_file(args.json, args.overwrite, "--json")
        refuse_input_as_output(args.json, [args.checkpoint, *args.data], "--json")
    errors = evaluate(args.checkpoint, args.task, args.data, progress=not args.quiet,
                      trust_checkpoint=args.trust_checkpoint)
    print(format_errors(errors, args.checkpoint, args.task))
    if args.json is not None:
        write_text(args.json, json.dumps(errors.as_dict(), indent=2) + "\n")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from leignn_plugin.fairchem2.evaluate import predict

    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(".npz")
    check_output_file(out, args.overwrite, "--out")
    refuse_input_as_output(out, [args.checkpoint, *args.data], "--out")
    count = predict(args.checkpoint, args.task, args.data, out, progress=not args.quiet,
                    trust_checkpoint=args.trust_checkpoint)
    print(f"wrote {out} ({count} structures)")
    return 0


def _lammps(args: argparse.Namespace) -> int:
    from leignn_plugin.fairchem2.lammps import run_lammps

    try:
        run_lammps(args.checkpoint, args.input, args.task, args.device, args.trust_checkpoint, args.workers)
    except Exception as err:  # the lammps module raises plain Exceptions for errors in the input script
        if str(err).startswith("ERROR"):
            raise UsageError(f"{args.input}: LAMMPS stopped: {' '.join(str(err).split())}") from None
        raise
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Hydra overrides may come before or after the options, as with fairchem -c
    overrides = [item for item in extra if "=" in item or item.startswith("~")]
    if args.command != "train" or len(overrides) != len(extra):
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(x for x in extra if x not in overrides or args.command != 'train')}")
    else:
        args.overrides = [*args.overrides, *overrides]
    body = {"train": _train, "convert": _convert, "evaluate": _evaluate, "predict": _predict, "lammps": _lammps,
            "calculate-inputs": _calculate_inputs}[args.command]
    return run_command(PROG, lambda: body(args))


if __name__ == "__main__":
    sys.exit(main())
