"""Benchmarks: LEIGNN against fairchem's baselines, and MD cost against system size."""

from __future__ import annotations
