"""The conversions behind ``leignn-data from-ase`` and ``leignn-data from-md17``.

Each reads its source lazily, validates every frame, converts it with fairchem's AtomsToGraphs
and streams it into sharded LMDBs inside a staging directory that is published only when
complete (see :mod:`staging`), so bad input leaves no output behind.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from torch_geometric.data import Data

from leignn_plugin.data.ase_source import read_ase_frames
from leignn_plugin.data.atoms_to_data import FrameConverter
from leignn_plugin.data.conventions import Convention
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.lmdb_writer import DEFAULT_SHARD_SIZE, WriteSummary, write_lmdb_shards
from leignn_plugin.data.md17_source import load_md17
from leignn_plugin.data.splits import REST, random_split, read_index_file
from leignn_plugin.data.staging import check_output_free, staged_output
from leignn_plugin.data.validation import validate_frame
from leignn_plugin.graph.sanity import DEFAULT_MIN_DISTANCE

SPLITS: tuple[str, ...] = ("train", "val", "test")


def validated_samples(
    frames: Iterable[Frame],
    converter: FrameConverter,
    *,
    require_stress: bool = False,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> Iterator[Data]:
    """Validate each frame, then convert it; the first bad frame raises :class:`DataError`."""
    for frame in frames:
        validate_frame(
            frame,
            require_labels=converter.with_labels,
            require_stress=require_stress,
            min_distance=min_distance,
        )
        yield converter.convert(frame)


def convert_ase_files(
    paths: Sequence[Path],
    out: Path,
    *,
    convention: Convention = Convention.FAIRCHEM,
    file_format: str | None = None,
    keep_stress: bool = True,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> WriteSummary:
    """Convert all frames of ASE-readable files into one LMDB dataset at ``out``.

    Stress is written when the first frame has one (and then required of every frame) unless
    ``keep_stress`` is off.  ``out/sources.json`` maps each file to its default ``sid``.

    Args:
        paths: Input files, in order (their position is the default ``sid``).
        out: Output dataset directory.
        convention: ``energy``/``forces`` (fairchem) or ``y``/``force`` (OC20) field names.
        file_format: ASE format name, when file names do not reveal it.
        keep_stress: Write stress when the input has it.
        shard_size: Samples per LMDB file.
        overwrite: Replace an existing ``out`` once the new dataset is complete.
        progress: Show a progress bar.
        min_distance: Refuse frames with atoms closer than this (Å, periodic images included; 0: allow).
    """
    if not paths:
        raise DataError("no input files given")
    check_output_free(out, overwrite=overwrite)
    frames = read_ase_frames([Path(p) for p in paths], file_format=file_format)
    first = next(frames)
    with_stress = keep_stress and first.stress is not None
    converter = FrameConverter(convention, with_stress=with_stress)
    with staged_output(out, overwrite=overwrite) as stage:
        samples = validated_samples(
            itertools.chain([first], frames), converter, require_stress=with_stress, min_distance=min_distance
        )
        summary = write_lmdb_shards(samples, stage, shard_size=shard_size, desc=str(out), progress=progress)
        sources = [{"sid": sid, "path": str(path)} for sid, path in enumerate(paths)]
        _write_json(stage / "sources.json", {"files": sources})
    return WriteSummary(out, summary.samples, summary.atoms, summary.shards, summary.elements)


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
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> dict[str, WriteSummary]:
    """Convert an MD17/rMD17 archive into ``out/train``, ``out/val`` and ``out/test`` LMDBs.

    Without index files, the splits are random (``seed``) of sizes ``train`` (default 950),
    ``val`` and ``test`` (default 1000; -1 = all remaining frames).  With rMD17's
    ``index_train_0N.csv``/``index_test_0N.csv``, test is the test file, val is drawn at random
    from the train file and train is the rest of it.  ``out/splits.json`` lists each split's
    archive indices.  Splits of size 0 are not written.  Frames with atoms closer than
    ``min_distance`` (Å; 0: allow) are refused.

    Returns:
        Per split, what was written.
    """
    check_output_free(out, overwrite=overwrite)
    arrays = load_md17(Path(npz), unit=unit)
    splits = _md17_splits(arrays.n_frames, train, val, test, seed, index_train, index_test)
    converter = FrameConverter(convention)
    summaries: dict[str, WriteSummary] = {}
    with staged_output(out, overwrite=overwrite) as stage:
        for name, indices in splits.items():
            if len(indices) == 0:
                continue
            samples = validated_samples(arrays.frames(indices.tolist()), converter, min_distance=min_distance)
            summary = write_lmdb_shards(
                samples, stage / name, shard_size=shard_size, total=len(indices), desc=name, progress=progress
            )
            summaries[name] = WriteSummary(
                out / name, summary.samples, summary.atoms, summary.shards, summary.elements
            )
        _write_json(
            stage / "splits.json",
            {"source": str(npz), "unit": unit, "seed": seed, **{k: v.tolist() for k, v in splits.items()}},
        )
    return summaries


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
