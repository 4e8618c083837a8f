"""The old dotted path of ``leignn_backbone`` (see ``leignn_plugin.models``)."""

from __future__ import annotations

from leignn_plugin.fairchem1.models import LEIGNNBackbone

__all__ = ["LEIGNNBackbone"]
