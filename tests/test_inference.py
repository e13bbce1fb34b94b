"""Inference predictions: roofline bounds and the memory model."""

import pytest

import perfmodel as pm


def scenario(**inf):
    base = {"batch": 1, "prompt_len": 512, "output_len": 128}
    base.update(inf)
    return pm.Scenario(kind="inference", model="llama-2-7b",
                       system={"device": "a100-sxm4-80gb"}, inference=base)


def test_llama2_7b_decode_is_memory_bound_and_slower_than_weights_over_bandwidth():
    """Issue 2 'done means': batch-1 decode streams every weight once per token, so TPOT
    exceeds weights / HBM bandwidth (6.74e9 * 2 B / 2.039e12 B/s = 6.6 ms), and the decode
    GEMMs are memory-bound (arithmetic intensity ~1 FLOP/B vs A100's ridge ~153)."""
    pred = pm.predict(scenario())
    weights_over_bw = 6_738_415_616 * 2 / 2039e9
    assert pred.tpot_s > weights_over_bw
    assert pred.tpot_s < 2 * weights_over_bw
    decode_gemms = [o for o in pred.ops if o.phase == "decode" and o.cls == "gemm"]
    assert len(decode_gemms) >= 4
    assert all(o.bound == "memory" and o.intensity < 2 for o in decode_gemms)


def test_long_prefill_is_compute_bound():
    pred = pm.predict(scenario(prompt_len=4096))
    big = [o for o in pred.ops if o.phase == "prefill" and o.cls == "gemm" and o.flops > 1e11]
    assert big and all(o.bound == "compute" for o in big)


def test_latency_identities():
    pred = pm.predict(scenario(batch=4, output_len=64))
    assert pred.e2e_latency_s == pytest.approx(pred.ttft_s + 63 * pred.tpot_s)
    assert pred.tokens_per_s == pytest.approx(4 * 64 / pred.e2e_latency_s)


def test_bigger_batch_raises_throughput_not_tpot_much():
    one = pm.predict(scenario(batch=1))
    many = pm.predict(scenario(batch=32))
    assert many.tokens_per_s > 10 * one.tokens_per_s
    assert many.tpot_s < 2 * one.tpot_s


def test_quantised_weights_speed_up_decode_and_shrink_memory():
    bf16 = pm.predict(scenario())
    int4 = pm.predict(scenario(weight_dtype="int4"))
    assert int4.tpot_s < 0.5 * bf16.tpot_s
    assert int4.breakdown["memory"]["weights"] < 0.3 * bf16.breakdown["memory"]["weights"]


def test_tensor_parallel_cuts_decode_latency_on_nvlink():
    one = pm.predict(scenario())
    sc = scenario().model_copy(update={"parallelism": pm.Parallelism(tp=2),
                                       "system": pm.SystemConfig(device="a100-sxm4-80gb",
                                                                 num_gpus=2)})
    two = pm.predict(sc)
    assert two.tpot_s < one.tpot_s
    assert two.breakdown["decode_step"]["tp_comm"] > 0


def test_memory_fits_and_max_concurrency():
    pred = pm.predict(scenario(prompt_len=2048, output_len=2048))
    kv_per_seq = 512 * 1024 * 4096  # 512 KiB per token x 4096 tokens
    assert pred.kv_cache_bytes_per_sequence == pytest.approx(kv_per_seq)
    free = 80 * 2**30 - 6_738_415_616 * 2
    assert 0.7 * free / kv_per_seq < pred.max_concurrent_sequences < free / kv_per_seq
    assert pred.fits


def test_too_big_does_not_fit():
    sc = pm.Scenario(kind="inference", model="llama-2-70b", system={"device": "rtx-4090"},
                     inference={"batch": 1, "prompt_len": 128, "output_len": 16})
    pred = pm.predict(sc)
    assert not pred.fits
    assert any("does not fit" in w for w in pred.warnings)
