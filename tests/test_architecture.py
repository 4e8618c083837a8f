"""The layout's promises: the model (core, graph, speed paths), the shared adapters, the checkpoint
loader and the MD tools run without fairchem; layers import only downwards (model < shared < tools <
hosts); a tool (data, md, workflows, bench, testing) never reaches a host package, by an import nor by
a module name written or built as a string, and gets what it needs from a host through ``tools_host``,
which the installed host fills; a host integration (``fairchem1``, ``fairchem2``) never imports the
package root, the other host or the legacy ``models`` names; one module, ``installed_host``, picks the
host to import; neither modules nor packages import each other in a circle; the message equation is
written once."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "leignn_plugin"

# what each layer may import from the project (besides itself) and from fairchem
# (``errors`` is a leaf of exception types every layer may raise)
ALLOWED = {
    "core": {"errors"},
    "graph": {"core", "errors"},  # the core's geometry constants (one coincident-atom threshold)
    "accel": {"core", "errors"},
    "adapters": {"core", "graph", "accel", "errors"},
    "checkpoints": {"core", "graph", "accel", "adapters", "errors"},
    "md": {"checkpoints", "core", "graph", "accel", "adapters", "data", "errors", "outputs", "console"},
}
HOSTS = ("fairchem1", "fairchem2")
TOOLS = ("data", "md", "workflows", "bench", "testing")
# what a tool may import from the project: the model, the shared parts, the other tools, the small
# root modules (errors, output files, command-line behaviour) and the host interface; fairchem itself
# is allowed to the tools that read its data formats or run its trainer
TOOL_MAY_IMPORT = {"core", "graph", "accel", "adapters", "checkpoints", *TOOLS, "errors", "outputs", "console",
                   "tools_host"}
# the legacy ``models`` names re-export the 1.10 host: importing them imports that host
LEGACY_HOST_ALIASES = {"models"}
HOST_MODULES = ("fairchem", "torch_geometric", "torch_scatter", "torch_sparse")
# a module name naming a host package in a string: ``leignn_plugin.fairchem2.harness``,
# ``f"leignn_plugin.fairchem{major}"``, ``leignn_plugin/models/...``, or a bare ``.fairchem1``
NAMES_A_HOST = re.compile(r"leignn_plugin[./](fairchem|models\b)|^\.?fairchem[12](\.\w+)*$")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: frozenset[str] = frozenset()) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (``from pkg import mod``
    counts as importing ``pkg.mod`` when that is one of ``modules``, else as importing ``pkg``)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], base]).strip(".")
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def project_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path, frozenset(modules)) if m in modules and m != name}
    return graph


def test_layers_import_only_what_they_may():
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0]
        if layer not in ALLOWED:
            continue
        for imported in imports_of(path):
            top = imported.split(".")[0]
            assert top not in HOST_MODULES, f"{path.relative_to(PACKAGE)} imports {imported}"
            if imported.startswith("leignn_plugin."):
                other = imported.split(".")[1]
                assert other == layer or other in ALLOWED[layer], f"{path.relative_to(PACKAGE)} imports {imported}"


def test_hosts_import_neither_the_root_nor_each_other():
    for host in HOSTS:
        for path in (PACKAGE / host).rglob("*.py"):
            for imported in imports_of(path, frozenset(project_graph())):
                where = f"{path.relative_to(PACKAGE)} imports {imported}"
                assert imported != "leignn_plugin", where
                if imported.startswith("leignn_plugin."):
                    other = imported.split(".")[1]
                    assert other not in LEGACY_HOST_ALIASES and other not in set(HOSTS) - {host}, where


def tool_files() -> list[Path]:
    return [path for tool in TOOLS for path in sorted((PACKAGE / tool).rglob("*.py"))]


def test_tools_import_no_host():
    """A tool imports the model, the shared parts, other tools and ``tools_host``: never a host package,
    the legacy names of one, the package root (which imports the installed host) or ``installed_host``."""
    modules = frozenset(project_graph())
    for path in tool_files():
        for imported in imports_of(path, modules):
            where = f"{path.relative_to(PACKAGE)} imports {imported}"
            assert imported != "leignn_plugin", where
            if imported.startswith("leignn_plugin."):
                assert imported.split(".")[1] in TOOL_MAY_IMPORT, where


def test_tools_name_no_host_module():
    """Nor by name: no string in a tool (a dotted path to build, an ``import_module`` argument, a module
    name built at run time, a docstring pointing there) names a host package."""
    for path in tool_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not NAMES_A_HOST.search(node.value), \
                    f"{path.relative_to(PACKAGE)}:{node.lineno} names a host: {node.value[:120]!r}"


def test_only_installed_host_imports_a_host():
    """Outside the hosts (and the legacy names of the 1.10 host), one module decides which host to import:
    ``installed_host``, by a table of the host packages; the package root asks it."""
    from leignn_plugin.installed_host import HOST_PACKAGES

    assert {int(h[-1]): f"leignn_plugin.{h}" for h in HOSTS} == HOST_PACKAGES
    for module, imported in project_graph().items():
        if package_of(module) in (*HOSTS, *LEGACY_HOST_ALIASES):
            continue
        hosts = {m for m in imported if package_of(m) in HOSTS}
        assert not hosts, f"{module} imports {sorted(hosts)}: only installed_host picks the host"


def test_the_installed_host_fills_the_tools_interface():
    from leignn_plugin.installed_host import HOST_PACKAGES, fairchem_major
    from leignn_plugin.tools_host import installed

    host = installed()
    assert host.major == fairchem_major()
    for builder in (host.atoms_batch, host.potential, host.leignn, *host.baselines.values()):
        assert builder.__module__.startswith(HOST_PACKAGES[host.major] + "."), builder


def package_of(module: str) -> str:
    """The package a module belongs to: its first component under ``leignn_plugin`` (the root's
    ``__init__`` is ``leignn_plugin``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_packages_import_each_other_without_a_cycle():
    """Between packages too: a loop such as root -> host -> root would not show between files."""
    packages: dict[str, set[str]] = {}
    for module, imported in project_graph().items():
        packages.setdefault(package_of(module), set()).update(package_of(m) for m in imported)
    for package, targets in packages.items():
        targets.discard(package)
    done: set[str] = set()

    def visit(package: str, path: list[str]) -> None:
        for nxt in sorted(packages.get(package, ())):
            assert nxt not in path, "package import cycle: " + " -> ".join([*path, nxt])
            if nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(package)

    for package in sorted(packages):
        visit(package, [package])


def test_no_import_cycles():
    graph = project_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_message_equation_is_written_once():
    """Only core/message.py multiplies the filter by phi(x_j) and forms a v_j + b n; the speed paths call it."""
    writers = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if "def filter_products" in text or "def vector_messages" in text or "addcmul" in text:
            writers.append(str(path.relative_to(PACKAGE)))
    assert writers == ["core/message.py"]


FAIRCHEM_ABSENT = """
import sys
for name in ("fairchem", "torch_geometric", "torch_scatter", "torch_sparse"):
    sys.modules[name] = None  # any import of them now fails
import torch
import leignn_plugin
from leignn_plugin.accel import accelerate
from leignn_plugin.core import AtomGraph, LEIGNNPotential
from leignn_plugin.graph import neighbor_graph
assert leignn_plugin.HOST_FAIRCHEM is None
from leignn_plugin.tools_host import NoHostError, installed, installed_or_none
assert installed_or_none() is None
try:
    installed()
    raise AssertionError("a tool found a host without fairchem")
except NoHostError:
    pass
pos = torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.0, 1.2, 0.3]], dtype=torch.float64)
cell, pbc, natoms = torch.zeros(1, 3, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.bool), torch.tensor([3])
graph = neighbor_graph(pos, cell, pbc, natoms, cutoff=4.0, max_neighbors=20)
inputs = AtomGraph(numbers=torch.tensor([8, 1, 1]), pos=pos, cell=cell, pbc=pbc, batch=torch.zeros(3, dtype=torch.long),
                   edge_index=graph.edge_index, cell_offsets=graph.cell_offsets)
model = LEIGNNPotential(hidden_channels=8, num_layers=2, num_rbf=8, cutoff=4.0, direct_forces=False).double()
plain = model(inputs)
fast = accelerate(model)(inputs)
assert torch.allclose(plain["forces"], fast["forces"], atol=1e-12)
assert not any(m.split(".")[0] in ("fairchem", "torch_geometric") for m in sys.modules if sys.modules[m] is not None)
print("ok", graph.num_edges)
"""


def test_core_graph_and_accel_run_without_fairchem():
    done = subprocess.run([sys.executable, "-c", FAIRCHEM_ABSENT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok 6")
