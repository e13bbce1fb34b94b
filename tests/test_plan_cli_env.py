"""The `perfmodel` command's process settings (``perfmodel.cli.console_main``): a fresh
``plan-training`` process gets OpenBLAS at one thread and pydantic's plugin search off unless
the user set either variable (their value is kept, an empty one included), and ends without the
interpreter's finalisation; ``cli.main`` called from Python (tests, scripts) changes neither
the caller's environment nor its process (review 2026-12-04: an in-process ``main()`` with a
plan-training ``sys.argv`` ended pytest with exit 0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

NAMES = ("OPENBLAS_NUM_THREADS", "PYDANTIC_DISABLE_PLUGINS")
ARGS = ["plan-training", "llama-3-8b", "--tokens", "1T", "--devices", "h100-sxm5-80gb",
        "--max-gpus", "8", "--json"]

# the command line as the console script runs it; prints the environment it ran with (atexit
# handlers run before the fast exit) and, if the process survives, a line after it
PROBE = """
import atexit, json, os, sys
from perfmodel import cli
atexit.register(lambda: print("ENV " + json.dumps({{k: os.environ.get(k) for k in {names}}})))
sys.argv = ["perfmodel", *{args}]
rc = cli.{entry}()
print("AFTER", rc)
"""


def _run(entry: str, env_update: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    env.update(env_update)
    code = PROBE.format(names=NAMES, args=ARGS, entry=entry)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)


def _env(out: str) -> dict:
    return json.loads(next(x for x in out.splitlines() if x.startswith("ENV "))[4:])


def test_console_command_gets_fresh_settings_and_ends_after_its_output():
    proc = _run("console_main", {})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _env(proc.stdout) == {"OPENBLAS_NUM_THREADS": "1", "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    assert "AFTER" not in proc.stdout  # the process ended at the command's end (os._exit)
    assert json.loads(proc.stdout[:proc.stdout.index("\nENV ")])  # its JSON, whole


def test_users_values_are_kept_even_empty():
    proc = _run("console_main", {"OPENBLAS_NUM_THREADS": "2", "PYDANTIC_DISABLE_PLUGINS": ""})
    assert _env(proc.stdout) == {"OPENBLAS_NUM_THREADS": "2", "PYDANTIC_DISABLE_PLUGINS": ""}


def test_main_called_from_python_keeps_the_callers_environment_and_process():
    proc = _run("main", {})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "AFTER 0" in proc.stdout  # the caller's code after main() ran
    assert _env(proc.stdout) == {"OPENBLAS_NUM_THREADS": None, "PYDANTIC_DISABLE_PLUGINS": None}
