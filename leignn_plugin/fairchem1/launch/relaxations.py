"""Before ``--mode run-relaxations`` starts its ranks: is anything left to relax?

fairchem 1.10's ``OCPTrainer.run_relaxations`` skips every batch whose systems all have a trajectory
``<sid>.traj`` in ``task.relax_opt.traj_dir`` (``common.utils.check_traj_files``: its way of resuming an
interrupted run). When every system has one, no batch is relaxed and gathering the (empty) results
crashes with numpy's "need at least one array to concatenate". Checked here first, that case is one
line saying so.
"""

from __future__ import annotations

from pathlib import Path

from fairchem.core.common.registry import registry

from leignn_plugin.errors import UsageError


def relax_dataset_config(config: dict) -> dict | None:
    """The relaxation dataset's settings as fairchem's trainer builds them (train settings underneath
    unless ``use_train_settings: false``), or None without a relaxation dataset."""
    datasets = config.get("dataset")
    if not isinstance(datasets, dict) or not datasets.get("relax"):
        return None
    relax = datasets["relax"]
    if not relax.get("use_train_settings", True):
        return dict(relax)
    return {**(datasets.get("train") or {}), **relax}


def system_ids(dataset) -> list[str]:
    """The ``sid`` of every sample, spelt as fairchem names its trajectory files."""
    ids = []
    for index in range(len(dataset)):
        sid = dataset[index].sid
        ids.append(str(sid.item() if hasattr(sid, "item") else sid))
    return ids


def check_relaxations_left(config: dict) -> None:
    """Raise a one-line :class:`UsageError` when every system of the relaxation dataset already has a
    trajectory in ``traj_dir``, so fairchem would relax nothing and crash.

    Costs nothing unless ``traj_dir`` holds at least as many trajectories as the dataset has samples;
    only then are the samples' ids read.
    """
    if config.get("mode") != "run-relaxations":
        return
    traj_dir = ((config.get("task") or {}).get("relax_opt") or {}).get("traj_dir")
    folder = Path(traj_dir) if traj_dir else None
    if folder is None or not folder.is_dir():
        return
    existing = {path.stem for path in folder.glob("*.traj")}
    dataset_config = relax_dataset_config(config)
    if not existing or dataset_config is None:
        return
    dataset = registry.get_dataset_class(dataset_config.get("format", "lmdb"))(dataset_config)
    if len(existing) < len(dataset):
        return
    ids = system_ids(dataset)
    if ids and all(sid in existing for sid in ids):
        raise UsageError(f"run-relaxations: all {len(ids)} systems already have trajectories in {folder}; "
                         f"nothing to relax (use a fresh --task.relax_opt.traj_dir=DIR, or remove {folder})")
