"""The conversions behind ``leignn-data from-ase``, ``from-md17`` and ``to-aselmdb``.

One pipeline, two writers: each source is read lazily into :class:`Frame` objects, every frame is
validated (:func:`validated_frames`), and :func:`write_frames` streams them into sharded files of the
chosen :class:`OutputFormat`: fairchem 1.x LMDBs (converted with fairchem's AtomsToGraphs) or
fairchem 2.x ``.aselmdb`` files.  Everything is written inside a staging directory that is published
only when complete (see :mod:`staging`), so bad input leaves no output behind.  The LMDB-only modules
(fairchem 1.x, torch_geometric) are imported only when LMDBs are written or read, so ``.aselmdb``
output also works next to fairchem 2.x.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from leignn_plugin.data.ase_source import read_ase_frames
from leignn_plugin.data.aselmdb_writer import write_aselmdb_shards
from leignn_plugin.data.conventions import Convention
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.md17_source import load_md17
from leignn_plugin.data.shards import DEFAULT_SHARD_SIZE, OutputFormat, WriteSummary
from leignn_plugin.data.splits import REST, random_split, read_index_file
from leignn_plugin.data.staging import check_output_free, staged_output
from leignn_plugin.data.validation import validate_frame
from leignn_plugin.graph.sanity import DEFAULT_MIN_DISTANCE
from leignn_plugin.outputs import refuse_input_as_output

SPLITS: tuple[str, ...] = ("train", "val", "test")


def validated_frames(
    frames: Iterable[Frame],
    *,
    require_labels: bool = True,
    require_stress: bool = False,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> Iterator[Frame]:
    """Validate each frame as it passes; the first bad frame raises :class:`DataError`."""
    for frame in frames:
        validate_frame(
            frame, require_labels=require_labels, require_stress=require_stress, min_distance=min_distance
        )
        yield frame


def write_frames(
    frames: Iterable[Frame],
    directory: Path,
    *,
    output: OutputFormat = OutputFormat.LMDB,
    convention: Convention = Convention.FAIRCHEM,
    with_labels: bool = True,
    with_stress: bool = False,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    metadata: Mapping[str, object] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    total: int | None = None,
    desc: str = "writing",
    progress: bool = True,
) -> WriteSummary:
    """Validate frames and write them as one dataset directory in the ``output`` format.

    Args:
        frames: Frames in dataset index order.
        directory: Output dataset directory (inside a staging directory).
        output: LMDB (fairchem 1.x) or ``.aselmdb`` (fairchem 2.x).
        convention: LMDB field names (``.aselmdb`` keeps labels in the calculator, whatever this is).
        with_labels: Require and write energy and forces (off for IS2RE initial structures).
        with_stress: Require and write stress.
        min_distance: Refuse frames with atoms closer than this (Å, periodic images included; 0: allow).
        metadata: ``.aselmdb`` only: stored as every file's ``db.metadata``.
        shard_size: Frames per file.
        total: Number of frames, if known, for the progress bar.
        desc: Progress-bar label.
        progress: Show a progress bar.
    """
    checked = validated_frames(
        frames, require_labels=with_labels, require_stress=with_stress, min_distance=min_distance
    )
    options = {"shard_size": shard_size, "total": total, "desc": desc, "progress": progress}
    if output is OutputFormat.ASELMDB:
        return write_aselmdb_shards(
            checked, directory, with_labels=with_labels, with_stress=with_stress, metadata=metadata, **options
        )
    with _lmdb_side("writing LMDB datasets", "; --output-format aselmdb does not"):
        from leignn_plugin.data.atoms_to_data import FrameConverter
        from leignn_plugin.data.lmdb_writer import write_lmdb_shards

    converter = FrameConverter(convention, with_labels=with_labels, with_stress=with_stress)
    return write_lmdb_shards((converter.convert(frame) for frame in checked), directory, **options)


def convert_ase_files(
    paths: Sequence[Path],
    out: Path,
    *,
    convention: Convention = Convention.FAIRCHEM,
    output: OutputFormat = OutputFormat.LMDB,
    file_format: str | None = None,
    keep_stress: bool = True,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> WriteSummary:
    """Convert all frames of ASE-readable files into one dataset at ``out``.

    Stress is written when the first frame has one (and then required of every frame) unless
    ``keep_stress`` is off.  Each file's default ``sid`` is its position in ``paths``; the mapping
    goes to ``out/sources.json`` for LMDBs and into every ``.aselmdb`` file's ``db.metadata``
    (``{"sources": [...]}``; fairchem 2.x opens every file of a dataset directory as a database).

    Args:
        paths: Input files, in order (their position is the default ``sid``).
        out: Output dataset directory.
        convention: LMDB only: ``energy``/``forces`` (fairchem) or ``y``/``force`` (OC20) field names.
        output: LMDB (fairchem 1.x) or ``.aselmdb`` (fairchem 2.x).
        file_format: ASE format name, when file names do not reveal it.
        keep_stress: Write stress when the input has it.
        shard_size: Frames per file.
        overwrite: Replace an existing ``out`` once the new dataset is complete.
        progress: Show a progress bar.
        min_distance: Refuse frames with atoms closer than this (Å, periodic images included; 0: allow).
    """
    if not paths:
        raise DataError("no input files given")
    check_output_free(out, overwrite=overwrite)
    refuse_input_as_output(Path(out), [Path(p) for p in paths], replaced_folder=True)
    frames = read_ase_frames([Path(p) for p in paths], file_format=file_format)
    first = next(frames)
    with_stress = keep_stress and first.stress is not None
    sources = [{"sid": sid, "path": str(path)} for sid, path in enumerate(paths)]
    aselmdb = output is OutputFormat.ASELMDB
    with staged_output(out, overwrite=overwrite) as stage:
        summary = write_frames(
            itertools.chain([first], frames),
            stage,
            output=output,
            convention=convention,
            with_stress=with_stress,
            min_distance=min_distance,
            metadata={"sources": sources} if aselmdb else None,
            shard_size=shard_size,
            desc=str(out),
            progress=progress,
        )
        if not aselmdb:
            _write_json(stage / "sources.json", {"files": sources})
    return _moved(summary, out)


def convert_md17(
    npz: Path,
    out: Path,
    *,
    unit: str = "kcal/mol",
    train: int | None = None,
    val: int = 50,
    test: int | None = None,
    seed: int = 0,
    index_train: Path | None = None,
    index_test: Path | None = None,
    convention: Convention = Convention.FAIRCHEM,
    output: OutputFormat = OutputFormat.LMDB,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> dict[str, WriteSummary]:
    """Convert an MD17/rMD17 archive into ``out/train``, ``out/val`` and ``out/test`` datasets.

    Without index files, the splits are random (``seed``) of sizes ``train`` (default 950),
    ``val`` and ``test`` (default 1000; -1 = all remaining frames).  With rMD17's
    ``index_train_0N.csv``/``index_test_0N.csv``, test is the test file, val is drawn at random
    from the train file and train is the rest of it.  ``out/splits.json`` lists each split's
    archive indices.  Splits of size 0 are not written.  Frames with atoms closer than
    ``min_distance`` (Å; 0: allow) are refused.  ``output`` picks LMDB or ``.aselmdb`` files.

    Returns:
        Per split, what was written.
    """
    check_output_free(out, overwrite=overwrite)
    refuse_input_as_output(Path(out), [Path(npz), index_train, index_test], replaced_folder=True)
    arrays = load_md17(Path(npz), unit=unit)
    splits = _md17_splits(arrays.n_frames, train, val, test, seed, index_train, index_test)
    summaries: dict[str, WriteSummary] = {}
    with staged_output(out, overwrite=overwrite) as stage:
        for name, indices in splits.items():
            if len(indices) == 0:
                continue
            summary = write_frames(
                arrays.frames(indices.tolist()),
                stage / name,
                output=output,
                convention=convention,
                min_distance=min_distance,
                shard_size=shard_size,
                total=len(indices),
                desc=name,
                progress=progress,
            )
            summaries[name] = _moved(summary, out / name)
        _write_json(
            stage / "splits.json",
            {"source": str(npz), "unit": unit, "seed": seed, **{k: v.tolist() for k, v in splits.items()}},
        )
    return summaries


def convert_lmdb_to_aselmdb(
    src: Path,
    out: Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> dict[Path, WriteSummary]:
    """Convert fairchem 1.x LMDB datasets into ``.aselmdb`` datasets for fairchem 2.x.

    ``src`` is one ``.lmdb`` file, a dataset directory of them, or a directory with datasets below it
    (e.g. ``train``/``val``/``test``), whose layout is mirrored under ``out``.  Records are read with the
    project's safe reader (:func:`safe_records.open_lmdb_dataset`); energy and forces are found under
    either convention's names, and labels (and stress) are written when the first record has them.

    Returns:
        Per source dataset, what was written.
    """
    with _lmdb_side("reading LMDB datasets"):
        from leignn_plugin.data.lmdb_source import find_lmdb_datasets, open_lmdb_records

    check_output_free(out, overwrite=overwrite)
    refuse_input_as_output(Path(out), [Path(src)], "OUT", replaced_folder=True)
    datasets = find_lmdb_datasets(src)
    summaries: dict[Path, WriteSummary] = {}
    with staged_output(out, overwrite=overwrite) as stage:
        for path in datasets:
            relative = Path() if path == src else path.relative_to(src)
            with open_lmdb_records(path) as records:
                summary = write_frames(
                    records.frames(),
                    stage / relative,
                    output=OutputFormat.ASELMDB,
                    with_labels=records.has_labels,
                    with_stress=records.has_stress,
                    min_distance=min_distance,
                    shard_size=shard_size,
                    total=len(records),
                    desc=str(path),
                    progress=progress,
                )
            summaries[path] = _moved(summary, out / relative)
    return summaries


@contextmanager
def _lmdb_side(what: str, hint: str = "") -> Iterator[None]:
    """Imports for writing or reading LMDBs (fairchem 1.x, torch_geometric), made only then so that
    ``.aselmdb`` output works next to fairchem 2.x; where they are missing, one line says so."""
    try:
        yield
    except ImportError as exc:
        raise DataError(
            f"{what} needs fairchem-core 1.x and torch_geometric, which this environment lacks ({exc}){hint}"
        ) from None


def _moved(summary: WriteSummary, directory: Path) -> WriteSummary:
    """The summary of a dataset written in the staging directory, at its published place."""
    return WriteSummary(directory, summary.samples, summary.atoms, summary.shards, summary.elements)


def _md17_splits(
    n_frames: int,
    train: int | None,
    val: int,
    test: int | None,
    seed: int,
    index_train: Path | None,
    index_test: Path | None,
) -> dict[str, NDArray[np.int64]]:
    """Split sizes from options, or the published rMD17 index files."""
    if (index_train is None) != (index_test is None):
        raise DataError("--index-train and --index-test must be given together")
    if index_train is None or index_test is None:
        sizes = {"train": 950 if train is None else train, "val": val, "test": 1000 if test is None else test}
        return random_split(n_frames, sizes, seed)
    if train is not None or test is not None:
        raise DataError(
            "--train/--test sizes cannot be combined with index files (their sizes are the files')"
        )
    train_pool = read_index_file(index_train, n_frames)
    test_indices = read_index_file(index_test, n_frames)
    shared = set(train_pool.tolist()) & set(test_indices.tolist())
    if shared:
        raise DataError(f"{index_test}: index {min(shared)} is also in {index_train}")
    chosen = random_split(len(train_pool), {"val": val, "train": REST}, seed)
    return {
        "train": np.sort(train_pool[chosen["train"]]),
        "val": np.sort(train_pool[chosen["val"]]),
        "test": np.sort(test_indices),
    }


def _write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
