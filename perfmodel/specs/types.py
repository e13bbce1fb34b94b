"""Strict scalar types and the documented upper bounds of every count in a spec.

pydantic's lax mode takes ``true`` as 1, 2.0 as 2, "768" as 768 and "false" as True. The
types here take only values of their own JSON/YAML type (numpy scalars too: sweeps build specs
from arrays), so a wrong type is one line naming the field, the expected type and what was
given. Floats are also finite: ``common.Strict`` sets ``allow_inf_nan=False``.

Bounds: a count far above any real run is a typo (a global batch of 10**30), not a plan. The
limits (docs/modelling.md, "Input bounds") sit orders of magnitude above the largest published
runs, so no real input meets them.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Annotated, Any

from pydantic import BeforeValidator

from ..errors import SpecError

SHOW_CHARS = 40  # an error message quotes at most this much of a bad value

# ---- documented upper bounds ---------------------------------------------------------------
MAX_GPUS = 10**6  # system.num_gpus and every parallel degree (largest clusters: ~10**5)
MAX_GPUS_PER_NODE = 4096  # one node / scale-up domain (NVL72: 72, NVL576: 576)
MAX_NICS_PER_NODE = 1024
MAX_TOKENS = 10**8  # a sequence, prompt, output, chunk or context (longest: ~10**7)
MAX_BATCH = 10**8  # sequences in a global batch, micro-batch or inference batch
MAX_REQUESTS = 10**7  # requests in one serving simulation
MAX_LAYERS = 10**5  # model depth (deepest published: ~10**2)
MAX_WIDTH = 10**8  # hidden / FFN widths, head dims, vocabulary, heads, experts, ranks
MAX_SEED = 2**63 - 1


def show(value: Any) -> str:
    """A bad value for an error message: its text (cut to SHOW_CHARS) and its type."""
    kinds = {bool: "a boolean", str: "a string", float: "a float",
             int: "an integer", list: "a list", dict: "a mapping", type(None): "null"}
    text = "true" if value is True else "false" if value is False else repr(value)
    if len(text) > SHOW_CHARS:
        text = text[:SHOW_CHARS] + "..."
    return f"{text} ({kinds.get(type(value), 'a ' + type(value).__name__)})"


def _is_bool(value: Any) -> bool:
    """A Python or numpy bool (numpy is not imported here: the CLI's listings run without it)."""
    kind = type(value)
    return isinstance(value, bool) or (kind.__module__ == "numpy" and "bool" in kind.__name__)


def require_int(value: Any) -> int:
    """An integer (a Python or numpy int; a float, bool or string is an error)."""
    if _is_bool(value) or not isinstance(value, Integral):
        raise SpecError(f"must be an integer, got {show(value)}")
    return int(value)


def require_number(value: Any) -> float:
    """A number (int or float; a bool or string is an error)."""
    if _is_bool(value) or not isinstance(value, Real):
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = " (write it unquoted; YAML reads 1e-3 as text, 1.0e-3 as a number)"
            except ValueError:
                pass
        raise SpecError(f"must be a number, got {show(value)}{hint}")
    return value if isinstance(value, (int, float)) else float(value)


def require_bool(value: Any) -> bool:
    """true or false (0, 1, "false" are errors)."""
    if not _is_bool(value):
        raise SpecError(f"must be true or false, got {show(value)}")
    return bool(value)


Int = Annotated[int, BeforeValidator(require_int)]
Float = Annotated[float, BeforeValidator(require_number)]
Bool = Annotated[bool, BeforeValidator(require_bool)]
