"""Speed paths chosen once per placement: when a host's backbone is built and each time it is moved.

With the backbone's ``speed_paths`` option on, :func:`leignn_plugin.accel.prepare_for_device` puts in
the paths measured faster on the device the parameters are on (the CPU paths on CPU, the others
elsewhere). It runs at construction and after every ``.to()`` / ``.cuda()`` / ``.double()`` (the way
torch's recurrent layers re-flatten their weights after a move), so a trainer or predict unit that
moves the model to its device gets the right paths before the first batch, and ``forward`` never
swaps anything.
"""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.accel import prepare_for_device


class SpeedPathsFollowDevice(nn.Module):
    """Mixin of a host's backbone (which sets ``speed_paths``); see the module docstring."""

    def choose_speed_paths(self) -> None:
        """Put in the speed paths for the parameters' device, when ``speed_paths`` is on."""
        if not getattr(self, "speed_paths", False):
            return
        param = next(self.parameters(), None)
        prepare_for_device(self, param.device if param is not None else torch.device("cpu"))

    def _apply(self, fn, recurse: bool = True):
        moved = super()._apply(fn, recurse)
        self.choose_speed_paths()
        return moved
