"""leignn-bench end to end in its quick settings: tables, JSON and figures are written."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from leignn_plugin.bench.baselines import ModelSpec
from leignn_plugin.bench.batch import oc20_like_batch
from leignn_plugin.bench.cli import main
from leignn_plugin.bench.compare import run_comparison

QUICK = ["--structures", "1", "--slab-size", "2,2,2", "--repeats", "1", "--threads", "2"]


def test_models_quick(tmp_path, capsys):
    assert main(["models", "--models", "leignn", *QUICK, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "models.json").read_text())
    by_name = {r["name"]: r for r in data["results"]}
    assert set(by_name) == {"leignn", "painn-512x4"}
    ref = by_name["painn-512x4"]
    assert ref["ratio_to_reference"]["forward_s"] == pytest.approx(1.0)
    lei = by_name["leignn"]
    assert lei["status"] == "ok" and lei["params"] > 1e6 and lei["flops_forward"] > 1e8
    assert lei["forward_s"] > 0 and lei["train_s"] > 0
    assert (tmp_path / "models.png").stat().st_size > 10_000
    assert "LEIGNN 512x4" in (tmp_path / "models.md").read_text()
    assert "| PaiNN 512x4" in capsys.readouterr().out


def test_md_quick(tmp_path):
    args = ["md", "--sizes", "32,108", "--hidden", "16", "--layers", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    data = json.loads((tmp_path / "md.json").read_text())
    assert [p["atoms"] for p in data["points"]] == [32, 108]
    assert all(p["edges"] > 0 and p["step_s"] > 0 and p["peak_rss_mib"] > 0 for p in data["points"])
    assert data["time_exponent"] is not None
    assert (tmp_path / "md.png").stat().st_size > 10_000


def test_bad_options_are_one_line(tmp_path, capsys):
    assert main(["models", "--models", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leignn-bench: error: unknown model(s) nope") and "\n" not in err
    assert main(["md", "--sizes", "10,x", "--out", str(tmp_path)]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert main(["graph-parallel", "--out", str(tmp_path / "gp")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("leignn-bench: error: leignn-bench graph-parallel runs on fairchem 2.x's graph parallelism: run it "
                   "in the fairchem 2.x environment (make install-fairchem2)")
    assert not (tmp_path / "gp").exists()


class HugeActivations(nn.Module):
    """A model whose forward pass asks for far more memory than any machine has."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))

    def forward(self, data) -> dict[str, torch.Tensor]:
        torch.empty(2**60, dtype=torch.uint8)  # the allocator refuses this
        return {"energy": self.weight.sum().expand(1), "forces": data.pos * self.weight}


def test_model_out_of_memory_is_skipped():
    specs = [ModelSpec("huge", "Huge", f"{__name__}.HugeActivations"),
             ModelSpec("tiny", "Tiny LEIGNN", "leignn_plugin.fairchem1.models.LEIGNN",
                       dict(hidden_channels=8, num_layers=1, num_rbf=4, cutoff=4.0))]
    batch = oc20_like_batch(1, size=(2, 2, 2))
    messages: list[str] = []
    results = run_comparison(specs, batch, repeats=1, device=torch.device("cpu"), log=messages.append)
    huge, tiny = results
    assert huge.status == "skipped: ran out of memory during the warm-up"
    assert messages == ["huge: skipped: ran out of memory during the warm-up"]
    assert tiny.status == "ok" and tiny.forward_s > 0


def test_flushed_painn_is_painn_without_subnormals():
    """The benchmark's PaiNN variant computes PaiNN's outputs; only its radial features change,
    and only where they are below sqrt(tiny)."""
    from leignn_plugin.bench.baselines import MODEL_SPECS

    batch = oc20_like_batch(num_structures=1, size=(2, 2, 2))
    outputs, radial = [], []
    for name in ("painn-512x4", "painn-512x4-flushed"):
        torch.manual_seed(0)
        model = MODEL_SPECS[name].build().eval()
        model.radial_basis.register_forward_hook(lambda module, args, out: radial.append(out))
        with torch.no_grad():
            outputs.append(model(batch))
    plain, flushed = radial
    tiny = torch.finfo(plain.dtype).tiny
    assert bool(((plain > 0) & (plain < tiny)).any()), "the batch should produce subnormal features"
    assert float(flushed[flushed != 0].abs().min()) >= tiny ** 0.5
    for key in ("energy", "forces"):
        torch.testing.assert_close(outputs[1][key], outputs[0][key], rtol=1e-5, atol=1e-6)
