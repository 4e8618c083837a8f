"""``leignn-bench accuracy``: LEIGNN, its ablations and fairchem's baselines trained at equal budget.

Every model is trained by ``main.py --mode train`` (fairchem's own trainer) from a config written into
the output folder: one shared base (data, optimiser, schedule, outputs, losses) plus the model's own
section. The untrained and the trained model are then scored with fairchem's trainer on the test split;
the report holds accuracy, cost, learning curves, parity plots and the extensivity check.

Modules: ``models`` (the catalogue and sizes), ``configs`` (base and model configs, dataset probe),
``metrics`` (MAE, cosine, EFwT, mean ± spread), ``extensivity`` (supercells), ``runner`` (the whole
run), ``report`` (table, JSON, figures), ``options`` (the command line). The scoring process runs
fairchem 1.10's trainer and so belongs to that host (``fairchem1/trainer_evaluation.py``), which the
runner reaches through ``tools_host``.
"""
