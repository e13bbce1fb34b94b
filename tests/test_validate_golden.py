"""Moving code never changes a prediction: the full `perfmodel validate --json` output is held
against a stored copy (issue 8's rule for the restructuring): every string and count equal, every
float to a relative 1e-9 (tests/golden.py: last-digit rounding differs between CPUs).

A deliberate modelling change regenerates the copy in the same commit, with its reason:
``perfmodel validate --json > tests/data/validate_golden.json``.
"""

import json
import subprocess
import sys
from pathlib import Path

from golden import differences

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "validate_golden.json"


# a guard against a hang, not a speed check: ~105 s on an idle 2-core machine, past 300 s on a
# busy one while the other test worker runs
TIMEOUT_S = 1200


def test_validate_output_is_identical_to_the_stored_copy():
    proc = subprocess.run([sys.executable, "-m", "perfmodel.cli", "validate", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    now, stored = json.loads(proc.stdout), json.loads(GOLDEN.read_text())
    now.pop("perfmodel_version", None)
    stored.pop("perfmodel_version", None)
    changed = [(a["id"], a["predicted"], b["predicted"])
               for a, b in zip(now["cases"], stored["cases"], strict=False)
               if differences(a, b)]
    assert not changed, f"{len(changed)} cases changed, first: {changed[:3]}"
    assert not differences(now, stored)
