"""Argument types of every ``perfmodel`` command: one place where a flag's text becomes a value
or a one-line error that says what is valid (issue 12).

Each function is an argparse ``type=``: it takes the flag's text and returns the value, or
raises ``argparse.ArgumentTypeError`` with a message that argparse prefixes with the flag's
name (``argument --rate: 0 is not a positive number``). Numbers are finite and bounded, so a
typo such as ``--num-requests 1e9`` or ``--rate nan`` is refused before anything runs. This
module imports nothing beyond the standard library: ``perfmodel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

__all__ = [
    "address",
    "api_keyword",
    "bounded_int",
    "fraction",
    "id_list",
    "image_path",
    "int_list",
    "nonnegative_float",
    "nonnegative_int",
    "png_path",
    "port",
    "positive_float",
    "positive_int",
    "seed",
    "shown",
]

Invalid = argparse.ArgumentTypeError

# bounds that no real run reaches, but that keep a typo from hanging or overflowing
MAX_COUNT = 10**9
MAX_SECONDS = 10**9
MAX_RATE = 10**9
_SHOWN = 40  # characters of a bad value echoed back in a message


def shown(text: str) -> str:
    """The user's text as a message shows it: quoted, and cut if long."""
    text = str(text)
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


_DECIMAL = re.compile(r"[+-]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def api_keyword(name: str) -> str:
    """How the Python API names an input in a message: its keyword argument, ``devices=``
    (the commands name it by its flag, ``--devices``: ``serving.cli.cli_flag``,
    ``planning.training.cli_flag``)."""
    return f"{name}="


def _int(text: str) -> int:
    """A whole number written in digits (``1_000`` too). A decimal or exponent form is refused
    (a typo such as ``--num-requests 1e9`` must not start a huge run), saying why: ``1e9``
    names the number in digits to give instead, ``1.5`` has a fractional part."""
    t = str(text).strip()
    if re.fullmatch(r"[+-]?\d[\d_]*", t):
        return int(t)
    if _DECIMAL.fullmatch(t):
        from decimal import Decimal  # exact: 1e9 is whole, 1.0000000000000001 is not

        value = Decimal(t.replace("_", ""))
        if value != value.to_integral_value():
            raise Invalid(f"{shown(text)} is not a whole number (it has a fractional part)")
        if value.adjusted() > 18:  # not expanded to its digits
            raise Invalid(f"{shown(text)} is a whole number written as a decimal or with an "
                          "exponent, and far too large")
        raise Invalid(f"{shown(text)} is a whole number written as a decimal or with an "
                      f"exponent; give it in digits ({int(value)})")
    raise Invalid(f"{shown(text)} is not a whole number")


def _float(text: str) -> float:
    t = str(text).strip()
    try:
        value = float(t)
    except ValueError:
        raise Invalid(f"{shown(text)} is not a number") from None
    if not math.isfinite(value):
        raise Invalid(f"{shown(text)} is not a finite number")
    return value


def bounded_int(lo: int, hi: int, what: str = "a whole number") -> Callable[[str], int]:
    """An integer in [lo, hi]."""

    def parse(text: str) -> int:
        v = _int(text)
        return _checked(v, text, lo <= v <= hi, f"{what} from {lo:,} to {hi:,}")

    parse.__name__ = f"int_{lo}_{hi}"
    return parse


def _checked(value, text: str, ok: bool, what: str):
    """``value`` if ``ok``, else the one-line error: the user's text "is not" ``what``."""
    if not ok:
        raise Invalid(f"{shown(text)} is not {what}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (at most 10^9)."""
    v = _int(text)
    return _checked(v, text, 1 <= v <= MAX_COUNT,
                    f"a positive whole number (1 to {MAX_COUNT:,})")


def nonnegative_int(text: str) -> int:
    """A whole number >= 0 (at most 10^9)."""
    v = _int(text)
    return _checked(v, text, 0 <= v <= MAX_COUNT, f"a whole number from 0 to {MAX_COUNT:,}")


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2^32 - 1 (numpy's legacy range)."""
    v = _int(text)
    return _checked(v, text, 0 <= v < 2**32, f"a seed (a whole number from 0 to {2**32 - 1})")


def positive_float(text: str) -> float:
    """A finite number > 0 (at most 10^9)."""
    v = _float(text)
    return _checked(v, text, 0 < v <= MAX_RATE,
                    f"a positive number (above 0, at most {MAX_RATE:g})")


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (at most 10^9)."""
    v = _float(text)
    return _checked(v, text, 0 <= v <= MAX_SECONDS, f"a number from 0 to {MAX_SECONDS:g}")


def fraction(text: str) -> float:
    """A number from 0 to 1."""
    v = _float(text)
    return _checked(v, text, 0 <= v <= 1, "a fraction from 0 to 1")


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive whole numbers, e.g. ``1,2,4,8`` (duplicates dropped)."""
    items = [s.strip() for s in str(text).split(",")]
    if not items or any(not s for s in items):
        raise Invalid(f"{shown(text)} is not a comma-separated list of whole numbers, "
                      "e.g. 1,2,4,8")
    out: list[int] = []
    for item in items:
        try:
            value = positive_int(item)
        except Invalid as err:  # its reason, saying where in the list
            where = f" in {shown(text)}" if len(items) > 1 else ""
            raise Invalid(str(err).replace(shown(item), shown(item) + where, 1)) from None
        if value not in out:
            out.append(value)
    return tuple(out)


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def id_list(text: str) -> list[str]:
    """Comma-separated ids (letters, digits, ``.``, ``_``, ``-``), e.g. ``h100-sxm5-80gb,b200``."""
    items = [s.strip() for s in str(text).split(",")]
    if any(not s for s in items):
        raise Invalid(f"{shown(text)} is not a comma-separated list of ids, "
                      "e.g. h100-sxm5-80gb,b200")
    for item in items:
        if not _ID.fullmatch(item) or len(item) > 100:
            raise Invalid(f"{shown(item)} is not an id (letters, digits, '.', '_', '-')")
    return list(dict.fromkeys(items))


def port(text: str) -> int:
    """A TCP port: 1 to 65535."""
    value = _int(text)
    if not 1 <= value <= 65535:
        raise Invalid(f"{shown(text)} is not a TCP port (1 to 65535)")
    return value


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def address(text: str) -> str:
    """An address to bind: an IPv4 / IPv6 address or a host name (e.g. 127.0.0.1, 0.0.0.0,
    ::1, localhost)."""
    import ipaddress  # here: ~1 ms of every CLI process's imports for one option

    t = str(text).strip()
    try:
        return str(ipaddress.ip_address(t))
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(t) and not re.fullmatch(r"[\d.]+", t):
        return t
    raise Invalid(f"{shown(text)} is not an IP address or host name "
                  "(e.g. 127.0.0.1, 0.0.0.0, ::1, localhost)")


IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


def image_path(text: str) -> str:
    """A path to write a figure to, ending in .png, .svg or .pdf."""
    t = str(text)
    if not t.strip():
        raise Invalid("an empty path; give a file such as report.png")
    if not t.lower().endswith(IMAGE_SUFFIXES):
        raise Invalid(f"{shown(text)} does not end in {', '.join(IMAGE_SUFFIXES)}")
    return t


def png_path(text: str) -> str:
    """A path to write a PNG figure to."""
    t = image_path(text)
    if not t.lower().endswith(".png"):
        raise Invalid(f"{shown(text)} does not end in .png (the report is a PNG image)")
    return t
