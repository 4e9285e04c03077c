"""What an admin reads, kept exactly: the after-transaction summary, the dry-run table, status,
check and last, each rendered from one realistic input (the seed's 9.0.0 -> 9.1.0 split on a
monolithic host) and compared with a file in golden/. A change of wording shows up as a diff
here. Regenerate after an intended change with UPDATE_GOLDEN=1 and read the diff before you
commit it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from libvirt_presets import render
from libvirt_presets.checks import Problem
from libvirt_presets.config import Config
from libvirt_presets.facts import ERASE, INSTALL, UPGRADE, LiveFacts, PackageChange, ServiceState, TransactionFacts
from libvirt_presets.planner import UnitPlan, plan_transaction
from libvirt_presets.snapshot import Snapshot
from libvirt_presets.units import SYSTEM, UnitKey

GOLDEN = Path(__file__).parent / "golden"
SYS = "/usr/lib/systemd/system/"
MONO = ("libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
        "libvirtd-tls.socket", "libvirtd-tcp.socket")
PROXY = ("virtproxyd.service", "virtproxyd.socket", "virtproxyd-ro.socket", "virtproxyd-admin.socket",
         "virtproxyd-tls.socket", "virtproxyd-tcp.socket")
LOG = ("virtlogd.service", "virtlogd.socket", "virtlogd-admin.socket")
QEMU_NEW = ("virtqemud-admin.socket", "virtqemud-tcp.socket")


@dataclass(frozen=True)
class Decision:
    action: str
    rule: str

    @property
    def reason(self) -> str:
        return self.rule


class Presets:
    """The fixture's preset files: modular sockets enabled, network listeners disabled."""

    def decide(self, name: str) -> Decision:
        if name.endswith(("-tcp.socket", "-tls.socket")):
            return Decision("disable", "/usr/lib/systemd/system-preset/80-libvirt.preset:22: disable *-tcp.socket")
        return Decision("enable", f"/usr/lib/systemd/system-preset/80-libvirt.preset:4: enable {name}")


def S(name: str) -> UnitKey:
    return UnitKey(SYSTEM, name)


def seed_plan():
    units = MONO + PROXY + LOG + ("virtqemud.service", "virtqemud.socket")
    before = Snapshot(units={S(u): SYS[1:] + u for u in units})
    old = "libvirt-daemon-9.0.0-1.fc41.x86_64"
    tx = TransactionFacts((
        PackageChange("libvirt-daemon", "libvirt-daemon-9.1.0-1.fc41.x86_64", UPGRADE,
                      frozenset(SYS + u for u in MONO)),
        PackageChange("libvirt-daemon", old, ERASE),
        PackageChange("libvirt-daemon-proxy", "libvirt-daemon-proxy-9.1.0-1.fc41.x86_64", INSTALL,
                      frozenset(SYS + u for u in PROXY)),
        PackageChange("libvirt-daemon-log", "libvirt-daemon-log-9.1.0-1.fc41.x86_64", UPGRADE,
                      frozenset(SYS + u for u in LOG)),
        PackageChange("libvirt-daemon-log", "libvirt-daemon-log-9.0.0-1.fc41.x86_64", ERASE),
        PackageChange("libvirt-daemon-driver-qemu", "libvirt-daemon-driver-qemu-9.1.0-1.fc41.x86_64", UPGRADE,
                      frozenset(SYS + u for u in ("virtqemud.service", "virtqemud.socket", *QEMU_NEW))),
        PackageChange("libvirt-daemon-driver-qemu", "libvirt-daemon-driver-qemu-9.0.0-1.fc41.x86_64", ERASE),
    ), owners_before={**{S(u): old for u in MONO + PROXY},
                      **{S(u): "libvirt-daemon-log-9.0.0-1.fc41.x86_64" for u in LOG}})
    running = ("libvirtd.service", "virtlogd.service")
    states = {s: ServiceState(s, "loaded", "active" if s in running else "inactive", "simple", False,
                              f"id-{s}" if s in running else "")
              for s in units if s.endswith(".service")}
    live = LiveFacts({s: f"id-{s}" for s in running}, states,
                     {u: u.split("-")[0].split(".")[0] + ".service" for u in units if u.endswith(".socket")})
    after = set(before.units) | {S(u) for u in QEMU_NEW}
    return plan_transaction(before, after, tx, Config(), {SYSTEM: Presets()}, live)


def enablement() -> dict[str, str]:
    enabled = {"libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
               "virtlogd.socket", "virtqemud.socket"}
    return {str(S(u)): "enabled" if u in enabled else "disabled" for u in MONO + PROXY + LOG}


def record() -> dict:
    plan = seed_plan()
    data = render.plan_json(plan, "transaction", "/", transaction=[
        {"package": f"libvirt-daemon-{v}", "action": a} for v, a in (("9.1.0", "upgrade"), ("9.0.0", "erase"))])
    data.update(started="2026-12-02T08:44:05Z", finished="2026-12-02T08:44:07Z", history_id=42)
    data["outcome"] = {
        "preset": list(QEMU_NEW),
        "restored_links": [{"link": "etc/systemd/system/sockets.target.wants/virtproxyd.socket", "target": None},
                           {"link": "etc/systemd/system/sockets.target.wants/virtproxyd-ro.socket", "target": None}],
        "restarted": ["libvirtd.service"], "reloaded": ["virtlogd.service"], "started": [], "stopped": [],
        "unmarked": [], "warnings": [],
    }
    return data


def statuses() -> list[render.UnitStatus]:
    presets = Presets()
    rows = []
    for unit in ("libvirtd.socket", "virtproxyd.socket", "virtproxyd-tls.socket", "virtlogd.service"):
        decision = presets.decide(unit)
        row = UnitPlan(S(unit), None, "libvirt-daemon-proxy-9.1.0-1.fc41.x86_64" if "proxy" in unit
                       else "libvirt-daemon-9.1.0-1.fc41.x86_64", (), ())
        state = "enabled" if unit in ("libvirtd.socket", "virtlogd.service") else "disabled"
        rows.append(render.UnitStatus(row, state, decision.action, decision.reason, "active"))
    return rows


OUTPUTS = {
    "summary.txt": lambda: "\n".join(render.summary(record())),
    "dry-run.txt": lambda: render.plan_table(seed_plan(), enablement()),
    "dry-run-all.txt": lambda: render.plan_table(seed_plan(), enablement(), show_all=True),
    "status.txt": lambda: render.status_text(statuses(), "/", False, Problem(
        "pending", (), "/var/lib/dnf/libvirt-units/pending.json: unfinished transaction; "
                       "run 'dnf libvirt-units resume'")),
    "check.txt": lambda: render.check_text([
        Problem("socket-conflict", ("libvirtd.socket", "virtproxyd.socket"),
                "libvirtd.socket and virtproxyd.socket are both enabled and listen on /run/libvirt/libvirt-sock"),
        Problem("config", (), "/etc/dnf/plugins/libvirt-units.conf:56: expected 'key = value', got 'guard'"),
    ], "/", False),
    "last.txt": lambda: render.last_text(record(), False),
}


@pytest.mark.parametrize("name", OUTPUTS)
def test_output_matches_its_golden_file(name):
    text = OUTPUTS[name]() + "\n"
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; UPDATE_GOLDEN=1 rewrites it (then read the diff)"
    too_long = [line for line in text.splitlines() if len(line) > render.WIDTH]
    assert not too_long, too_long
