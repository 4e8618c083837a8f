"""What to do when the project's dependencies do not import: the fix that exists for this checkout.

Standard library only, and loaded by ``main.py`` straight from its file (not through the package,
whose ``__init__`` may be what fails), so that a broken install still gets one line naming a fix.
The usual cause is running ``python main.py`` or a ``leignn-*`` command outside the venv that
``make install`` made; ``make install`` itself does nothing once its stamp file exists, so a venv that
is present but incomplete needs the stamp removed first.
"""

from __future__ import annotations

import sys
from pathlib import Path

STAMP = ".leignn-installed"  # written by the Makefile when `make install` finished


def install_hint(repo: Path) -> str:
    """The command that repairs the install of the checkout at ``repo`` for this interpreter."""
    venv = repo / ".venv"
    if not (venv / "bin" / "python").exists():
        return "run `make install`, then `source .venv/bin/activate`"
    if Path(sys.prefix).resolve() != venv.resolve():
        return (f"this Python ({sys.executable}) is not the project's venv: run `source .venv/bin/activate` "
                "first (or call .venv/bin/python)")
    if not (venv / STAMP).exists():
        return "the venv is incomplete: run `make install`"
    return f"the venv is incomplete: run `rm .venv/{STAMP} && make install`"


def broken_install(err: ImportError, repo: Path) -> str:
    """The one-line message for an import that failed because of the install."""
    return f"broken install: cannot import {err.name or err} ({err}); {install_hint(repo)}"
