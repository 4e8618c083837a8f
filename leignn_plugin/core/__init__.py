"""The LEIGNN model in plain PyTorch: no host framework, plain tensors in, named tensors out.

Layout: ``inputs`` (what the model reads), ``radial``, ``message``, ``update``, ``global_*``
(the virtual node), ``interaction`` (one layer), ``representation`` (the backbone), ``heads``
and ``model`` (backbone + heads). Each block is the paper's equation in its plain form; the speed
paths that replace some of them live in ``leignn_plugin.accel``, the hosts in ``leignn_plugin.fairchem1``.
"""

from __future__ import annotations

from leignn_plugin.core.inputs import AtomGraph
from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.core.representation import LEIGNNRepresentation

__all__ = ["AtomGraph", "LEIGNNPotential", "LEIGNNRepresentation"]
