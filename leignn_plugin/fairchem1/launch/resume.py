"""Resuming training from a checkpoint with the learning-rate schedule at the right step.

fairchem saves ``checkpoint.pt`` every ``checkpoint_every`` steps *before* that step's ``scheduler.step()``,
so a run resumed from it would repeat one learning rate and lag the schedule by a step for the rest of the
run. A per-step scheduler whose position is one behind the restored step count is advanced once here.
"""

from __future__ import annotations

import logging
from typing import Any

# Schedulers that fairchem steps only at evaluations (or never): their position is not counted in steps.
NOT_PER_STEP = ("Null", "ReduceLROnPlateau")


def align_scheduler(trainer: Any) -> bool:
    """Advance the scheduler of a resumed run when it sits one step behind ``trainer.step``; True if it did."""
    wrapper = trainer.scheduler
    if trainer.step == 0 or wrapper.scheduler_type in NOT_PER_STEP:
        return False
    if wrapper.scheduler.last_epoch != trainer.step - 1:
        return False
    wrapper.step()
    logging.info(f"resumed at step {trainer.step}: advanced the {wrapper.scheduler_type} schedule past the "
                 f"checkpointed step (lr now {wrapper.get_lr():.6g})")
    return True
