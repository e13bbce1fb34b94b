"""overheads.cuda_graphs refuses contradictory input with an error naming the field, and SGLang's
reserve bucket (chunked_prefill_size, cuda_graph_max_bs) is looked up from one GPU-memory
figure everywhere: start-up memory (engine_memory), the scheduler's token budget
(serving.deploy) and the simulator's decode capture limit (serving.engine.eager_host)."""

from dataclasses import replace

import pytest
import yaml

from perfmodel.engine_memory import engine_memory, shape_for
from perfmodel.engines import CudaGraphFacts, EngineSpec, get_engine, gpu_memory_mib
from perfmodel.errors import SpecError
from perfmodel.paths import data_dir
from perfmodel.resolve import resolve
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.specs.registry import load_file


@pytest.mark.parametrize("data, field", [
    ({"max_tokens_per_seq": 2}, "overheads.cuda_graphs.max_tokens_per_seq"),
    ({"decode": False, "decode_max_batch": 64}, "overheads.cuda_graphs.decode_max_batch"),
    ({"decode_max_batch": 64}, "overheads.cuda_graphs.decode_max_batch"),  # decode unstated
    ({"decode": False, "decode_batch_sizes": [1, 2]},
     "overheads.cuda_graphs.decode_batch_sizes"),
    ({"decode": True, "decode_batch_sizes": [1, 4, 2]},
     "overheads.cuda_graphs.decode_batch_sizes"),
    ({"decode": True, "decode_batch_sizes": [0, 1]}, "overheads.cuda_graphs.decode_batch_sizes"),
    ({"decode": True, "decode_batch_sizes": [1, 2], "decode_max_batch": 2},
     "overheads.cuda_graphs.decode_max_batch"),
    ({"decode": True, "decode_padding": True}, "overheads.cuda_graphs.decode_padding"),
])
def test_contradictory_graph_facts_are_refused_naming_the_field(data, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as err:
        CudaGraphFacts(**data)
    assert "give" in str(err.value) or "set" in str(err.value)  # says what is valid


def test_contradiction_in_an_engine_file_is_one_clear_error(tmp_path):
    """Read as a user's engine file is: one SpecError naming the file and the field."""
    with open(data_dir("engines") / "sglang.yaml") as f:
        data = yaml.safe_load(f)
    data["overheads"]["cuda_graphs"] = {"decode": False, "decode_max_batch": 64,
                                        "prefill": False}
    path = tmp_path / "sglang.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_file(EngineSpec, path)
    msg = str(err.value)
    assert str(path) in msg and "overheads.cuda_graphs.decode_max_batch" in msg
    assert "valid only with decode: true" in msg and "Traceback" not in msg


def test_consistent_graph_facts_pass():
    assert CudaGraphFacts(decode=True, decode_max_batch=8).decode_limit() == (8, None)
    assert CudaGraphFacts(decode=True, decode_batch_sizes=[1, 2, 4]).decode_limit() == \
        (4, frozenset({1, 2, 4}))
    assert CudaGraphFacts(decode=True, decode_batch_sizes=[1, 2, 4],
                          decode_padding=True).decode_limit() == (4, None)
    assert CudaGraphFacts(max_tokens=512, max_tokens_per_seq=2).max_tokens == 512


def test_bucket_edge():
    """SGLang server_args.py _handle_gpu_memory_settings: below 61,440 MiB cuda_graph_max_bs is
    32 at tp < 4 and 160 at tp >= 4 (chunked_prefill_size 4096); from 61,440 MiB, 256 / 512
    (chunk 8192)."""
    rule = get_engine("sglang").memory.reserve
    assert rule.graph_bs(61439, 1) == 32 and rule.graph_bs(61439, 4) == 160
    assert rule.graph_bs(61440, 3) == 256 and rule.graph_bs(61440, 4) == 512
    assert rule.bucket(61439).chunked_prefill_size == 4096
    assert rule.bucket(61440).chunked_prefill_size == 8192


def test_one_memory_figure_for_every_bucket_lookup():
    """A GPU without an nvidia-smi figure whose usable memory (59.9 GiB = 61,337.6 MiB) and
    nominal memory (61 GiB = 62,464 MiB) lie on either side of the 61,440 MiB edge: every
    consumer takes the usable figure, so all see the small bucket (chunk 4096, graphs up to
    32 at tp 1). Hand: reserved = 512 + 1.5 x 4096 + 2 x 32 + 128 x 1 x 1 = 6,848 MB (no 10 GiB
    floor at or below 61,440 MiB), mem_fraction_static = round((61337.6 - 6848) / 61337.6, 3)
    = 0.888."""
    sc = {"kind": "serving", "name": "edge", "model": "llama-3.1-8b", "engine": "sglang",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": 512, "output_len": 16},
          "serving": {"arrival": {"process": "closed", "concurrency": 2}, "num_requests": 4}}
    rs = resolve(sc)
    dev = rs.system.device.model_copy(update={"nvidia_smi_memory_mib": None,
                                              "usable_memory_gib": 59.9, "memory_gb": 61})
    assert gpu_memory_mib(dev) == pytest.approx(59.9 * 1024)
    system = replace(rs.system, device=dev)
    inf, wl = serving_inputs(rs.scenario)
    dep = deployment_for(rs.scenario, system, rs.profile, inf, wl)
    assert dep.scheduler.token_budget == 4096
    assert dep.instances[0].host.decode_max == 32
    mem = engine_memory(rs.scenario.model, dev, shape_for(rs.scenario.parallelism, inf, system),
                        get_engine("sglang"), rs.scenario.engine,
                        rs.profile.memory_overheads.cuda_context_gib)
    assert mem.fraction == pytest.approx(0.888)
    assert mem.max_num_batched_tokens == 4096
