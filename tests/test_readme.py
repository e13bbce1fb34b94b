"""README.md opens with the two commands, and CI runs the README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_setup_and_test_commands():
    first, second = commands()[:2]
    assert "perfmodel predict examples/" in first
    assert "pytest" in second


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands()[1] in ci


def test_readme_example_exists():
    first = commands()[0]
    example = re.search(r"(examples/\S+\.yaml)", first).group(1)
    assert (ROOT / example).is_file()
