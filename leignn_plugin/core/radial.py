"""Radial features e_ij = rbf(d/cutoff) * envelope(d/cutoff).

Three bases (Gaussian, spherical Bessel, Bernstein) and two envelopes (polynomial, exponential).
Every function takes the reduced distance t = d / cutoff and is exactly zero for t >= 1, so that a
neighbour crossing the cutoff changes nothing discontinuously.
"""

from __future__ import annotations

import math

import torch
from torch import nn

RBF_NAMES = ("gaussian", "spherical_bessel", "bernstein")
ENVELOPE_NAMES = ("polynomial", "exponential")


class GaussianBasis(nn.Module):
    """num_rbf Gaussians with centres evenly spaced on [0, 1] and width equal to the spacing."""

    def __init__(self, num_rbf: int) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, 1.0, num_rbf))
        self.width = 1.0 / (num_rbf - 1) if num_rbf > 1 else 1.0

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        centers = self.centers.to(t.dtype)  # [R]
        return torch.exp(-0.5 * ((t.unsqueeze(-1) - centers) / self.width) ** 2)  # [E, R]


class SphericalBesselBasis(nn.Module):
    """Zeroth-order spherical Bessel functions j0(k pi t) = sin(k pi t) / (k pi t), k = 1..num_rbf.

    These are DimeNet's radial functions up to a constant per function; taking j0 itself keeps every
    function bounded by 1 like the Gaussians, which keeps float32 forces well conditioned.
    """

    def __init__(self, num_rbf: int) -> None:
        super().__init__()
        self.register_buffer("frequencies", math.pi * torch.arange(1, num_rbf + 1, dtype=torch.float32))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = self.frequencies.to(t.dtype) * t.clamp(min=1e-6).unsqueeze(-1)  # [E, R]
        return torch.sin(x) / x  # [E, R]


class BernsteinBasis(nn.Module):
    """Bernstein polynomials of degree num_rbf - 1 on [0, 1]."""

    def __init__(self, num_rbf: int) -> None:
        super().__init__()
        n = num_rbf - 1
        k = torch.arange(num_rbf, dtype=torch.float64)
        log_binom = torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        self.register_buffer("log_binomial", log_binom.float())
        self.register_buffer("powers", k.float())
        self.degree = n

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        k = self.powers.to(t.dtype)  # [R]
        x = t.clamp(1e-6, 1.0 - 1e-6).unsqueeze(-1)  # [E, 1]
        log_b = self.log_binomial.to(t.dtype) + k * torch.log(x) + (self.degree - k) * torch.log1p(-x)
        return torch.exp(log_b)  # [E, R]


class PolynomialEnvelope(nn.Module):
    """Smooth cutoff 1 - (p+1)(p+2)/2 t^p + p(p+2) t^(p+1) - p(p+1)/2 t^(p+2), zero for t >= 1."""

    def __init__(self, exponent: int = 5) -> None:
        super().__init__()
        self.p = float(exponent)
        self.a = -(self.p + 1) * (self.p + 2) / 2
        self.b = self.p * (self.p + 2)
        self.c = -self.p * (self.p + 1) / 2

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        tp = t.pow(self.p)  # [E]
        env = 1 + self.a * tp + self.b * tp * t + self.c * tp * t * t
        return torch.where(t < 1, env, torch.zeros_like(t))  # [E]


class ExponentialEnvelope(nn.Module):
    """exp(-t^2 / ((1 - t)(1 + t))), infinitely smooth at the cutoff, zero for t >= 1."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        inside = t < 1
        t_in = torch.where(inside, t, torch.zeros_like(t))  # keeps the gradient finite outside
        env = torch.exp(-(t_in * t_in) / ((1 - t_in) * (1 + t_in)))
        return torch.where(inside, env, torch.zeros_like(t))  # [E]


class RadialEmbedding(nn.Module):
    """Edge features [rbf(t) * envelope(t), envelope(t)] with t = d / cutoff, computed once per graph.

    The paper's radial feature is e_ij = rbf * envelope. Filters compute W_r(rbf) * envelope,
    which equals W e_ij + b * envelope: the weights act on e_ij exactly, and the bias of W_r is
    faded out with the envelope so that every message is exactly zero at the cutoff (with the bias
    outside the envelope, energies would jump when a neighbour crosses the cutoff). Carrying the
    envelope as the last column lets every layer apply weights and bias in one matmul,
    ``features @ [W^T; b]``, on features shared by all layers.
    """

    def __init__(self, num_rbf: int, cutoff: float, rbf: str = "gaussian", envelope: str = "polynomial",
                 envelope_exponent: int = 5) -> None:
        super().__init__()
        if rbf not in RBF_NAMES:
            raise ValueError(f"unknown rbf '{rbf}': choose one of {', '.join(RBF_NAMES)}")
        if envelope not in ENVELOPE_NAMES:
            raise ValueError(f"unknown envelope '{envelope}': choose one of {', '.join(ENVELOPE_NAMES)}")
        self.cutoff = float(cutoff)
        self.basis = {"gaussian": GaussianBasis, "spherical_bessel": SphericalBesselBasis,
                      "bernstein": BernsteinBasis}[rbf](num_rbf)
        self.envelope = PolynomialEnvelope(envelope_exponent) if envelope == "polynomial" else ExponentialEnvelope()

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        """distance [E] -> features [E, R + 1]."""
        t = distance / self.cutoff  # [E]
        env = self.envelope(t).unsqueeze(-1)  # [E, 1]
        return torch.cat([self.basis(t) * env, env], dim=-1)  # [E, R + 1]
