"""Mixed-precision training steps of the installed host's LEIGNN, as the host's trainer takes them.

fairchem 1.10's trainers (``--amp``) run the forward pass and the loss under
``torch.autocast(device, dtype=float16)`` and step through a ``GradScaler`` (scale, unscale, step,
update); fairchem 2.x's ``MLIPTrainEvalUnit`` (``bf16: true``) runs them under
``torch.autocast(device, dtype=bfloat16)`` with no scaler. A float32 model takes ``steps`` AdamW steps
on one small fixed batch (seeded random targets, the S2EF loss shape: energy MAE + force L2-MAE); the
check passes when every step's loss is finite and the loss of the model after training, evaluated
without autocast, is below the loss before.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.testing.configs import MODEL_CONFIGS, SMALL
from leignn_plugin.testing.structures import bulk_cell, slab_with_adsorbate, to_batch
from leignn_plugin.tools_host import installed

AMP_CONFIGS = ("direct-gaussian-polynomial", "conservative-stress-bessel-exponential")


@dataclass(frozen=True)
class AmpRecipe:
    """How a host's trainer runs mixed precision: the autocast dtype and whether a GradScaler steps."""

    name: str
    dtype: torch.dtype
    grad_scaler: bool


HOST_RECIPES = {
    1: AmpRecipe("fairchem 1.10 --amp: autocast float16 + GradScaler", torch.float16, True),
    2: AmpRecipe("fairchem 2.x bf16: autocast bfloat16", torch.bfloat16, False),
}
"""Each host's recipe, by fairchem major version (``trainers/base_trainer.py`` and ``ocp_trainer.py``
in 1.10, ``units/mlip_unit/mlip_unit.py``'s ``train_step`` in 2.x)."""


@dataclass
class AmpResult:
    """One configuration trained with one recipe: the loss before, each step's, and after."""

    config: str
    recipe: str
    loss_before: float
    loss_after: float
    step_losses: list[float] = field(default_factory=list)
    skipped_steps: int = 0

    @property
    def ok(self) -> bool:
        finite = all(math.isfinite(loss) for loss in [*self.step_losses, self.loss_after])
        return finite and self.loss_after < self.loss_before

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _s2ef_loss(out: dict[str, torch.Tensor], energy: torch.Tensor, forces: torch.Tensor) -> torch.Tensor:
    """Energy MAE + force L2-MAE in float32, whatever dtype autocast gave the outputs."""
    energy_err = (out["energy"].float().reshape(-1) - energy).abs().mean()  # [B] -> scalar
    force_err = torch.linalg.vector_norm(out["forces"].float() - forces, dim=-1).mean()  # [N] -> scalar
    return energy_err + force_err


def amp_model(config: str, seed: int = 0) -> nn.Module:
    """The host's LEIGNN of suite configuration ``config`` in float32 with seeded core weights."""
    options = {**SMALL, **MODEL_CONFIGS[config]}
    torch.manual_seed(seed)
    core = LEIGNNPotential(**options)
    nn.init.xavier_uniform_(core.energy_head.mlp[-1].weight)
    return installed().potential(options, core.state_dict(), torch.float32)


def train_with_amp(config: str, recipe: AmpRecipe, device: torch.device, steps: int = 40, lr: float = 1e-3,
                   seed: int = 0) -> AmpResult:
    """``steps`` mixed-precision training steps of ``config`` on ``device`` (see the module docstring)."""
    model = amp_model(config, seed).to(device).train()
    batch = to_batch([bulk_cell(), slab_with_adsorbate()], torch.float32).to(device)
    gen = torch.Generator().manual_seed(seed)
    energy = torch.randn(int(batch.natoms.numel()), generator=gen).to(device)  # [B]
    forces = torch.randn(int(batch.pos.shape[0]), 3, generator=gen).to(device)  # [N, 3]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(device.type) if recipe.grad_scaler else None

    def plain_loss() -> float:
        return float(_s2ef_loss(model(batch.clone()), energy, forces).detach())

    result = AmpResult(config=config, recipe=recipe.name, loss_before=plain_loss(), loss_after=float("nan"))
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=recipe.dtype):
            loss = _s2ef_loss(model(batch.clone()), energy, forces)
        result.step_losses.append(float(loss.detach()))
        if scaler is None:
            loss.backward()
            optimizer.step()
            continue
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()
        result.skipped_steps += int(scaler.get_scale() < scale)
    result.loss_after = plain_loss()
    return result


def host_recipe() -> AmpRecipe:
    """The installed host's mixed-precision recipe."""
    return HOST_RECIPES[installed().major]


def run_amp(device: torch.device, steps: int = 40, configs: tuple[str, ...] = AMP_CONFIGS,
            seed: int = 0) -> list[AmpResult]:
    """Each configuration trained with the host's recipe on ``device``."""
    recipe = host_recipe()
    return [train_with_amp(config, recipe, device, steps, seed=seed) for config in configs]
