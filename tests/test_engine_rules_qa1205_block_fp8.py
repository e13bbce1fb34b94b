"""QA 1205c D1: a block-fp8 checkpoint (128 x 128 weight blocks) whose tensor-parallel shard of
an MLP / expert weight is not a whole number of blocks is refused by vLLM and SGLang at load
("The output_size of gate's and up's weight = 192 is not divisible by weight quantization
block_n = 128": vLLM / SGLang Fp8MoEMethod.create_weights; "Weight output_partition_size = 576
..." for DeepSeek-R1's dense MLP at TP32, sgl-project/sglang#3345). Shards by hand:
Qwen3-235B-A22B-FP8 moe_intermediate_size 1536 / 8 = 192 (not 128 x k), / 4 = 384 = 3 x 128;
with ep = 8 each expert stays whole (1536 = 12 x 128). DeepSeek-R1 dense MLP 18432 / 32 = 576
= 4.5 x 128, / 16 = 1152 = 9 x 128."""

import pytest

import perfmodel as pm
from perfmodel.engines import get_engine

QWEN_FP8 = ("/work/shared/reference/measured/aiconfigurator-core-0.12.0/model_configs/"
            "Qwen--Qwen3-235B-A22B-FP8_config.json")


def _qwen(engine, **par):
    return pm.Scenario(kind="inference", model=QWEN_FP8, engine=engine,
                       system={"device": "b200", "num_gpus": 8}, parallelism=par,
                       inference={"batch": 64, "prompt_len": 2048, "output_len": 256})


def test_engine_files_state_the_rule():
    assert get_engine("vllm").quantization.formats["fp8_block"].block_aligned_shards
    assert get_engine("sglang").quantization.formats["fp8_block"].block_aligned_shards
    rule = get_engine("trtllm").quantization.formats.get("fp8_block")
    assert rule is None or rule.block_aligned_shards is None  # not read: not stated


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_tp8_expert_shard_of_192_is_refused_in_one_line(engine):
    with pytest.raises(pm.SpecError) as e:
        pm.predict(_qwen(engine, tp=8))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("parallelism.ep: ")
    assert "1,536" in msg and "192 per GPU" in msg and "128 x 128" in msg
    assert "1, 2, 3, 4, 6, 12" in msg  # the splits that give whole blocks: divisors of 12


@pytest.mark.parametrize("par", [{"tp": 4}, {"tp": 8, "ep": 8}, {"tp": 2}])
def test_whole_block_shards_run(par):
    assert pm.predict(_qwen("vllm", **par)).ttft_s > 0


def test_generic_warns_naming_the_engines_that_refuse():
    p = pm.predict(_qwen("generic", tp=8))
    hits = [w for w in p.warnings if "192 per GPU" in w]
    assert len(hits) == 1 and "vLLM and SGLang refuse" in hits[0]
    assert not any("192 per GPU" in w for w in pm.predict(_qwen("generic", tp=4)).warnings)


def test_deepseek_r1_dense_mlp_at_tp32_is_refused_by_sglang():
    def sc(tp):
        return pm.Scenario(kind="inference", model="deepseek-r1", engine="sglang",
                           system={"device": "h100-sxm5-80gb", "num_gpus": tp},
                           parallelism={"tp": tp, "ep": tp},
                           inference={"batch": 8, "prompt_len": 1024, "output_len": 128})
    with pytest.raises(pm.SpecError, match=r"parallelism\.tp: dense MLP .* 576 per GPU"):
        pm.predict(sc(32))
    assert pm.predict(sc(16)).ttft_s > 0


def test_a_bf16_checkpoint_is_not_checked():
    sc = _qwen("vllm", tp=8)
    inf = sc.inference.model_copy(update={"weight_dtype": "bf16", "weight_formats": {}})
    assert pm.predict(sc.model_copy(update={"inference": inf})).ttft_s > 0
