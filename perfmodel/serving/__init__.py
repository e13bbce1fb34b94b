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

from .predict import predict_serving

__all__ = ["predict_serving"]
