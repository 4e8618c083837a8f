"""Benchmark output: a markdown table, a JSON file and figures (bar chart, log-log scaling plot)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from leignn_plugin.bench.compare import ModelResult
from leignn_plugin.outputs import replace_file, write_text


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def comparison_table(results: list[ModelResult], reference: ModelResult | None) -> str:
    """Markdown table: each metric with its ratio to the reference PaiNN."""
    head = ("| model | params (M) | x | GFLOPs fwd+forces | x | fwd+forces (s) | x | train step (s) | x "
            "| peak train mem (MiB) | x | note |")
    rule = "|" + "---|" * 12
    rows = [head, rule]
    for res in results:
        if res.status != "ok":
            rows.append(f"| {res.label} | {_fmt(res.params and res.params / 1e6)} | | | | | | | | | | "
                        f"{res.status} |")
            continue
        r = res.ratios(reference) if reference is not None else {}
        rows.append(
            f"| {res.label} | {res.params / 1e6:.2f} | {_ratio(r.get('params'))} "
            f"| {_fmt(res.flops_forward and res.flops_forward / 1e9)} | {_ratio(r.get('flops_forward'))} "
            f"| {_fmt(res.forward_s)} | {_ratio(r.get('forward_s'))} "
            f"| {_fmt(res.train_s)} | {_ratio(r.get('train_s'))} "
            f"| {_fmt(res.train_peak_mib, 4)} | {_ratio(r.get('train_peak_mib'))} | {res.note} |"
        )
    return "\n".join(rows)


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(payload, indent=2))


_PANELS = (
    ("params", "parameters (M)", 1e-6),
    ("flops_forward", "GFLOPs, forward+forces", 1e-9),
    ("forward_s", "forward+forces (s)", 1.0),
    ("train_s", "training step (s)", 1.0),
    ("train_peak_mib", "peak memory, training step (GiB)", 1 / 1024),
)


def comparison_figure(results: list[ModelResult], reference: ModelResult | None, path: Path,
                      title: str) -> None:
    """One panel per metric, a bar per model, labelled with the value and its ratio to the reference."""
    measured = [r for r in results if r.status == "ok"]
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(4.2 * len(_PANELS), 0.55 * len(measured) + 2.2),
                             sharey=True)
    names = [r.label for r in measured]
    colours = ["tab:red" if r.name == "leignn" else "tab:grey" if reference is not None
               and r.name == reference.name else "tab:blue" for r in measured]
    for ax, (key, label, scale) in zip(axes, _PANELS):
        values = [(getattr(r, key) or 0.0) * scale for r in measured]
        ax.barh(range(len(measured)), values, color=colours)
        ax.set_title(label, fontsize=10)
        ref_value = (getattr(reference, key) or 0.0) * scale if reference is not None else 0.0
        for k, value in enumerate(values):
            text = f"{value:.3g}" + (f" ({value / ref_value:.2f}x)" if ref_value else "")
            ax.text(value, k, " " + text, va="center", fontsize=8)
        ax.set_xlim(0, 1.6 * max(values, default=1.0) or 1.0)
    axes[0].set_yticks(range(len(measured)), names)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with replace_file(path, suffix=".png") as tmp:  # replaces a link at ``path``, never writes through it
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def fit_exponent(sizes: list[float], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(size): the scaling exponent."""
    xs, ys = [math.log(s) for s in sizes], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        raise ValueError("fitting a scaling exponent needs at least two different sizes")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var


def scaling_figure(atoms: list[int], step_s: list[float], peak_gib: list[float], path: Path,
                   title: str) -> None:
    """Log-log MD step time and peak memory against system size, with the fitted exponents."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, values, label in ((axes[0], step_s, "MD step time (s)"), (axes[1], peak_gib, "peak RSS (GiB)")):
        ax.loglog(atoms, values, "o-", color="tab:red")
        if len(set(atoms)) > 1:
            exponent = fit_exponent(atoms, values)
            ref = [values[0] * (n / atoms[0]) for n in atoms]
            ax.loglog(atoms, ref, "--", color="grey", label="linear (exponent 1)")
            ax.set_title(f"{label}: fitted exponent {exponent:.2f}", fontsize=10)
            ax.legend(fontsize=8)
        for n, v in zip(atoms, values):
            ax.annotate(f"{v:.3g}", (n, v), textcoords="offset points", xytext=(4, -10), fontsize=8)
        ax.set_xlabel("atoms")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with replace_file(path, suffix=".png") as tmp:  # replaces a link at ``path``, never writes through it
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
