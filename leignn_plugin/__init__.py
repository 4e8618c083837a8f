"""leignn-plugin: the LEIGNN interatomic potential as a fairchem model.

The package is a plain PyTorch core (``core``), one neighbour search (``graph``), swappable speed
paths (``accel``) and one adapter per host: ``fairchem1`` (fairchem-core 1.10, the ``main.py`` line) and
``fairchem2`` (fairchem-core 2.x, ``fairchem -c``). Importing the package imports the installed host
(``installed_host.import_host``), which registers what that host can use, and only that: under
fairchem 1.x the model ``leignn``, the hydra backbone ``leignn_backbone`` and the heads
``leignn_energy_head``, ``leignn_force_head`` and ``leignn_conservative_head``; under fairchem 2.x the
backbone and heads of ``fairchem2.models``; under either, what the tools need (``tools_host``). Without
fairchem the core and the graph still import.
"""

from __future__ import annotations

__version__ = "0.1.0"


try:  # Ctrl-C during fairchem's import ends a leignn-* command with one line, and its noise is dropped (console.py)
    from leignn_plugin.console import quiet_host_import
    from leignn_plugin.installed_host import fairchem_major, import_host

    with quiet_host_import():
        HOST_FAIRCHEM = fairchem_major()
        _host = import_host()  # registers the host's names in fairchem's registry and with the tools

        if _host is None:
            __all__ = ["HOST_FAIRCHEM", "__version__"]
        else:
            globals().update({name: getattr(_host, name) for name in _host.__all__})
            __all__ = ["HOST_FAIRCHEM", "__version__", *_host.__all__]
        del _host
except KeyboardInterrupt:
    from leignn_plugin.console import interrupted_during_start_up

    interrupted_during_start_up()
    raise
