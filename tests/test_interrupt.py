"""Ctrl-C (SIGINT) or SIGTERM during a local ``main.py --mode train`` saves the full training state at the
end of the step in progress and says where; ``--checkpoint`` resumes from it to the same step count,
weights, EMA, optimizer moments and learning-rate schedule as a run that was never interrupted."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_distributed import (
    MAIN,
    REPO,
    assert_same_training_state,
    checkpoint_of,
    scalars,
    slab_data,  # noqa: F401  (session fixture)
    train_locally,
    training_config,
    write_config,
)

EPOCHS = 25
STEPS = EPOCHS * 4  # 16 training slabs in batches of 4
STEP_LINE = re.compile(r"step: ([0-9.e+]+)")


@pytest.fixture(scope="module")
def long_config(slab_data, tmp_path_factory) -> Path:  # noqa: F811
    """100 steps, validation every 20, the periodic checkpoint only at the last step."""
    config = training_config(slab_data, batch_size=4, max_epochs=EPOCHS, lr_steps=STEPS, eval_every=20,
                             checkpoint_every=STEPS)
    return write_config(tmp_path_factory.mktemp("interrupt") / "config.yml", config)


@pytest.fixture(scope="module")
def uninterrupted(long_config, tmp_path_factory) -> Path:
    return train_locally(long_config, tmp_path_factory.mktemp("uninterrupted"), 1)


def interrupted_run(config: Path, run_dir: Path, signum: signal.Signals, after_step: int,
                    ranks: int = 1) -> tuple[int, str]:
    """Train in ``run_dir`` and send ``signum`` once step ``after_step`` is logged; (exit status, output).

    With several ranks the signal goes to the whole process group, as Ctrl-C in a terminal does."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(MAIN), "--mode", "train", "--config-yml", str(config), "--cpu", "--num-gpus", str(ranks),
         "--run-dir", str(run_dir), "--timestamp-id", "run", "--seed", "3", "--print-every", "1"],
        cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines, sent = [], False
    try:
        for line in proc.stdout:
            lines.append(line)
            steps = STEP_LINE.findall(line)
            if not sent and steps and float(steps[-1]) >= after_step:
                if ranks > 1:
                    os.killpg(proc.pid, signum)
                else:
                    proc.send_signal(signum)
                sent = True
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert sent, "".join(lines)[-3000:]
    return proc.returncode, "".join(lines)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_saves_and_resume_matches_uninterrupted(signum, long_config, uninterrupted, tmp_path):
    status, output = interrupted_run(long_config, tmp_path / "first", signum, after_step=5)
    assert status == 128 + signum, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    said = [line for line in output.splitlines() if line.startswith(f"leignn: interrupted by {signum.name}")]
    assert len(said) == 1, output[-3000:]
    saved_path = Path(said[0].rsplit("--checkpoint ", 1)[1])
    saved = torch.load(saved_path, map_location="cpu")
    assert 5 <= saved["step"] < STEPS  # stopped after a whole step, well before the end
    assert saved["scheduler"]["last_epoch"] == saved["step"]  # saved after that step's LR update

    resumed = train_locally(long_config, tmp_path / "resumed", 1, "--checkpoint", str(saved_path))
    reference = checkpoint_of(uninterrupted, "run")
    assert_same_training_state(STEPS, checkpoint_of(resumed, "run"), reference)

    # every step's learning rate was logged once in the two parts together, as in the uninterrupted run
    want = scalars(uninterrupted, "run", "train/lr")
    first, second = scalars(tmp_path / "first", "run", "train/lr"), scalars(resumed, "run", "train/lr")
    assert max(first) == saved["step"] and min(second) == saved["step"] + 1
    got = {**first, **second}
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in want], [want[s] for s in want], rtol=1e-6)


@pytest.mark.slow
def test_ctrl_c_stops_local_ranks_after_saving(long_config, uninterrupted, slab_data, tmp_path):  # noqa: F811
    """Ctrl-C in a terminal reaches the launcher and both ranks; the ranks save, the resumed pair of ranks
    ends where one uninterrupted rank with the same global batch ends."""
    config = write_config(tmp_path / "two.yml", training_config(
        slab_data, batch_size=2, max_epochs=EPOCHS, lr_steps=STEPS, eval_every=20, checkpoint_every=STEPS))
    status, output = interrupted_run(config, tmp_path / "first", signal.SIGINT, after_step=5, ranks=2)
    assert status == 130, output[-3000:]
    said = [line for line in output.splitlines() if line.startswith("leignn: interrupted by SIGINT")]
    assert len(said) == 1 and "Traceback" not in output, output[-3000:]
    saved_path = Path(said[0].rsplit("--checkpoint ", 1)[1])
    assert 5 <= torch.load(saved_path, map_location="cpu")["step"] < STEPS

    resumed = train_locally(config, tmp_path / "resumed", 2, "--checkpoint", str(saved_path))
    final, reference = checkpoint_of(resumed, "run"), checkpoint_of(uninterrupted, "run")
    assert final["step"] == reference["step"] == STEPS
    for name, value in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], value, rtol=1e-4, atol=1e-5)


class _InterruptWhilePickled:
    """Pickling it raises KeyboardInterrupt: a second Ctrl-C arriving while a checkpoint is written."""

    def __reduce__(self):
        raise KeyboardInterrupt


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "fairchem-own"])
def test_checkpoint_interrupted_while_written_keeps_the_previous_one(atomic, tmp_path):
    from fairchem.core.trainers import base_trainer

    from leignn_plugin.fairchem1.launch.atomic_save import atomic_checkpoints

    base_trainer.save_checkpoint({"step": 4, "weights": torch.ones(3)}, str(tmp_path), "checkpoint.pt")
    with atomic_checkpoints() if atomic else contextlib.nullcontext(), pytest.raises(KeyboardInterrupt):
        base_trainer.save_checkpoint({"step": 8, "weights": torch.zeros(3), "x": _InterruptWhilePickled()},
                                     str(tmp_path), "checkpoint.pt")
    if atomic:
        assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4
        assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no partial file left
    else:  # what the atomic write prevents: fairchem's own save leaves a broken file
        with pytest.raises((RuntimeError, pickle.UnpicklingError)):
            torch.load(tmp_path / "checkpoint.pt", weights_only=True)
