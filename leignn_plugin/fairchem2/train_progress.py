"""What ``leignn-fairchem2 train`` shows while fairchem trains: a progress bar and one line per epoch.

fairchem 2.x logs, at INFO level on the root logger, a Python dict every ``print_every`` steps, the
metrics of every evaluation, and torchtnt's and the checkpointer's messages. :func:`training_progress`
reads those records: the dicts move the bar, the evaluations and torchtnt's end-of-epoch message make
the epoch lines, and every loss is also written to ``<run>/logs/training_log.jsonl`` (one JSON object a
line; the demo's training curve). Unless ``verbose``, fairchem's own INFO records are hidden (its
warnings and errors still show), as are three warnings of torch internals that say nothing about the
run. Runs over several ranks (``ranks_per_node > 1``) log from child processes, which keep the raw log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

LOADER_SIZE = re.compile(r"Train Dataloader size (\d+)")
EPOCH_END = re.compile(r"num_epochs_completed = (\d+), num_steps_completed = (\d+)")
LOADER_END = "Reached end of train dataloader"
EVALUATION = "Finished aggregating metrics"
METRIC_LINE = re.compile(r"^\s*(val/[^:]+): (\S+)\s*$", re.MULTILINE)
TRAINING_DONE = "Training Completed"

HIDDEN_WARNINGS = (
    r"'pin_memory' argument is set as true but no accelerator is found",
    r"`broadcast_buffers` is deprecated",
    r"To get the last learning rate computed by the scheduler",
)
"""Messages of torch and torchtnt that every CPU run prints and no user can act on."""

RECORD_NAME = "training_log.jsonl"


def _numbers(values: dict) -> dict[str, float]:
    """The numeric entries of a log dict, as plain floats."""
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float))}


def _short(key: str) -> str:
    """``val/<dataset>,<task>,<metric>`` as ``<task> <metric>``; other keys unchanged."""
    parts = key.removeprefix("val/").split(",")
    return f"{parts[1]} {parts[2]}" if len(parts) == 3 else key


class TrainingLog(logging.Handler):
    """Reads fairchem's training records; draws the bar and epoch lines (``show``) and writes the record file.

    Args:
        epochs: The run's ``max_epochs`` (the bar's length is epochs x the training loader's batches), or None.
        max_steps: The run's ``max_steps`` when set (it ends the run first when smaller).
        record: The JSON-lines file for every loss seen, or None.
        show: Draw the bar and print a line per epoch.
        stream: Where they go (stderr).
    """

    def __init__(self, epochs: int | None, max_steps: int | None, record: Path | None, show: bool,
                 stream: TextIO | None = None) -> None:
        super().__init__(level=logging.INFO)
        self.epochs, self.max_steps, self.show = epochs, max_steps, show
        self.stream = stream if stream is not None else sys.stderr
        self.record = record.open("a", encoding="utf-8") if record is not None else None
        self.bar: tqdm | None = None
        self.started = time.perf_counter()
        self.step = 0
        self.batches = 0
        self.epochs_done = 0
        self.epoch_losses: list[float] = []
        self.evaluation: dict[str, float] = {}
        self.epoch_lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.msg
            if isinstance(message, dict):
                if "train/loss" in message:
                    self._train_step(_numbers(message))
                return
            text = record.getMessage()
            if match := LOADER_SIZE.match(text):
                self._open_bar(int(match.group(1)))
            elif text.startswith(LOADER_END) and self.batches:  # the evaluation at the epoch's end comes next
                self.step = (self.epochs_done + 1) * self.batches
            elif text.startswith(EVALUATION):
                self._evaluated({k.strip(): float(v) for k, v in METRIC_LINE.findall(text)})
            elif match := EPOCH_END.search(text):
                self._epoch_done(int(match.group(1)), int(match.group(2)))
            elif text.startswith(TRAINING_DONE):
                self.close_bar()
        except Exception:  # a record this reader does not understand must not stop the training
            self.handleError(record)

    def _open_bar(self, batches: int) -> None:
        self.batches = batches
        limits = [self.epochs * batches if self.epochs else None,
                  self.max_steps if self.max_steps is not None and self.max_steps > 0 else None]
        total = min((n for n in limits if n is not None), default=None)
        if self.show and self.bar is None:
            self.bar = tqdm(total=total, desc="training", unit=" steps", file=self.stream, leave=False,
                            dynamic_ncols=True, mininterval=0.5)

    def _train_step(self, values: dict[str, float]) -> None:
        self.step = int(values.get("train/step", self.step)) + 1
        self.epoch_losses.append(values["train/loss"])
        self._write({"step": self.step, **values})
        if self.bar is not None:
            self.bar.update(max(0, self.step - self.bar.n))
            self.bar.set_postfix_str(f"loss {values['train/loss']:.4g}", refresh=False)

    def _evaluated(self, metrics: dict[str, float]) -> None:
        metrics.pop("val/epoch", None)  # the evaluator's own counter, always 0 here
        self.evaluation = metrics
        self._write({"step": self.step, **metrics})

    def _epoch_done(self, epoch: int, steps: int) -> None:
        self.step, self.epochs_done = steps, epoch
        of = f"/{self.epochs}" if self.epochs else ""
        parts = [f"epoch {epoch}{of} (step {steps}, {time.perf_counter() - self.started:.0f} s)"]
        if self.epoch_losses:
            parts.append(f"train/loss: {sum(self.epoch_losses) / len(self.epoch_losses):.4g}")
        if "val/loss" in self.evaluation:
            parts.append(f"val/loss: {self.evaluation['val/loss']:.4f}")
        for key, value in sorted(self.evaluation.items()):
            if key.count(",") == 2:
                parts.append(f"val {_short(key)}: {value:.4g}")
        self.epoch_lines.append("  ".join(parts))
        self.epoch_losses, self.evaluation = [], {}
        if self.show:
            if self.bar is not None:
                self.bar.update(max(0, steps - self.bar.n))
                self.bar.write(self.epoch_lines[-1], file=self.stream)
            else:
                print(self.epoch_lines[-1], file=self.stream, flush=True)

    def _write(self, entry: dict[str, float]) -> None:
        if self.record is not None:
            self.record.write(json.dumps(entry) + "\n")
            self.record.flush()

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_bar()
        if self.record is not None:
            self.record.close()
            self.record = None
        super().close()


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


@contextmanager
def training_progress(epochs: int | None, max_steps: int | None, log_dir: Path | None,
                      verbose: bool = False) -> Iterator[TrainingLog]:
    """Within this block fairchem's training log goes through a :class:`TrainingLog`.

    Call it after ``fairchem.core._cli`` is imported (its import configures the root logger).
    """
    root = logging.getLogger()
    record = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        record = log_dir / RECORD_NAME
    reader = TrainingLog(epochs, max_steps, record, show=not verbose)
    quieted = [] if verbose else list(root.handlers)
    for handler in quieted:
        handler.addFilter(_below_warning)
    level = root.level
    if not verbose:  # the reader needs the INFO records, which the quieted handlers no longer print
        root.setLevel(min(level or logging.INFO, logging.INFO))
    root.addHandler(reader)
    try:
        with warnings.catch_warnings():
            if not verbose:
                for pattern in HIDDEN_WARNINGS:
                    warnings.filterwarnings("ignore", message=pattern)
            yield reader
    finally:
        root.removeHandler(reader)
        root.setLevel(level)
        for handler in quieted:
            handler.removeFilter(_below_warning)
        reader.close()
