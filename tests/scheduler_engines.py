"""A serving Engine over a unit-time cost model and one scheduler step, shared by the
scheduler tests (they count iterations, not model times)."""

import numpy as np


def make_engine(cost, prompts, outputs, blocks=10_000, block=32, max_batch=256):
    from perfmodel.serving.cost import KVCapacity
    from perfmodel.serving.engine import Engine
    from perfmodel.serving.requests import Requests
    from perfmodel.serving.workload import Workload

    wl = Workload(np.zeros(len(prompts)), np.array(prompts), np.array(outputs))
    kv = KVCapacity(bytes_per_token=1.0, block_tokens=block, num_blocks=blocks, memory={})
    e = Engine(0, cost, kv, max_batch, Requests(wl))
    e.waiting.extend(range(len(prompts)))
    return e


def run_step(sched, e, now):
    """One scheduler decision, run to its end."""
    step = sched.next(e, now)
    e.step = step
    e.complete(step.end)
    return step
