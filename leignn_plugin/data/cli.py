"""The ``leignn-data`` command: build fairchem datasets and inspect them.

Subcommands: ``from-ase``, ``from-md17``, ``demo`` (each writing fairchem 1.x LMDBs, or fairchem 2.x
``.aselmdb`` files with ``--output-format aselmdb``), ``to-aselmdb`` (LMDB datasets to ``.aselmdb``)
and ``inspect``.  Problems with the input are reported as one line,
``leignn-data: error: <message>``, with exit status 2 and no output left behind.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from leignn_plugin.console import run_command
from leignn_plugin.data.conventions import Convention
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.shards import DEFAULT_SHARD_SIZE, OutputFormat, WriteSummary
from leignn_plugin.graph.sanity import DEFAULT_MIN_DISTANCE
from leignn_plugin.outputs import check_output_file, refuse_input_as_output, replace_file, write_text

CONFIG_SUFFIXES = (".yaml", ".yml")
"""``--references`` files written as a ``configs/fairchem2/element_refs`` option (Hydra reads ``.yaml``)."""

PROG = "leignn-data"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Build and inspect fairchem datasets (LMDB, ASE-LMDB) for LEIGNN."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ase = commands.add_parser(
        "from-ase", help="convert files ase.io.read understands (extxyz, traj, vasprun.xml, ...)"
    )
    ase.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="input files; all frames of each are read"
    )
    _add_output_options(ase)
    ase.add_argument(
        "--format",
        dest="file_format",
        metavar="FORMAT",
        help="ASE format name, when the file name does not reveal it",
    )
    ase.add_argument("--no-stress", action="store_true", help="do not write stress even if the files have it")

    md17 = commands.add_parser(
        "from-md17", help="convert an sGDML MD17 or rMD17 .npz into train/val/test datasets"
    )
    md17.add_argument(
        "npz", type=Path, metavar="NPZ", help="sGDML (R, E, F, z) or rMD17 (coords, ...) archive"
    )
    _add_output_options(md17)
    md17.add_argument(
        "--unit",
        default="kcal/mol",
        choices=("kcal/mol", "kJ/mol", "eV"),
        help="energy unit of the archive; forces are in this unit per Å (default kcal/mol)",
    )
    md17.add_argument("--train", metavar="N", type=int, help="training frames (default 950)")
    md17.add_argument("--val", metavar="N", type=int, default=50, help="validation frames (default 50)")
    md17.add_argument("--test", metavar="N", type=int, help="test frames (default 1000; -1 = all remaining)")
    md17.add_argument(
        "--seed", metavar="SEED", type=int, default=0, help="seed of the random split (default 0)"
    )
    md17.add_argument(
        "--index-train", metavar="CSV", type=Path, help="rMD17 index_train_0N.csv (val is drawn from it)"
    )
    md17.add_argument("--index-test", metavar="CSV", type=Path, help="rMD17 index_test_0N.csv")

    demo = commands.add_parser(
        "demo", help="generate the embedded demo datasets (EMT slabs, GFN2-xTB molecules)"
    )
    demo.add_argument("out", type=Path, metavar="DIR")
    _add_output_format(demo)
    demo.add_argument(
        "--seed", metavar="SEED", type=int, default=0, help="seed of every random choice (default 0)"
    )
    demo.add_argument(
        "--size", default="default", choices=("default", "small"), help="dataset size (default: default)"
    )
    demo.add_argument("--overwrite", action="store_true", help="replace DIR once the new data is complete")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    to_aselmdb = commands.add_parser(
        "to-aselmdb", help="convert fairchem 1.x LMDB datasets into .aselmdb datasets for fairchem 2.x"
    )
    to_aselmdb.add_argument(
        "src", type=Path, metavar="SRC", help="an .lmdb file, a directory of them, or a directory of datasets"
    )
    to_aselmdb.add_argument(
        "out", type=Path, metavar="OUT", help="output directory (mirrors the datasets found under SRC)"
    )
    _add_write_options(to_aselmdb)

    inspect = commands.add_parser("inspect", help="statistics and linear energy references of datasets")
    inspect.add_argument("directory", type=Path, metavar="DIR")
    inspect.add_argument("--json", type=Path, metavar="FILE", help="also write the statistics as JSON")
    inspect.add_argument(
        "--references",
        type=Path,
        metavar="FILE.npz",
        help="write the fitted element references (DIR must be one dataset): FILE.yaml as an option of "
        "configs/fairchem2/element_refs (fairchem 2.x), FILE.npz as fairchem 1.x's element_references file",
    )
    inspect.add_argument("--overwrite", action="store_true", help="replace an existing --json or --references file")
    return parser


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output dataset directory")
    _add_output_format(parser)
    parser.add_argument(
        "--convention",
        default=Convention.FAIRCHEM.value,
        choices=[c.value for c in Convention],
        help="LMDB fields energy/forces (fairchem, default) or y/force (oc20); .aselmdb keeps them in the "
        "calculator",
    )
    _add_write_options(parser)


def _add_output_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-format",
        default=OutputFormat.LMDB.value,
        choices=[f.value for f in OutputFormat],
        help="lmdb: fairchem 1.x LmdbDataset (default); aselmdb: fairchem 2.x AseDBDataset (format: ase_db)",
    )


def _add_write_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        metavar="N",
        help=f"frames per data.NNNN.lmdb/.aselmdb file (default {DEFAULT_SHARD_SIZE})",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output directory once the new data is complete"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--min-distance",
        type=_distance,
        default=DEFAULT_MIN_DISTANCE,
        metavar="ANGSTROM",
        help=f"refuse frames with two atoms (or an atom and a periodic image) closer than this "
        f"(default {DEFAULT_MIN_DISTANCE:g} Å; 0: no check)",
    )


def _distance(text: str) -> float:
    """A distance in Å, at least 0 (argparse type of ``--min-distance``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a distance >= 0 in Å (0: no check), got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``leignn-data``; returns the exit status (2 for bad input, one line; see ``console``)."""
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _dispatch(args), interrupted="interrupted; no output written")


def _dispatch(args: argparse.Namespace) -> int:
    """The subcommand's work."""
    if args.command == "from-ase":
        return _from_ase(args)
    if args.command == "from-md17":
        return _from_md17(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "to-aselmdb":
        return _to_aselmdb(args)
    return _inspect(args)


def _output(args: argparse.Namespace) -> OutputFormat:
    """The output format; the OC20 field names exist only in LMDB records."""
    output = OutputFormat(args.output_format)
    if output is OutputFormat.ASELMDB and getattr(args, "convention", None) == Convention.OC20.value:
        raise DataError(
            "--convention oc20 applies to --output-format lmdb only (.aselmdb rows keep energy and forces "
            "in the calculator)"
        )
    return output


def _report(summary: WriteSummary) -> None:
    print(
        f"wrote {summary.samples} frames ({summary.atoms} atoms, {summary.shards} shard(s)) to {summary.directory}"
    )


def _from_ase(args: argparse.Namespace) -> int:
    from leignn_plugin.data.pipelines import convert_ase_files

    summary = convert_ase_files(
        args.files,
        args.out,
        convention=Convention(args.convention),
        output=_output(args),
        file_format=args.file_format,
        keep_stress=not args.no_stress,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
        min_distance=args.min_distance,
    )
    _report(summary)
    return 0


def _from_md17(args: argparse.Namespace) -> int:
    from leignn_plugin.data.pipelines import convert_md17

    summaries = convert_md17(
        args.npz,
        args.out,
        unit=args.unit,
        train=args.train,
        val=args.val,
        test=args.test,
        seed=args.seed,
        index_train=args.index_train,
        index_test=args.index_test,
        convention=Convention(args.convention),
        output=_output(args),
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
        min_distance=args.min_distance,
    )
    for summary in summaries.values():
        _report(summary)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from leignn_plugin.data.demo import build_demo

    manifest = build_demo(
        args.out,
        seed=args.seed,
        size=args.size,
        output=_output(args),
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    for name, dataset in manifest["datasets"].items():
        splits = ", ".join(f"{split} {entry['samples']}" for split, entry in dataset["splits"].items())
        print(f"{args.out / name}: {splits} ({', '.join(dataset['elements'])})")
    print(f"built in {manifest['build_seconds']} s; manifest: {args.out / 'manifest.json'}")
    return 0


def _to_aselmdb(args: argparse.Namespace) -> int:
    from leignn_plugin.data.pipelines import convert_lmdb_to_aselmdb

    summaries = convert_lmdb_to_aselmdb(
        args.src,
        args.out,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
        min_distance=args.min_distance,
    )
    for summary in summaries.values():
        _report(summary)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from leignn_plugin.data.inspect import (
        find_datasets,
        format_stats,
        inspect_dataset,
        references_config,
        stats_to_json,
        write_references,
    )

    as_config = args.references is not None and args.references.suffix in CONFIG_SUFFIXES
    if as_config and args.references.suffix != ".yaml":
        raise DataError(f"--references {args.references}: Hydra reads a config group's options only from .yaml "
                        f"files; name it {args.references.with_suffix('.yaml')}")
    if args.references is not None and not as_config and args.references.suffix != ".npz":
        args.references = args.references.with_name(args.references.name + ".npz")  # where numpy's savez puts it
    for flag, path in (("--json", args.json), ("--references", args.references)):
        if path is not None:
            check_output_file(path, args.overwrite, flag)
            refuse_input_as_output(path, [args.directory], flag)
    directories = find_datasets(args.directory)
    if args.references is not None and len(directories) != 1:
        raise DataError(
            f"{args.directory}: holds {len(directories)} datasets; give --references one (e.g. DIR/train)"
        )
    stats = [inspect_dataset(directory) for directory in directories]
    print("\n\n".join(format_stats(item) for item in stats))
    if args.json is not None:
        write_text(args.json, json.dumps(stats_to_json(stats), indent=2) + "\n")
    if as_config:
        command = shlex.join(["leignn-data", "inspect", str(args.directory), "--references", str(args.references)])
        write_text(args.references, references_config(stats[0], args.references.stem, command))
    elif args.references is not None:
        with replace_file(args.references, suffix=".npz") as tmp:
            write_references(stats[0], tmp)
    return 0
