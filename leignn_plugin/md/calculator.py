"""``LEIGNNCalculator``: an ASE calculator for a LEIGNN checkpoint trained with fairchem.

Why not fairchem's ``OCPCalculator``: it builds a whole trainer for every calculator (and logs its
config), forces ``otf_graph=True`` so the neighbour graph is rebuilt from scratch at every MD step,
runs in float32 only, lists ``implemented_properties`` from the config's outputs (stress is offered
only where the training config named it), and, being built with ``inference_only=True``, ignores the
EMA weights stored in ``checkpoint.pt`` although ``main.py --mode predict`` uses them. This
calculator loads the same weights, normalizers and element references (``checkpoint.py``), gives the
numbers ``main.py --mode predict`` gives for the same frames, and keeps a Verlet neighbour list
(``leignn_plugin.graph.VerletList``) between MD steps.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.constraints import FixAtoms
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress
from fairchem.core.datasets import data_list_collater
from torch_geometric.data import Data

from leignn_plugin.accel import chunk_size_for, compile_for_inference, set_edge_chunk_size
from leignn_plugin.errors import StructureError
from leignn_plugin.fairchem1.checkpoint import LoadedPotential, load_potential
from leignn_plugin.graph import CloseAtoms, VerletList, check_finite, check_min_distance

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, with a clear error when CUDA is asked for but absent."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was requested but CUDA is not available here; use device='cpu'")
    return device


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    return DTYPES[dtype]


class LEIGNNCalculator(Calculator):
    """Energy, forces and (conservative models with ``regress_stress``) stress from a LEIGNN checkpoint.

    Args:
        checkpoint: path to a fairchem ``checkpoint.pt`` / ``best_checkpoint.pt`` of a LEIGNN model.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32`` (what the trainer uses) or ``float64`` (tighter energy conservation).
        skin: Verlet-list buffer in Å; the graph is rebuilt after an atom moved more than skin/2.
            ``0`` rebuilds at every call.
        use_ema: use the EMA weights when the checkpoint stores them (as ``main.py --mode predict`` does).
        graph_method: neighbour search for the list builds (``vesin``, linear in atoms, or
            ``fairchem``, all pairs); default: the model's own ``graph_method``.
        compiled: evaluate a torch.compile'd copy of the model (``accel.compile_for_inference``):
            faster per step on CPU, equal to 1e-5; the first call compiles (seconds), later sizes
            reuse the dynamic-shape kernels.
        edge_chunk_mib: stream the edges of each message step in chunks whose [chunk, 3F] tensors
            take about this many MiB (``accel.chunk_size_for``; exact, same sums in the same
            order), which bounds the memory of direct-force MD on large cells. Graphs with fewer
            edges run whole; ``None`` never chunks.
        min_distance: refuse structures with two atoms (or an atom and a periodic image) closer than
            this many Å, with a ``StructureError`` naming them (default: the model's ``min_distance``,
            0.3 Å unless its config says otherwise; 0: no check). Non-finite positions or cells and
            elements outside the model's 1..num_elements are always refused.
        min_distance_setting: how the close-atom message names that setting (``leignn-md``:
            ``--min-distance``).
        trust_checkpoint: read ``checkpoint`` with full unpickling, which can run code stored in it
            (only for files from a source you trust). By default it is read weights-only, and a file
            that needs more raises ``CheckpointError`` naming what it needs.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        skin: float = 1.0,
        use_ema: bool = True,
        graph_method: str | None = None,
        compiled: bool = False,
        edge_chunk_mib: float | None = 512.0,
        min_distance: float | None = None,
        min_distance_setting: str = "min_distance",
        trust_checkpoint: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.potential: LoadedPotential = load_potential(checkpoint, self.device, self.dtype, use_ema,
                                                         trust_checkpoint=trust_checkpoint)
        self.model = compile_for_inference(self.potential.model) if compiled else self.potential.model
        backbone = self.potential.backbone
        if edge_chunk_mib is not None:
            chunk = chunk_size_for(backbone.hidden_channels, edge_chunk_mib, torch.finfo(self.dtype).bits // 8)
            set_edge_chunk_size(self.model, chunk)
        method = graph_method or backbone.graph_method
        if min_distance is None:
            min_distance = getattr(backbone, "min_distance", 0.0)
        self.min_distance = check_min_distance(min_distance, min_distance_setting)
        self._structure = "the structure"
        close = (CloseAtoms(self.min_distance, lambda _: self._structure, min_distance_setting)
                 if self.min_distance > 0 else None)
        self.neighbors = VerletList(backbone.cutoff, skin, backbone.max_neighbors,
                                    backbone.enforce_max_neighbors_strictly, method, close)
        properties = ["energy", "free_energy"]
        if backbone.regress_forces:
            properties.append("forces")
        if self.potential.has_stress:
            properties.append("stress")
        self.implemented_properties = properties
        self._warn_if_forces_are_not_gradients()

    @property
    def num_elements(self) -> int:
        return self.potential.backbone.num_elements

    def _warn_if_forces_are_not_gradients(self) -> None:
        """De-normalizing energy and forces with different scales breaks F = -dE/dx (and NVE)."""
        if not self.potential.conservative:
            return
        energy, forces = self.potential.normalizers.get("energy"), self.potential.normalizers.get("forces")
        e_scale = float(energy.rmsd) if energy is not None else 1.0
        f_scale = float(forces.rmsd) if forces is not None else 1.0
        f_shift = float(forces.mean) if forces is not None else 0.0
        if not np.isclose(e_scale, f_scale, rtol=1e-6) or f_shift != 0.0:
            warnings.warn(
                f"{self.potential.path}: the forces normalizer (mean {f_shift:g}, rmsd {f_scale:g}) differs from "
                f"the energy rmsd {e_scale:g}, so the de-normalized forces are not -dE/dx of the de-normalized "
                "energy and total energy will drift in NVE; train with equal energy/forces rmsd and forces mean 0",
                stacklevel=3,
            )

    def check_elements(self, numbers) -> None:
        """Raise one clear line (``StructureError``) when the structure holds elements the model has no
        embedding for."""
        numbers = np.asarray(numbers)
        bad = sorted({int(z) for z in numbers if z < 1 or z > self.num_elements})
        if bad:
            names = ", ".join(f"{chemical_symbols[z] if 0 <= z < len(chemical_symbols) else '?'} (Z={z})"
                              for z in bad)
            raise StructureError(f"elements {names} are outside the 1..{self.num_elements} that "
                                 f"{self.potential.path.name} was built for (num_elements)")

    def to_batch(self, atoms: Atoms):
        """The fairchem batch of one structure, with the Verlet list's edges attached; a structure no
        potential should be asked about (``leignn_plugin.graph.sanity``) raises ``StructureError``."""
        self._structure = f"{atoms.get_chemical_formula()} ({len(atoms)} atoms)"
        self.check_elements(atoms.numbers)
        pos = torch.as_tensor(atoms.positions, dtype=self.dtype, device=self.device)  # [N, 3]
        cell = torch.as_tensor(atoms.cell.array, dtype=self.dtype, device=self.device)  # [3, 3]
        check_finite(pos, cell, torch.tensor([len(atoms)]), lambda _: self._structure)
        cell = torch.as_tensor(atoms.cell.complete().array, dtype=self.dtype, device=self.device)  # [3, 3]
        pbc = [bool(p) for p in atoms.pbc]
        numbers = torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device)  # [N]
        edges = self.neighbors.edges(pos, cell, pbc, numbers)
        fixed = torch.zeros(len(atoms), dtype=torch.long, device=self.device)
        for constraint in atoms.constraints:
            if isinstance(constraint, FixAtoms):
                fixed[torch.as_tensor(constraint.index, device=self.device)] = 1
        data = Data(
            pos=pos,
            cell=cell.unsqueeze(0),  # [1, 3, 3]
            atomic_numbers=numbers,
            natoms=len(atoms),
            pbc=torch.tensor([pbc], device=self.device),  # [1, 3]
            tags=torch.as_tensor(atoms.get_tags(), dtype=torch.long, device=self.device),
            fixed=fixed,
            edge_index=edges.edge_index,
            cell_offsets=edges.cell_offsets,
        )
        return data_list_collater([data], otf_graph=False)

    def _denormalize(self, key: str, value: torch.Tensor, batch) -> torch.Tensor:
        """As fairchem's trainer: de-normalize, then add element references."""
        normalizers = self.potential.normalizers
        if key in normalizers:
            value = normalizers[key](value)
        elif key == "stress" and "energy" in normalizers:
            value = value * normalizers["energy"].rmsd.to(value.dtype)  # the derivative of the de-normalized energy
        if key in self.potential.elementrefs:
            value = self.potential.elementrefs[key](value, batch)
        return value

    def predict(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        """De-normalized model outputs for one structure: energy [1, 1], forces [N, 3], stress [1, 9]."""
        batch = self.to_batch(atoms)
        with torch.no_grad():
            out = self.model(batch)
        natoms = len(atoms)
        results = {}
        for key, spec in self.potential.outputs.items():
            if key not in out:
                continue
            value = out[key]
            if isinstance(value, dict):
                value = value[spec["property"]]
            value = value.view(natoms, -1) if spec.get("level") == "atom" else value.view(1, -1)
            results[key] = self._denormalize(key, value, batch).detach()
        if "stress" in out and "stress" not in results:
            results["stress"] = self._denormalize("stress", out["stress"].view(1, -1), batch).detach()
        return results

    def calculate(self, atoms: Atoms | None = None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        if "stress" in (properties or []) and not all(self.atoms.pbc):
            raise PropertyNotImplementedError("stress needs a cell periodic along all three axes")
        results = self.predict(self.atoms)
        energy = float(results["energy"].item())
        self.results = {"energy": energy, "free_energy": energy}
        if "forces" in results:
            self.results["forces"] = results["forces"].cpu().numpy().astype(np.float64)
        if "stress" in results and all(self.atoms.pbc):
            stress = results["stress"].view(3, 3).cpu().numpy().astype(np.float64)
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
