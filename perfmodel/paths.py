"""Where the data folders live: beside the package in a checkout, inside it in a wheel.

The repository keeps hardware_specs/, calibration/, validation/ and examples/ at its top
level (one source of truth); the wheel build copies them to ``perfmodel/_data/``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """The folder ``name`` (e.g. ``"hardware_specs"``) of the installed or checked-out project."""
    for candidate in (PACKAGE_DIR / "_data" / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"perfmodel data folder {name!r} not found in {PACKAGE_DIR / '_data'} or "
        f"{PACKAGE_DIR.parent}; reinstall perfmodel"
    )
