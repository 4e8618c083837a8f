"""A fairchem Runner whose module imports the plugin, so every rank that unpickles it knows ``leignn``.

fairchem's own ``runner_wrapper`` lives in ``fairchem.core._cli``; ranks started by elastic_launch or
submitit import only that module, and a config naming ``leignn`` would not resolve there.
"""

from __future__ import annotations

from fairchem.core._cli import Runner
from submitit.helpers import DelayedSubmission

import leignn_plugin  # noqa: F401  (registers the models in this process)


class PluginRunner(Runner):
    """fairchem's Runner; on preemption it requeues itself (not fairchem's class) from the checkpoint."""

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        delayed = super().checkpoint(*args, **kwargs)
        return DelayedSubmission(PluginRunner(), *delayed.args, **delayed.kwargs)


def run_config(config: dict) -> None:
    """Entry point of one rank: build the trainer and task from ``config`` and run them."""
    PluginRunner()(config)
