"""Checkpoints written whole or not at all.

fairchem 1.10's ``save_checkpoint`` ``torch.save``s straight over ``checkpoint.pt``: a run killed while
writing (a second Ctrl-C, SIGKILL after a grace period, a full disk) leaves a truncated file where the
last good checkpoint was. Inside :func:`atomic_checkpoints` the trainer writes to a temporary file in the
same folder, flushes it to disk and renames it over the old one, so ``checkpoint.pt`` is always the
previous or the new state, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from fairchem.core.trainers import base_trainer


def atomic_save_checkpoint(state: dict[str, Any], checkpoint_dir: str = "checkpoints/",
                           checkpoint_file: str = "checkpoint.pt") -> str:
    """fairchem's ``save_checkpoint`` (same arguments, same returned path), written atomically."""
    path = Path(checkpoint_dir) / checkpoint_file
    handle, temporary = tempfile.mkstemp(prefix=f".{checkpoint_file}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    return str(path)


@contextlib.contextmanager
def atomic_checkpoints() -> Iterator[None]:
    """While inside, fairchem's trainers save checkpoints with :func:`atomic_save_checkpoint`."""
    original = base_trainer.save_checkpoint
    base_trainer.save_checkpoint = atomic_save_checkpoint
    try:
        yield
    finally:
        base_trainer.save_checkpoint = original
