"""Issue 16 end to end: a transaction that concerns no managed unit does not load the core.

The real dnf (with the plugin from this checkout) upgrades packages in an installroot, under
``PYTHONPROFILEIMPORTTIME=1``: Python itself then lists every module dnf's process imported, so
"the core was not loaded" is read from the interpreter, not from anything the plugin says.
Each test that must load the core shows why (gate.py): a package with a systemd file coming in
or going out, a configured trigger by package name or by file, a pending journal.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import InstallRoot

STATE = Path("var/lib/dnf/libvirt-units")
IMPORTS = {"PYTHONPROFILEIMPORTTIME": "1"}


@pytest.fixture
def host(root: InstallRoot, classic_pool, tmp_path: Path) -> tuple[InstallRoot, Path]:
    repo = classic_pool.make_repo(tmp_path / "repo", ["9.0.0", "9.1.0"])
    root.dnf("install", "libvirt-docs-9.0.0", "libvirt-daemon-log-9.0.0", repo=repo, plugin=False)
    return root, repo


def imported(output: str) -> set[str]:
    """Module names from `-X importtime` lines ("import time: self | cumulative | name")."""
    return {line.rsplit("|", 1)[1].strip() for line in output.splitlines() if line.startswith("import time:")
            and "|" in line}


def core_modules(output: str) -> set[str]:
    return {m for m in imported(output) if m.startswith("libvirt_presets.") and m != "libvirt_presets.gate"}


def last_record(root: InstallRoot) -> dict | None:
    path = root.path / STATE / "last-transaction.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_an_upgrade_without_units_or_triggers_does_not_load_the_core(host):
    root, repo = host
    result = root.dnf("upgrade", "libvirt-docs", repo=repo, env=IMPORTS)
    assert root.packages()["libvirt-docs"] == "9.1.0"
    assert "libvirt_presets.gate" in imported(result.stderr), "the plugin did not run"
    assert core_modules(result.stderr) == set()
    assert not (root.path / STATE).exists()  # no journal, no record: nothing was done


def assert_the_core_acted(root: InstallRoot, result: subprocess.CompletedProcess[str], package: str) -> None:
    """The core was imported and recorded a transaction whose first package is `package`."""
    assert "libvirt_presets.session" in core_modules(result.stderr)
    record = last_record(root)
    assert record is not None
    assert record["transaction"][0]["package"].startswith(package)


def test_a_package_with_unit_files_loads_the_core(host):
    root, repo = host
    result = root.dnf("upgrade", "libvirt-daemon-log", repo=repo, env=IMPORTS)
    assert_the_core_acted(root, result, "libvirt-daemon-log-9.1.0")


def test_a_transaction_that_concerns_us_loads_only_what_it_uses(host):
    """The cost of the transactions that do load the core (issue 16): no pathlib (it and the
    ntpath it loads cost 4.5 M instructions), no `check` code, no guards on an installroot, and
    no header reader when rpm's set holds every file list."""
    root, repo = host
    result = root.dnf("upgrade", "libvirt-daemon-log", repo=repo, env=IMPORTS)
    assert_the_core_acted(root, result, "libvirt-daemon-log-9.1.0")
    modules = imported(result.stderr)
    assert {"pathlib", "ntpath"} & modules == set()
    unused = {"checks", "guards", "headers", "markers", "watch", "commands", "cli"}
    assert {f"libvirt_presets.{m}" for m in unused} & modules == set()


def test_removing_a_package_with_unit_files_loads_the_core(host):
    """The outgoing package's files come from the rpmdb (hawkey), not from rpm's set."""
    root, repo = host
    result = root.dnf("remove", "libvirt-daemon-log", repo=repo, env=IMPORTS)
    assert_the_core_acted(root, result, "libvirt-daemon-log-9.0.0")


@pytest.mark.parametrize("trigger", ["libvirt-docs", "libvirt-doc*", "/usr/share/doc/libvirt-docs/README",
                                     "/usr/share/doc/libvirt-docs/*"])
def test_a_configured_trigger_loads_the_core(host, trigger):
    """By name or by file, plain (compared as a string) or a glob."""
    root, repo = host
    conf = f"[main]\nenabled = 1\n[triggers]\n{trigger} = virtlogd.service\n"
    result = root.dnf("upgrade", "libvirt-docs", repo=repo, plugin_conf=conf, env=IMPORTS)
    assert_the_core_acted(root, result, "libvirt-docs-9.1.0")


def test_a_pending_journal_is_completed_by_a_transaction_without_units(host):
    root, repo = host
    killed = root.dnf("upgrade", "libvirt-daemon-log", repo=repo, check=False,
                      env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:finish"})
    assert killed.returncode != 0
    assert (root.path / STATE / "pending.json").exists()
    result = root.dnf("upgrade", "libvirt-docs", repo=repo, env=IMPORTS)
    assert "libvirt_presets.session" in core_modules(result.stderr)
    assert not (root.path / STATE / "pending.json").exists()
    assert "completing the unfinished transaction" in result.output


def test_disabled_plugin_loads_nothing_but_its_configuration(host):
    root, repo = host
    result = root.dnf("upgrade", "libvirt-daemon-log", repo=repo, plugin_conf="[main]\nenabled = 0\n", env=IMPORTS)
    assert "libvirt_presets.session" not in core_modules(result.stderr)
    assert last_record(root) is None
