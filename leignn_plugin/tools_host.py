"""What the tools (``testing``, ``bench``, ``workflows``) need from a fairchem host, and the registry the
installed host fills when it is imported.

Tools never import a host package: a host (``fairchem1``, ``fairchem2``) registers one :class:`ToolsHost`
on import (as it registers its checkpoint format with ``checkpoints.stored``), and a tool asks
:func:`installed` for it. The host is imported by ``installed_host``, the one place that picks it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from leignn_plugin.errors import UsageError
from leignn_plugin.installed_host import fairchem_major, import_host

if TYPE_CHECKING:
    import torch
    from ase import Atoms
    from torch import nn

ModelBuilder = Callable[..., "nn.Module"]
"""Builds a model with random weights from keyword options; its outputs are flat (``energy`` [B],
``forces`` [N, 3], ``stress`` [B, 3, 3]) as the core's."""


class BatchBuilder(Protocol):
    """ASE structures as one batch of the host, with the exact positions and cells in ``dtype``."""

    def __call__(self, atoms_list: Sequence[Atoms], dtype: torch.dtype = ...) -> Any: ...


class PotentialBuilder(Protocol):
    """The host's LEIGNN of the representation ``options`` in eval mode and ``dtype``, with the core
    potential's weights ``core_state`` (``backbone.*``, ``energy_head.*``, ``force_head.*``) when given."""

    def __call__(self, options: dict, core_state: dict | None = None,
                 dtype: torch.dtype = ...) -> nn.Module: ...


@dataclass(frozen=True)
class HostAccuracy:
    """A host's own accuracy benchmark: ``check`` refuses bad options before anything is written,
    ``run`` trains and scores (returns the Markdown report), ``default_out`` is where it writes when
    ``--out`` is not given (``quick`` or not)."""

    check: Callable[[argparse.Namespace], None]
    run: Callable[[argparse.Namespace], str]
    default_out: Callable[[bool], Path]


@dataclass(frozen=True)
class ToolsHost:
    """One host as the tools see it.

    major: the fairchem-core major version the host serves.
    atoms_batch: structures as the host's batch (the test suite, the benchmarks' batches).
    potential: LEIGNN with given core weights (the cross-host check).
    leignn: LEIGNN as the host builds it for benchmarks, from ``bench.baselines.leignn_kwargs`` options
        (a host ignores the graph options it takes from the data instead: 2.x's ``use_pbc``, ``otf_graph``).
    baselines: fairchem models the host wraps to be benchmarked, by name (fairchem 2.x's eSCN-MD).
    trainer_evaluation: the module ``leignn-bench accuracy`` runs (``python -m``) to score a model trained
        by ``main.py`` with the host's trainer; None where the host has no such trainer.
    accuracy: the host's own ``leignn-bench accuracy``, run instead of the ``main.py`` one (fairchem 2.x:
        LEIGNN against eSCN-MD through ``fairchem -c``); None where the host uses the ``main.py`` one.
    graph_parallel: ``leignn-bench graph-parallel`` (writes its JSON into ``args.out``, returns the Markdown
        report); None where the host has no graph parallelism (fairchem 1.10).
    """

    major: int
    atoms_batch: BatchBuilder
    potential: PotentialBuilder
    leignn: ModelBuilder
    baselines: Mapping[str, ModelBuilder] = field(default_factory=dict)
    trainer_evaluation: str | None = None
    accuracy: HostAccuracy | None = None
    graph_parallel: Callable[[argparse.Namespace], str] | None = None


class NoHostError(UsageError):
    """A tool that needs a host was run where no fairchem host is installed."""


_REGISTERED: dict[int, ToolsHost] = {}


def register(host: ToolsHost) -> None:
    """Called by a host package on import: what the tools get from it."""
    _REGISTERED[host.major] = host


def installed_or_none() -> ToolsHost | None:
    """The installed host (imported first when it is not yet), None without fairchem."""
    import_host()
    return _REGISTERED.get(fairchem_major())


def installed() -> ToolsHost:
    """The installed host; :class:`NoHostError` without one."""
    host = installed_or_none()
    if host is None:
        raise NoHostError("this needs fairchem-core: fairchem-core 1.10 (make install) or 2.x "
                          "(make install-fairchem2)")
    return host
