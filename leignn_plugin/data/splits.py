"""Deterministic train/val/test splits.

Random splits draw one permutation from ``numpy.random.default_rng(seed)``; each split keeps its
indices in ascending order so LMDB order follows the source order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from leignn_plugin.data.errors import DataError

REST = -1
"""A split size meaning "all frames not used by the other splits"."""


def random_split(n_items: int, sizes: Mapping[str, int], seed: int) -> dict[str, NDArray[np.int64]]:
    """Split ``range(n_items)`` into disjoint random subsets of the given sizes.

    Args:
        n_items: Number of items available.
        sizes: Split name to size, in order; at most one may be :data:`REST`.
        seed: Seed of the permutation.

    Raises:
        DataError: More items requested than available.
    """
    fixed = sum(size for size in sizes.values() if size != REST)
    if any(size < REST for size in sizes.values()):
        raise DataError(f"split sizes must be >= 0, got {dict(sizes)}")
    if fixed > n_items:
        raise DataError(f"splits ask for {fixed} frames but only {n_items} are available")
    permutation = np.random.default_rng(seed).permutation(n_items)
    result: dict[str, NDArray[np.int64]] = {}
    start = 0
    for name, size in sizes.items():
        count = n_items - fixed if size == REST else size
        result[name] = np.sort(permutation[start : start + count]).astype(np.int64)
        start += count
    return result


def fraction_split(
    n_items: int, fractions: Sequence[tuple[str, float]], seed: int
) -> dict[str, NDArray[np.int64]]:
    """Split by fractions, giving every split at least one item when there are enough.

    The first split takes whatever the others leave.
    """
    counts = {name: max(1, round(fraction * n_items)) for name, fraction in fractions[1:]}
    sizes = {fractions[0][0]: REST, **counts}
    return random_split(n_items, sizes, seed)


def read_index_file(path: Path, n_items: int) -> NDArray[np.int64]:
    """Read an rMD17 index file (one integer per line) and check it against the archive size."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        indices = np.loadtxt(path, dtype=np.int64, ndmin=1, delimiter=",", usecols=0)
    except ValueError as exc:
        raise DataError(f"{path}: not a list of integer indices ({exc})") from exc
    out_of_range = indices[(indices < 0) | (indices >= n_items)]
    if out_of_range.size:
        raise DataError(f"{path}: index {int(out_of_range[0])} is outside the archive's {n_items} frames")
    if np.unique(indices).size != indices.size:
        raise DataError(f"{path}: contains repeated indices")
    return indices
