"""Turn a ``leignn`` checkpoint into a ``hydra`` one, so that fairchem's fine-tuning can start from it.

fairchem's ``finetune_config: {starting_checkpoint: ...}`` only accepts HydraModel checkpoints. LEIGNN
and its hydra form (``leignn_backbone`` + heads) hold the same parameters in the same order; only the
names of the head parameters differ, and this module renames them.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem1.checkpoint import leignn_model, read_checkpoint
from leignn_plugin.outputs import check_output_file, refuse_input_as_output, replace_file


def hydra_model_config(model_config: dict) -> dict:
    """The hydra model section equivalent to a ``leignn`` model section."""
    options = {k: v for k, v in model_config.items() if k != "name"}
    direct = options.get("direct_forces", True)
    regress_forces = options.get("regress_forces", True)
    if not regress_forces:
        heads = {"energy": {"module": "leignn_energy_head"}}
    elif direct:
        heads = {"energy": {"module": "leignn_energy_head"}, "forces": {"module": "leignn_force_head"}}
    else:
        heads = {"energy_forces": {"module": "leignn_conservative_head"}}
    return {"name": "hydra", "backbone": {"model": "leignn_backbone", **options}, "heads": heads,
            "pass_through_head_outputs": True}


def _rename(key: str, heads: dict) -> str:
    prefix = "module." if key.startswith("module.") else ""
    bare = key[len(prefix):]
    if bare.startswith("backbone."):
        return key
    for name, head in heads.items():
        attribute = "force_head." if head["module"] == "leignn_force_head" else "energy_head."
        if bare.startswith(attribute):
            return f"{prefix}output_heads.{name}.{bare}"
    raise KeyError(f"unexpected parameter '{key}' in a leignn checkpoint")


def convert_checkpoint(src: Path, dst: Path, use_ema: bool = True, trust_checkpoint: bool = False,
                       overwrite: bool = False) -> Path:
    """Write the hydra form of checkpoint ``src`` to ``dst`` (EMA weights by default, as validated).

    ``src`` is read weights-only unless ``trust_checkpoint``; a file that is refused, truncated or holds
    no LEIGNN weights raises :class:`CheckpointError` before anything is written. ``dst`` is refused
    when it is ``src`` (by any name) or, unless ``overwrite``, exists; it is replaced atomically.
    """
    src, dst = Path(src), Path(dst)
    refuse_input_as_output(dst, [src], flag="OUT")
    check_output_file(dst, overwrite, flag="OUT")
    checkpoint = read_checkpoint(src, trust_checkpoint=trust_checkpoint)
    model_config = checkpoint["config"]["model"]
    if model_config["name"] == "hydra":
        raise CheckpointError(f"{src} already holds a hydra model")
    model, _ = leignn_model(checkpoint, src, use_ema)
    hydra = hydra_model_config(model_config)
    prefix = "module." if next(iter(checkpoint["state_dict"]), "").startswith("module.") else ""
    out = copy.copy(checkpoint)
    out["state_dict"] = {_rename(prefix + k, hydra["heads"]): v for k, v in model.state_dict().items()}
    out["config"] = {**checkpoint["config"], "model": hydra}
    for key in ("optimizer", "scheduler", "ema", "amp"):
        out.pop(key, None)
    with replace_file(dst) as tmp:
        torch.save(out, tmp)
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leignn-to-hydra", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint trained with model: {name: leignn}")
    parser.add_argument("out", type=Path, help="where to write the hydra checkpoint")
    parser.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA ones")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never CHECKPOINT itself)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="read CHECKPOINT with full unpickling, which can run code stored in it: only for "
                             "files from a source you trust")
    args = parser.parse_args(argv)
    try:
        path = convert_checkpoint(args.checkpoint, args.out, use_ema=not args.raw_weights,
                                  trust_checkpoint=args.trust_checkpoint, overwrite=args.overwrite)
    except (UsageError, OSError, ValueError, KeyError) as err:
        print(f"leignn-to-hydra: error: {err}", file=sys.stderr)
        return 2
    print(f"hydra checkpoint written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
