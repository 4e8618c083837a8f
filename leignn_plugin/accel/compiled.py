"""A compiled LEIGNN for inference and MD: the same model with its message sums run by torch.compile.

The message blocks switch to their dense-neighbour form (each atom sums its messages over a padded
table of its incoming edges, ``dense_sums.py``) and that sum is compiled (inductor,
dynamic shapes, so a changing number of atoms or edges between MD steps does not recompile): the
per-edge gathers, products and the sum become one generated loop, without the [E, 3, F] tensors
eager mode writes and without the atomics a compiled scatter would need. The radial matmul stays
outside the compiled region, writing into the pass's reused buffer, and the neighbour search, the
table and the node-wise layers stay eager (compiling whole layers measured slower on CPU:
data-dependent graph breaks at every segment mean). Results agree with eager mode to float rounding
(the sums run in another order).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from leignn_plugin.accel.dense_sums import dense_message_sums
from leignn_plugin.accel.message import DenseSum
from leignn_plugin.accel.swap import hookable_blocks, representations


def use_dense_sums(model: nn.Module, dense_sum: DenseSum | None = dense_message_sums) -> None:
    """Sum the messages of every block of ``model`` with ``dense_sum`` (None: the eager scatter)."""
    for block in hookable_blocks(model):
        block.dense_sum = dense_sum


def compile_for_inference(model: nn.Module, dynamic: bool = True, mode: str | None = None,
                          backend: str = "inductor") -> nn.Module:
    """A compiled copy of ``model`` in eval mode; the original is left as it is.

    Args:
        model: an LEIGNN, or a fairchem hydra on ``leignn_backbone`` (its weights are copied, so later
            changes to it are not seen).
        dynamic: compile for symbolic sizes (atoms, edges, neighbours), as MD and batches need.
        mode: torch.compile mode (``None``, ``"max-autotune-no-cudagraphs"``, ...).
        backend: torch.compile backend; ``eager`` only traces (quick checks of the captured graphs).
    """
    if not representations(model):
        raise TypeError(f"compile_for_inference takes an LEIGNN model (or a hydra on leignn_backbone), "
                        f"got {type(model).__name__}")
    compiled = copy.deepcopy(model).eval()
    use_dense_sums(compiled, torch.compile(dense_message_sums, dynamic=dynamic, mode=mode, backend=backend))
    return compiled
