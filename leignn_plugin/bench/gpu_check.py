"""``leignn-bench gpu``: everything a GPU has to show for the installed host's LEIGNN, in one run.

1. float64 parity: forward outputs and parameter gradients on the GPU equal the CPU's
   (:mod:`leignn_plugin.bench.device_parity`);
2. mixed precision: the host trainer's autocast recipe lowers the loss (:mod:`leignn_plugin.bench.amp_training`);
3. a two-rank NCCL DDP step, skipped with one GPU (:mod:`leignn_plugin.bench.ddp_step`);
4. ``leignn-bench models`` on the GPU (the caller hands its measurement in);
5. MD throughput at the given sizes (:mod:`leignn_plugin.bench.md_scaling`).

Checks 1-3 pass or fail (the run's exit status says which); 4 and 5 are measurements. The report is one
JSON file and one Markdown file (:func:`markdown`).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from leignn_plugin.bench.amp_training import AmpResult, run_amp
from leignn_plugin.bench.ddp_step import DdpResult, run_ddp
from leignn_plugin.bench.device_parity import Deviation, run_parity
from leignn_plugin.bench.md_scaling import ScalingPoint, run_md_scaling
from leignn_plugin.tools_host import installed

NO_CUDA = "gpu-check: no CUDA device on this machine; nothing to check"


def no_gpu_line() -> str | None:
    """The one line to print where there is nothing to check (None where a CUDA device is usable)."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return (f"gpu-check: torch {torch.__version__} in this environment is a CPU build; nothing to check "
                "(install a CUDA build of torch to check this host)")
    return NO_CUDA


@dataclass
class ModelsMeasurement:
    """``leignn-bench models`` as the check reports it: its Markdown table and its JSON payload."""

    title: str
    table: str
    payload: dict


@dataclass
class GpuReport:
    """Everything one run found."""

    environment: dict
    parity: list[Deviation] = field(default_factory=list)
    amp: list[AmpResult] = field(default_factory=list)
    ddp: DdpResult | None = None
    models: ModelsMeasurement | None = None
    md: list[ScalingPoint] = field(default_factory=list)

    def failures(self) -> list[str]:
        """One phrase per failed check (empty when all passed)."""
        failed = [f"parity {d.config} {d.quantity} (deviation {d.max_abs:.2e} > {d.rtol:.0e} x {d.scale:.3g})"
                  for d in self.parity if not d.ok]
        failed += [f"AMP {r.config} (loss {r.loss_before:.4g} -> {r.loss_after:.4g}, {r.skipped_steps} "
                   "steps skipped)" for r in self.amp if not r.ok]
        if self.ddp is not None and self.ddp.ok is False:
            failed.append(f"DDP step ({self.ddp.status})")
        return failed

    def to_dict(self) -> dict:
        return {
            "environment": self.environment,
            "ok": not self.failures(),
            "failures": self.failures(),
            "parity": [d.to_dict() for d in self.parity],
            "amp": [r.to_dict() for r in self.amp],
            "ddp": self.ddp.to_dict() if self.ddp is not None else None,
            "models": self.models.payload if self.models is not None else None,
            "md": [p.to_dict() for p in self.md],
        }


def environment(device: torch.device) -> dict:
    """What the run ran on: the host, torch, CUDA and the device."""
    env = {"fairchem_major": installed().major, "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": str(device), "machine": platform.node()}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["gpus"] = torch.cuda.device_count()
    return env


def run_checks(device: torch.device, models: Callable[[], ModelsMeasurement], md_sizes: list[int], md_steps: int,
               chunk_mib: float, hidden: int, layers: int, seed: int = 0,
               log: Callable[[str], None] = print) -> GpuReport:
    """Run the five parts on ``device`` (``cpu`` is the suite's way through every code path: the
    comparison against the CPU then compares the CPU with itself, and DDP runs on gloo)."""
    report = GpuReport(environment(device))
    log("gpu-check: float64 parity with the CPU")
    report.parity = run_parity(device, seed=seed)
    log("gpu-check: mixed-precision training steps")
    report.amp = run_amp(device, seed=seed)
    log("gpu-check: 2-rank DDP step")
    report.ddp = run_ddp(device.type)
    log("gpu-check: leignn-bench models")
    report.models = models()
    log("gpu-check: MD throughput")
    report.md = run_md_scaling(md_sizes, md_steps, seed, chunk_mib, device, hidden_channels=hidden,
                               num_layers=layers)
    return report


def _mark(ok: bool | None) -> str:
    return {True: "ok", False: "FAILED", None: "skipped"}[ok]


def markdown(report: GpuReport, header: str, md_title: str) -> str:
    """The report as Markdown: one table per part, after ``header``."""
    lines = [header, "### float64 parity with the CPU (max |device - cpu| <= rtol x max(1, max |cpu|))", "",
             "| configuration | quantity | max deviation | scale | rtol | |", "|---|---|---|---|---|---|"]
    lines += [f"| {d.config} | {d.quantity} | {d.max_abs:.2e} | {d.scale:.3g} | {d.rtol:.0e} | {_mark(d.ok)} |"
              for d in report.parity]
    lines += ["", "### Mixed-precision training (the loss after the steps, without autocast, must be lower)", "",
              "| configuration | recipe | steps | skipped by GradScaler | loss before | loss after | |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.config} | {r.recipe} | {len(r.step_losses)} | {r.skipped_steps} | {r.loss_before:.4g} | "
              f"{r.loss_after:.4g} | {_mark(r.ok)} |" for r in report.amp]
    lines += ["", "### 2-rank DDP step", ""]
    ddp = report.ddp
    if ddp is None or ddp.gradient_deviation is None:
        lines.append(ddp.status if ddp is not None else "not run")
    else:
        lines.append(f"{ddp.backend}: averaged gradient against the single-process mean, max deviation "
                     f"{ddp.gradient_deviation:.2e} (scale {ddp.gradient_scale:.3g}); parameters of the two ranks "
                     f"after the step differ by at most {ddp.parameter_deviation:.2e}: {_mark(ddp.ok)}")
    if report.models is not None:
        lines += ["", f"### {report.models.title}", "", report.models.table]
    lines += ["", f"### MD throughput: {md_title}", "",
              "| atoms | edges | steps | step (s) | atom-steps/s | neighbour search (s) | peak memory (GiB) |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {p.atoms} | {p.edges} | {p.steps} | {p.step_s:.3g} | {p.atom_steps_per_s:.3g} | {p.graph_s:.3g} | "
              f"{p.peak_rss_mib / 1024:.2f} |" for p in report.md]
    failures = report.failures()
    lines += ["", f"Result: {'all checks passed' if not failures else 'FAILED: ' + '; '.join(failures)}", ""]
    return "\n".join(lines)
