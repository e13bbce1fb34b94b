"""`perfmodel calibrate`: measure this machine, then fit a calibration profile.

Measurement half: ``timing`` (one repetition loop for CPU and CUDA), ``device_info`` (NVML and
CPU facts), ``benchmarks`` (GEMM, memory, attention, elementwise, launch sweeps), ``collectives``
(torch.distributed), ``raw`` (the resumable JSON Lines store), ``cli``. Fitting half: ``fit``,
``report``. torch is an optional extra and is imported only inside this package, only when a
measurement runs (``import_torch``), so fitting published tables works without it.
"""

from __future__ import annotations

from ..errors import PerfModelError


def import_torch():
    """torch, or a one-line error telling the user how to install it."""
    try:
        import torch
    except ImportError:
        raise PerfModelError(
            "calibration measurements need PyTorch: install perfmodel[calibrate] "
            "(pip install 'perfmodel[calibrate]')"
        ) from None
    return torch
