"""Single-device microbenchmarks: GEMM, memory bandwidth, SDPA attention, memory-bound kernels,
kernel launch overhead. The same code runs on a CPU and a GPU; only ``Context`` asks which.

``plan`` turns data/sweeps.yaml into points; ``run_point`` builds one point's tensors, times it
with ``timing.measure`` and returns its raw record (``raw.point_record``). A point that does
not fit in memory is recorded ``oom``, one the device or PyTorch cannot run (a dtype, an SDPA
backend) ``unsupported``, anything else ``error``; none of them stops the run.
"""

from __future__ import annotations

import gc
import math
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cache
from itertools import product

from ..errors import PerfModelError
from ..paths import data_dir
from ..specs.registry import read_yaml
from . import import_torch
from .device_info import Nvml, cpu_facts, gpu_facts, match_device
from .raw import point_key, point_record
from .timing import FULL, QUICK, CacheFlusher, StopRule, make_clock, measure

KERNEL_BENCHES = ("launch", "memory", "elementwise", "gemm", "attention")  # run order
TORCH_DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16",
                "fp8": "float8_e4m3fn"}
SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
# Phrases of torch errors that mean "this device / build cannot run it" rather than a bug.
# Shape restrictions of a device kernel (fp8 GEMMs want dimensions divisible by 16) count too.
UNSUPPORTED_PHRASES = ("not supported", "only supported", "unsupported", "not implemented",
                       "no available kernel", "no viable backend", "does not support",
                       "requires compute capability", "divisible by")
OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory")


@cache
def sweeps() -> dict:
    return read_yaml(data_dir("calibration") / "sweeps.yaml")


@dataclass(frozen=True)
class Point:
    bench: str
    params: dict = field(hash=False)

    @property
    def key(self) -> str:
        return point_key(self.bench, self.params)


class Context:
    """The device, its clock, cache flusher and stopping rule, shared by every point."""

    def __init__(self, device: str, quick: bool, local_rank: int = 0,
                 rule: StopRule | None = None) -> None:
        torch = import_torch()
        self.torch, self.kind, self.quick = torch, device, quick
        self.mode = "quick" if quick else "full"
        self.rule = rule or (QUICK if quick else FULL)
        torch.manual_seed(0)
        if device == "cuda":  # the GPU-only facts
            if not torch.cuda.is_available():
                raise PerfModelError("--device cuda: torch.cuda.is_available() is False (no GPU "
                                     "or a CPU-only torch build); use --device cpu")
            torch.cuda.set_device(local_rank)
            props = torch.cuda.get_device_properties(local_rank)
            uuid = str(getattr(props, "uuid", "") or "")  # NVML spells it "GPU-<uuid>"
            nvml = gpu_facts(local_rank, uuid if uuid[:4] in ("GPU-", "MIG-", "")
                             else f"GPU-{uuid}")
            self.dev = f"cuda:{local_rank}"
            self.name, self.vendor = props.name, "NVIDIA"
            self.memory_bytes, self.cache_bytes = props.total_memory, props.L2_cache_size
            flush_bytes = props.L2_cache_size
            self.facts = {"torch": {"name": props.name, "capability": f"{props.major}.{props.minor}",
                                    "sm_count": props.multi_processor_count,
                                    "l2_bytes": props.L2_cache_size,
                                    "memory_bytes": props.total_memory,
                                    "cuda": torch.version.cuda}, "nvml": nvml}
            self.device_id = nvml.get("device_id") or match_device(props.name, props.total_memory)
        else:
            facts = cpu_facts()
            caches = facts["caches_bytes"] or {"L2": 4 << 20}
            self.dev, self.name = "cpu", facts["model_name"] or "cpu"
            self.vendor = facts.get("vendor") or "host"
            self.memory_bytes = facts["memory_total_bytes"] or 8 << 30
            self.cache_bytes = max(caches.values())
            flush_bytes = caches.get("L2", max(caches.values()))
            self.facts, self.device_id = {"cpu": facts}, None
        self.clock = make_clock(torch, device)
        self.flush = CacheFlusher(torch, self.dev, flush_bytes)
        self._buffers: dict[str, object] = {}

    def sweep(self, bench: str) -> dict:
        return sweeps()[bench][self.kind][self.mode]

    def meta(self) -> dict:
        """Header facts for the raw file (the identity fields decide whether a resume is safe)."""
        import platform

        from .. import __version__

        return {"device": self.kind, "device_id": self.device_id, "name": self.name,
                "vendor": self.vendor, "memory_gb": round(self.memory_bytes / 1e9, 2),
                "threads": self.torch.get_num_threads(), "quick": self.quick,
                "torch_version": self.torch.__version__, "perfmodel_version": __version__,
                "python": platform.python_version(), "platform": platform.platform(),
                "flush_bytes": self.flush.nbytes, "timing": vars(self.rule).copy(),
                "facts": self.facts}

    def sampler(self) -> Callable[[], dict]:
        """What to sample during the run: NVML on a GPU, the CPU frequency otherwise."""
        from .device_info import cpu_sampler, gpu_sampler

        if self.kind == "cuda":
            nvml = Nvml()
            if nvml.ok:
                uuid = self.facts["nvml"].get("uuid")
                return gpu_sampler(nvml, nvml.handle(self.torch.cuda.current_device(), uuid))
            return dict
        return cpu_sampler()

    def buffer(self, name: str, nbytes: int):
        """A reusable zeroed byte buffer, touched once (page faults stay out of the timing)."""
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < nbytes:
            self._buffers.pop(name, None)
            buf = self.torch.zeros(nbytes, dtype=self.torch.uint8, device=self.dev)
            self._buffers[name] = buf
        return buf

    def release(self) -> None:
        self._buffers.clear()
        gc.collect()
        if self.kind == "cuda":
            self.torch.cuda.empty_cache()

    def dtype(self, name: str):
        return getattr(self.torch, TORCH_DTYPES[name])

    def randn(self, *shape, dtype: str = "fp32"):
        t = self.torch
        if dtype == "fp8":
            return t.randn(*shape, device=self.dev, dtype=t.bfloat16).to(self.dtype("fp8"))
        return t.randn(*shape, device=self.dev, dtype=self.dtype(dtype))


# ---- planning ----------------------------------------------------------------------------------
def _under(gflop: float, cap) -> bool:
    return cap is None or gflop <= cap


def plan_gemm(ctx: Context) -> list[Point]:
    cfg = ctx.sweep("gemm")
    shapes = list(product(cfg["m"], cfg["n"], cfg["k"])) + [tuple(s) for s in cfg["extra"]]
    shapes = list(dict.fromkeys(shapes))
    return [Point("gemm", {"dtype": d, "m": m, "n": n, "k": k})
            for d in cfg["dtypes"] for m, n, k in shapes
            if _under(2.0 * m * n * k / 1e9, cfg["max_gflop"])]


def memory_sizes(cfg: dict, cache_bytes: int, memory_bytes: int) -> list[int]:
    """Bytes moved per point: ``min_bytes`` x step^i until the first size beyond
    ``beyond_cache`` x the largest cache, bounded by a fraction of the memory."""
    target = cfg["beyond_cache"] * cache_bytes
    cap = cfg["max_fraction_of_memory"] * memory_bytes
    sizes, s = [], int(cfg["min_bytes"])
    while s <= cap:
        sizes.append(s)
        if s >= target:
            break
        s *= cfg["step"]
    return sizes


def plan_memory(ctx: Context) -> list[Point]:
    cfg = ctx.sweep("memory")
    sizes = memory_sizes(cfg, ctx.cache_bytes, ctx.memory_bytes)
    return [Point("memory", {"op": op, "bytes": b}) for op in cfg["ops"] for b in sizes]


def attention_gflop(p: dict) -> float:
    """Forward FLOPs 4 b h q kv d (halved when causal); backward 2.5x (FlashAttention-2,
    arXiv 2307.08691, Sec. 4: 5 matmuls backward vs 2 forward)."""
    f = 4.0 * p["batch"] * p["heads"] * p["q_len"] * p["kv_len"] * p["head_dim"] / 1e9
    f *= 0.5 if p["causal"] else 1.0
    return f * (2.5 if p["phase"] == "backward" else 1.0)


def available_backends(ctx: Context) -> list[str]:
    """SDPA backends this device has: all four on CUDA; flash and math on a CPU (torch has no
    CPU efficient or cuDNN kernel; asking for one only records ``unsupported``)."""
    return list(SDPA_BACKENDS) if ctx.kind == "cuda" else ["flash", "math"]


def plan_attention(ctx: Context) -> list[Point]:
    cfg = ctx.sweep("attention")
    points = []
    for backend, dtype, kvh, d in product(available_backends(ctx), cfg["dtypes"],
                                          cfg["kv_heads"], cfg["head_dim"]):
        base = {"backend": backend, "dtype": dtype, "heads": cfg["heads"], "kv_heads": kvh,
                "head_dim": d}
        for phase in ("prefill", "decode", "backward"):
            sub = cfg[phase]
            lengths = sub["kv_len"] if phase == "decode" else sub["seq"]
            for b, s in product(sub["batch"], lengths):
                p = {**base, "phase": phase, "batch": b, "q_len": 1 if phase == "decode" else s,
                     "kv_len": s, "causal": phase != "decode"}
                if _under(attention_gflop(p), cfg["max_gflop"]):
                    points.append(Point("attention", p))
    return points


def plan_elementwise(ctx: Context) -> list[Point]:
    cfg = ctx.sweep("elementwise")
    return [Point("elementwise", {"op": op, "dtype": d, "elems": e})
            for op in cfg["ops"] for d in cfg["dtypes"] for e in cfg["elems"]]


def plan_launch(ctx: Context) -> list[Point]:
    return [Point("launch", {})]


def _elem(dtype: str) -> int:
    return {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}[dtype]


def point_bytes(point: Point) -> float:
    """Memory a point's tensors take (an upper estimate, for the planning cap)."""
    p = point.params
    if point.bench == "gemm":
        e = _elem(p["dtype"])
        return (p["m"] * p["k"] + p["k"] * p["n"]) * e + p["m"] * p["n"] * max(e, 2)
    if point.bench == "attention":
        e = _elem(p["dtype"])
        qo = 2 * p["batch"] * p["heads"] * p["q_len"] * p["head_dim"] * e
        kv = 2 * p["batch"] * p["kv_heads"] * p["kv_len"] * p["head_dim"] * e
        total = (qo + kv) * (3 if p["phase"] == "backward" else 1)
        if p["backend"] == "math":  # fp32 scores and probabilities, K/V expanded to all heads
            total += 2 * p["batch"] * p["heads"] * p["q_len"] * p["kv_len"] * 4
            total += kv * p["heads"] / p["kv_heads"]
        return total
    if point.bench == "elementwise":
        return p["elems"] * (3 * _elem(p["dtype"]) + 8)  # x, x2, y and fp32 intermediates
    if point.bench == "memory":
        return p["bytes"]
    return 0.0


# The parameters that walk along a table's curve; the others name the curve (its series).
SIZE_AXES = {"gemm": ("m", "n", "k"), "memory": ("bytes",), "elementwise": ("elems",),
             "attention": ("batch", "q_len", "kv_len"), "collective": ("bytes",), "launch": ()}


def coarse_to_fine(n: int) -> list[int]:
    """Indices 0..n-1, the two ends first, then midpoints of ever finer halves: every prefix
    spreads over the whole range."""
    if n <= 2:
        return list(range(n))
    order, seen, queue = [0, n - 1], {0, n - 1}, [(0, n - 1)]
    while queue:
        a, b = queue.pop(0)
        mid = (a + b) // 2
        if mid in seen:
            continue
        seen.add(mid)
        order.append(mid)
        queue += [(a, mid), (mid, b)]
    return order + [i for i in range(n) if i not in seen]


def coverage_order(points: list[Point]) -> list[Point]:
    """The points of one table in an order whose every prefix covers the sweep, so that a run
    cut by its time budget has measured both ends and the middle of every curve rather than
    the small end of the first: the series (a dtype, an op, a collective and group) take turns,
    each running coarse to fine from its smallest and largest point (by the product of its
    size parameters) inwards."""
    series: dict[tuple, list[Point]] = {}
    for p in points:
        sizes = SIZE_AXES[p.bench]
        key = tuple(sorted((k, str(v)) for k, v in p.params.items() if k not in sizes))
        series.setdefault(key, []).append(p)
    def size(p: Point) -> float:
        return math.prod(float(p.params[k]) for k in SIZE_AXES[p.bench])

    lanes = [[pts[i] for i in coarse_to_fine(len(pts))]
             for pts in (sorted(s, key=size) for s in series.values())]
    return [lane[i] for i in range(max(map(len, lanes), default=0)) for lane in lanes
            if i < len(lane)]


PLANNERS = {"launch": plan_launch, "memory": plan_memory, "elementwise": plan_elementwise,
            "gemm": plan_gemm, "attention": plan_attention}


def plan(ctx: Context, benches) -> list[Point]:
    """The points of ``benches`` in run order (``coverage_order`` within a table), within the
    device's memory cap."""
    fraction = sweeps()["max_memory_fraction"][ctx.kind]
    cap = math.inf if fraction is None else fraction * ctx.memory_bytes
    return [p for b in KERNEL_BENCHES if b in benches
            for p in coverage_order([p for p in PLANNERS[b](ctx) if point_bytes(p) <= cap])]


# ---- building one point ----------------------------------------------------------------------
@dataclass
class Kernel:
    fn: Callable[[], object]
    flush: bool = True  # cold cache before each repetition
    calls: int = 1  # calls of the kernel per timed repetition (time_s is per call)


def build_gemm(ctx: Context, p: dict, stack: ExitStack) -> Kernel:
    t, (m, n, k), dt = ctx.torch, (p["m"], p["n"], p["k"]), p["dtype"]
    if dt in ("fp32", "tf32"):  # tf32 is fp32 storage with the tensor-core mode on
        stack.callback(t.set_float32_matmul_precision, t.get_float32_matmul_precision())
        t.set_float32_matmul_precision("high" if dt == "tf32" else "highest")
    a = ctx.randn(m, k, dtype=dt)
    if dt == "fp8":  # torch._scaled_mm wants B column-major and fp32 scales
        b = ctx.randn(n, k, dtype=dt).t()
        one = t.ones((), device=ctx.dev, dtype=t.float32)
        return Kernel(lambda: t._scaled_mm(a, b, scale_a=one, scale_b=one,
                                           out_dtype=t.bfloat16))
    b = ctx.randn(k, n, dtype=dt)
    c = t.empty(m, n, device=ctx.dev, dtype=a.dtype)
    return Kernel(lambda: t.matmul(a, b, out=c))


def build_memory(ctx: Context, p: dict, stack: ExitStack) -> Kernel:
    """copy: dst <- src (bytes = read + written); read: a sum over the buffer; write: a fill.
    One pool serves every size, so no point pays for first-touch page faults."""
    nbytes = p["bytes"]
    pool = ctx.buffer("memory", nbytes)
    if p["op"] == "copy":
        half = nbytes // 2
        src, dst = pool[:half], pool[half:2 * half]
        return Kernel(lambda: dst.copy_(src), flush=False)
    buf = pool[:nbytes - nbytes % 4]
    if p["op"] == "read":
        view = buf.view(ctx.torch.float32)
        return Kernel(lambda: view.sum(), flush=False)
    if p["op"] == "write":
        return Kernel(lambda: buf.fill_(0), flush=False)
    raise ValueError(f"unknown memory op {p['op']!r}")


def build_attention(ctx: Context, p: dict, stack: ExitStack) -> Kernel:
    t = ctx.torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    stack.enter_context(sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[p["backend"]])]))
    back = p["phase"] == "backward"
    q = ctx.randn(p["batch"], p["heads"], p["q_len"], p["head_dim"], dtype=p["dtype"])
    k = ctx.randn(p["batch"], p["kv_heads"], p["kv_len"], p["head_dim"], dtype=p["dtype"])
    v = ctx.randn(p["batch"], p["kv_heads"], p["kv_len"], p["head_dim"], dtype=p["dtype"])
    kw = {"is_causal": p["causal"], "enable_gqa": p["kv_heads"] != p["heads"]}
    sdpa = t.nn.functional.scaled_dot_product_attention
    if not back:
        return Kernel(lambda: sdpa(q, k, v, **kw))
    for x in (q, k, v):
        x.requires_grad_(True)
    out = sdpa(q, k, v, **kw)
    grad = t.randn_like(out)
    return Kernel(lambda: t.autograd.grad(out, (q, k, v), grad, retain_graph=True))


def build_elementwise(ctx: Context, p: dict, stack: ExitStack) -> Kernel:
    """Over a [elems / width, width] tensor; aten ``.out`` variants where they exist, so that
    a CPU run times the kernel, not the allocation of its output (norms allocate)."""
    t, F = ctx.torch, ctx.torch.nn.functional
    width = min(ctx.sweep("elementwise")["width"], p["elems"])
    x = ctx.randn(p["elems"] // width, width, dtype=p["dtype"])
    y = t.empty_like(x)
    w = t.ones(width, device=ctx.dev, dtype=x.dtype)
    aten = t.ops.aten
    ops = {
        "layernorm": lambda: F.layer_norm(x, (width,), w, w),
        "rmsnorm": lambda: F.rms_norm(x, (width,), w),
        "softmax": lambda: aten._softmax.out(x, -1, False, out=y),
        "gelu": lambda: aten.gelu.out(x, out=y),
        "silu": lambda: aten.silu.out(x, out=y),
    }
    if p["op"] == "add":  # two full-size inputs: elems read twice, written once
        x2 = t.randn_like(x)
        ops["add"] = lambda: t.add(x, x2, out=y)
    if p["op"] not in ops:
        raise ValueError(f"unknown elementwise op {p['op']!r}")
    return Kernel(ops[p["op"]])


def build_launch(ctx: Context, p: dict, stack: ExitStack) -> Kernel:
    """``calls`` tiny kernels back to back: the per-kernel floor of eager execution."""
    calls = ctx.sweep("launch")["calls"]
    x = ctx.torch.zeros(1, device=ctx.dev)

    def fn():
        for _ in range(calls):
            x.add_(1)

    return Kernel(fn, flush=False, calls=calls)


BUILDERS = {"gemm": build_gemm, "memory": build_memory, "attention": build_attention,
            "elementwise": build_elementwise, "launch": build_launch}


# ---- running one point -----------------------------------------------------------------------
def classify(err: BaseException) -> tuple[str, str]:
    """(status, one-line message) of a failed point."""
    text = f"{type(err).__name__}: {err}".strip()
    low = text.lower()
    name = type(err).__name__
    if name == "OutOfMemoryError" or isinstance(err, MemoryError) or any(
            s in low for s in OOM_PHRASES):
        status = "oom"
    elif isinstance(err, NotImplementedError) or any(s in low for s in UNSUPPORTED_PHRASES):
        status = "unsupported"
    else:
        status = "error"
    first = " ".join(text.split("\n", 1)[0].split())
    return status, first[:300]


def _measure(ctx: Context, point: Point, stack: ExitStack, deadline: float | None):
    """Build and time one point; its tensors live in this frame only."""
    kernel = BUILDERS[point.bench](ctx, point.params, stack)
    m = measure(kernel.fn, ctx.clock, ctx.rule, prepare=ctx.flush if kernel.flush else None,
                deadline=deadline)
    return m, kernel.calls


def run_point(ctx: Context, point: Point, env: Callable[[], dict] | None = None,
              deadline: float | None = None) -> dict:
    """Measure one point and return its record (never raises, except on Ctrl-C).
    ``deadline``: see ``timing.measure``."""
    failure = None
    try:
        with ExitStack() as stack, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m, calls = _measure(ctx, point, stack, deadline)
    except Exception as err:
        status, message = classify(err)
        hints = sorted({str(w.message).split("\n")[0][:160] for w in caught})
        if status == "unsupported" and hints:
            message = (message + " | " + "; ".join(hints[:3]))[:600]
        failure = (status, message)
    if failure is not None:  # after the except block: no traceback pins the tensors any more
        if failure[0] == "oom":
            ctx.release()
        return point_record(point.bench, point.params, status=failure[0], error=failure[1],
                            env=env() if env else None)
    stats = m.stats()
    stats["p10"], stats["p90"] = m.p10_s / calls, m.p90_s / calls
    if calls != 1:
        stats["calls_per_rep"] = calls
    if not math.isfinite(m.median_s):
        return point_record(point.bench, point.params, status="error",
                            error="non-finite time", env=env() if env else None)
    return point_record(point.bench, point.params, time_s=m.median_s / calls, stats=stats,
                        env=env() if env else None)
