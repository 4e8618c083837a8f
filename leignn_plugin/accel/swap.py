"""One call to put the speed paths into a LEIGNN (or take them out), keeping its parameters.

Like ``torch.nn.utils.parametrize``, the swap changes the class of the existing modules instead of
building new ones: the Parameter objects stay the same, so an optimiser, DDP or an EMA already
holding them keeps working, and the state dict keeps its names, loading both ways.
"""

from __future__ import annotations

from torch import nn

from leignn_plugin.accel.edges import FastEdgeLayout
from leignn_plugin.accel.message import FastMessageBlock
from leignn_plugin.accel.radial import FlushedRadialEmbedding
from leignn_plugin.core.edges import EdgeLayout
from leignn_plugin.core.message import MessageBlock
from leignn_plugin.core.radial import RadialEmbedding
from leignn_plugin.core.representation import LEIGNNRepresentation


def representations(model: nn.Module) -> list[LEIGNNRepresentation]:
    """The LEIGNN representations inside ``model`` (one for LEIGNN and its hydra form)."""
    return [m for m in model.modules() if isinstance(m, LEIGNNRepresentation)]


def accelerate(model: nn.Module, cpu_paths: bool = True) -> nn.Module:
    """Swap the speed paths into every LEIGNN representation of ``model``; returns ``model``.

    Always: message sums in reused buffers without autograd, source gathers recomputed in backward,
    and the hooks for edge chunks and dense sums. ``cpu_paths`` adds what was measured faster on CPU
    only: flushed subnormal radial features, banded radial filters and recorded passes in pieces.
    Calling it again only changes ``cpu_paths``.
    """
    for rep in representations(model):
        for module in rep.modules():
            if isinstance(module, MessageBlock):
                module.__class__ = FastMessageBlock
                module.recorded_pieces = cpu_paths
        if cpu_paths:
            rep.radial.__class__ = FlushedRadialEmbedding
        elif isinstance(rep.radial, FlushedRadialEmbedding):
            rep.radial.__class__ = RadialEmbedding
        rep.edge_layout = FastEdgeLayout(banded=cpu_paths)
    return model


def restore_plain(model: nn.Module) -> nn.Module:
    """Undo :func:`accelerate`: every block back to the core's plain form; returns ``model``."""
    for rep in representations(model):
        for module in rep.modules():
            if isinstance(module, FastMessageBlock):
                module.__class__ = MessageBlock
                for name in ("recorded_pieces", "edge_chunk_size", "dense_sum"):
                    module.__dict__.pop(name, None)
        if isinstance(rep.radial, FlushedRadialEmbedding):
            rep.radial.__class__ = RadialEmbedding
        rep.edge_layout = EdgeLayout()
    return model


def is_accelerated(model: nn.Module) -> bool:
    return any(isinstance(m, FastMessageBlock) for m in model.modules())


def fast_blocks(model: nn.Module) -> list[FastMessageBlock]:
    """The fast message blocks of ``model`` (none while it runs the plain blocks); changes nothing."""
    return [m for m in model.modules() if isinstance(m, FastMessageBlock)]


def hookable_blocks(model: nn.Module) -> list[FastMessageBlock]:
    """The message blocks of ``model`` for a hook only the fast class has (edge chunks, dense sums): a
    plain model is switched to the fast blocks first, without the CPU paths (the same numbers)."""
    if not is_accelerated(model):
        accelerate(model, cpu_paths=False)
    return fast_blocks(model)
