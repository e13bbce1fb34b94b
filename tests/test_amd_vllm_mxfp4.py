"""vLLM's dense MXFP4 (Quark OCP_MX) on gfx942 (MI300X / MI325X) is emulated, not weight-only
(engines/vllm.yaml quantization.formats.mxfp4.without_tensor_cores {amd: emulated}; vLLM
QuarkOCP_MX.apply_weights: dq_w = dequant_mxfp4(weight, scale, x.dtype); qdq_x =
quant_dequant_mxfp4(x); F.linear(qdq_x, dq_w)). Every call reads the fp4 weight with its
scales (0.5 + 1/32 = 0.53125 B per parameter) and writes it as bf16 (2 B), then the bf16 GEMM
reads it again (2 B): 4.53125 B per parameter per call against bf16's 2 B, so decode is slower
than with bf16 weights, never faster (review of c22557e: 2.99 ms mxfp4 vs 4.885 ms bf16)."""

from __future__ import annotations

from functools import lru_cache

import pytest

from perfmodel.api import predict
from perfmodel.engines import get_engine
from perfmodel.formats import emulated_formats
from perfmodel.specs.registry import get_device
from perfmodel.zoo import resolve_model

# Llama-3.1-8B, one layer: q/k/v 4096 x (4096 + 1024 + 1024), o 4096 x 4096, gate/up
# 4096 x (2 x 14336), down 14336 x 4096 (hidden 4096, 8 KV heads of 128, intermediate 14336)
LINEARS = {"attn.qkv": (4096, 6144), "attn.out": (4096, 4096), "mlp.up": (4096, 28672),
           "mlp.down": (14336, 4096)}
PARAMS_PER_LAYER = 218_103_808  # sum of k x n above


def _scenario(wd: str, device: str = "mi300x", engine: str = "vllm", kind: str = "inference"):
    sc = {"kind": kind, "model": "llama-3.1-8b", "engine": engine,
          "system": {"device": device, "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": 1024, "output_len": 128, "weight_dtype": wd,
                        "kv_dtype": "bf16"}}
    if kind == "inference":
        sc["inference"]["batch"] = 1
    else:
        sc["serving"] = {"arrival": {"process": "closed", "concurrency": 1}, "num_requests": 4}
    return sc


@lru_cache(maxsize=16)
def _pred(wd: str, device: str = "mi300x", engine: str = "vllm", kind: str = "inference"):
    return predict(_scenario(wd, device, engine, kind))


def test_the_engine_file_states_emulation():
    rule = get_engine("vllm").quantization.formats["mxfp4"]
    assert rule.without_tensor_cores == {"amd": "emulated"}
    sources = get_engine("vllm").field_sources["quantization.formats.mxfp4"]
    assert {"vllmquarkocpmx", "vllmrocmsupportsmx", "quarkmx"} <= set(sources)


def test_decode_bytes_per_call_by_hand():
    """Batch-1 decode step, one layer: per linear, the dequantise kernel moves k n (0.53125 + 2)
    bytes, the activation QDQ 4 k bytes (bf16 read + bf16 written), the bf16 GEMM 2 k n + 2 k
    + 2 n. Summed: 218,103,808 x 4.53125 = 988,282,880 weight bytes, plus 106,496 (QDQ) +
    139,264 (GEMM activations) = 988,528,640 bytes per layer per step."""
    ops = {o.name: o for o in _pred("mxfp4").ops if o.phase == "decode"}
    total = 0.0
    for name, (k, n) in LINEARS.items():
        deq, qdq, gemm = ops[f"{name}.dequant"], ops[f"{name}.qdq"], ops[name]
        assert deq.bytes == pytest.approx(k * n * (0.5 + 1 / 32 + 2.0))
        assert qdq.bytes == pytest.approx(4.0 * k)
        assert gemm.bytes == pytest.approx(2.0 * k * n + 2.0 * k + 2.0 * n)
        assert gemm.flops == pytest.approx(2.0 * k * n)
        assert deq.calls == qdq.calls == gemm.calls == 32
        total += deq.bytes + qdq.bytes + gemm.bytes
    assert sum(k * n for k, n in LINEARS.values()) == PARAMS_PER_LAYER
    assert total == pytest.approx(988_528_640)


@pytest.mark.parametrize("device", ["mi300x", "mi325x"])
def test_mxfp4_decodes_slower_than_bf16_on_gfx942(device):
    """4.53 B against 2 B per parameter per call: mxfp4 is slower than bf16 at batch 1."""
    mx, bf = _pred("mxfp4", device), _pred("bf16", device)
    assert mx.tpot_s > bf.tpot_s
    # the linear layers alone move 988.5 MB per layer per step: a floor at the HBM datasheet
    # bandwidth (MI300X 5.3 TB/s, MI325X 6.0 TB/s)
    bw = {"mi300x": 5.3e12, "mi325x": 6.0e12}[device]
    assert mx.tpot_s > 32 * 988_528_640 / bw
    assert any("engine vllm emulates mxfp4" in w for w in mx.warnings)


def test_serving_on_mi300x_is_emulated_too():
    assert _pred("mxfp4", kind="serving").tpot_s > _pred("bf16", kind="serving").tpot_s


def test_only_vllm_on_devices_without_mxfp4_tensor_cores():
    """MI355X (CDNA 4, MXFP4 tensor cores) runs it natively; the generic engine and NVIDIA
    devices (no amd rule) are not emulated; the generic engine on MI300X keeps the
    weight-only path (fp4 bytes read, faster than bf16)."""
    dense = resolve_model("llama-3.1-8b")

    def emu(device, engine):
        return emulated_formats(get_device(device), engine, None, None, "mxfp4", (), dense)
    assert emu("mi300x", "vllm") == {"mxfp4"} and emu("mi325x", "vllm") == {"mxfp4"}
    assert emu("mi355x", "vllm") == frozenset()
    assert emu("h100-sxm5-80gb", "vllm") == frozenset()
    assert emu("mi300x", "generic") == frozenset()
    assert emu("mi300x", "vllm") == emulated_formats(get_device("mi300x"), "vllm", None, None,
                                                     "bf16", (("mlp", "mxfp4"),), dense)
    gen = _pred("mxfp4", engine="generic")
    assert not any(o.name.endswith(".dequant") for o in gen.ops)
    assert gen.tpot_s < _pred("bf16", engine="generic").tpot_s
