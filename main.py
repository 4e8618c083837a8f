"""Train, validate, predict or relax with fairchem, with LEIGNN registered.

Usage is fairchem's own: ``python main.py --mode train --config-yml configs/oc20/leignn.yml``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from leignn_plugin.fairchem1.cli import main
    except ImportError as err:
        print(f"leignn: error: broken install: cannot import {err.name or err} ({err}); run `make install`",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
