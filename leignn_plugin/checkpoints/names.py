"""The one answer to "is this LEIGNN?": the names a config or checkpoint of either host may give
LEIGNN's classes, compared as strings and never imported.

A host's registry would import the module of any dotted path it is handed, so a file naming
``leignn_evil.LEIGNN`` would run ``leignn_evil.py`` from the current folder; here a name is only ever
looked up in these tables. Each class has a role: ``leignn`` (the whole model, fairchem 1.10 only),
``backbone``, and the heads ``energy``, ``forces`` (direct) and ``conservative``.
"""

from __future__ import annotations

from collections.abc import Mapping

HEAD_ROLES = ("energy", "forces", "conservative")

SHORT_NAMES = {
    "leignn": "leignn",
    "leignn_backbone": "backbone",
    "leignn_energy_head": "energy",
    "leignn_force_head": "forces",
    "leignn_conservative_head": "conservative",
}
"""The registered names (fairchem 1.10 registers all five, fairchem 2.x all but ``leignn``)."""

CLASS_NAMES = {
    "LEIGNN": "leignn",
    "LEIGNNBackbone": "backbone",
    "LEIGNNEnergyHead": "energy",
    "LEIGNNDirectForceHead": "forces",
    "LEIGNNConservativeHead": "conservative",
}

HOST_MODULES = {1: "leignn_plugin.fairchem1.models", 2: "leignn_plugin.fairchem2.models"}
"""Where each host's classes live now."""

LEGACY_PATHS = {
    **{f"leignn_plugin.models.{name}": role for name, role in CLASS_NAMES.items()},
    **{f"leignn_plugin.models.leignn.{name}": role for name, role in CLASS_NAMES.items() if role != "backbone"},
    "leignn_plugin.models.backbone.LEIGNNBackbone": "backbone",
}
"""Dotted paths from before the core/adapter split, as stored in existing 1.10 configs and checkpoints."""


def role_of(name: object, host: int) -> str | None:
    """The role of the class ``name`` stands for in a config of fairchem ``host`` (1 or 2): a registered
    short name or an exact dotted path (current, or legacy for 1.10); None for any other name."""
    if not isinstance(name, str):
        return None
    role = SHORT_NAMES.get(name)
    if role is not None:
        return None if host == 2 and role == "leignn" else role
    module, _, cls = name.rpartition(".")
    if module == HOST_MODULES.get(host) and cls in CLASS_NAMES:
        role = CLASS_NAMES[cls]
        return None if host == 2 and role == "leignn" else role
    return LEGACY_PATHS.get(name) if host == 1 else None


def names_of(role: str, host: int) -> tuple[str, ...]:
    """Every name that stands for ``role`` in a config of ``host``, for messages (short name first)."""
    short = [name for name, r in SHORT_NAMES.items() if r == role and not (host == 2 and r == "leignn")]
    dotted = [f"{HOST_MODULES[host]}.{name}" for name, r in CLASS_NAMES.items() if r == role]
    return (*short, *dotted)


def head_roles(heads: object, host: int) -> dict[str, str] | None:
    """``{head name: role}`` of a hydra's ``heads`` section, None unless every head is LEIGNN's."""
    if not isinstance(heads, Mapping) or not heads:
        return None
    roles = {}
    for name, settings in heads.items():
        module = settings.get("module") if isinstance(settings, Mapping) else None
        role = role_of(module, host)
        if role not in HEAD_ROLES:
            return None
        roles[str(name)] = role
    return roles


def is_leignn_config(model_config: Mapping, host: int) -> bool:
    """Whether a model config of ``host`` is LEIGNN: 1.10's ``{name: leignn}`` (or a dotted path to it),
    or a hydra whose backbone and every head are LEIGNN's (1.10: ``name: hydra``; 2.x: fairchem's
    ``HydraModel``)."""
    name = model_config.get("name")
    if host == 1 and name != "hydra":
        return role_of(name, host) == "leignn"
    backbone = model_config.get("backbone")
    if not isinstance(backbone, Mapping) or role_of(backbone.get("model"), host) != "backbone":
        return False
    return head_roles(model_config.get("heads"), host) is not None

