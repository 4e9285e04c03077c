"""The pure planner on tables of before/after facts (no dnf, no rpm, no filesystem)."""

from __future__ import annotations

import pytest

from libvirt_presets.config import Config, parse_config
from libvirt_presets.facts import ERASE, INSTALL, OBSOLETE, UPGRADE, PackageChange, TransactionFacts
from libvirt_presets.planner import (
    LinkRepair,
    Plan,
    files_that_matter,
    link_repairs,
    live_actions,
    plan_transaction,
)
from libvirt_presets.snapshot import Snapshot
from libvirt_presets.systemctl import UnitState
from libvirt_presets.units import SYSTEM, USER, UnitKey

SYS = "/usr/lib/systemd/system/"
WANTS = "etc/systemd/system/sockets.target.wants/"


def S(name: str) -> UnitKey:
    return UnitKey(SYSTEM, name)


def snap(*names: str, links: dict[str, str] | None = None, user: tuple[str, ...] = ()) -> Snapshot:
    units = {S(n): "usr/lib/systemd/system/" + n for n in names}
    units.update({UnitKey(USER, n): "usr/lib/systemd/user/" + n for n in user})
    return Snapshot(units=units, links=links or {})


def pkg(name: str, version: str, action: str, *units: str, done: bool = True) -> PackageChange:
    return PackageChange(name, f"{name}-{version}-1.noarch", action,
                         frozenset(SYS + u for u in units), done)


PROXY = ("virtproxyd.service", "virtproxyd.socket", "virtproxyd-tls.socket")
MONO = ("libvirtd.service", "libvirtd.socket")


def split_upgrade() -> TransactionFacts:
    """The seed: virtproxyd* move from libvirt-daemon to the new libvirt-daemon-proxy."""
    return TransactionFacts((
        pkg("libvirt-daemon", "9.1.0", UPGRADE, *MONO),
        pkg("libvirt-daemon", "9.0.0", ERASE),
        pkg("libvirt-daemon-proxy", "9.1.0", INSTALL, *PROXY),
    ), owners_before={S(u): "libvirt-daemon-9.0.0-1.noarch" for u in MONO + PROXY})


def test_split_upgrade_presets_nothing_and_keeps_every_moved_unit():
    links = {WANTS + "libvirtd.socket": SYS + "libvirtd.socket"}
    before = snap(*MONO, *PROXY, links=links)
    plan = plan_transaction(before, set(before.units), split_upgrade(), Config())
    assert plan.presets == ()
    assert set(plan.kept) == {S(u) for u in MONO + PROXY}
    assert plan.kept_links == links
    row = {r.unit: r for r in plan.rows}[S("virtproxyd.socket")]
    assert row.actions == ("keep",)
    assert row.package_before == "libvirt-daemon-9.0.0-1.noarch"
    assert row.package_after == "libvirt-daemon-proxy-9.1.0-1.noarch"


def test_unit_added_to_installed_package_is_new_and_preset():
    before = snap("virtqemud.service")
    tx = TransactionFacts((pkg("libvirt-daemon-driver-qemu", "9.1.0", UPGRADE,
                               "virtqemud.service", "virtqemud-tcp.socket"),))
    plan = plan_transaction(before, {S("virtqemud.service"), S("virtqemud-tcp.socket")}, tx, Config())
    assert plan.presets == (S("virtqemud-tcp.socket"),)
    assert plan.kept == (S("virtqemud.service"),)


@pytest.mark.parametrize("action", [UPGRADE, OBSOLETE, INSTALL])
def test_unit_present_before_is_never_preset_whatever_the_package_action(action):
    before = snap("virtsecretd.socket")
    tx = TransactionFacts((pkg("libvirt-daemon-secret", "9.1.0", action, "virtsecretd.socket"),))
    plan = plan_transaction(before, set(before.units), tx, Config())
    assert plan.presets == () and plan.kept == (S("virtsecretd.socket"),)


def test_unmanaged_units_are_neither_preset_nor_held():
    before = snap("sshd.service")
    plan = plan_transaction(before, {S("sshd.service"), S("foo.service")}, TransactionFacts(), Config())
    assert plan.presets == () and plan.kept == ()


def test_scope_widened_by_config_glob():
    cfg = parse_config("[main]\nextra_units = foo*.service\n", "t.conf")
    plan = plan_transaction(snap(), {S("foo-bar.service")}, TransactionFacts(), cfg)
    assert plan.presets == (S("foo-bar.service"),)


def test_user_units_are_their_own_scope():
    cfg = parse_config("[main]\nextra_units = virtqemud-session.*\n", "t.conf")
    before = snap(user=())
    after = {UnitKey(USER, "virtqemud-session.socket")}
    plan = plan_transaction(before, after, TransactionFacts(), cfg)
    assert plan.presets == (UnitKey(USER, "virtqemud-session.socket"),)


def test_removed_unit_is_neither_preset_nor_held():
    before = snap("virtsecretd.socket")
    plan = plan_transaction(before, set(), TransactionFacts((pkg("x", "1", ERASE),)), Config())
    assert plan.presets == () and plan.kept == ()
    assert [r.actions for r in plan.rows] == [("none",)]


def test_presets_off_holds_nothing_and_presets_nothing():
    cfg = parse_config("[main]\npresets = no\n", "t.conf")
    plan = plan_transaction(snap("libvirtd.socket"), {S("libvirtd.socket"), S("virtqemud.socket")},
                            TransactionFacts(), cfg)
    assert plan.presets == () and plan.kept == ()


# --- links -------------------------------------------------------------------------------

def test_link_repairs_undo_scriptlet_enable_and_disable_but_leave_others():
    wanted = {WANTS + "libvirtd.socket": SYS + "libvirtd.socket",
              WANTS + "virtproxyd-tls.socket": SYS + "virtproxyd-tls.socket"}
    now = {WANTS + "virtproxyd.socket": SYS + "virtproxyd.socket",  # enabled by a scriptlet
           WANTS + "libvirtd.socket": SYS + "libvirtd.socket",
           WANTS + "sshd.socket": SYS + "sshd.socket"}  # not ours
    units = {S("libvirtd.socket"), S("virtproxyd.socket"), S("virtproxyd-tls.socket")}
    assert link_repairs(wanted, now, units) == [
        LinkRepair(WANTS + "virtproxyd-tls.socket", SYS + "virtproxyd-tls.socket"),
        LinkRepair(WANTS + "virtproxyd.socket", None),
    ]


def test_mask_and_alias_links_belong_to_their_units():
    mask = {"etc/systemd/system/virtproxyd.socket": "/dev/null"}
    alias = {"etc/systemd/system/libvirt.service": SYS + "libvirtd.service"}
    assert link_repairs(mask, {}, {S("virtproxyd.socket")}) == [
        LinkRepair("etc/systemd/system/virtproxyd.socket", "/dev/null")]
    assert link_repairs({}, alias, {S("libvirtd.service")}) == [
        LinkRepair("etc/systemd/system/libvirt.service", None)]


def test_link_repairs_is_empty_when_nothing_changed():
    links = {WANTS + "libvirtd.socket": SYS + "libvirtd.socket"}
    assert link_repairs(links, dict(links), {S("libvirtd.socket")}) == []


# --- restarts ----------------------------------------------------------------------------

DAEMONS = ("libvirtd.service", "virtnetworkd.service", "virtnwfilterd.service",
           "virtqemud.service", "virtlogd.service", "virtlockd.service", "libvirt-guests.service")


def restart_tx(*changes: PackageChange) -> TransactionFacts:
    return TransactionFacts(changes)


def test_each_service_once_with_trigger_and_policy():
    before = snap(*DAEMONS)
    tx = restart_tx(
        pkg("libvirt-daemon", "9.1.0", UPGRADE, "libvirtd.service"),
        pkg("libvirt-daemon", "9.0.0", ERASE),
        pkg("libvirt-daemon-config-network", "9.1.0", UPGRADE),
        pkg("libvirt-daemon-config-nwfilter", "9.1.0", UPGRADE),
        pkg("libvirt-daemon-driver-network", "9.1.0", UPGRADE, "virtnetworkd.service"),
        pkg("libvirt-daemon-log", "9.1.0", UPGRADE, "virtlogd.service"),
        pkg("libvirt-client", "9.1.0", UPGRADE, "libvirt-guests.service"),
    )
    plan = plan_transaction(before, set(before.units), tx, Config())
    assert sorted(plan.restarts) == ["libvirtd.service", "virtnetworkd.service", "virtnwfilterd.service"]
    assert plan.restarts["virtnwfilterd.service"] == "libvirt-daemon-config-nwfilter-9.1.0-1.noarch"
    assert list(plan.reloads) == ["virtlogd.service"]
    assert plan.daemon_reload


def test_fresh_install_and_failed_elements_schedule_no_restart():
    before = snap("libvirtd.service")
    tx = restart_tx(pkg("libvirt-daemon", "9.1.0", UPGRADE, "libvirtd.service", done=False),
                    pkg("libvirt-daemon-driver-qemu", "9.1.0", INSTALL, "virtqemud.service"))
    plan = plan_transaction(before, {S("libvirtd.service"), S("virtqemud.service")}, tx, Config())
    assert plan.restarts == {} and plan.reloads == {}


def test_file_glob_trigger():
    cfg = parse_config("[triggers]\n/usr/lib64/libvirt/* = virtqemud.service\n", "t.conf")
    before = snap("virtqemud.service")
    change = PackageChange("libvirt-libs", "libvirt-libs-9.1.0-1.x86_64", UPGRADE,
                           frozenset({"/usr/lib64/libvirt/libvirt.so"}))
    plan = plan_transaction(before, set(before.units), TransactionFacts((change,)), cfg)
    assert plan.restarts == {"virtqemud.service": "libvirt-libs-9.1.0-1.x86_64"}
    # the journal keeps only the files that matter: the trigger's file is one of them
    matters = files_that_matter(cfg)
    assert set(filter(matters, change.files | {"/usr/bin/virsh", "/usr/lib64/libvirt"})) == change.files


def state(name: str, active: str = "active", type_: str = "simple", refuse: bool = False,
          invocation: str = "") -> UnitState:
    return UnitState(name, "loaded", active, type_, refuse, 0, invocation or f"id-{name}")


def test_live_actions_filter_by_manager_state():
    plan = Plan(restarts={s: "p" for s in ("a.service", "b.service", "d.service",
                                           "e.service", "f.service", "g.service", "h.service")},
                reloads={"virtlogd.service": "p"})
    after = {
        "a.service": state("a.service"),
        "b.service": state("b.service", active="inactive"),  # stopped before and after
        "h.service": state("h.service", invocation="new"),  # restarted by a scriptlet (id)
        "d.service": state("d.service", type_="oneshot"),
        "e.service": state("e.service", refuse=True),
        "f.service": state("f.service", active="inactive"),  # stopped by %preun during a rename
        "virtlogd.service": state("virtlogd.service"),
    }
    before = {s: f"id-{s}" for s in after if s not in ("b.service",)}
    acts = live_actions(plan, before, after)
    assert acts.try_restart == ("a.service",)
    assert acts.try_reload == ("virtlogd.service",)
    assert acts.start == ("f.service",)
    assert set(acts.skipped) == {"b.service", "d.service", "e.service", "g.service", "h.service"}


def test_installroot_plans_no_restart_at_all():
    before = snap(*DAEMONS)
    tx = restart_tx(pkg("libvirt-daemon", "9.1.0", UPGRADE, "libvirtd.service"),
                    pkg("libvirt-daemon-config-network", "9.1.0", UPGRADE))
    plan = plan_transaction(before, set(before.units), tx, Config(), live=False)
    assert plan.restarts == {} and plan.reloads == {}
    assert all("restart" not in r.actions for r in plan.rows)
