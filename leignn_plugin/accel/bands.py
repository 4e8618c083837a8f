"""The radial features of one pass cut into bands, so that every edge multiplies only the basis
columns where it can be nonzero.

After the subnormal flush (``accel.radial.flush_tiny``) a Gaussian basis is banded: in float32 an edge
has at most 19 nonzero values out of 128, because Gaussians more than 9.3 widths away fall below
1e-19 and are zeroed. Sorting the edges by their first nonzero column and grouping them
``group`` columns at a time gives every group a window of W = group + band - 1 columns holding all
of its nonzeros. Each layer's radial filter [E, R + 1] @ [R + 1, 3F] then becomes one
[E_g, W + 1] @ [W + 1, 3F] matmul per group (the window, then the envelope column that carries
the bias). The products left out are exact zeros; what it saves on the benchmark batch is in
benchmarks/README.md ("What was optimised"). Bases without a narrow band (spherical Bessel; Bernstein of high degree) keep a
single window of all R columns.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RadialBands:
    """Edges in band order, with the columns of their band's window.

    values: [E, W + 1], the W window columns of each edge's features, then its envelope.
    starts: first edge of each band, then E (one more entry than there are bands).
    columns: first basis column of each band's window.
    num_rbf: R, the number of basis functions.
    """

    values: torch.Tensor
    starts: tuple[int, ...]
    columns: tuple[int, ...]
    num_rbf: int

    @classmethod
    def whole(cls, features: torch.Tensor) -> RadialBands:
        """Features [E, R + 1] as one band whose window is every column (no reordering)."""
        return cls(values=features, starts=(0, features.shape[0]), columns=(0,), num_rbf=features.shape[1] - 1)

    @property
    def width(self) -> int:
        """W, the number of basis columns in every window."""
        return self.values.shape[1] - 1

    @property
    def num_edges(self) -> int:
        return self.values.shape[0]

    def band_weight(self, weight: torch.Tensor, band: int) -> torch.Tensor:
        """The rows of ``weight`` [R + 1, 3F] that band ``band`` multiplies: [W + 1, 3F]."""
        if self.width == self.num_rbf:
            return weight
        first = self.columns[band]
        return torch.cat([weight[first:first + self.width], weight[self.num_rbf:]])  # [W + 1, 3F]

    def filter(self, weight: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """features @ weight for every edge: [E, 3F], written into ``out`` when given (no autograd)."""
        weight = weight.to(self.values.dtype)
        bands = range(len(self.columns))
        if out is not None:
            for band in bands:
                rows = slice(self.starts[band], self.starts[band + 1])
                torch.mm(self.values[rows], self.band_weight(weight, band), out=out[rows])
            return out
        pieces = [self.values[self.starts[b]:self.starts[b + 1]] @ self.band_weight(weight, b) for b in bands]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)  # [E, 3F]

    def rows(self, part: slice) -> RadialBands:
        """The edges ``part.start:part.stop`` (a range of edges) with their bands."""
        start, stop = part.start, part.stop
        starts, columns = [start], []
        for band, first in enumerate(self.columns):
            if self.starts[band] < stop and self.starts[band + 1] > start:
                columns.append(first)
                starts.append(min(self.starts[band + 1], stop))
        starts = [s - start for s in starts]
        return RadialBands(values=self.values[start:stop], starts=tuple(starts), columns=tuple(columns),
                           num_rbf=self.num_rbf)

    def parts(self, max_edges: int | None, split_bands: bool) -> Iterator[slice]:
        """Consecutive edge ranges of at most ``max_edges`` edges (None: no limit), each within one
        band if ``split_bands``."""
        limits = self.starts if split_bands else (0, self.num_edges)
        for begin, end in itertools.pairwise(limits):
            step = max_edges or max(end - begin, 1)
            for start in range(begin, end, step):
                yield slice(start, min(end, start + step))

    def with_zero_row(self) -> RadialBands:
        """One more edge whose features are all zero (its filter is exactly zero): padding for tables."""
        zero = self.values.new_zeros((1, self.values.shape[1]))
        starts = (*self.starts[:-1], self.starts[-1] + 1)
        return RadialBands(values=torch.cat([self.values, zero]), starts=starts, columns=self.columns,
                           num_rbf=self.num_rbf)


def radial_bands(features: torch.Tensor, group: int = 8) -> tuple[RadialBands, torch.Tensor | None]:
    """Cut features [E, R + 1] into bands of ``group`` first columns; returns the bands and the order
    of the edges in them ([E]; None when the features have no band narrow enough to pay off).

    A band is used only when its window holds at most half the columns; otherwise the features stay
    whole and in edge order.
    """
    num_edges, num_rbf = features.shape[0], features.shape[1] - 1
    if num_edges == 0:
        return RadialBands.whole(features), None
    with torch.no_grad():
        nonzero = (features[:, :num_rbf] != 0).to(torch.uint8)  # [E, R]
        has_any = nonzero.amax(dim=1).bool()  # [E]
        first = torch.where(has_any, nonzero.argmax(dim=1), 0)  # [E]
        last = torch.where(has_any, num_rbf - 1 - nonzero.flip(1).argmax(dim=1), 0)  # [E]
        band = int((last - first).max()) + 1
        width = min(group + band - 1, num_rbf)
        if 2 * (width + 1) > num_rbf + 1:
            return RadialBands.whole(features), None
        group_of = torch.div(first, group, rounding_mode="floor")  # [E]
        order = torch.argsort(group_of, stable=True)  # [E]
        counts = torch.bincount(group_of, minlength=(num_rbf + group - 1) // group)  # [G]
        window_of_group = torch.clamp(torch.arange(counts.shape[0], device=first.device) * group,
                                      max=num_rbf - width)  # [G]
        columns = window_of_group[group_of].unsqueeze(1) + torch.arange(width, device=first.device)  # [E, W]
    values = torch.cat([features.gather(1, columns), features[:, num_rbf:]], dim=1)[order]  # [E, W + 1]
    used = counts > 0
    starts = torch.cat([counts.new_zeros(1), torch.cumsum(counts[used], 0)])
    return RadialBands(values=values, starts=tuple(starts.tolist()),
                       columns=tuple(window_of_group[used].tolist()), num_rbf=num_rbf), order
