"""The config keys fairchem 1.10 reads, section by section, so ``main.py`` can name a misspelt one.

fairchem ignores a key it does not read: ``optim.max_epoch`` (for ``max_epochs``) or
``dataset.vall`` trains with the defaults and says nothing. These lists are what fairchem 1.10's
trainers, tasks, datasets, launcher and config builder read (including the old-style keys its
``update_config`` converts), plus the keys this plugin adds. ``tests/test_input_validation.py``
scans the installed fairchem source for the keys it reads from each section and fails when one is
missing here, so the lists cannot silently fall behind fairchem.

Sections not listed (``outputs``, ``loss_functions``, ``evaluation_metrics``, ``slurm``, and the
insides of ``transforms``, ``optimizer_params``, ``relax_opt`` ...) are not checked: their keys are
target names, free-form parameters (``slurm`` holds extra ``sbatch`` options) or read elsewhere.
"""

from __future__ import annotations

TOP_LEVEL = frozenset({
    # sections
    "trainer", "model", "optim", "task", "dataset", "outputs", "loss_functions", "evaluation_metrics",
    "logger", "slurm",
    # multi-task trainers
    "tasks", "datasets", "combined_dataset", "evaluations",
    # set from the command line by build_config (also accepted in a file)
    "mode", "identifier", "timestamp_id", "seed", "is_debug", "run_dir", "print_every", "amp", "checkpoint",
    "cpu", "submit", "summit", "world_size", "distributed_backend", "gp_gpus",
    # distributed set-up and tasks
    "local_rank", "rank", "init_method", "timeout", "use_cuda_visibile_devices", "hide_eval_progressbar",
})
"""Top-level keys fairchem 1.10 reads (``new_trainer_context``, ``build_config``, ``distutils.setup``,
``_cli.main``, ``tasks``)."""

PLUGIN_TOP_LEVEL = frozenset({"trust_checkpoint", "trust_data"})
"""Top-level keys this plugin's ``main.py`` adds for its ranks (``launch/runner.py``)."""

OPTIM = frozenset({
    "batch_size", "eval_batch_size", "num_workers", "max_epochs", "eval_every", "checkpoint_every",
    "checkpoint_format", "optimizer", "optimizer_params", "weight_decay", "lr_initial", "scheduler",
    "clip_grad_norm", "ema_decay", "load_balancing", "load_balancing_on_error",
    "load_datasets_and_model_then_exit",
    # LambdaLR's warm-up schedule (fairchem's default scheduler)
    "warmup_steps", "warmup_epochs", "warmup_factor", "lr_gamma", "lr_milestones", "lr_lambda",
    # old-style loss settings that update_config converts
    "loss_energy", "loss_forces", "energy_coefficient", "force_coefficient",
})
"""``optim`` keys fairchem 1.10 reads; besides these, fairchem passes every key that names a parameter
of the chosen ``torch.optim.lr_scheduler`` class (``mode``, ``factor``, ``patience`` ...)."""

TASK = frozenset({
    "prediction_dtype", "strict_load", "set_deterministic_scatter", "eval_relaxations", "relax_dataset",
    "num_relaxation_batches", "relaxation_steps", "relaxation_fmax", "relax_cell", "relax_volume", "relax_opt",
    "save_full_traj", "write_pos",
    # old-style task settings that update_config converts
    "dataset", "primary_metric", "train_on_free_atoms", "eval_on_free_atoms",
})
"""``task`` keys fairchem 1.10 reads."""

LOGGER = frozenset({"name", "project", "entity", "group", "watch", "log_weight_table"})
"""Keys of a ``logger:`` mapping (``logger: tensorboard`` is a plain name and has none)."""

DATASET_SPLITS = ("train", "val", "test", "relax")
"""The ``dataset`` sections fairchem 1.10's trainer reads; any other name is ignored by it."""

DATASET_SPLIT = frozenset({
    # every dataset class
    "src", "format", "key_mapping", "transforms", "lin_ref", "metadata_path", "use_train_settings",
    # subsets (create_dataset)
    "first_n", "sample_n", "no_shuffle", "max_atoms", "max_atom", "subset_to", "seed", "splits",
    "train_split_settings", "val_split_settings", "test_split_settings",
    # LMDB datasets
    "shard", "total_shards", "train_on_oc20_total_energies", "data2train", "oc20_ref",
    # ASE datasets
    "a2g_args", "keep_in_memory", "atoms_transform_args", "include_relaxed_energy", "ase_read_args", "pattern",
    "index_file", "use_tqdm", "connect_args", "select_args",
    # old-style normalisation that update_config converts
    "normalize_labels", "target_mean", "target_std", "grad_target_mean", "grad_target_std",
})
"""Keys of one ``dataset.<split>`` section fairchem 1.10 reads (``max_atom`` too: fairchem warns on it)."""

LMDB_FORMATS = frozenset({"lmdb", "single_point_lmdb", "trajectory_lmdb", "oc22_lmdb"})
"""Dataset formats read from LMDB files (one file, or a folder of ``*.lmdb``)."""

FOLDER_FORMATS = frozenset({"ase_read", "ase_read_multi"})
"""Dataset formats whose ``src`` must be a folder."""
