"""scripts/stacks.py without building anything: arguments, cache keys, package lists, summaries."""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("stacks", REPO / "scripts" / "stacks.py")
stacks = importlib.util.module_from_spec(_spec)
sys.modules["stacks"] = stacks  # dataclasses look their module up
_spec.loader.exec_module(stacks)

TRIXIE = stacks.STACKS["trixie"]
MONDAY = datetime.date(2026, 11, 30)


def test_stack_arguments_are_ours_and_the_rest_goes_to_pytest() -> None:
    assert stacks.split_arguments(["--stack", "sid", "-k", "x", "--stack=host", "--", "--stack", "y"]) == (
        ["sid", "host"], ["-k", "x", "--stack", "y"])
    assert stacks.split_arguments([]) == ([], [])
    with pytest.raises(ValueError, match="unknown stack 'bookworm'"):
        stacks.split_arguments(["--stack", "bookworm"])


def test_cache_key_changes_with_packages_mirror_and_week_only() -> None:
    key = stacks.cache_key(TRIXIE, ["a", "b"], "http://m/debian", MONDAY)
    assert key.startswith("trixie-2026-W49-")
    assert stacks.cache_key(TRIXIE, ["a", "b"], "http://m/debian", MONDAY + datetime.timedelta(days=6)) == key
    for other in (stacks.cache_key(TRIXIE, ["a", "c"], "http://m/debian", MONDAY),
                  stacks.cache_key(TRIXIE, ["a", "b"], "http://n/debian", MONDAY),
                  stacks.cache_key(TRIXIE, ["a", "b"], "http://m/debian", MONDAY + datetime.timedelta(days=7))):
        assert other != key


def test_roots_get_what_deps_installs_and_their_own_extras() -> None:
    suite = set(stacks.suite_packages())
    assert {"python3-pytest", "python3-pip", "python3-setuptools", "python3-wheel", "systemd-container"} <= suite
    assert "mmdebstrap" not in suite  # a host tool, not needed in the roots
    sid = stacks.packages_for(stacks.STACKS["sid"])
    assert sid == sorted(set(sid)) and "dnf5" in sid and suite <= set(sid)
    assert "dnf5" not in stacks.packages_for(TRIXIE)


def test_summary_takes_pytest_last_line_and_the_differential_count() -> None:
    lines = ["x", "preset differential: 520 cases against systemctl 257 (/usr/bin/systemctl), 0 differences",
             "===== 1 failed, 367 passed, 1 skipped in 175.12s (0:02:55) ====="]
    outcome = stacks.summarize("trixie", 1, lines, 180.0)
    assert (outcome.status, outcome.line) == ("failed", "1 failed, 367 passed, 1 skipped in 175.12s (0:02:55)")
    assert outcome.differential.startswith("preset differential: 520 cases")
    assert stacks.summarize("sid", 0, ["====== 3 passed in 1.00s ======"], 1.0).status == "passed"
    broken = stacks.summarize("sid", 2, ["Traceback", "ImportError: x"], 1.0)
    assert broken.status == "failed" and broken.line == "no pytest summary, exit status 2: ImportError: x"
