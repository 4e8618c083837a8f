"""leignn-plugin: the LEIGNN interatomic potential as a fairchem model.

The package is a plain PyTorch core (``core``), one neighbour search (``graph``), swappable speed
paths (``accel``) and one adapter per host: ``fairchem1`` (fairchem-core 1.10, the ``main.py`` line) and
``fairchem2`` (fairchem-core 2.x, ``fairchem -c``). Importing the package registers what the installed
host can use, and only that: under fairchem 1.x the model ``leignn``, the hydra backbone
``leignn_backbone`` and the heads ``leignn_energy_head``, ``leignn_force_head`` and
``leignn_conservative_head``; under fairchem 2.x the backbone and heads of ``fairchem2.models``. Without
fairchem the core and the graph still import.
"""

from __future__ import annotations

__version__ = "0.1.0"


try:  # Ctrl-C during fairchem's import ends a leignn-* command with one line, and its noise is dropped (console.py)
    from leignn_plugin.console import quiet_host_import
    from leignn_plugin.installed_host import fairchem_major

    with quiet_host_import():
        HOST_FAIRCHEM = fairchem_major()

        if HOST_FAIRCHEM == 1:
            from leignn_plugin import fairchem1  # registers the names in fairchem's registry

            globals().update({name: getattr(fairchem1, name) for name in fairchem1.__all__})
            __all__ = ["HOST_FAIRCHEM", "__version__", *fairchem1.__all__]
        elif HOST_FAIRCHEM == 2:
            from leignn_plugin import fairchem2  # registers the short names in fairchem 2.x's registry

            globals().update({name: getattr(fairchem2, name) for name in fairchem2.__all__})
            __all__ = ["HOST_FAIRCHEM", "__version__", *fairchem2.__all__]
        else:
            __all__ = ["HOST_FAIRCHEM", "__version__"]
except KeyboardInterrupt:
    from leignn_plugin.console import interrupted_during_start_up

    interrupted_during_start_up()
    raise
