"""Conservative forces F = -dE/dpos and the virial stress (1/V) dE/d(strain)."""

from __future__ import annotations

import torch


def conservative_forces_and_stress(
    energy: torch.Tensor,
    pos: torch.Tensor,
    displacement: torch.Tensor | None,
    cell: torch.Tensor | None,
    create_graph: bool,
    periodic: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Differentiate the summed energy [B] by positions [N, 3] and, if given, the strain [B, 3, 3].

    The stress follows ASE's convention, sigma = (1/V) dE/d(epsilon), shape [B, 3, 3]. A structure
    with no periodic axis (``periodic`` [B] False: a molecule batched with periodic structures, whatever
    cell it carries) or without volume has no stress: zero.
    """
    inputs = [pos] if displacement is None else [pos, displacement]
    grads = torch.autograd.grad(
        energy.sum(), inputs, create_graph=create_graph, allow_unused=True
    )
    forces = -grads[0] if grads[0] is not None else torch.zeros_like(pos)  # [N, 3]
    if displacement is None or cell is None:
        return forces, None
    virial = grads[1] if grads[1] is not None else torch.zeros_like(displacement)  # [B, 3, 3]
    volume = torch.linalg.det(cell).abs().view(-1, 1, 1)  # [B, 1, 1]
    has_stress = volume > 0  # [B, 1, 1]
    if periodic is not None:
        has_stress = has_stress & periodic.view(-1, 1, 1)
    return forces, torch.where(has_stress, virial / torch.where(has_stress, volume, 1.0), 0.0)
