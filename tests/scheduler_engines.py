"""A serving Engine over a unit-time cost model and one scheduler step, shared by the
scheduler tests (they count iterations, not model times)."""

import numpy as np


class UnitCost:
    """Every iteration takes 1 s (plus any overhead), one attention group."""

    groups = 1

    def step_time(self, spans, dkv, n_sample, overhead=0.0, *groups, **group_kw):
        return 1.0 + overhead

    def decode_run_times(self, ctx, k, overhead=0.0):
        return np.ones(k) + overhead


def make_engine(cost, prompts, outputs, blocks=10_000, block=32, max_batch=256,
                arrivals=None, queue=True):
    """An engine over ``cost``; ``queue``: all requests waiting from the start."""
    from perfmodel.serving.cost import KVCapacity
    from perfmodel.serving.engine import Engine
    from perfmodel.serving.requests import Requests
    from perfmodel.serving.workload import Workload

    arr = np.zeros(len(prompts)) if arrivals is None else np.asarray(arrivals, float)
    wl = Workload(arr, np.asarray(prompts), np.asarray(outputs))
    kv = KVCapacity(bytes_per_token=1.0, block_tokens=block, num_blocks=blocks, memory={})
    e = Engine(0, cost, kv, max_batch, Requests(wl))
    if queue:
        e.waiting.extend(range(len(prompts)))
    return e


def run_step(sched, e, now):
    """One scheduler decision, run to its end."""
    step = sched.next(e, now)
    e.step = step
    e.complete(step.end)
    return step


def closed_loop_llama3_8b(engine, concurrency):
    """A closed-loop serving scenario on one H100: 200 requests, prompts 400-600, outputs
    100-160 tokens (the scheduler tests' end-to-end check)."""
    return {"kind": "serving", "model": "llama-3-8b", "engine": engine,
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
            "inference": {"prompt_len": 512, "output_len": 128},
            "serving": {"arrival": {"process": "closed", "concurrency": concurrency},
                        "num_requests": 200,
                        "prompt_len": {"kind": "uniform", "min": 400, "max": 600},
                        "output_len": {"kind": "uniform", "min": 100, "max": 160}}}
