"""Train, validate, predict or relax with fairchem, with LEIGNN registered.

Usage is fairchem's own: ``python main.py --mode train --config-yml configs/oc20/leignn.yml``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent


def broken_install(err: ImportError) -> str:
    """One line naming the fix, from ``leignn_plugin/install_hint.py`` loaded by path (the package's
    ``__init__`` may be what fails to import)."""
    path = REPO / "leignn_plugin" / "install_hint.py"
    spec = importlib.util.spec_from_file_location("leignn_install_hint", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.broken_install(err, REPO)


if __name__ == "__main__":
    try:
        from leignn_plugin.fairchem1.cli import main
    except ImportError as err:
        print(f"leignn: error: {broken_install(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C while fairchem imports: nothing started, nothing written
        print("leignn: interrupted during start-up", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
