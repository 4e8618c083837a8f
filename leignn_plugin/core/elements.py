"""Which elements a model's training data held, saved with its weights, and a warning for the others.

LEIGNN's virtual node averages every atom's features, so an element whose embedding was never trained
changes the prediction for every atom of a structure that holds it. The record is a boolean buffer
``seen`` [num_elements + 1] in the state dict (so every host and converter keeps it for free):
``seen[z]`` for an atomic number z that was in a training batch, and ``seen[0]`` for "the record covers
all training of these weights". A model built fresh starts with ``seen[0]`` set and no element; a
checkpoint written before the record existed loads with ``seen[0]`` clear (unknown: it never warns,
and training it further does not make the record complete).

Distributed training: DDP (fairchem 1.10) broadcasts rank 0's buffers before every forward, and
fairchem 2.x keeps rank 0's for its checkpoint, so each training batch's marks are combined across
ranks (an all-reduce of ~119 bools) before they are kept. fairchem 2.x's EMA model copies buffers from
the trained model after every step, so the record reaches its inference checkpoint.

In eval mode a structure with an element outside a complete, non-empty record gets one line on stderr,
once per model (and its copies) and element; not in a process that trains the model, whose record is
still growing when it validates.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class _Session:
    """What one model and its copies (fairchem 2.x's EMA model, a compiled copy) share in one process:
    whether they are being trained here, and the elements already warned about."""

    trained: bool = False
    warned: set[int] = field(default_factory=set)


def element_symbols(numbers: Iterable[int]) -> str:
    """The symbols of atomic numbers, sorted by symbol ("Ag, Cu, Pt")."""
    from ase.data import chemical_symbols  # only when a line is written: the core loads with torch alone

    return ", ".join(sorted(chemical_symbols[z] if z < len(chemical_symbols) else f"Z={z}" for z in numbers))


class ElementRecord(nn.Module):
    """The elements of a model's training data (see the module docstring).

    Args:
        num_elements: atomic numbers 1..num_elements are recorded.

    ``source`` names the model in the warning (a loader sets it to the checkpoint's path).
    """

    def __init__(self, num_elements: int) -> None:
        super().__init__()
        seen = torch.zeros(num_elements + 1, dtype=torch.bool)  # [K + 1]
        seen[0] = True
        self.register_buffer("seen", seen)
        self.source = "this model"
        self.session = _Session()
        self._due_cache: tuple[torch.Tensor, int, torch.Tensor] | None = None

    def elements(self) -> tuple[int, ...] | None:
        """The atomic numbers the training data held, or None when the record is unknown or empty."""
        seen = self.seen.tolist()
        found = tuple(z for z in range(1, len(seen)) if seen[z])
        return found if seen[0] and found else None

    def mark(self, numbers: torch.Tensor) -> None:
        """Add the atomic numbers [N] of a training batch (of every rank) to the record."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            present = torch.zeros_like(self.seen).index_fill_(0, numbers, True)  # [K + 1]
            dist.all_reduce(present, op=dist.ReduceOp.MAX)
            self.seen |= present
        else:
            self.seen.index_fill_(0, numbers, True)
        self.session.trained = True

    def _due(self) -> torch.Tensor:
        """[K + 1] bool: the elements a warning is still due for (none while the record is unknown or
        empty); rebuilt only when the record changed (loaded, trained, moved to another device)."""
        seen = self.seen
        if self._due_cache is None or self._due_cache[0] is not seen or self._due_cache[1] != seen._version:
            due = ~seen & seen[0] & seen[1:].any()  # [K + 1]
            due[sorted(self.session.warned)] = False
            self._due_cache = (seen, seen._version, due)
        return self._due_cache[2]

    def warn_unseen(self, numbers: torch.Tensor) -> None:
        """One line on stderr naming the elements of ``numbers`` [N] the training data did not hold and
        no earlier line named (one gather and one check per call otherwise)."""
        if self.session.trained:
            return
        due = self._due()
        flagged = due[numbers]  # [N]
        if not bool(flagged.any()):
            return
        found = set(numbers[flagged].tolist())
        due[sorted(found)] = False
        new = found - self.session.warned
        if not new:
            return
        self.session.warned |= new
        trained = self.elements() or ()
        print(f"leignn: warning: a structure holds {element_symbols(new)}, which the training data of "
              f"{self.source} did not (trained on {element_symbols(trained)}): its predictions are "
              "extrapolations", file=sys.stderr, flush=True)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """A state dict from before the record existed loads, strictly too, as an unknown record."""
        key = prefix + "seen"
        unknown = key not in state_dict
        if unknown:
            self.seen.zero_()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if unknown and key in missing_keys:
            missing_keys.remove(key)

    def __deepcopy__(self, memo: dict) -> ElementRecord:
        """A copy with its own buffer and the original's session (torch's AveragedModel deep-copies)."""
        memo[id(self.session)] = self.session
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone


RECORD_KEY = "element_record.seen"
"""The record's state-dict key under the representation's prefix (absent from older checkpoints)."""


def is_record_key(key: str) -> bool:
    """Whether a state-dict key is a representation's element record (which older files lack)."""
    return key == RECORD_KEY or key.endswith("." + RECORD_KEY)
