"""`perfmodel plan-training`'s process settings (perfmodel/planning/cli.py docstring): a fresh
process that imports the command's module gets OpenBLAS at one thread and pydantic's plugin
search off, unless the user set either variable (their value is kept, an empty one included);
a process that built a pydantic validator already keeps pydantic's plugins as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os, sys
{before}
import perfmodel.planning.cli
print(json.dumps({{k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS",
                                                   "PYDANTIC_DISABLE_PLUGINS")}}))
"""


def _probe(env_update: dict, before: str = "") -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "PYDANTIC_DISABLE_PLUGINS")}
    env.update(env_update)
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_fresh_process_gets_one_blas_thread_and_no_plugin_search():
    assert _probe({}) == {"OPENBLAS_NUM_THREADS": "1", "PYDANTIC_DISABLE_PLUGINS": "__all__"}


def test_users_values_are_kept_even_empty():
    got = _probe({"OPENBLAS_NUM_THREADS": "2", "PYDANTIC_DISABLE_PLUGINS": ""})
    assert got == {"OPENBLAS_NUM_THREADS": "2", "PYDANTIC_DISABLE_PLUGINS": ""}


def test_a_process_with_numpy_and_a_validator_is_left_alone():
    before = ("import numpy\nfrom pydantic import BaseModel\n"
              "class M(BaseModel):\n    x: int = 1\nM()")
    assert _probe({}, before) == {"OPENBLAS_NUM_THREADS": None,
                                  "PYDANTIC_DISABLE_PLUGINS": None}
