"""Banded radial filters: the windows hold every nonzero feature and each band's matmul is the plain
one (the whole model against the plain blocks: ``test_accel.py``)."""

from __future__ import annotations

import pytest
import torch
from conftest import BANDED_CONFIGS, build_model

from leignn_plugin.accel.bands import RadialBands, radial_bands
from leignn_plugin.accel.radial import FlushedRadialEmbedding as RadialEmbedding
from leignn_plugin.testing import checks
from leignn_plugin.testing.checks import assert_close
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate

STRUCTURES = [bulk_cell(), slab_with_adsorbate(), organic_molecule()]
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6}


def features_of(rbf: str, dtype: torch.dtype, num_edges: int = 4000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    distance = 0.5 + 5.8 * torch.rand(num_edges, generator=generator, dtype=torch.float64)  # some beyond 6 Å
    with torch.no_grad():
        return RadialEmbedding(128, 6.0, rbf=rbf).to(dtype)(distance.to(dtype))  # [E, R + 1]


def unbanded(bands: RadialBands) -> torch.Tensor:
    """The full [E, R + 1] features the bands stand for: each window put back at its columns."""
    full = bands.values.new_zeros((bands.num_edges, bands.num_rbf + 1))
    for band, first in enumerate(bands.columns):
        rows = slice(bands.starts[band], bands.starts[band + 1])
        full[rows, first:first + bands.width] = bands.values[rows, :-1]
        full[rows, -1] = bands.values[rows, -1]
    return full


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# Bernstein polynomials of degree 127 overlap too widely to pay off (up to 97 nonzeros of 128 per edge)
@pytest.mark.parametrize("rbf, banded", [("gaussian", True), ("bernstein", False), ("spherical_bessel", False)])
def test_windows_hold_every_nonzero_feature(rbf, banded, dtype):
    features = features_of(rbf, dtype)
    bands, order = radial_bands(features)
    assert (order is not None) == banded
    if order is None:
        assert bands.values is features and bands.width == 128
        return
    assert sorted(order.tolist()) == list(range(features.shape[0]))
    assert 2 * (bands.width + 1) <= 129
    assert torch.equal(unbanded(bands), features[order])  # nothing left out: the rest is exact zeros


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_band_filter_equals_the_plain_matmul(dtype):
    features = features_of("gaussian", dtype)
    bands, order = radial_bands(features)
    weight = torch.randn(129, 48, dtype=dtype)
    reference = features[order] @ weight  # [E, 3F]
    assert_close(bands.filter(weight), reference, TOLERANCE[dtype], "filter")
    out = torch.full_like(reference, float("nan"))
    assert bands.filter(weight, out=out) is out
    assert_close(out, reference, TOLERANCE[dtype], "filter written in place")
    padded = bands.with_zero_row().filter(weight)
    assert torch.equal(padded[-1], torch.zeros_like(padded[-1]))
    assert_close(padded[:-1], reference, TOLERANCE[dtype], "padded filter")


@pytest.mark.parametrize("max_edges", [None, 1, 333])
@pytest.mark.parametrize("split_bands", [True, False])
def test_parts_cover_the_edges_in_order(max_edges, split_bands):
    bands, _ = radial_bands(features_of("gaussian", torch.float64))
    weight = torch.randn(129, 6, dtype=torch.float64)
    whole = bands.filter(weight)
    parts = list(bands.parts(max_edges, split_bands))
    assert [p.start for p in parts[1:]] == [p.stop for p in parts[:-1]]
    assert parts[0].start == 0 and parts[-1].stop == bands.num_edges
    for part in parts:
        piece = bands.rows(part)
        if split_bands:
            assert len(piece.columns) == 1
        if max_edges is not None:
            assert part.stop - part.start <= max_edges
        assert_close(piece.filter(weight), whole[part], 1e-12, "filter of a part")


def test_no_edges():
    bands, order = radial_bands(torch.zeros((0, 129)))
    assert order is None and bands.filter(torch.ones(129, 4)).shape == (0, 4)


@pytest.mark.parametrize("name", sorted(BANDED_CONFIGS))
@pytest.mark.parametrize("check", ["rotation", "translation", "permutation"])
def test_banded_model_symmetries(name, check):
    """The symmetries of the property suite, in float64, through the banded filters."""
    model = build_model(name, torch.float64)
    getattr(checks, f"check_{check}")(model, slab_with_adsorbate(), torch.float64, 1e-9)
    checks.check_batch_consistency(model, STRUCTURES, torch.float64, 1e-9)
