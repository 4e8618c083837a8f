"""Every speed path computes what the core's plain blocks compute: float64 to 1e-12, float32 to its
rounding, with autograd and without, and the training gradients (double backward for conservative
forces) too. The swap keeps the parameters, so state dicts load both ways."""

from __future__ import annotations

import pytest
import torch
from conftest import BANDED_CONFIGS, MODEL_CONFIGS, build_model, use_speed_paths

from leignn_plugin.accel import accelerate, edge_chunks, is_accelerated, restore_plain, use_dense_sums
from leignn_plugin.core.message import MessageBlock
from leignn_plugin.testing.checks import assert_close
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate, to_batch

STRUCTURES = [bulk_cell(), slab_with_adsorbate(), organic_molecule()]
CONFIGS = sorted({**MODEL_CONFIGS, **BANDED_CONFIGS})
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5}
PATHS = ("cpu-paths", "no-cpu-paths", "chunked", "dense")


def _outputs(model, data, grad: bool) -> dict[str, torch.Tensor]:
    """The outputs; stress only of the periodic structures (the molecule has no volume)."""
    with torch.set_grad_enabled(grad):
        out = {k: t.detach() for k, t in model(data).items()}
    if "stress" in out:
        out["stress"] = out["stress"][:2]
    return out


def _speed_up(model, path: str):
    use_speed_paths(model, True)
    if path == "no-cpu-paths":
        accelerate(model, cpu_paths=False)
        for backbone in model.modules():
            if hasattr(backbone, "speed_paths"):
                backbone.speed_paths = False  # keep it so at the next pass
    if path == "dense":
        use_dense_sums(model)
    return model


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", CONFIGS)
def test_fast_model_equals_the_plain_one(name, dtype, grad, path):
    model = build_model(name, dtype)
    data = to_batch(STRUCTURES, dtype)
    reference = _outputs(use_speed_paths(model, False), data, grad)
    _speed_up(model, path)
    with edge_chunks(model, 50 if path == "chunked" else None):
        fast = _outputs(model, data, grad)
    assert sorted(fast) == sorted(reference)
    for key, ref in reference.items():
        assert_close(fast[key], ref, TOLERANCE[dtype], key)


@pytest.mark.parametrize("path", ["cpu-paths", "chunked"])
@pytest.mark.parametrize("name", CONFIGS)
def test_fast_training_gradients_equal_the_plain_ones(name, path):
    """Parameter gradients of an energy + force loss, float64."""
    model = build_model(name, torch.float64).train()
    data = to_batch(STRUCTURES, torch.float64)
    grads = {}
    for fast in (False, True):
        use_speed_paths(model, fast)
        with edge_chunks(model, 50 if fast and path == "chunked" else None):
            out = model(data)
            loss = out["energy"].square().sum() + out["forces"].square().sum()
            grads[fast] = torch.autograd.grad(loss, list(model.parameters()))
    for fast_grad, plain_grad in zip(grads[True], grads[False], strict=True):
        assert_close(fast_grad, plain_grad, 1e-10, "parameter gradient")


def test_the_swap_keeps_parameters_and_names():
    model = build_model("direct-gaussian-polynomial")
    use_speed_paths(model, False)
    params = {name: id(p) for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    accelerate(model)
    assert is_accelerated(model)
    assert {name: id(p) for name, p in model.named_parameters()} == params
    assert sorted(model.state_dict()) == sorted(state)
    restore_plain(model)
    assert not is_accelerated(model)
    assert all(type(m) is MessageBlock for m in model.modules() if isinstance(m, MessageBlock))
    model.load_state_dict(state)


def test_speed_paths_follow_the_device_by_default():
    """On CPU the adapter switches the CPU paths on at the first pass; ``speed_paths: false`` keeps
    the plain blocks."""
    data = to_batch(STRUCTURES[:1], torch.float64)
    model = build_model("direct-gaussian-banded")
    model(data)
    assert is_accelerated(model) and model.backbone.edge_layout.banded
    plain = build_model("direct-gaussian-banded", speed_paths=False)
    plain(data)
    assert not is_accelerated(plain)
