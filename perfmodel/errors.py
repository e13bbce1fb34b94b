"""User-facing errors: one line that names the field and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PerfModelError(Exception):
    """Any error caused by the user's input; the CLI prints it as one line and exits 2."""


class SpecError(PerfModelError, ValueError):
    """An input (scenario, spec file, plan) is invalid.

    Subclasses ValueError so that raising it inside a pydantic validator becomes a normal
    validation error carrying the field's location.
    """


def closest(given: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known ids closest to ``given`` (difflib ratio), best first."""
    known = list(known)
    hits = difflib.get_close_matches(given, known, n=n, cutoff=0.4)
    if not hits:
        hits = [k for k in known if given.lower() in k.lower()][:n]
    return hits


_LIST_COMMAND = {
    "model": "perfmodel models list",
    "device": "perfmodel hardware list",
    "interconnect": "perfmodel hardware list --interconnects",
    "node": "perfmodel hardware list --nodes",
}


def unknown_id(kind: str, given: str, known: Iterable[str]) -> SpecError:
    """An error for an id that is not in a registry, with the closest ids as suggestions."""
    known = sorted(known)
    hints = closest(given, known)
    hint = f"; did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""
    command = _LIST_COMMAND.get(kind)
    listing = f" (`{command}` lists all {len(known)})" if command else ""
    return SpecError(f"unknown {kind} {given!r}{hint}{listing}")
