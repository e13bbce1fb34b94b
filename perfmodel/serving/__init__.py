"""Serving simulation and capacity planning.

A discrete-event, iteration-level simulator of LLM serving (after Vidur, Agrawal et al.
MLSys 2024, arXiv 2405.05465): requests arrive (``workload``), instances batch them under a
scheduler (``schedulers``: static, vLLM-style continuous batching with paged KV blocks and
preemption, Sarathi-Serve chunked prefill, DistServe disaggregated prefill/decode), each
iteration's time comes from the inference model's operators (``cost``), and the event loop
(``sim``) yields latency percentiles, throughput, goodput and time series (``metrics``).
``capacity`` searches the fewest GPUs that meet latency SLOs, with prices and energy
(``economics``). See docs/serving.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .predict import predict_serving

__all__ = ["predict_serving"]


def __getattr__(name: str) -> Any:
    """``predict_serving`` is imported on first use (PEP 562), so that a module of this
    package (e.g. ``economics`` for the price table) does not load the simulator."""
    if name == "predict_serving":
        from .predict import predict_serving

        return predict_serving
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
