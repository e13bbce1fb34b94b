"""Training frameworks as data (frameworks/*.yaml, perfmodel/frameworks*.py): schema errors,
hand calculations of the framework terms, and megatron-core as the unchanged baseline."""

from dataclasses import replace

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.errors import SpecError
from perfmodel.frameworks import common_facts, resolve_framework
from perfmodel.frameworks_config import FRAMEWORK_NAMES, FrameworkConfig
from perfmodel.resolve import resolve, training_plan
from perfmodel.specs.common import validate
from perfmodel.specs.registry import devices, get_model
from perfmodel.specs.scenario import Scenario
from perfmodel.training import training_step

LLAMA3_8B_VOCAB = 128256


def scenario(framework=None, **train) -> dict:
    training = {"seq_len": 8192, "global_batch": 16, "micro_batch": 2, "recompute": "op",
                **train}
    if framework is not None:
        training["framework"] = framework
    return {"kind": "training", "model": "llama-3.1-8b",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
            "parallelism": {"dp": 8, "zero_stage": 3}, "training": training}


@pytest.mark.parametrize("name", (*FRAMEWORK_NAMES, "composer", "llm-foundry"))
def test_every_framework_file_loads(name):
    fw = resolve_framework(FrameworkConfig(name=name))
    assert fw.spec.sources and fw.spec.version


@pytest.mark.parametrize("framework, field", [
    ({"name": "jax"}, "training.framework.name: must be one of"),
    ({"name": "torchtitan", "compil": True}, "training.framework.compil: unknown field"),
    ({"name": "torchtitan", "float8_recipe": "mxfp9"}, "training.framework.float8_recipe"),
    ({"name": "torchtitan", "compile": "yes"}, "training.framework.compile"),
])
def test_bad_framework_is_one_line_naming_the_field(framework, field):
    with pytest.raises(SpecError) as err:
        validate(Scenario, scenario(framework), what="scenario")
    assert field in str(err.value) and "\n" not in str(err.value)


def test_unknown_version_names_the_valid_ones():
    with pytest.raises(SpecError, match=r"training\.framework\.version: .*valid: 2025-06"):
        resolve_framework(FrameworkConfig(name="torchtitan", version="1999"))


def test_overrides_replace_defaults():
    fw = resolve_framework(FrameworkConfig.model_validate(
        {"name": "torchtitan", "compile": True, "float8_recipe": "rowwise"}))
    assert fw.compile and fw.float8_recipe == "rowwise" and fw.unfused == {}
    assert resolve_framework(FrameworkConfig.model_validate("torchtitan")).unfused


def test_fp32_loss_buffers_of_llama3_8b_at_seq_8192():
    """torchtitan's loss: cross_entropy(pred.float()); at its backward the fp32 log_softmax
    output, its gradient and the input gradient are alive: 12 B per logit, of which perfmodel's
    base counts the 4 B fp32 logits. Seq 8192, micro-batch 1, vocab 128256:
    8 x 8192 x 128256 = 8,405,385,216 bytes more (7.83 GiB); 12 B: 12.6 GB in all."""
    fw = resolve_framework(FrameworkConfig(name="torchtitan"))
    model = get_model("llama-3.1-8b")
    assert model.vocab_size == LLAMA3_8B_VOCAB
    extra = FC.loss_buffer_bytes(fw, model, tokens=8192, tp=1)
    assert extra == 8 * 8192 * 128256 == 8_405_385_216
    assert extra + 4.0 * 8192 * 128256 == 12 * 8192 * 128256
    compiled = resolve_framework(FrameworkConfig(name="torchtitan", version="2025-06",
                                                 compile=True))
    assert FC.loss_buffer_bytes(compiled, model, tokens=8192, tp=1) == 0.0


def test_unfused_rmsnorm_bytes_and_kernels():
    """torchtitan's RMSNorm in eager mode: 8 kernels moving 36 B per element (float, pow,
    mean, x*rsqrt, type_as, *weight) against one fused kernel's 4 B (bf16 in and out):
    4096 x 16384 elements -> 32 x 67,108,864 = 2,147,483,648 extra bytes and 7 extra kernels."""
    model = get_model("llama-3.1-8b")
    prec = O.Precision.training("bf16")
    norm = O.norm_op("attn.norm", model, 16384, prec)
    assert norm.bytes == 4 * 4096 * 16384
    fw = resolve_framework(FrameworkConfig(name="torchtitan"))
    out = FC.unfused_chains(fw, [norm])
    assert [op.name for op in out] == ["attn.norm", "attn.norm.unfused"]
    assert out[1].bytes == pytest.approx(32 * 4096 * 16384) == 2_147_483_648
    assert out[1].launches == 7
    assert FC.unfused_chains(resolve_framework(FrameworkConfig(name="torchtitan",
                                                               compile=True)), [norm]) == [norm]


def test_cp_imbalance_without_load_balancing():
    """Contiguous causal chunks: rank r does r + 1/2 chunk-pairs, the slowest cp - 1/2 against
    a mean of cp/2: 2 - 1/cp (cp = 4: 1.75); head-tail load balancing: 1."""
    unbalanced = resolve_framework(FrameworkConfig(name="torchtitan", cp_load_balance=False))
    assert FC.cp_imbalance_factor(unbalanced, 4, causal=True) == pytest.approx(1.75)
    assert FC.cp_imbalance_factor(unbalanced, 1, causal=True) == 1.0
    assert FC.cp_imbalance_factor(unbalanced, 4, causal=False) == 1.0
    balanced = resolve_framework(FrameworkConfig(name="torchtitan"))
    assert FC.cp_imbalance_factor(balanced, 8, causal=True) == 1.0


def test_megatron_core_refuses_turning_cp_load_balancing_off():
    """Megatron-Core's get_batch_on_this_cp_rank zigzags every path (frameworks/megatron-core.yaml
    cp_load_balance_fixed): the override would be silently ignored, so it is an error naming
    the field; restating the default is accepted."""
    with pytest.raises(SpecError) as err:
        resolve_framework(FrameworkConfig(name="megatron-core", cp_load_balance=False))
    msg = str(err.value)
    assert "training.framework.cp_load_balance" in msg and "megatron-core" in msg
    assert "\n" not in msg
    assert resolve_framework(FrameworkConfig(name="megatron-core",
                                             cp_load_balance=True)).cp_load_balance


def test_cp_merge_bytes_by_hand_torchtitan():
    """torch _attention.py on the last CP rank, Llama 3 8B, 32768 tokens per rank, cp 8, TP 1:
    forward 12 + 7 x 38 B per output element (fp32 merges) and 4 + 7 x 4 B per K/V element
    (contiguous copies, the cat before each exchange), K/V at all 32 query heads (repeat_kv);
    backward 20 + 7 x 10 B and 36 + 7 x 25 B. megatron-core merges inside TE's kernel: none."""
    model = get_model("llama-3.1-8b")
    fw = resolve_framework(FrameworkConfig(name="torchtitan"))
    q = 32768 * 32 * 128
    kv = 2 * q
    (fwd,), (bwd,) = FC.cp_merge_ops(fw, model, 32768, 1, 8)
    assert float(fwd.bytes) == pytest.approx(q * (12 + 7 * 38) + kv * (4 + 7 * 4))
    assert float(bwd.bytes) == pytest.approx(q * (20 + 7 * 10) + kv * (36 + 7 * 25))
    assert FC.cp_merge_ops(fw, model, 32768, 1, 1) == ([], [])
    base = resolve_framework(FrameworkConfig(name="megatron-core"))
    assert FC.cp_merge_ops(base, model, 32768, 1, 8) == ([], [])
    assert FC.cp_comm_facts(fw) == ("allgather", True, 2.0)
    assert FC.cp_comm_facts(None) == ("p2p_ring", False, 1.0)


def test_megatron_core_is_the_baseline_on_a_megatron_case():
    """framework: megatron-core (the default) predicts exactly what perfmodel predicted before
    frameworks existed (a plan without a framework) on Korthikanti et al.'s 22B case."""
    case = {"kind": "training", "model": "gpt-22b",
            "system": {"device": "a100-sxm4-80gb", "num_gpus": 8},
            "parallelism": {"tp": 8, "sequence_parallel": True},
            "training": {"seq_len": 2048, "global_batch": 4, "micro_batch": 4,
                         "precision": "fp16", "dropout": True}}
    explicit = {**case, "training": {**case["training"], "framework": "megatron-core"}}
    a, b = pm.predict(case), pm.predict(explicit)
    assert a.step_time_s == b.step_time_s and a.memory_per_gpu_bytes == b.memory_per_gpu_bytes
    rs = resolve(case)
    plan = training_plan(rs.scenario, rs.system)
    before = training_step(rs.scenario.model, rs.system, replace(plan, framework=None),
                           rs.profile)
    now = training_step(rs.scenario.model, rs.system, plan, rs.profile)
    assert before.step_time == now.step_time and before.memory_total == now.memory_total
    assert before.time.keys() == now.time.keys()


def test_torchtitan_breakdown_names_the_framework_terms():
    base = pm.predict(scenario())
    tt = pm.predict(scenario("torchtitan"))
    parts = tt.breakdown["time"]
    assert parts["unfused_elementwise"] > 0 and "dispatch" in parts and "cp_imbalance" in parts
    assert tt.step_time_s > base.step_time_s
    mem = tt.breakdown["memory"]
    assert mem["loss_buffers"] > 0 and mem["fsdp_buffers"] > 0
    assert sum(parts.values()) == pytest.approx(tt.step_time_s)


def test_unbalanced_cp_costs_attention_time():
    sc = scenario({"name": "torchtitan", "cp_load_balance": False}, seq_len=32768,
                  global_batch=4, micro_batch=1)
    sc["parallelism"] = {"dp": 4, "cp": 2, "zero_stage": 3}
    balanced = scenario("torchtitan", seq_len=32768, global_batch=4, micro_batch=1)
    balanced["parallelism"] = sc["parallelism"]
    slow, fast = pm.predict(sc), pm.predict(balanced)
    assert slow.breakdown["time"]["cp_imbalance"] > 0
    assert slow.step_time_s == pytest.approx(
        fast.step_time_s + slow.breakdown["time"]["cp_imbalance"])


def test_fa2_ceiling_slows_hopper_attention_only():
    """SDPA's flash backend (FlashAttention-2) reaches 370 of 989 TFLOP/s forward on H100
    (FA3 paper Fig. 5): forward attention takes at least FLOPs / (0.374 peak)."""
    fa3 = pm.predict(scenario({"name": "torchtitan", "attention_backend": "fa3"}))
    fa2 = pm.predict(scenario({"name": "torchtitan", "attention_backend": "fa2"}))
    assert fa2.breakdown["time"]["attention"] > fa3.breakdown["time"]["attention"]
    assert fa2.breakdown["time"]["gemm"] == pytest.approx(fa3.breakdown["time"]["gemm"])


def test_fa2_hopper_backward_ceiling_by_hand():
    """FA2 on H100: 335 TFLOP/s forward + backward (Dao 2023 Sec. 4.1; FLOPs 3.5 x forward)
    with the forward at 370 (FA3 paper Fig. 5) leaves the backward 2.5 / (3.5/335 - 1/370)
    = 322.8 TFLOP/s, 0.326 of 989.4. (Triton FlashAttention: its own table by sequence
    length, tests/test_fsdp_triton_attention.py.)"""
    bwd = 2.5 / (3.5 / 335 - 1 / 370) / 989.4
    assert bwd == pytest.approx(0.3263, abs=1e-4)
    fw = resolve_framework(FrameworkConfig(name="torchtitan"))
    assert fw.attention_ceiling("Hopper").bwd == pytest.approx(bwd, abs=1e-3)


def test_ceiling_architectures_are_device_architectures():
    """A ceiling under a misspelt architecture ("Hoper") would silently never apply: every
    key of _common.yaml's attention_backends.<name>.ceilings is some device's architecture."""
    archs = {d.architecture for d in devices().values()}
    for name, backend in common_facts().attention_backends.items():
        for arch in backend.ceilings:
            assert arch in archs, f"attention_backends.{name}.ceilings.{arch}"


def test_dispatch_is_exposed_only_when_kernels_are_short():
    """Host time per kernel is hidden while the GPU's kernels are longer: a layer pass of
    k kernels exposes max(0, k x dispatch - GPU time)."""
    fw = resolve_framework(FrameworkConfig(name="torchtitan"))
    short = O.elementwise("x", 1.0, 1.0, 2.0)
    ops = [short] * 100
    assert FC.exposed_dispatch(fw, ops, [1e-7] * 100, list(range(100)), False) == \
        pytest.approx(100 * fw.dispatch_s[0] - 100 * 1e-7)
    assert FC.exposed_dispatch(fw, ops, [1e-3] * 100, list(range(100)), False) == 0.0
    assert np.all(FC.exposed_dispatch(None, ops, [0.0] * 100, list(range(100)), True) == 0.0)


def test_megatron_core_fp8_is_unchanged_and_recipes_scale_casts():
    """megatron-core keeps the base's fp8 casts; a recipe on another framework scales them:
    rowwise casts each operand twice at 5 B (2x), delayed once at 4 B (TE's cast + transpose,
    0.8x)."""
    cast = O.fp8_cast(O.gemm("mlp.up", 1024.0, 4096.0, 4096.0, O.Precision.training("fp8")))
    mc = resolve_framework(FrameworkConfig(name="megatron-core"))
    assert FC.fp8_recipe_costs(mc, [cast]) == [cast]
    row = resolve_framework(FrameworkConfig(name="torchtitan", float8_recipe="rowwise"))
    delayed = resolve_framework(FrameworkConfig(name="torchtitan", float8_recipe="delayed"))
    assert FC.fp8_recipe_costs(row, [cast])[0].bytes == pytest.approx(2 * cast.bytes)
    assert FC.fp8_recipe_costs(delayed, [cast])[0].bytes == pytest.approx(0.8 * cast.bytes)
    fp8 = scenario(precision="fp8")
    assert pm.predict(fp8).step_time_s == pm.predict({**fp8, "training": {
        **fp8["training"], "framework": "megatron-core"}}).step_time_s


def test_a_sweep_of_plans_equals_single_plans():
    """The framework terms are array-friendly: a plan with numpy dimensions gives each
    single plan's step time and memory."""
    rs = resolve(scenario("torchtitan"))
    plan = training_plan(rs.scenario, rs.system)
    model, system, profile = rs.scenario.model, rs.system, rs.profile
    sweep = replace(plan, micro_batch=np.array([1.0, 2.0]), dp=np.array([8.0, 8.0]))
    both = training_step(model, system, sweep, profile)
    for i, mb in enumerate((1.0, 2.0)):
        one = training_step(model, system, replace(plan, micro_batch=mb), profile)
        assert np.asarray(both.step_time)[i] == pytest.approx(float(one.step_time))
        assert np.asarray(both.memory_total)[i] == pytest.approx(float(one.memory_total))


@pytest.mark.parametrize("seq_len, micro_batch, tp", [(2048, 1, 1), (8192, 2, 2), (4096, 4, 8)])
def test_eager_torchtitan_is_never_faster_than_the_fused_baseline(seq_len, micro_batch, tp):
    """In bf16 every torchtitan term adds time (unfused chains, FA2's ceiling, dispatch,
    copies): the same plan under megatron-core's fused kernels is at least as fast."""
    def sc(framework):
        s = scenario(framework, seq_len=seq_len, global_batch=16 * micro_batch,
                     micro_batch=micro_batch)
        s["parallelism"] = {"tp": tp, "dp": 8 // tp, "zero_stage": 3,
                            "sequence_parallel": tp > 1}
        return s
    assert pm.predict(sc("torchtitan")).step_time_s >= pm.predict(sc(None)).step_time_s


def test_fsdp2_copy_kernels_of_a_llama3_8b_block():
    """FSDP2 copies the all-gather output into the parameters (2 + 2 B per parameter) and the
    bf16 gradients into the fp32 reduce-scatter input (2 + 4 B). A Llama-3-8B block holds
    4096 x (4096 + 1024 + 1024 + 4096) + 3 x 4096 x 14336 + 2 x 4096 = 218,112,000
    parameters: 872,448,000 B in forward, 10 B/parameter = 2,181,120,000 B in backward."""
    fw = resolve_framework(FrameworkConfig(name="torchtitan"))
    block = 4096 * (4096 + 1024 + 1024 + 4096) + 3 * 4096 * 14336 + 2 * 4096
    assert block == 218_112_000
    fwd = FC.fsdp_copies(fw, 3, block, backward=False)
    bwd = FC.fsdp_copies(fw, 3, block, backward=True)
    assert fwd[0].bytes == 872_448_000 and bwd[0].bytes == 2_181_120_000
    assert FC.fsdp_copies(fw, 1, block, backward=True) == []
    assert FC.fsdp_copies(resolve_framework(FrameworkConfig()), 3, block, True) == []


def test_cp_gradient_ratio_is_over_the_activations_own_bytes():
    """torchtitan rings fp32 dK/dV (frameworks/torchtitan.yaml cp.grad_kv_bytes 4): twice a bf16
    K/V chunk, the same size as an fp32 one (was 2x for fp32 training too)."""
    fw = resolve_framework(FrameworkConfig(name="torchtitan"))
    assert FC.cp_comm_facts(fw, 2.0)[2] == 2.0
    assert FC.cp_comm_facts(fw, 4.0)[2] == 1.0
    assert FC.cp_comm_facts(None, 4.0)[2] == 1.0
