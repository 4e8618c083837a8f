"""Safe loading in the processes that run fairchem's trainer, and the up-front check of ``--checkpoint``.

fairchem 1.10 calls ``torch.load`` without ``weights_only`` (torch 2.4 then fully unpickles) for
``--checkpoint`` (train resume, validate, predict, run-relaxations), for normalizer and element
reference ``.pt`` files named in a config, and for a hydra ``starting_checkpoint``; its datasets read
``metadata.npz`` and ``lin_ref`` files with ``allow_pickle=True``. Inside :func:`safe_loading` every
``torch.load`` goes through the one checkpoint reader's :func:`load_torch_file` (weights only; a
TorchScript archive, which torch 2.4 would run, refused unread; a refused or broken file is one line
naming it) and ``numpy.load`` never unpickles, unless the user passed ``--trust-checkpoint``.
Checkpoints need nothing beyond weights; the ``normalizers.pt`` and ``element_references.pt`` files
fairchem's trainer writes beside them pickle whole modules, so their two classes (and ``set``, part of
every pickled module) are allowed here, in these processes only. ``PluginRunner`` wraps each rank in it
(local, elastic ranks, SLURM), and ``main.py`` checks ``--checkpoint`` with the reader before any rank
starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fairchem.core.modules.normalization.element_references import LinearReferences
from fairchem.core.modules.normalization.normalizer import Normalizer

from leignn_plugin.adapters.checkpoint_files import CheckpointError, load_torch_file
from leignn_plugin.fairchem1.checkpoint import is_leignn, leignn_model, read_checkpoint

TRUST_HELP = ("load --checkpoint (and the .pt/.npz files the config names) with full unpickling, which can "
              "run code stored in the file: only for files from a source you trust")
TRUST_DATA_HELP = ("unpickle dataset records with plain pickle, which can run code stored in the LMDB: only for "
                   "datasets from a source you trust (records are PyG Data of tensors; nothing else needs this)")
# What fairchem 1.10's normalizers.pt / element_references.pt hold besides tensors and containers.
FAIRCHEM_MODULE_GLOBALS = (Normalizer, LinearReferences, set)


def _guarded_torch_load(trusted: bool) -> Any:
    """A ``torch.load`` that loads weights only (unless ``trusted``), whatever the caller asks."""

    def load(f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: bool | None = None,
             **kwargs: Any) -> Any:
        if pickle_module is not None:
            kwargs["pickle_module"] = pickle_module
        return load_torch_file(f, map_location=map_location, trusted=trusted,
                               extra_globals=FAIRCHEM_MODULE_GLOBALS, **kwargs)

    return load


def _guarded_numpy_load(original: Any) -> Any:
    """A ``numpy.load`` that never unpickles object arrays."""

    def load(file: Any, *args: Any, allow_pickle: bool = False, **kwargs: Any) -> Any:
        return original(file, *args, allow_pickle=False, **kwargs)

    return load


@contextlib.contextmanager
def safe_loading(trusted: bool = False) -> Iterator[None]:
    """While inside, ``torch.load`` and ``numpy.load`` in this process cannot run code from a file.

    ``trusted`` (``--trust-checkpoint``) leaves both as they are. Forked data-loader workers inherit
    the guard; the originals are put back on the way out.
    """
    if trusted:
        yield
        return
    torch_load, numpy_load = torch.load, np.load
    torch.load = _guarded_torch_load(trusted=False)
    np.load = _guarded_numpy_load(numpy_load)
    try:
        yield
    finally:
        torch.load, np.load = torch_load, numpy_load


def check_run_checkpoint(path: Path, model_config: dict, trusted: bool = False) -> None:
    """Refuse, with one line, a ``--checkpoint`` the run could not use, before any rank starts.

    A run of LEIGNN (or hydra on its backbone) needs a readable checkpoint holding LEIGNN weights that fit
    the model its config describes; a run of another fairchem model needs a readable checkpoint with
    weights. Either way the file is loaded weights-only unless ``trusted``, and its normalizers must be
    what fairchem's trainer loads (it reads the entry even when it is empty).
    """
    leignn = is_leignn(model_config)
    with safe_loading(trusted):
        checkpoint = read_checkpoint(path, trust_checkpoint=trusted, require_leignn=leignn)
        if "normalizers" not in checkpoint:
            raise CheckpointError(f"{path} has no 'normalizers' entry, which fairchem's trainer reads (an empty "
                                  "mapping when the run did not normalize)")
        if leignn:
            leignn_model(checkpoint, path, use_ema=False)
