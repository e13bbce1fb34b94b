"""Inference predictions: roofline bounds and the memory model."""

import pytest

import perfmodel as pm


def scenario(model="llama-2-7b", **inf):
    base = {"batch": 1, "prompt_len": 512, "output_len": 128}
    base.update(inf)
    return pm.Scenario(kind="inference", model=model,
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
    pred = pm.predict(scenario(prompt_len=3968))  # + 128 output = llama-2-7b's 4096 context
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


def big(**inf):
    return scenario("llama-2-70b", **inf)


def test_offloading_weights_trades_memory_for_pcie_time():
    """Half of Llama-2-70B's 138 GB of bf16 weights streamed over PCIe Gen4 (31.5 GB/s x 0.88
    achieved) each decode step: >= 69e9 / 27.7e9 = 2.5 s per token (FlexGen's regime)."""
    resident = pm.predict(big())
    half = pm.predict(big(offload={"weights": 0.5}))
    assert not resident.fits and half.fits
    streamed = 0.5 * 68_976_648_192 * 2 / (31.5e9 * 0.88)
    assert half.tpot_s == pytest.approx(streamed, rel=0.02)  # overlap hides the GPU compute
    serial = pm.predict(big(offload={"weights": 0.5, "overlap": False}))
    assert serial.tpot_s > half.tpot_s
    nvme = pm.predict(big(offload={"weights": 0.5, "target": "nvme"}))
    assert nvme.tpot_s > 3 * half.tpot_s


def test_speculative_decoding_expected_tokens():
    from perfmodel.inference import speculative_tokens_per_iteration

    # Leviathan et al. 2023 eq. 1: alpha=0.8, gamma=4 -> (1 - 0.8^5) / 0.2 = 3.3616
    assert speculative_tokens_per_iteration(4, 0.8) == pytest.approx(3.3616)
    plain = pm.predict(big(batch=1))
    spec = pm.predict(big(speculative={"draft_model": "llama-2-7b", "num_tokens": 4,
                                       "acceptance_rate": 0.8}))
    assert spec.tpot_s < plain.tpot_s
    assert spec.breakdown["memory"]["draft_weights"] == pytest.approx(6_738_415_616 * 2)
    poor = pm.predict(big(speculative={"draft_model": "llama-2-7b", "num_tokens": 8,
                                       "acceptance_rate": 0.1}))
    assert poor.tpot_s > plain.tpot_s  # a bad draft slows decoding down
