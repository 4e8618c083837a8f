"""End-to-end workflows around fairchem's main.py: the demo chain and leaderboard submissions."""

from __future__ import annotations
