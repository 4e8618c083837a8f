"""The installed host's LEIGNN on a device against the same model on the CPU, in float64.

One model per configuration of the property suite (direct forces; conservative forces with stress) gets
the same seeded weights on both devices and the same batch (a periodic crystal, a slab with an adsorbate
and a molecule). Compared: the forward outputs in eval mode (energy, forces, stress where the model has
it) and, in training mode, every parameter's gradient of a loss on all outputs (for conservative forces
this is a second derivative). The deviation is scaled as the suite's checks scale it:
``max |device - cpu| <= rtol * max(1, max |cpu|)``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.testing.configs import MODEL_CONFIGS, SMALL
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate, to_batch
from leignn_plugin.tools_host import installed

PARITY_CONFIGS = ("direct-gaussian-polynomial", "conservative-stress-bessel-exponential")
"""Direct forces, and conservative forces with stress: every output the hosts' LEIGNN gives."""

RTOL = {"outputs": 1e-9, "gradients": 1e-9}
"""float64 tolerances, the property suite's: summation order differs between devices, nothing else."""


@dataclass(frozen=True)
class Deviation:
    """One compared quantity of one configuration: the largest absolute deviation and what it may be."""

    config: str
    quantity: str
    max_abs: float
    scale: float
    rtol: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.rtol * self.scale

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def deviation(config: str, quantity: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> Deviation:
    """``actual`` (any device) against ``expected``, scaled by ``max(1, max |expected|)``."""
    expected = expected.detach().double().cpu()
    actual = actual.detach().double().cpu()
    if actual.shape != expected.shape:
        return Deviation(config, f"{quantity} (shape {tuple(actual.shape)} vs {tuple(expected.shape)})",
                         float("inf"), 1.0, rtol)
    err = float((actual - expected).abs().max()) if expected.numel() else 0.0
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    return Deviation(config, quantity, err, scale, rtol)


def parity_model(config: str, seed: int = 0) -> nn.Module:
    """The host's LEIGNN of suite configuration ``config`` in float64, seeded core weights (the energy
    output layer, zero at initialisation, gets random weights so that energies are compared too)."""
    options = {**SMALL, **MODEL_CONFIGS[config]}
    torch.manual_seed(seed)
    core = LEIGNNPotential(**options).double()
    nn.init.xavier_uniform_(core.energy_head.mlp[-1].weight)
    return installed().potential(options, core.state_dict(), torch.float64)


def _loss(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """A loss on every output, so that each parameter's gradient depends on all of them."""
    return sum((value.double() ** 2).sum() for value in out.values())


def _outputs_and_gradients(model: nn.Module, batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Eval-mode outputs, then training-mode parameter gradients of :func:`_loss`."""
    model.eval()
    with torch.no_grad():
        outputs = {key: value.detach() for key, value in model(batch.clone()).items()}
    model.train()
    model.zero_grad(set_to_none=True)
    _loss(model(batch.clone())).backward()
    grads = {name: p.grad.detach() for name, p in model.named_parameters() if p.grad is not None}
    model.eval()
    return outputs, grads


def run_parity(device: torch.device, reference: torch.device | str = "cpu",
               configs: tuple[str, ...] = PARITY_CONFIGS, seed: int = 0) -> list[Deviation]:
    """Every output and the parameter gradients of each configuration on ``device`` against ``reference``."""
    reference = torch.device(reference)
    structures = [bulk_cell(), slab_with_adsorbate(), organic_molecule()]
    batch = to_batch(structures, torch.float64)
    deviations: list[Deviation] = []
    for config in configs:
        model = parity_model(config, seed)
        on_device = copy.deepcopy(model).to(device)
        ref_out, ref_grads = _outputs_and_gradients(model.to(reference), batch.clone().to(reference))
        out, grads = _outputs_and_gradients(on_device, batch.clone().to(device))
        for key, expected in ref_out.items():
            actual = out.get(key)
            if actual is None:
                deviations.append(Deviation(config, f"{key} (missing on {device})", float("inf"), 1.0,
                                            RTOL["outputs"]))
                continue
            deviations.append(deviation(config, key, actual, expected, RTOL["outputs"]))
        missing = sorted(set(ref_grads) - set(grads))
        if missing:
            deviations.append(Deviation(config, f"gradients missing on {device}: {', '.join(missing)}",
                                        float("inf"), 1.0, RTOL["gradients"]))
        worst = max((deviation(config, f"gradient of {name}", grads[name], g, RTOL["gradients"])
                     for name, g in ref_grads.items() if name in grads),
                    key=lambda d: d.max_abs / (d.rtol * d.scale))
        deviations.append(Deviation(config, f"parameter gradients ({len(ref_grads)}, worst: "
                                    f"{worst.quantity.removeprefix('gradient of ')})",
                                    worst.max_abs, worst.scale, worst.rtol))
    return deviations
