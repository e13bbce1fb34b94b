"""The aten operators a piece of PyTorch code runs, seen through the real dispatcher (a
TorchDispatchMode records every call that reaches it), for tests that check a framework fact
("this backward runs one cat") against torch itself."""

from __future__ import annotations

from collections.abc import Callable


def aten_calls(run: Callable[[], object]) -> list[str]:
    """The aten operators ``run()`` dispatches, in order (e.g. "aten.cat.default")."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls.append(str(func))
            return func(*args, **(kwargs or {}))

    with Log() as log:
        run()
    return log.calls
