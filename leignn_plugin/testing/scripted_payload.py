"""A TorchScript archive that writes a file when loaded: what a crafted ``.pt`` would do on torch < 2.6,
whose ``torch.load(..., weights_only=True)`` hands a TorchScript zip to ``torch.jit.load`` (CVE-2025-32434).

``torch.jit.load`` calls the scripted ``__setstate__``, which here creates ``marker`` and fills it
through ``torch.from_file(..., shared=True)``. Tests feed :func:`scripted_payload` wherever a
checkpoint or a pickled tensor is read and assert that the marker never appears.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch


class MarkerWriter(torch.nn.Module):
    """Scripted and loaded by ``torch.jit.load``, it creates the file ``path`` and writes into it."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.written = torch.zeros(0, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        # kept in an attribute, so that TorchScript does not drop the write as unused
        self.written = torch.from_file(self.path, shared=True, size=8, dtype=torch.uint8).fill_(65)


def scripted_payload(marker: Path) -> bytes:
    """The bytes of a TorchScript archive that creates ``marker`` when ``torch.jit.load`` reads it."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(MarkerWriter(str(marker))), buffer)
    return buffer.getvalue()
