"""User-facing errors: one line that names the field and what would be valid."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: A quoted user value longer than this is shortened in messages ("abc..."); so is an
#: unquoted run without spaces longer than ``MAX_WORD`` (a key, a path segment, a number).
MAX_VALUE = 80
MAX_WORD = 200
#: A message longer than this (e.g. many problems at once) is cut, saying so.
MAX_MESSAGE = 2000
_LONG_QUOTED = re.compile(rf"'[^'\n]{{{MAX_VALUE - 1},}}'|\"[^\"\n]{{{MAX_VALUE - 1},}}\"")
_LONG_WORD = re.compile(rf"(?<![^\s'\":;,])[^\s'\":;,]{{{MAX_WORD + 1},}}")  # at a run's start


def shorten(value: object, limit: int = MAX_VALUE) -> str:
    """``value`` as text of at most about ``limit`` characters: its head and "..." when
    longer. For quoting user data in a message, which must stay one readable line."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:max(limit - 3, 1)] + "..."


def clip_message(message: str) -> str:
    """A message with long quoted values and long unbroken runs shortened, cut at
    ``MAX_MESSAGE`` characters: no message echoes unbounded user data."""
    if len(message) <= MAX_VALUE:
        return message
    message = _LONG_QUOTED.sub(lambda m: m[0][0] + shorten(m[0][1:-1]) + m[0][-1], message)
    message = _LONG_WORD.sub(lambda m: shorten(m[0], MAX_WORD), message)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 30] + "... (message cut)"
    return message


class PerfModelError(Exception):
    """Any error caused by the user's input; the CLI prints it as one line and exits 2.

    A message is clipped on the way in (:func:`clip_message`): a 1 MB value quoted back from
    a file or a flag shows as its first ~80 characters.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (clip_message(args[0]),)
        super().__init__(*args)


class SpecError(PerfModelError, ValueError):
    """An input (scenario, spec file, plan) is invalid.

    Subclasses ValueError so that raising it inside a pydantic validator becomes a normal
    validation error carrying the field's location.
    """


class DoesNotFitError(SpecError):
    """The weights and the KV cache of one request do not fit in the devices' memory: more
    GPUs per instance, or larger devices, are what help (plan-serving's headline reads it)."""


#: How many ids of one family (``h100`` -> the four ``h100-*`` devices) a hint may list.
MAX_FAMILY = 6


def _plain(text: str) -> str:
    """``text`` lower-cased without separators: ``llama3-8b`` and ``llama-3-8b`` are the same."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def closest(given: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known ids (or field names) a user most likely meant by ``given``, best first: the
    one suggestion rule of every "did you mean" (devices, models, engines, frameworks,
    fields). First the same id up to case and separators (``llama3-8b`` -> ``llama-3-8b``),
    then ids that start with ``given`` (``h100`` -> every ``h100-*`` device, up to
    ``MAX_FAMILY``; ``rate`` -> ``rate_per_s``), then ids of its family (same first token:
    ``h100-80gb`` -> the ``h100-*`` ids, ``gpu_mem_util`` -> ``gpu_memory_utilization``,
    closest first) and ids containing it (``4090`` -> ``rtx-4090``); only when none of
    these exists, the closest by edit similarity (difflib ratio >= 0.4). Family and contained
    ids are offered only when no id equals or starts with ``given``."""
    import difflib  # here, not at import: only a message needs it (~1 ms of a command's start)

    known = list(dict.fromkeys(str(k) for k in known))
    if len(given) > MAX_WORD:  # no id is this long (and difflib would take a while)
        return []
    plain, tokens = _plain(given), _tokens(given)
    if not plain:
        return []

    def similarity(k: str) -> float:
        return difflib.SequenceMatcher(None, given.lower(), k.lower()).ratio()

    exact = [k for k in known if _plain(k) == plain]
    prefix = sorted((k for k in known if _plain(k).startswith(plain) and k not in exact),
                    key=similarity, reverse=True)
    family = sorted((k for k in known if tokens and _tokens(k)[:1] == tokens[:1]
                     and k not in exact + prefix), key=similarity, reverse=True)
    inside = [k for k in known if len(plain) >= 3 and plain in _plain(k)
              and k not in exact + prefix + family]
    if exact + prefix:  # what was typed is (the start of) these: nothing else is likelier
        return (exact + prefix)[:max(n, MAX_FAMILY)]
    hits = exact + prefix + family + inside
    if hits:
        return hits[:n]
    lower = {k.lower(): k for k in reversed(known)}  # case-blind, the first spelling kept
    return [lower[k] for k in difflib.get_close_matches(given.lower(), list(lower), n=n,
                                                         cutoff=0.4)]


_INVALID_CHOICE = re.compile(r"invalid choice: '?([^'(]*?)'? \(choose from (.*)\)$")


def choice_hint(message: str) -> str:
    """For argparse's "invalid choice: 'x' (choose from 'a', 'b')": "; did you mean 'a'?" by
    the same rule as every other suggestion ("" for any other message)."""
    match = _INVALID_CHOICE.search(message)
    if not match:
        return ""
    choices = [c.strip().strip("'\"") for c in match[2].split(",")]
    hints = closest(match[1], choices)
    return f"; did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""


_LIST_COMMAND = {
    "model": "perfmodel models list",
    "device": "perfmodel hardware list",
    "interconnect": "perfmodel hardware list --interconnects",
    "node": "perfmodel hardware list --nodes",
    "hardware id": "perfmodel hardware list [--interconnects | --nodes]",
}


# what else a field of this kind accepts besides an id (zoo.resolve_model)
_ALSO_ACCEPTED = {"model": "a path to a HuggingFace config.json (or its folder) is accepted too"}


def unknown_id(kind: str, given: str, known: Iterable[str]) -> SpecError:
    """An error for an id that is not in a registry, with the closest ids as suggestions."""
    known = sorted(known)
    hints = closest(given, known)
    hint = f"; did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""
    command = _LIST_COMMAND.get(kind)
    listing = f" (`{command}` lists all {len(known)})" if command else ""
    also = f"; {_ALSO_ACCEPTED[kind]}" if kind in _ALSO_ACCEPTED else ""
    return SpecError(f"unknown {kind} {given!r}{hint}{listing}{also}")
