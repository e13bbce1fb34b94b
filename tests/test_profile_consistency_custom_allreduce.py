"""An engine's custom all-reduce table serves the group sizes it measured and smaller ones,
never a larger group (QA 1205c D3). aiconfigurator's GB300 NVL72 SGLang table (0.5.14, CUDA
graph) holds 4.0 us at 4 GPUs (one compute tray) and 27.8 us at 8 (16 KiB): a larger group is
no smaller group's time. GB200's table stops at 4 GPUs, so its TP8 takes NCCL's fit (an
8-GPU SGLang group there spans two 4-GPU hosts, where SGLang declines its own kernel). GB300's
8-GPU rows measured SGLang's own fallback across two hosts, so its TP8 reads them
(engine_comm.tp_all_reduce_time: a row at exactly the group's size)."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel.engine_comm import measured_group, tp_all_reduce_time
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import reference_profile
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan

KIB16 = 16384.0  # 8192 bf16 elements: aiconfigurator's message_size 8192 rows


def _t(device, n, engine="sglang"):
    system = resolve_system(SystemConfig(device=device, num_gpus=8))
    return float(tp_all_reduce_time(engine, KIB16, GroupSpan(size=n, local=n, nodes=1), system,
                                    reference_profile(device)))


def test_measured_groups_keep_their_rows():
    # sglang 0.5.14 sglang_graph rows, 16 KiB: B200 8 GPUs 5.311 us, GB200 4 GPUs 4.430 us,
    # trtllm 1.3.0rc20 on GB300, 8 GPUs over two hosts (MNNVL, nvlink_domain reach) 4.4 us,
    # sglang on GB300, 8 GPUs over two hosts (its PyNCCL fallback) 27.8 us
    assert _t("b200", 8) == pytest.approx(5.311e-6, rel=0.25)
    assert _t("gb200", 4) == pytest.approx(4.430e-6, rel=0.25)
    assert _t("gb300", 8, "trtllm") == pytest.approx(4.4e-6, rel=0.25)
    assert _t("gb300", 8) == pytest.approx(27.8e-6, rel=0.15)


def test_a_group_larger_than_the_table_is_not_the_smaller_groups_time():
    prof = reference_profile("gb200")
    assert measured_group(prof, "custom_allreduce_sglang", np.array([2, 4, 8])).tolist() == [
        True, True, False]
    # NCCL instead: GB200 nccl-tests 2.29.2 all-reduce of 16 KiB on 4 GPUs takes 16.8 us, and
    # eight GPUs move more per rank; far above the 4-GPU kernel's 4.4 us
    for engine in ("sglang", "vllm", "trtllm"):
        assert _t("gb200", 8, engine) > 3 * 4.430e-6
