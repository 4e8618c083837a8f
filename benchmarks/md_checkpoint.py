"""An untrained LEIGNN checkpoint at the paper's MD size and a rattled fcc Cu cell, so that
``leignn-md run`` (calculator, Verlet list, edge chunks) can be timed on a large system.

    .venv/bin/python benchmarks/md_checkpoint.py --atoms 100000 --out /tmp/leignn_large_md
    .venv/bin/leignn-md run --checkpoint /tmp/leignn_large_md/checkpoint.pt \\
        --structure /tmp/leignn_large_md/cu.extxyz --ensemble nve --steps 1 --interval 1 \\
        --no-progress --out /tmp/leignn_large_md/run

The checkpoint holds what ``fairchem1/checkpoint.py`` reads from a fairchem checkpoint: the model config
and weights (random: cost does not depend on them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from ase.io import write

from leignn_plugin.bench.md_scaling import copper_supercell, md_model_kwargs
from leignn_plugin.fairchem1.models import LEIGNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atoms", type=int, default=100_000, help="about this many atoms (a cubic supercell)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = md_model_kwargs()
    model = LEIGNN(**config)
    torch.save({"config": {"model": {"name": "leignn", **config}}, "state_dict": model.state_dict()},
               args.out / "checkpoint.pt")
    atoms = copper_supercell(args.atoms)
    write(args.out / "cu.extxyz", atoms)
    print(f"{args.out / 'checkpoint.pt'}: LEIGNN {config}; {args.out / 'cu.extxyz'}: {len(atoms)} atoms")


if __name__ == "__main__":
    main()
