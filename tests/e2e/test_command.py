"""Issue 4 end to end: `dnf libvirt-units --dry-run|status|check [--json]` on real installroots.

The dry run must predict the transaction: after each scenario the plan the plugin recorded
(/var/lib/dnf/libvirt-units/last-transaction.json) is compared with the dry run's, unit by unit.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.e2e.harness import REPO_ROOT, SESSION_CONF, InstallRoot, monolithic_host

SCHEMA = json.loads((REPO_ROOT / "doc" / "libvirt-units.schema.json").read_text())
RECORD = "var/lib/dnf/libvirt-units/last-transaction.json"


def command_json(root: InstallRoot, *args: str, repo: Path, conf: str | None = None, check: bool = True) -> dict:
    result = root.dnf("-q", "libvirt-units", *args, "--json", repo=repo, plugin_conf=conf, check=check)
    data = json.loads(result.stdout)
    jsonschema.validate(data, SCHEMA)
    return data


def actions(data: dict) -> dict[str, list[str]]:
    return {f"{u['unit']}/{u['scope']}": u["actions"] for u in data["units"]}


def tree_state(root: InstallRoot) -> tuple:
    files = sorted(str(p.relative_to(root.path)) for p in root.path.rglob("*")
                   if "var/cache" not in str(p) and "var/log/dnf" not in str(p) and "var/lib/dnf" not in str(p))
    return root.links(), root.packages(), files


def planned_then_done(root: InstallRoot, verb: str, *pkgs: str, repo: Path, conf: str | None = None) -> dict:
    """Dry-run `dnf VERB PKGS`, check nothing changed, run it, check the plan was kept."""
    state = tree_state(root)
    plan = command_json(root, "--dry-run", verb, *pkgs, repo=repo, conf=conf)
    assert tree_state(root) == state, "the dry run changed the root"
    root.dnf(verb, *pkgs, repo=repo, plugin_conf=conf)
    record = json.loads((root.path / RECORD).read_text())
    jsonschema.validate(record, SCHEMA)
    assert actions(plan) == actions(record)
    return plan


def test_dry_run_on_the_seed_split_says_keep_and_the_upgrade_does_it(root, repos):
    monolithic_host(root, repos.v900, plugin=True)
    plan = planned_then_done(root, "upgrade", repo=repos.v910)
    units = {u["unit"]: u for u in plan["units"]}
    proxy = units["virtproxyd.socket"]
    assert proxy["actions"] == ["keep"] and proxy["enablement"] == "disabled"
    assert proxy["package_before"].startswith("libvirt-daemon-9.0.0")
    assert proxy["package_after"].startswith("libvirt-daemon-proxy-9.1.0")
    assert "existed before" in proxy["reasons"][0]
    assert not any(a.startswith("preset") for a in proxy["actions"])
    admin = units["virtqemud-admin.socket"]
    assert admin["actions"] == ["preset:enable"]
    assert "80-libvirt.preset:" in admin["reasons"][0]
    assert units["virtqemud-tcp.socket"]["actions"] == ["preset:disable"]
    assert root.is_enabled("virtproxyd.socket") == "disabled"
    assert {"package": "libvirt-daemon-proxy-9.1.0-1.noarch", "action": "install"} in plan["transaction"]


def test_dry_run_table_for_people(root, repos):
    monolithic_host(root, repos.v900, plugin=True)
    out = root.dnf("-q", "libvirt-units", "--dry-run", repo=repos.v910).stdout
    assert all(len(line) <= 100 for line in out.splitlines()), out
    # the units the transaction changes something of: here the two new ones and their presets
    line = next(x for x in out.splitlines() if x.startswith("virtqemud-admin.socket "))
    assert "preset:enable" in line and "80-libvirt.preset:" in out
    assert not any(x.startswith("virtproxyd.socket ") for x in out.splitlines())
    assert "more managed unit(s) keep their state as it is (--all lists them)" in out
    everything = root.dnf("-q", "libvirt-units", "--dry-run", "--all", repo=repos.v910).stdout
    line = next(x for x in everything.splitlines() if x.startswith("virtproxyd.socket "))
    assert " disabled " in line and " keep " in line and "existed before" in line


@pytest.mark.parametrize("scenario", ["fresh-install", "admin-tls", "rename", "masked", "session", "remove"])
def test_dry_run_predicts_every_scenario(root, repos, scenario):
    if scenario == "fresh-install":
        planned_then_done(root, "install", "libvirt-9.0.0", repo=repos.v900)
        return
    if scenario == "session":
        root.dnf("install", "libvirt-daemon-session-9.1.0", repo=repos.v920, plugin_conf=SESSION_CONF)
        root.systemctl("--global", "disable", "virtqemud-session.socket")
        plan = planned_then_done(root, "upgrade", repo=repos.v920, conf=SESSION_CONF)
        assert actions(plan)["virtqemud-session.socket/user"] == ["keep"]
        return
    root.dnf("install", "libvirt", repo=repos.v900)
    if scenario == "admin-tls":
        root.systemctl("enable", "virtproxyd-tls.socket")
    elif scenario == "rename":
        root.systemctl("disable", "virtsecretd.socket")
    elif scenario == "masked":
        root.systemctl("mask", "virtproxyd.socket")
    if scenario == "remove":
        plan = planned_then_done(root, "remove", "libvirt-daemon-driver-network", "libvirt", repo=repos.v900)
        assert actions(plan)["virtnetworkd.socket/system"] == ["none"]
        return
    planned_then_done(root, "upgrade", repo=repos.v910)


def test_check_finds_the_seed_socket_conflict(root, repos):
    root.dnf("install", "libvirt", repo=repos.v900)
    ok = root.dnf("-q", "libvirt-units", "check", repo=repos.v900, check=False)
    assert ok.returncode == 0 and "no problems found" in ok.stdout
    root.systemctl("enable", "libvirtd.socket")  # beside the preset-enabled virtproxyd.socket
    bad = root.dnf("-q", "libvirt-units", "check", repo=repos.v900, check=False)
    assert bad.returncode == 1
    conflicts = [x for x in bad.stdout.splitlines() if "/run/libvirt/libvirt-sock" in x]
    assert conflicts == ["libvirtd.socket and virtproxyd.socket are both enabled and listen on "
                         "/run/libvirt/libvirt-sock: only one of them can start (disable one)"]
    data = command_json(root, "check", repo=repos.v900, check=False)
    kinds = {p["kind"] for p in data["problems"]}
    assert kinds == {"socket-conflict"}


def test_check_finds_missing_service_and_dangling_link(root, repos):
    root.dnf("install", "libvirt", repo=repos.v900)
    (root.path / "usr/lib/systemd/system/virtqemud.service").unlink()  # its sockets stay enabled
    data = command_json(root, "check", repo=repos.v900, check=False)
    by_kind = {p["kind"]: p for p in data["problems"]}
    assert "virtqemud.socket" in by_kind["missing-service"]["units"]
    assert by_kind["dangling-link"]["units"] == ["virtqemud.service"]


def test_status_shows_owner_enablement_preset_and_drift(root, repos):
    root.dnf("install", "libvirt", repo=repos.v900)
    root.systemctl("enable", "virtproxyd-tls.socket")
    data = command_json(root, "status", repo=repos.v900)
    units = {u["unit"]: u for u in data["units"]}
    tls = units["virtproxyd-tls.socket"]
    assert tls["package_after"].startswith("libvirt-daemon-9.0.0")
    assert (tls["enablement"], tls["preset"], tls["drift"]) == ("enabled", "disable", True)
    assert "`disable *-tls.socket` in /usr/lib/systemd/system-preset/80-libvirt.preset:" in tls["preset_reason"]
    proxy = units["virtproxyd.socket"]
    assert (proxy["enablement"], proxy["preset"], proxy["drift"]) == ("enabled", "enable", False)
    assert "active" not in proxy  # no live manager for an installroot
    assert len(units) == len([p for p in (root.path / "usr/lib/systemd/system").iterdir()
                              if p.name.startswith(("virt", "libvirt"))])


def test_the_record_says_when_which_dnf_transaction_and_which_packages_and_last_shows_it(root, repos):
    monolithic_host(root, repos.v900, plugin=True)
    root.dnf("upgrade", repo=repos.v910)
    record = json.loads((root.path / RECORD).read_text())
    jsonschema.validate(record, SCHEMA)
    assert record["started"] <= record["finished"] and record["started"].endswith("Z")
    listed = root.dnf("-q", "history", "list", repo=repos.v910).stdout.splitlines()
    ids = [line.split("|")[0].strip() for line in listed]
    assert record["history_id"] == max(int(i) for i in ids if i.isdigit())
    packages = {c["package"].rsplit("-", 2)[0]: c["action"] for c in record["transaction"] if c["action"] != "erase"}
    assert packages["libvirt-daemon"] == "upgrade" and packages["libvirt-daemon-proxy"] == "install"

    last = root.dnf("-q", "libvirt-units", "last", repo=repos.v910).stdout
    assert last.startswith(f"last transaction (dnf history {record['history_id']}): "
                           f"{len(record['transaction'])} package change(s) in {root.path}"), last
    assert "Preset: virtqemud-admin.socket (enabled), virtqemud-tcp.socket (disabled)" in last
    assert all(len(line) <= 100 for line in last.splitlines() if str(root.path) not in line), last
    assert command_json(root, "last", repo=repos.v910) == record
