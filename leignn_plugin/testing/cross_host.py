"""The same weights on the same structures through the installed host: what the cross-host check compares.

``python -m leignn_plugin.testing.cross_host WEIGHTS STRUCTURES OUT`` reads ``WEIGHTS`` (a torch file
with ``options``, the representation's options, and ``state``, the core potential's state dict),
predicts every structure of ``STRUCTURES`` (an extxyz file) as one float64 batch with the host's model
(the ``potential`` the installed host registers with ``tools_host``) and writes ``energy``, ``forces``
and, when the model gives it, ``stress`` to the ``.npz`` file ``OUT``. The 2.x suite runs it in the 1.10
environment and compares with the 2.x model in its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase.io import read

from leignn_plugin.adapters.checkpoint_files import load_torch_file
from leignn_plugin.testing.structures import to_batch
from leignn_plugin.tools_host import installed


def predictions(options: dict, state: dict, structures: list, dtype: torch.dtype = torch.float64
                ) -> dict[str, np.ndarray]:
    """The installed host's LEIGNN with ``state`` on ``structures`` (one batch), as float64 arrays."""
    model = installed().potential(options, state, dtype)
    out = model(to_batch(structures, dtype))
    return {key: value.detach().double().numpy() for key, value in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leignn_plugin.testing.cross_host", description=__doc__)
    parser.add_argument("weights", type=Path)
    parser.add_argument("structures", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    saved = load_torch_file(args.weights)
    result = predictions(saved["options"], saved["state"], read(args.structures, ":"))
    np.savez(args.out, **result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
