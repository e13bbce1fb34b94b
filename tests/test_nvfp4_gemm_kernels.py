"""Dense GEMM tables per engine kernel (issue 13 item 3): the GEMM that runs depends on the
serving engine, as the grouped GEMMs' do (profile.moe_table).

vLLM 0.24.0 and SGLang 0.5.14 run FlashInfer's CuTe DSL NVFP4 GEMM on Blackwell, TensorRT-LLM
1.3.0rc20 its own (aiconfigurator-core 0.12.0 gemm_perf.parquet ``kernel_source``). The Blackwell
reference profiles keep both, each net of the fp4 quantise its rows include: ``gemm.nvfp4`` =
vLLM's FlashInfer rows (label ``flashinfer_cutedsl``, what vLLM, SGLang and the generic engine
read), ``gemm.nvfp4@trtllm_torch_flow`` = TensorRT-LLM's rows (engine ``trtllm``); the choice is
stated in calibration/references.yaml and calibration/gemm_kernels.yaml.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_nvfp4_decode import _tpot as decode_tpot

import perfmodel as pm
from perfmodel import ops as O
from perfmodel.calibrate import converters as C
from perfmodel.calibrate.moe_kernels import kernel_labels
from perfmodel.calibrate.reference import REFERENCES, sources_dir
from perfmodel.engines import gemm_kernels
from perfmodel.profile import CalibrationProfile, Curve, gemm_key
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry

US = 1e-6
BLACKWELL = ("b200", "b300", "gb200", "gb300")
FLASHINFER, TRTLLM = "flashinfer_cutedsl", "trtllm_torch_flow"


def _profile(**update) -> CalibrationProfile:
    base = registry.load_file(CalibrationProfile, "calibration/b200.reference.json")
    return base.model_copy(update=update)


def test_gemm_table_picks_the_engines_kernel_else_the_reference():
    """A synthetic profile: reference nvfp4 (FlashInfer) at 0.5, TRT-LLM's at 0.25, fp8 at
    0.8. The engine naming a kernel reads its table; no kernel (generic) the reference; a
    kernel no table measured the reference, said as standing in; a format without a table
    the fallback dtype's reference table, never another kernel's @ table."""
    c = {v: Curve(values=(v,)) for v in (0.5, 0.25, 0.8)}
    prof = _profile(gemm={"nvfp4": c[0.5], gemm_key("nvfp4", TRTLLM): c[0.25], "fp8": c[0.8]},
                    gemm_kernel={"nvfp4": FLASHINFER, "nvfp4@trtllm_torch_flow": TRTLLM})
    assert gemm_key("nvfp4", TRTLLM) == "nvfp4@trtllm_torch_flow" and gemm_key("fp8") == "fp8"
    assert prof.gemm_table("nvfp4", (FLASHINFER,)) == ("nvfp4", "gemm.nvfp4 (flashinfer_cutedsl)")
    assert prof.gemm_table("nvfp4", (TRTLLM,))[0] == "nvfp4@trtllm_torch_flow"
    assert prof.gemm_table("nvfp4")[0] == "nvfp4"
    key, why = prof.gemm_table("nvfp4", ("cutlass_nvfp4",))
    assert key == "nvfp4" and "standing in for cutlass_nvfp4" in why
    assert float(prof.gemm_efficiency("nvfp4", 1, 4096, 4096, (TRTLLM,))) == 0.25
    assert float(prof.gemm_efficiency("nvfp4", 1, 4096, 4096)) == 0.5
    # mxfp4 borrows nvfp4's reference table (profile._BLOCK_FALLBACK), not TRT-LLM's
    assert prof.gemm_table("mxfp4", (TRTLLM,))[0] == "nvfp4"
    only_trt = _profile(gemm={gemm_key("nvfp4", TRTLLM): c[0.25], "fp8": c[0.8]},
                        gemm_kernel={"nvfp4@trtllm_torch_flow": TRTLLM})
    assert only_trt.gemm_table("nvfp4")[0] == "fp8"  # generic never reads a kernel's table


def test_engine_files_name_their_nvfp4_gemm_kernel():
    assert gemm_kernels("vllm", "nvfp4") == (FLASHINFER,)
    assert gemm_kernels("sglang", "nvfp4") == (FLASHINFER,)
    assert gemm_kernels("trtllm", "nvfp4") == (TRTLLM,)
    assert gemm_kernels("generic", "nvfp4") == ()
    assert gemm_kernels("vllm", "bf16") == ()  # not listed: the reference table
    labels = kernel_labels("gemm")
    assert labels["FlashInferCuteDslNvFp4LinearKernel"] == FLASHINFER
    assert labels["sglang_flashinfer_cutedsl_nvfp4"] == FLASHINFER
    assert labels["torch_flow"] == TRTLLM


@pytest.mark.parametrize("device", BLACKWELL)
def test_blackwell_profiles_keep_both_nvfp4_kernels(device):
    prof = registry.load_file(CalibrationProfile, f"calibration/{device}.reference.json")
    assert prof.gemm_kernel["nvfp4"] == FLASHINFER
    assert prof.gemm_kernel["nvfp4@trtllm_torch_flow"] == TRTLLM
    tables = {fe.table for fe in prof.fit_errors}
    assert {"gemm.nvfp4", "gemm.nvfp4@trtllm_torch_flow"} <= tables


def test_by_kernel_refuses_an_unlabelled_kernel(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "g.parquet"
    pq.write_table(pa.Table.from_pylist([{"gemm_dtype": "nvfp4", "m": 1, "n": 512, "k": 512,
                                          "latency": 0.01, "kernel_source": "mystery"}]), path)
    with pytest.raises(ValueError, match="'mystery' has no kernel label"):
        C.aic_gemm(path, dtypes=["nvfp4"], by_kernel=True)


def _core_time(device: str, engine: str, m: int, n: int, k: int) -> float:
    """The core's time of one nvfp4 GEMM call as the kernel table measured it (unpadded)."""
    prof = registry.profile_for(device)
    roof = Roofline(registry.get_device(device), prof, engine=engine)
    prec = O.Precision.inference("nvfp4", "nvfp4", "nvfp4")
    return float(op_times([O.gemm("g", m, n, k, prec)], roof).time[0])


def test_b200_table_row_to_prediction_by_hand():
    """Llama-3-70B TP2 attn.qkv at decode (m 1, n 5120, k 8192) on B200, read by hand from the
    copied parquet files: vLLM 0.24.0 FlashInferCuteDslNvFp4LinearKernel 0.012891 ms, its
    static quantise at (1, 8192) 0.002188 ms -> 10.703 us net; TensorRT-LLM 1.3.0rc20
    torch_flow 0.021810 - 0.002142 ms = 19.668 us (tests/test_nvfp4_net_quantize.py). The
    profile's prediction at that shape through the core: vLLM, SGLang and generic the first
    within 5 %, TRT-LLM the second. Both stay above the nvfp4 roofline (3.07 us)."""
    pytest.importorskip("pyarrow")
    base = sources_dir() / "aiconfigurator/systems/data/b200_sxm"
    raw = [r for r in C.read_rows(base / "gemm/vllm/0.24.0/gemm_perf.parquet")
           if r["gemm_dtype"] == "nvfp4" and (r["m"], r["n"], r["k"]) == (1, 5120, 8192)]
    quant = [r for r in C.read_rows(base / "quantize/vllm/0.24.0/scale_matrix_perf.parquet")
             if (r["m"], r["k"]) == (1, 8192)]
    assert raw[0]["latency"] == pytest.approx(0.012891, abs=5e-6)
    assert raw[0]["kernel_source"] == "FlashInferCuteDslNvFp4LinearKernel"
    assert quant[0]["latency"] == pytest.approx(0.002188, abs=5e-6)
    net_vllm, net_trt = 10.703 * US, 19.668 * US
    for engine in ("vllm", "sglang", "generic"):
        assert _core_time("b200", engine, 1, 5120, 8192) == pytest.approx(net_vllm, rel=0.05)
    assert _core_time("b200", "trtllm", 1, 5120, 8192) == pytest.approx(net_trt, rel=0.05)


def test_references_state_the_generic_choice():
    """Each Blackwell device: one nvfp4 table without by_kernel (the reference, vLLM's
    FlashInfer rows net of vLLM's quantise) and TRT-LLM's with by_kernel."""
    for dev, folder in (("b200", "b200_sxm"), ("b300", "b300_sxm"), ("gb200", "gb200"),
                        ("gb300", "gb300")):
        nv = [t for t in REFERENCES[dev].tables if t.convert is C.aic_gemm
              and t.kwargs.get("dtypes") == ["nvfp4"]]
        ref = [t for t in nv if not t.kwargs.get("by_kernel")]
        trt = [t for t in nv if t.kwargs.get("by_kernel")]
        assert len(ref) == 1 and len(trt) == 1, dev
        assert ref[0].kwargs["kernel_source"] == "FlashInferCuteDslNvFp4LinearKernel"
        assert ref[0].kwargs["nvfp4_net_of"].endswith(f"{folder}/quantize/vllm/0.24.0")
        assert trt[0].kwargs["nvfp4_net_of"].endswith(f"{folder}/quantize/trtllm/1.3.0rc20")
        assert "The generic engine (none named) reads gemm.nvfp4" in REFERENCES[dev].notes


def _tpot(model: str, n: int, fmt: str, device: str, engine: str | None) -> float:
    """Batch-1 decode TPOT (the scenario of test_nvfp4_decode)."""
    return decode_tpot(model, n, fmt, engine, device)


@pytest.mark.parametrize("engine", [None, "vllm", "sglang", "trtllm"])
@pytest.mark.parametrize(("model", "n"), [("llama-3.1-8b", 1), ("llama-3-70b", 2)])
def test_b200_nvfp4_decode_never_slower_than_h100(model, n, engine):
    """Faster hardware never slower: the same nvfp4 decode on B200 (fp4 tensor cores, 7.7 TB/s)
    against H100, where the engines that run an NVFP4 checkpoint run it weight-only (vLLM /
    SGLang Marlin W4A16: bf16 GEMMs over 4.5-bit weights, engines/<id>.yaml
    quantization.formats.nvfp4.without_tensor_cores) and TensorRT-LLM refuses it (its FP4 GEMMs need SM100)."""
    if engine == "trtllm":
        with pytest.raises(pm.SpecError, match=r"trtllm.*nvfp4.*h100-sxm5-80gb"):
            _tpot(model, n, "nvfp4", "h100-sxm5-80gb", engine)
        return
    assert _tpot(model, n, "nvfp4", "b200", engine) <= _tpot(model, n, "nvfp4",
                                                              "h100-sxm5-80gb", engine)


@pytest.mark.parametrize("engine", [None, "vllm", "sglang"])
def test_flashinfer_engines_decode_nvfp4_no_slower_than_fp8_on_b200(engine):
    assert _tpot("llama-3.1-8b", 1, "nvfp4", "b200", engine) <= \
        _tpot("llama-3.1-8b", 1, "fp8", "b200", engine)


def test_trtllm_reads_its_own_rows():
    """TensorRT-LLM's nvfp4 decode reads its own (slower at small m) table: slower than the
    FlashInfer engines' on the same GEMMs."""
    assert _tpot("llama-3.1-8b", 1, "nvfp4", "b200", "trtllm") > \
        _tpot("llama-3.1-8b", 1, "nvfp4", "b200", "sglang")
    assert np.isfinite(_tpot("llama-3.1-8b", 1, "nvfp4", "b200", "trtllm"))
