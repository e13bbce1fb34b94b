"""Suite-wide test settings: the hypothesis profile, and the order in which files start.

The README's test command runs the suite on two workers (pytest-xdist, ``--dist loadfile``:
each file runs whole on one worker, so its module fixtures are built once). A worker takes the
next file when it is almost out of work, so a long file that starts last makes the whole run
wait for it: the files below, the longest ones (``--durations``), are collected first so that
they start at once on the two workers while the many short files fill the gaps. The order is
only a schedule: every test runs, and a serial run (no ``-n``) runs the same tests.

The parsed-document cache (specs.registry.parse_cache, which the CLI's commands run inside, and
tests call ``cli.main([...])`` in-process) goes to a temporary folder for the session
(PERFMODEL_CACHE_DIR, registry.CACHE_ENV), never the user's ~/.cache/perfmodel/parsed: the
process that loads this file first makes it, the xdist workers it starts inherit the variable and
share the folder (entries are written atomically), and it is removed at that process's exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hypothesis import settings

_OWNER = "PERFMODEL_TEST_CACHE_OWNER"  # set by the process that made the session's folder
if os.environ.get(_OWNER) is None:
    _cache = tempfile.mkdtemp(prefix="perfmodel-test-parsed-")
    os.environ["PERFMODEL_CACHE_DIR"] = _cache  # specs.registry.CACHE_ENV
    os.environ[_OWNER] = str(os.getpid())
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# No per-example deadline: on a busy 2-core CI machine one example of a model-wide property can
# take seconds, and hypothesis's default 200 ms deadline then fails a correct test (the checks
# of each example are unchanged; tests that set their own settings keep them).
settings.register_profile("perfmodel", deadline=None)
settings.load_profile("perfmodel")

# Longest first (a serial --durations run on this machine kind, 2026-12-03; idle-machine seconds
# where known). The rest follow in their usual (alphabetical) order.
FIRST = (
    "test_dashboard_browser.py",    # ~85 s: streamlit + a real headless chromium
    "test_validate_golden.py",      # ~105 s: the full `perfmodel validate` (every published case)
    "test_calibrate_converters.py", # every copied upstream table converted (~350 s in all on a
                                    # loaded machine, 2026-12-03: third longest file)
    "test_calibrate_measure.py",    # ~75 s: a real quick calibration, killed, resumed, rerun,
                                    # then the measured end-to-end loop on its profile
    "test_calibrate_budget.py",     # real calibrate runs (killing the parent, unwritable outputs)
    "test_serving.py",
    "test_uncertainty.py",          # band coverage predicts every validation case
    "test_dashboard_pages.py",
    "test_serving_frontier.py",
    "test_serving_multinode.py",
    "test_dsa_attention_dp.py",
    "test_serving_golden.py",
    "test_seed_analysis.py",
    "test_plan_training.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: rest unchanged
