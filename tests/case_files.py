"""A valid validation case and a writer of case files, shared by the validate tests."""

import yaml

GOOD = {
    "id": "tiny", "metric": "ttft_s", "measured": {"value": 10, "unit": "ms"},
    "source": {"title": "A test source", "url": "https://example.org/x", "location": "T1"},
    "notes": "a test case",
    "scenario": {"kind": "inference", "model": "llama-2-7b",
                 "system": {"device": "a100-sxm4-80gb", "num_gpus": 1},
                 "inference": {"batch": 1, "prompt_len": 128, "output_len": 1}},
}


def write_case_file(tmp_path, cases, kind="inference", name="cases.yaml", source=None):
    folder = tmp_path / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    body = {"cases": cases}
    if source:
        body["source"] = source
    path.write_text(yaml.safe_dump(body))
    return path
