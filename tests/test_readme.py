"""The README's Quick start and CI run the same install and test commands."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_two_commands():
    assert len(quick_start_commands()) == 2


def test_ci_installs_and_tests_as_the_readme_says():
    *installs, test = quick_start_commands()[1].split(" && ")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert installs
    for install in installs:
        assert install in ci
    assert test in ci
