"""The model configurations every host's property suite runs through (small, so the suite is quick)."""

from __future__ import annotations

MODEL_CONFIGS: dict[str, dict] = {
    "direct-gaussian-polynomial": dict(direct_forces=True, rbf="gaussian", envelope="polynomial"),
    "conservative-stress-bessel-exponential": dict(
        direct_forces=False, regress_stress=True, rbf="spherical_bessel", envelope="exponential"
    ),
    "conservative-bernstein": dict(direct_forces=False, rbf="bernstein", envelope="polynomial"),
    # the paper's ablations: Vanilla (PaiNN's update, no virtual node) and Vanilla + NMU
    "vanilla-conservative-stress": dict(direct_forces=False, regress_stress=True, virtual_node=False,
                                        node_update="painn"),
    "vanilla-nmu-direct": dict(direct_forces=True, virtual_node=False, node_update="nmu"),
}

BANDED_CONFIGS: dict[str, dict] = {
    "direct-gaussian-banded": dict(direct_forces=True, rbf="gaussian", num_rbf=128),
    "conservative-gaussian-banded": dict(direct_forces=False, rbf="gaussian", num_rbf=128),
}
"""Configurations whose radial features are banded (many Gaussians), so the banded speed path runs."""

SMALL = dict(hidden_channels=16, num_layers=2, num_rbf=8, cutoff=4.0, max_neighbors=200, num_elements=100,
             regress_forces=True)
"""The representation's options shared by every configuration of the suite."""
