"""CPU cost of one eager-mode kernel call through the real torch dispatcher (frameworks/*.yaml
``dispatch``): the host time PyTorch spends per operator before a kernel is queued.

In eager mode every operator passes Python -> torch's C++ dispatcher -> autograd (recording the
backward node) -> the backend kernel; on a GPU the backend part is a cudaLaunchKernel that returns
at once, so the host cost per kernel is this dispatch time plus the launch call. The GPU hides it
while each kernel runs longer than the host needs to issue the next one (the host runs ahead);
when kernels are shorter the GPU waits for the host.

What is measured, on this machine's CPU with torch on tensors of one element (so the CPU kernel
itself is negligible):

* ``forward_s``: one ``torch.add`` / ``torch.mul`` on tensors that require grad (dispatch +
  autograd recording), median over repeats of a loop of 20,000 calls;
* ``backward_s``: one autograd node of a chain of N such ops during ``backward()``, C++ only;
* ``module_s``: the extra Python cost of an ``nn.Module.__call__`` wrapping one op (hooks,
  FSDP2 / checkpoint wrappers add more on top).

Run: ``.venv/bin/python benchmarks/framework_dispatch.py`` (prints YAML to paste under
``dispatch.measured`` in frameworks/_common.yaml with the date, CPU and torch version).
"""

from __future__ import annotations

import platform
import statistics
import time


def _median_per_call(fn, calls: int, repeats: int = 7) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(calls)
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def measure(calls: int = 20_000) -> dict:
    import torch

    torch.set_num_threads(1)
    x = torch.ones(1, requires_grad=True)
    y = torch.ones(1, requires_grad=True)

    def forward(n: int) -> None:
        for _ in range(n):
            torch.add(x, y)

    c = torch.ones(1)  # no grad: the add's backward passes the gradient through

    def backward(n: int) -> None:
        z = x
        for _ in range(n):
            z = torch.add(z, c)
        t0 = time.perf_counter()
        z.sum().backward()
        backward.elapsed = time.perf_counter() - t0  # type: ignore[attr-defined]

    class Add(torch.nn.Module):
        def forward(self, a, b):
            return torch.add(a, b)

    mod = Add()

    def module(n: int) -> None:
        for _ in range(n):
            mod(x, y)

    forward(1000)  # warm up
    fwd = _median_per_call(forward, calls)
    bwd_samples = []
    for _ in range(7):
        backward(calls)
        bwd_samples.append(backward.elapsed / calls)  # type: ignore[attr-defined]
    mod_s = _median_per_call(module, calls) - fwd
    return {
        "forward_s": round(fwd, 9),
        "backward_s": round(statistics.median(bwd_samples), 9),
        "module_s": round(max(mod_s, 0.0), 9),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key}: {value}")
