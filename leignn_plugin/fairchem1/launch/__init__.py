"""Launching fairchem runs with the plugin imported in every rank (local ranks and SLURM jobs)."""

from __future__ import annotations

from leignn_plugin.fairchem1.launch.runner import PluginRunner, run_config

__all__ = ["PluginRunner", "run_config"]
