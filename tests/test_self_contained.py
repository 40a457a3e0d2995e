"""The test suite runs from a fresh clone: no test reads files outside the repository."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_fixtures_are_committed_with_the_tests(fixtures_dir):
    assert fixtures_dir.resolve().is_relative_to(TESTS)
    for name in ("nvlabs_tiny16.npz", "rosinality_ros16.npz", "rosinality_ros16.pt", "README.md"):
        assert (fixtures_dir / name).is_file(), name


def test_no_test_reaches_outside_the_repository():
    outside = re.compile(r"""parents\[1\]\.parent|REPO\.parent|["']\.\./shared|["']shared["']\s*/""")
    offenders = [f"{p.name}:{i + 1}" for p in sorted(TESTS.glob("*.py")) if p.name != Path(__file__).name
                 for i, line in enumerate(p.read_text().splitlines()) if outside.search(line)]
    assert not offenders, f"tests reading outside the repository: {offenders}"
