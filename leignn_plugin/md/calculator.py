"""``LEIGNNCalculator``: an ASE calculator for a LEIGNN checkpoint of either host (a fairchem 1.10
``checkpoint.pt`` or a fairchem 2.x inference checkpoint), in either environment.

It runs the core potential that ``leignn_plugin.checkpoints.load_potential`` builds from the file (the
host's weights, EMA, normalizers and element references), so it gives the numbers ``main.py --mode
predict`` (1.10) and ``FAIRChemCalculator`` (2.x) give for the same frames, and it keeps a Verlet
neighbour list (``leignn_plugin.graph.VerletList``) between MD steps. Why not fairchem 1.10's
``OCPCalculator``: it builds a whole trainer for every calculator, rebuilds the graph from scratch at
every MD step, runs in float32 only and ignores the EMA weights ``main.py --mode predict`` uses.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from leignn_plugin.accel import chunk_size_for, compile_for_inference, set_edge_chunk_size
from leignn_plugin.checkpoints import LoadedPotential, load_potential
from leignn_plugin.core.inputs import AtomGraph
from leignn_plugin.graph import CloseAtoms, VerletList, check_elements, check_finite, check_min_distance

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
        checkpoint: path to a LEIGNN checkpoint: fairchem 1.10's ``checkpoint.pt`` / ``best_checkpoint.pt``
            or a fairchem 2.x inference checkpoint (read where fairchem-core 2.x is installed).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32`` (what the trainer uses) or ``float64`` (tighter energy conservation).
        skin: Verlet-list buffer in Å; the graph is rebuilt after an atom moved more than skin/2.
            ``0`` rebuilds at every call.
        use_ema: use the EMA weights when the checkpoint stores them (as ``main.py --mode predict`` and
            fairchem 2.x's predict unit do).
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
        _, e_scale = self.potential.scale("energy")
        f_shift, f_scale = self.potential.scale("forces")
        if not np.isclose(e_scale, f_scale, rtol=1e-6) or f_shift != 0.0:
            warnings.warn(
                f"{self.potential.path}: the forces normalizer (mean {f_shift:g}, rmsd {f_scale:g}) differs from "
                f"the energy rmsd {e_scale:g}, so the de-normalized forces are not -dE/dx of the de-normalized "
                "energy and total energy will drift in NVE; train with equal energy/forces rmsd and forces mean 0",
                stacklevel=3,
            )

    def check_elements(self, numbers) -> None:
        """Raise one clear line (``StructureError``) when the structure holds elements the model has no
        embedding for (``leignn_plugin.graph.check_elements``, the check every entry point uses)."""
        numbers = torch.as_tensor(np.asarray(numbers), dtype=torch.long)
        check_elements(numbers, torch.tensor([numbers.numel()]), self.num_elements, lambda _: self._structure,
                       f"the num_elements {self.potential.path.name} was built for")

    def to_graph(self, atoms: Atoms) -> AtomGraph:
        """The core's input for one structure, with the Verlet list's edges; a structure no potential
        should be asked about (``leignn_plugin.graph.sanity``) raises ``StructureError``."""
        self._structure = f"{atoms.get_chemical_formula()} ({len(atoms)} atoms)"
        self.check_elements(atoms.numbers)
        pos = torch.as_tensor(atoms.positions, dtype=self.dtype, device=self.device)  # [N, 3]
        cell = torch.as_tensor(atoms.cell.array, dtype=self.dtype, device=self.device)  # [3, 3]
        check_finite(pos, cell, torch.tensor([len(atoms)]), lambda _: self._structure)
        cell = torch.as_tensor(atoms.cell.complete().array, dtype=self.dtype, device=self.device)  # [3, 3]
        pbc = [bool(p) and self.potential.use_pbc for p in atoms.pbc]
        numbers = torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device)  # [N]
        edges = self.neighbors.edges(pos, cell, pbc, numbers)
        return AtomGraph(numbers=numbers, pos=pos, cell=cell.unsqueeze(0),  # cell [1, 3, 3]
                         pbc=torch.tensor([pbc], device=self.device),  # [1, 3]
                         batch=torch.zeros(len(atoms), dtype=torch.long, device=self.device),  # [N]
                         edge_index=edges.edge_index, cell_offsets=edges.cell_offsets)

    def predict(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        """Model outputs in physical units for one structure: energy [1, 1], forces [N, 3], stress [1, 9]."""
        graph = self.to_graph(atoms)
        with torch.no_grad():
            out = self.model(graph)
        results = {}
        for key, value in out.items():
            value = value.view(len(atoms), -1) if key == "forces" else value.view(1, -1)
            results[key] = self.potential.denormalize(key, value, graph.numbers, graph.batch).detach()
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
