"""plan-training offers the block-scaled training precisions (mxfp8, nvfp4: Transformer
Engine's MXFP8BlockScaling / NVFP4BlockScaling, tests/test_training_mx_nvfp4.py) and skips a
device without their tensor cores with the predict rule's reason."""
import perfmodel as pm
from perfmodel.planning.training import PRECISIONS


def test_the_planner_offers_the_block_scaled_precisions():
    assert {"mxfp8", "nvfp4"} <= set(PRECISIONS)


def test_an_mxfp8_plan_runs_on_blackwell_and_skips_hopper_saying_why():
    out = pm.plan_training(model="llama-3-8b", tokens="100B", max_gpus=16,
                           devices=["h100-sxm5-80gb", "b200"], precision="mxfp8")
    assert out.rows and {r.device for r in out.rows} == {"b200"}
    assert any("h100-sxm5-80gb: skipped" in w and "mxfp8" in w and "bf16" in w
               for w in out.warnings)
