"""Files are written whole or not at all: into a temporary file beside the target, flushed to
disk, then renamed over it (rename(2) is atomic within one file system), so an interrupted
run never leaves a half-written profile, report or plot behind.

A target's missing folders are created (``--out runs/a/x.json`` makes ``runs/a``). A target
that cannot be written fails with :class:`OutputError`, a one-line user error naming the
user's path (never the hidden temporary) and why; :func:`check_writable` asks the same
question before a run, so that a command with several outputs refuses a bad one before it
computes or writes anything, and :func:`atomic_paths` writes several files all or none."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .errors import PerfModelError


class OutputError(PerfModelError, OSError):
    """An output file cannot be written where the user asked: the message names the user's
    path and the reason. An ``OSError`` too, for callers that catch those."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed over ``path`` when the
    block succeeds, removed otherwise. The file gets a new file's mode (0666 less the umask),
    not mkstemp's 0600. A folder, file system or permission that refuses the file raises
    :class:`OutputError` naming ``path``."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        _replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, OutputError) \
                and err.filename is not None and Path(err.filename) == tmp:
            raise _refusal(path, err) from err  # e.g. no space left while writing
        raise


@contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Temporary paths beside each of ``paths``, renamed over them only when the block
    succeeds and every one could be made: several outputs of one run are all written or none
    (a refused second output leaves no first one behind). Every target is checked
    (:func:`check_writable`) and every temporary made before the block runs; the renames come
    last, so only a folder changed under the run could stop one between two renames."""
    targets = [Path(p) for p in paths]
    for target in targets:
        check_writable(target)
    with ExitStack() as stack:
        temps = [stack.enter_context(_kept(t)) for t in targets]
        yield temps
        for tmp in temps:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, target in zip(temps, targets, strict=True):
            _replace(tmp, target)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_texts_atomic(texts: dict[str | Path, str]) -> list[Path]:
    """Write each ``{path: text}`` whole; all of them or, when one cannot be written, none."""
    with atomic_paths(*texts) as temps:
        for tmp, text in zip(temps, texts.values(), strict=True):
            tmp.write_text(text)
    return [Path(p) for p in texts]


def check_writable(path: str | Path) -> None:
    """Raise :class:`OutputError` naming ``path`` if it cannot be written as a file: it is a
    folder, a file stands where a folder of it should be, or the nearest existing folder does
    not accept a new file (permissions, a read-only or virtual file system such as /proc).
    Creates nothing that stays: a probe file is made and removed in that folder."""
    path = Path(path)
    if str(path).strip() == "":
        raise OutputError("an empty output path; give a file name")
    if path.is_dir():
        raise _refusal(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    folder = _existing_ancestor(path.parent)
    if not folder.is_dir():
        raise _refusal(path, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
    except OSError as err:
        raise _refusal(path, err) from err
    os.close(fd)
    os.unlink(probe)


def _temporary(path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _refusal(path, err) from err
    os.close(fd)
    return Path(tmp)


@contextmanager
def _kept(path: Path) -> Iterator[Path]:
    """A temporary beside ``path``, removed when the block ends (renamed away by then when
    it succeeded)."""
    tmp = _temporary(path)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as err:
        raise _refusal(path, err) from err


def _existing_ancestor(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _refusal(path: Path, err: OSError) -> OutputError:
    """The one-line reason ``path`` cannot be written, naming ``path`` (not a temporary)."""
    if path.is_dir() or err.errno == errno.EISDIR:
        why = "it is a directory; give a file path inside it"
    else:
        folder = _existing_ancestor(path.parent)
        if not folder.is_dir():
            why = f"{folder} is a file, not a directory"
        elif err.errno in (errno.EACCES, errno.EPERM):
            why = f"permission denied in {folder}"
        elif err.errno == errno.EROFS:
            why = f"{folder} is on a read-only file system"
        elif err.errno == errno.ENOSPC:
            why = f"no space left on the device of {folder}"
        else:
            why = f"{folder} does not accept new files ({err.strerror or err})"
    return OutputError(f"cannot write {path}: {why}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
