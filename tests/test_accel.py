"""The swap keeps the parameters, so state dicts load both ways, and the host's backbone chooses the
speed paths when it is built or moved, never in forward. (That every speed path computes what the
plain blocks compute is in the shared suite, ``leignn_plugin.testing.suite``, which both hosts run.)"""

from __future__ import annotations

import torch
from conftest import build_model, use_speed_paths

from leignn_plugin.accel import accelerate, is_accelerated, restore_plain
from leignn_plugin.core.message import MessageBlock
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate, to_batch

STRUCTURES = [bulk_cell(), slab_with_adsorbate(), organic_molecule()]


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
    """The backbone puts the CPU paths in when it is built on CPU and again when it is moved; a forward
    pass never swaps anything (a model switched back to the plain blocks stays plain through a pass);
    ``speed_paths: false`` keeps the plain blocks."""
    data = to_batch(STRUCTURES[:1], torch.float64)
    model = build_model("direct-gaussian-banded")
    assert is_accelerated(model) and model.backbone.edge_layout.banded
    restore_plain(model)
    model(data)
    assert not is_accelerated(model)
    model.float()
    assert is_accelerated(model) and model.backbone.edge_layout.banded
    plain = build_model("direct-gaussian-banded", speed_paths=False)
    plain(data)
    assert not is_accelerated(plain)
