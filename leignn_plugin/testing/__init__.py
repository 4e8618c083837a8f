"""A reusable test harness: structures and property checks that any LEIGNN config can be run through."""

from __future__ import annotations
