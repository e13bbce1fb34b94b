"""A one-line progress bar for the measurement loops (kernels in ``cli``, collectives)."""

from __future__ import annotations

import sys
import time
from collections import Counter


class Progress:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, stream=None, width: int = 24) -> None:
        self.label, self.total, self.width = label, total, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done, self.counts, self.t0 = 0, Counter(), time.monotonic()
        self._last_tenth = -1
        if total:
            self._draw()

    def step(self, record: dict | None = None, skipped: bool = False) -> None:
        self.done += 1
        self.counts["skipped" if skipped else (record or {}).get("status", "ok")] += 1
        self._draw()

    def _draw(self) -> None:
        frac = self.done / self.total if self.total else 1.0
        tenth = int(frac * 10)
        if not self.tty and tenth == self._last_tenth and self.done < self.total:
            return
        self._last_tenth = tenth
        fill = int(frac * self.width)
        elapsed = time.monotonic() - self.t0
        counts = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        line = (f"{self.label:<11} {self.done:>4}/{self.total:<4} "
                f"[{'#' * fill}{'.' * (self.width - fill)}] {elapsed:6.1f}s {counts}")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()
