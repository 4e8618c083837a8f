"""``leignn-submission``: OC20 S2EF predictions of the four test splits -> the leaderboard's npz.

fairchem's ``make_submission_file.write_predictions`` does the merging; this command first checks
each split's ``s2ef_predictions.npz`` (keys, shapes, finite values, unique ids and, when the split's
LMDB is given, that every frame of the split is predicted exactly once), then writes the file
atomically, so a bad split never produces a file that looks submittable. Files are read without
unpickling (``allow_pickle=False``): a file that needs it is refused before fairchem's writer sees it.
The output is never one of the inputs, and an existing one is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from leignn_plugin.console import run_command
from leignn_plugin.outputs import check_output_file, refuse_input_as_output, replace_file

OC20_SPLITS = ("id", "ood_ads", "ood_cat", "ood_both")
S2EF_KEYS = ("ids", "energy", "forces", "chunk_idx")


class SubmissionError(Exception):
    """A predictions file that cannot go into a submission, with the reason."""


def load_plain_arrays(path: Path, split: str) -> dict[str, np.ndarray]:
    """Every array of the npz at ``path``, read without unpickling: an object array (which only
    unpickling restores, and which can run code while it does) is refused, naming its key."""
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as err:
                    if "allow_pickle" not in str(err):
                        raise
                    raise SubmissionError(
                        f"{split}: refused {path}: key '{key}' holds pickled Python objects, and unpickling them "
                        "could run code; predictions are plain arrays (write them with main.py --mode predict)"
                    ) from None
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise SubmissionError(f"{split}: {path} is not a readable npz file ({err})") from None
    return arrays


def check_s2ef_predictions(path: Path, split: str) -> dict[str, np.ndarray]:
    """Load one split's predictions and check keys, shapes and values; returns the arrays."""
    if not path.is_file():
        raise SubmissionError(f"{split}: predictions file not found: {path}")
    arrays = load_plain_arrays(path, split)
    missing = [k for k in S2EF_KEYS if k not in arrays]
    if missing:
        raise SubmissionError(f"{split}: {path} lacks {', '.join(missing)} (has {', '.join(sorted(arrays))}); "
                              "write it with main.py --mode predict")
    ids, energy, forces, chunk = arrays["ids"], arrays["energy"], arrays["forces"], arrays["chunk_idx"]
    n = len(ids)
    if energy.reshape(-1).shape[0] != n:
        raise SubmissionError(f"{split}: {path} has {n} ids but {energy.size} energies")
    if forces.ndim != 2 or forces.shape[1] != 3:
        raise SubmissionError(f"{split}: {path} forces have shape {forces.shape}, expected [atoms, 3]")
    if len(chunk) != max(n - 1, 0) or (len(chunk) and (np.any(np.diff(chunk) <= 0) or chunk[-1] >= len(forces))):
        raise SubmissionError(f"{split}: {path} chunk_idx does not split {len(forces)} force rows into {n} frames")
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(forces))):
        raise SubmissionError(f"{split}: {path} contains NaN or infinite predictions")
    unique, counts = np.unique(ids.astype(str), return_counts=True)
    if np.any(counts > 1):
        raise SubmissionError(f"{split}: {path} predicts id {unique[counts > 1][0]} more than once")
    return arrays


def dataset_ids(lmdb_dir: Path, where: str = "") -> set[str]:
    """The ``sid_fid`` ids of every frame in an S2EF dataset directory, as predict writes them: fairchem
    1.x LMDB (``main.py --mode predict``) or fairchem 2.x ASE-LMDB (``leignn-fairchem2 predict``), its
    headers checked first (a missing, truncated or corrupt file is one line naming ``where``)."""
    aselmdb = sorted(lmdb_dir.glob("*.aselmdb")) if lmdb_dir.is_dir() else []
    if aselmdb:
        from leignn_plugin.data.aselmdb_reader import read_rows

        return {f"{data.get('sid')}_{data.get('fid')}" for path in aselmdb for _, data in read_rows(path)}
    from leignn_plugin.data.safe_records import open_lmdb_dataset

    dataset = open_lmdb_dataset(lmdb_dir, where)
    return {f"{int(d.sid)}_{int(d.fid)}" for d in (dataset[i] for i in range(len(dataset)))}


def check_coverage(arrays: dict[str, np.ndarray], expected: set[str], split: str) -> None:
    """Every frame of the split predicted, nothing else."""
    got = {str(i) for i in arrays["ids"]}
    missing, extra = expected - got, got - expected
    if missing:
        raise SubmissionError(f"{split}: {len(missing)} frames of the split are not predicted (e.g. {sorted(missing)[0]})")
    if extra:
        raise SubmissionError(f"{split}: {len(extra)} predicted ids are not in the split (e.g. {sorted(extra)[0]})")


def submission_path(out_path: Path) -> Path:
    """The file the submission goes to: ``out_path`` with the ``.npz`` suffix fairchem's writer gives it."""
    return out_path if out_path.suffix == ".npz" else out_path.with_suffix(".npz")


def write_submission(predictions: dict[str, Path], out_path: Path, lmdbs: dict[str, Path] | None = None,
                     overwrite: bool = False) -> Path:
    """Check the output path and every split, then write the merged npz with fairchem's writer (atomically).
    An output that is one of the inputs is refused; an existing one unless ``overwrite``."""
    from fairchem.core.scripts.make_submission_file import write_predictions

    out_path = submission_path(out_path)
    check_output_file(out_path, overwrite, "--out")
    refuse_input_as_output(out_path, [*predictions.values(), *(lmdbs or {}).values()])
    for split in OC20_SPLITS:
        if split not in predictions:
            raise SubmissionError(f"missing predictions for split {split} (--{split.replace('_', '-')} FILE)")
        arrays = check_s2ef_predictions(predictions[split], split)
        if lmdbs and split in lmdbs:
            check_coverage(arrays, dataset_ids(lmdbs[split], f"--{split.replace('_', '-')}-lmdb"), split)

    with replace_file(out_path, suffix=".npz") as tmp:
        args = argparse.Namespace(dataset="OC20", out_path=str(tmp), is2re_relaxations=False, hybrid=False,
                                  **{s: str(predictions[s]) for s in OC20_SPLITS})
        write_predictions(args)
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="leignn-submission",
        description="Merge S2EF predictions of the four OC20 test splits into a leaderboard npz, after checking them.",
    )
    for split in OC20_SPLITS:
        flag = split.replace("_", "-")
        parser.add_argument(f"--{flag}", type=Path, required=True, metavar="NPZ",
                            help=f"s2ef_predictions.npz of the {split} split (main.py --mode predict, or "
                                 "leignn-fairchem2 predict)")
        parser.add_argument(f"--{flag}-lmdb", type=Path, metavar="DIR",
                            help=f"the {split} split's LMDB (or ASE-LMDB) directory, to check that every frame "
                                 "is predicted")
    parser.add_argument("--out", type=Path, required=True, help="submission file to write (.npz)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    return run_command("leignn-submission", lambda: _submit(args), errors=(SubmissionError,))


def _submit(args: argparse.Namespace) -> int:
    """Check the four splits and write the submission file."""
    predictions = {s: getattr(args, s) for s in OC20_SPLITS}
    lmdbs = {s: getattr(args, f"{s}_lmdb") for s in OC20_SPLITS if getattr(args, f"{s}_lmdb") is not None}
    path = write_submission(predictions, args.out, lmdbs, overwrite=args.overwrite)
    print(f"submission written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
