"""Issue 14: `libvirt-units plan`, the dry run for hosts without dnf 4, prints the same plan as
`dnf libvirt-units --dry-run` for the same transaction.

It resolves with libdnf5 where python3-libdnf5 is installed (the sid stack) and with dnf 4's API
elsewhere (the Debian 12 host, trixie); the dnf 4 command it is compared with runs on every stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from libvirt_presets import resolve
from tests.e2e.fixtures import run
from tests.e2e.harness import REPO_ROOT, InstallRoot, monolithic_host, repo_id

SCHEMA = json.loads((REPO_ROOT / "doc" / "libvirt-units.schema.json").read_text())
CONFIG = REPO_ROOT / "etc/dnf/plugins/libvirt-units.conf"


def plan(root: InstallRoot, repo: Path, *args: str, check: bool = True):
    argv = ["/usr/bin/python3", "-m", "libvirt_presets", "plan", *args, "--root", str(root.path),
            "--config", str(CONFIG), "--repofrompath", f"{repo_id(repo.resolve())},{repo}", "--releasever", "1"]
    return run(argv, env={**root.env, "PYTHONPATH": str(REPO_ROOT)}, check=check)


def dnf4_dry_run(root: InstallRoot, repo: Path, *args: str) -> str:
    return root.dnf("-q", "libvirt-units", "--dry-run", *args, repo=repo).stdout


def comparable(text: str) -> dict:
    data = json.loads(text)
    jsonschema.validate(data, SCHEMA)
    data["transaction"] = sorted(data["transaction"], key=lambda c: (c["package"], c["action"]))
    return data


@pytest.mark.parametrize("verb,pkgs", [("upgrade", ()), ("install", ("libvirt-daemon-proxy",)),
                                       ("remove", ("libvirt-daemon-driver-network",))])
def test_plan_prints_the_same_plan_as_the_dnf4_dry_run(root, repos, verb, pkgs):
    monolithic_host(root, repos.v900, plugin=True)
    repo = repos.v910
    ours = plan(root, repo, verb, *pkgs, "--json")
    theirs = dnf4_dry_run(root, repo, verb, *pkgs, "--json")
    mine = comparable(ours.stdout)
    assert mine["transaction"] == comparable(theirs)["transaction"], ours.stderr
    assert mine == comparable(theirs), ours.stderr
    assert mine["transaction"], "an empty transaction proves nothing"
    if verb == "upgrade":
        units = {u["unit"]: u["actions"] for u in mine["units"]}
        assert units["virtproxyd.socket"] == ["keep"] and units["virtqemud-admin.socket"] == ["preset:enable"]
    # the table for people too, but for its first line (which names the command)
    table = plan(root, repo, verb, *pkgs).stdout.splitlines()
    assert table[1:] == dnf4_dry_run(root, repo, verb, *pkgs).splitlines()[1:]
    assert table[0].startswith(f"libvirt-units plan for: {verb}")


def test_plan_says_which_api_resolved(root, repos):
    """The resolver this stack uses: libdnf5 in sid, dnf 4 on the Debian 12 host and trixie."""
    assert resolve.available() in ("libdnf5", "dnf")
    bad = plan(root, repos.v910, "install", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "libvirt-units: error: 'plan install' needs the packages to install"
