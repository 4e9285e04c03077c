"""The pure planner on tables of before/after facts (no dnf, no rpm, no filesystem)."""

from __future__ import annotations

import pytest

from libvirt_presets.config import Config, parse_config
from libvirt_presets.facts import (
    ERASE,
    INSTALL,
    OBSOLETE,
    UPGRADE,
    LiveFacts,
    PackageChange,
    ServiceState,
    TransactionFacts,
)
from libvirt_presets.planner import (
    LinkRestore,
    Plan,
    batch_retries,
    daemon_reload_due,
    files_that_matter,
    link_restores,
    plan_transaction,
)
from libvirt_presets.snapshot import Snapshot
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
    assert set(plan.keep) == {S(u) for u in MONO + PROXY}
    assert plan.keep_links == links
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
    assert plan.keep == (S("virtqemud.service"),)


@pytest.mark.parametrize("action", [UPGRADE, OBSOLETE, INSTALL])
def test_unit_present_before_is_never_preset_whatever_the_package_action(action):
    before = snap("virtsecretd.socket")
    tx = TransactionFacts((pkg("libvirt-daemon-secret", "9.1.0", action, "virtsecretd.socket"),))
    plan = plan_transaction(before, set(before.units), tx, Config())
    assert plan.presets == () and plan.keep == (S("virtsecretd.socket"),)


def test_unmanaged_units_are_neither_preset_nor_kept():
    before = snap("sshd.service")
    plan = plan_transaction(before, {S("sshd.service"), S("foo.service")}, TransactionFacts(), Config())
    assert plan.presets == () and plan.keep == ()


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


def test_removed_unit_is_neither_preset_nor_kept():
    before = snap("virtsecretd.socket")
    plan = plan_transaction(before, set(), TransactionFacts((pkg("x", "1", ERASE),)), Config())
    assert plan.presets == () and plan.keep == ()
    assert [r.actions for r in plan.rows] == [("none",)]


def test_presets_off_keeps_nothing_and_presets_nothing():
    cfg = parse_config("[main]\npresets = no\n", "t.conf")
    plan = plan_transaction(snap("libvirtd.socket"), {S("libvirtd.socket"), S("virtqemud.socket")},
                            TransactionFacts(), cfg)
    assert plan.presets == () and plan.keep == ()


@pytest.mark.parametrize("text, presets, keep", [
    ("", True, True),
    ("[main]\npresets = no\n", False, False),  # keep follows presets when not given
    ("[main]\nkeep = no\n", True, False),
    ("[main]\npresets = no\nkeep = yes\n", False, True),
])
def test_keep_is_its_own_key_and_follows_presets_when_not_given(text, presets, keep):
    cfg = parse_config(text, "t.conf")
    assert not cfg.problems and (cfg.presets, cfg.keeps) == (presets, keep)
    tx = TransactionFacts((pkg("libvirt-daemon", "9.1.0", UPGRADE, "libvirtd.socket", "virtqemud.socket"),))
    plan = plan_transaction(snap("libvirtd.socket"), {S("libvirtd.socket"), S("virtqemud.socket")}, tx, cfg)
    assert plan.presets == ((S("virtqemud.socket"),) if presets else ())
    assert plan.keep == ((S("libvirtd.socket"),) if keep else ())
    assert [r.actions for r in plan.rows if r.unit == S("libvirtd.socket")] == ([("keep",)] if keep else [])


def test_keep_from_the_main_file_survives_a_dropin_that_sets_presets():
    cfg = parse_config("[main]\nkeep = yes\n", "main.conf")
    cfg = parse_config("[main]\npresets = no\n", "10-a.conf", cfg)
    assert (cfg.presets, cfg.keep, cfg.keeps) == (False, True, True)
    cfg = parse_config("[main]\nkeep = maybe\n", "20-b.conf", cfg)
    assert cfg.keeps is True and cfg.problems == ("20-b.conf:2: keep: expected yes/no, got 'maybe' (default kept)",)


# --- links -------------------------------------------------------------------------------

def test_link_restores_undo_scriptlet_enable_and_disable_but_leave_others():
    wanted = {WANTS + "libvirtd.socket": SYS + "libvirtd.socket",
              WANTS + "virtproxyd-tls.socket": SYS + "virtproxyd-tls.socket"}
    now = {WANTS + "virtproxyd.socket": SYS + "virtproxyd.socket",  # enabled by a scriptlet
           WANTS + "libvirtd.socket": SYS + "libvirtd.socket",
           WANTS + "sshd.socket": SYS + "sshd.socket"}  # not ours
    units = {S("libvirtd.socket"), S("virtproxyd.socket"), S("virtproxyd-tls.socket")}
    assert link_restores(wanted, now, units) == [
        LinkRestore(WANTS + "virtproxyd-tls.socket", SYS + "virtproxyd-tls.socket"),
        LinkRestore(WANTS + "virtproxyd.socket", None),
    ]


def test_mask_and_alias_links_belong_to_their_units():
    mask = {"etc/systemd/system/virtproxyd.socket": "/dev/null"}
    alias = {"etc/systemd/system/libvirt.service": SYS + "libvirtd.service"}
    assert link_restores(mask, {}, {S("virtproxyd.socket")}) == [
        LinkRestore("etc/systemd/system/virtproxyd.socket", "/dev/null")]
    assert link_restores({}, alias, {S("libvirtd.service")}) == [
        LinkRestore("etc/systemd/system/libvirt.service", None)]


def test_link_restores_is_empty_when_nothing_changed():
    links = {WANTS + "libvirtd.socket": SYS + "libvirtd.socket"}
    assert link_restores(links, dict(links), {S("libvirtd.socket")}) == []


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
    plan = plan_transaction(before, set(before.units), tx, Config(), live=LiveFacts())
    assert sorted(plan.restarts) == ["libvirtd.service", "virtnetworkd.service", "virtnwfilterd.service"]
    assert plan.restarts["virtnwfilterd.service"] == "libvirt-daemon-config-nwfilter-9.1.0-1.noarch"
    assert list(plan.reloads) == ["virtlogd.service"]
    assert plan.daemon_reload


def test_fresh_install_and_failed_elements_schedule_no_restart():
    before = snap("libvirtd.service")
    tx = restart_tx(pkg("libvirt-daemon", "9.1.0", UPGRADE, "libvirtd.service", done=False),
                    pkg("libvirt-daemon-driver-qemu", "9.1.0", INSTALL, "virtqemud.service"))
    plan = plan_transaction(before, {S("libvirtd.service"), S("virtqemud.service")}, tx, Config(), live=LiveFacts())
    assert plan.restarts == {} and plan.reloads == {}


def test_file_glob_trigger():
    cfg = parse_config("[triggers]\n/usr/lib64/libvirt/* = virtqemud.service\n", "t.conf")
    before = snap("virtqemud.service")
    change = PackageChange("libvirt-libs", "libvirt-libs-9.1.0-1.x86_64", UPGRADE,
                           frozenset({"/usr/lib64/libvirt/libvirt.so"}))
    plan = plan_transaction(before, set(before.units), TransactionFacts((change,)), cfg, live=LiveFacts())
    assert plan.restarts == {"virtqemud.service": "libvirt-libs-9.1.0-1.x86_64"}
    # the journal keeps only the files that matter: the trigger's file is one of them
    matters = files_that_matter(cfg)
    assert set(filter(matters, change.files | {"/usr/bin/virsh", "/usr/lib64/libvirt"})) == change.files


def state(name: str, active: str = "active", type_: str = "simple", refuse: bool = False,
          invocation: str = "") -> ServiceState:
    return ServiceState(name, "loaded", active, type_, refuse, invocation or f"id-{name}")


LETTERS = ("a", "b", "d", "e", "f", "g", "h")


def test_live_actions_follow_the_manager_state():
    """Each restart/reload candidate gets exactly one live decision from the facts."""
    units = [f"{x}.service" for x in LETTERS] + ["virtlogd.service"]
    before = snap(*units)
    tx = TransactionFacts(tuple(pkg(u.removesuffix(".service"), "2", UPGRADE, u) for u in units))
    states = {
        "a.service": state("a.service"),
        "b.service": state("b.service", active="inactive"),  # stopped before and after
        "h.service": state("h.service", invocation="new"),  # restarted by a scriptlet (new ID)
        "d.service": state("d.service", type_="oneshot"),
        "e.service": state("e.service", refuse=True),
        "f.service": state("f.service", active="inactive"),  # stopped by %preun during a rename
        "virtlogd.service": state("virtlogd.service"),
    }  # g.service: not loaded
    running_before = {s: f"id-{s}" for s in states if s != "b.service"}
    live = LiveFacts(running_before, states, guarded=())
    config = parse_config("[main]\nextra_units = ?.service\n", "t.conf")
    acts = plan_transaction(before, set(before.units), tx, config, live=live).live
    assert acts.restart == ("a.service",)
    assert acts.reload == ("virtlogd.service",)
    assert acts.start == ("f.service",)
    assert acts.restart_batch == ("a.service", "f.service")  # one `systemctl restart` for both
    assert set(acts.skipped) == {"b.service", "d.service", "e.service", "g.service", "h.service"}
    assert acts.stop == () and acts.guard == ()


LIBVIRTD = ("libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket")
SOCKET_OF = {"libvirtd.socket": "libvirtd.service", "libvirtd-ro.socket": "libvirtd.service",
             "libvirtd-admin.socket": "libvirtd.service", "virtlogd.socket": "virtlogd.service",
             "virtproxyd.socket": "virtproxyd.service"}


def test_guards_cover_the_sockets_a_refused_stop_would_strand():
    """libvirt's %posttrans stops libvirtd.service, restarts its sockets, starts it again:
    with only the service guarded the sockets stay down. Every socket of a guarded service is
    guarded with it, even one whose package is not in the transaction."""
    before = snap(*LIBVIRTD, "virtlogd.service", "virtlogd.socket", "virtproxyd.socket")
    tx = TransactionFacts((pkg("libvirt-daemon", "9.1.0", UPGRADE, "libvirtd.service", "libvirtd.socket",
                               "libvirtd-ro.socket"),),
                          owners_before={S(u): "libvirt-daemon-9.0.0-1.noarch" for u in LIBVIRTD[:3]})
    states = {s: state(s) for s in ("libvirtd.service", "virtlogd.service")}
    live = LiveFacts({"libvirtd.service": "id-libvirtd.service", "virtlogd.service": "id-virtlogd.service"},
                     states, SOCKET_OF)
    plan = plan_transaction(before, set(before.units), tx, Config(), live=live)
    # libvirtd-admin.socket is not shipped by the upgrade, but it starts libvirtd.service
    assert plan.live.guard == ("libvirtd-admin.socket", "libvirtd-ro.socket", "libvirtd.service", "libvirtd.socket")
    assert plan.live.quiet_reload == ("libvirtd.service",)  # restarted afterwards: its reloads wait
    assert plan.live.restart == ("libvirtd.service",)
    rows = {r.unit.name: r.actions for r in plan.rows}
    assert rows["libvirtd.service"] == ("keep", "guard", "restart")
    assert rows["libvirtd-admin.socket"] == ("guard",)
    assert "virtlogd.socket" not in rows and "virtproxyd.socket" not in rows  # untouched


def test_guards_leave_alone_what_the_transaction_removes_and_stopped_services():
    before = snap("virtproxyd.service", "virtproxyd.socket", "virtqemud.service", "virtqemud.socket")
    qemu = ("virtqemud.service", "virtqemud.socket")
    owners = {S(u): "libvirt-daemon-proxy-9.1.0-1.noarch" for u in ("virtproxyd.service", "virtproxyd.socket")}
    owners.update({S(u): "libvirt-daemon-driver-qemu-9.0.0-1.noarch" for u in qemu})
    tx = TransactionFacts((pkg("libvirt-daemon-proxy", "9.1.0", ERASE),
                           pkg("libvirt-daemon-driver-qemu", "9.1.0", UPGRADE, *qemu),
                           pkg("libvirt-daemon-driver-qemu", "9.0.0", ERASE)),
                          owners_before=owners)
    after = {S("virtqemud.service"), S("virtqemud.socket")}  # the erase takes virtproxyd* away
    live = LiveFacts({"virtproxyd.service": "id-1"}, {"virtqemud.service": state("virtqemud.service", "inactive")},
                     SOCKET_OF)
    plan = plan_transaction(before, after, tx, Config(), live=live)
    # the idle host: virtqemud.service is not running (socket activation), its socket is guarded
    assert plan.live.guard == ("virtqemud.socket",)
    assert plan.live.restart == () and plan.live.start == ()
    assert plan.live.skipped == {"virtqemud.service": "libvirt-daemon-driver-qemu-9.1.0-1.noarch changed; "
                                 "not running before the transaction: left stopped"}


def test_never_policy_services_are_guarded_but_never_acted_on():
    before = snap("libvirt-guests.service")
    tx = TransactionFacts((pkg("libvirt-client", "9.1.0", UPGRADE, "libvirt-guests.service"),))
    live = LiveFacts({"libvirt-guests.service": "id"},
                     {"libvirt-guests.service": state("libvirt-guests.service", type_="oneshot", invocation="id")})
    plan = plan_transaction(before, set(before.units), tx, Config(), live=live)
    assert plan.live.guard == ("libvirt-guests.service",) and plan.live.quiet_reload == ()
    assert plan.live.restart_batch == () and plan.live.reload == ()


def test_after_rpm_the_recorded_guards_count_and_a_removed_guarded_unit_is_stopped():
    """finish() hands in the guards begin() placed (rpm may have done other than predicted)."""
    before = snap("virtlogd.service", "virtlogd.socket")
    tx = TransactionFacts((pkg("libvirt-daemon-log", "9.1.0", UPGRADE, "virtlogd.service"),))
    states = {"virtlogd.service": state("virtlogd.service")}
    live = LiveFacts({"virtlogd.service": "id-virtlogd.service"}, states,
                     guarded=("virtlogd.service", "virtlogd.socket"))
    plan = plan_transaction(before, {S("virtlogd.service")}, tx, Config(), live=live)
    assert plan.live.guard == ("virtlogd.service", "virtlogd.socket")
    assert plan.live.stop == ("virtlogd.socket",)
    assert plan.live.reload == ("virtlogd.service",) and plan.live.restart_batch == ()


def test_a_running_service_stopped_during_the_transaction_is_started_again():
    """Not a restart candidate (its package did not change), yet a scriptlet stopped it."""
    before = snap("virtproxyd.service", "virtnetworkd.service")
    live = LiveFacts({"virtproxyd.service": "id-1"},
                     {"virtproxyd.service": state("virtproxyd.service", "inactive"),
                      "virtnetworkd.service": state("virtnetworkd.service", "inactive")}, guarded=())
    plan = plan_transaction(before, set(before.units), TransactionFacts(), Config(), live=live)
    assert plan.live.start == ("virtproxyd.service",) and plan.live.restart_batch == ("virtproxyd.service",)


def test_the_dry_run_and_the_run_agree_when_the_guards_hold():
    """The dry run plans with the host as it is now; after rpm, with the guards placed and
    holding, the facts are the same and so is every live action."""
    before = snap(*LIBVIRTD, "virtlogd.service", "virtproxyd.service")
    tx = TransactionFacts((pkg("libvirt-daemon", "9.1.0", UPGRADE, *LIBVIRTD),
                           pkg("libvirt-daemon-log", "9.1.0", UPGRADE, "virtlogd.service")),
                          owners_before={S(u): "libvirt-daemon-9.0.0-1.noarch" for u in LIBVIRTD})
    states = {s: state(s) for s in ("libvirtd.service", "virtlogd.service")}
    states["virtproxyd.service"] = state("virtproxyd.service", "inactive")
    running = {s: st.invocation_id for s, st in states.items() if st.active_state == "active"}
    dry = plan_transaction(before, set(before.units), tx, Config(), live=LiveFacts(running, states, SOCKET_OF))
    real = plan_transaction(before, set(before.units), tx, Config(),
                            live=LiveFacts(running, states, guarded=dry.live.guard))
    assert dry.live == real.live and dry.rows == real.rows
    assert dry.live.restart == ("libvirtd.service",) and dry.live.reload == ("virtlogd.service",)


def test_restart_marks_the_guard_kept_are_taken_off_reload_policy_services_only():
    """systemd >= 255 refuses its `--marked` restart of a guarded service and keeps the mark: a
    reload-policy service is unmarked (a later --marked would restart it); a restart-policy
    one is restarted, which clears the mark anyway."""
    before = snap("virtlogd.service", "libvirtd.service")
    tx = TransactionFacts((pkg("libvirt-daemon-log", "9.1.0", UPGRADE, "virtlogd.service"),
                           pkg("libvirt-daemon", "9.1.0", UPGRADE, "libvirtd.service")))
    services = ("libvirtd.service", "virtlogd.service")
    live = LiveFacts({s: f"id-{s}" for s in services}, {s: state(s) for s in services},
                     guarded=services, marked=services)
    plan = plan_transaction(before, set(before.units), tx, Config(), live=live)
    assert plan.live.unmark == ("virtlogd.service",)
    assert plan.live.reload == ("virtlogd.service",) and plan.live.restart == ("libvirtd.service",)
    assert {r.unit.name: r.actions for r in plan.rows}["virtlogd.service"] == ("keep", "guard", "reload", "unmark")
    unguarded = live.replace(guarded=())
    assert plan_transaction(before, set(before.units), tx, Config(), live=unguarded).live.unmark == ()


def test_batch_retries_trust_the_manager():
    states = {"a.service": state("a.service", invocation="new"),  # restarted by the batch
              "b.service": state("b.service", invocation="id-b.service"),  # not restarted
              "c.service": state("c.service", "failed", invocation="")}
    did, again = batch_retries("restart", list(states), {s: f"id-{s}" for s in states}, states)
    assert did == ["a.service"] and again == ["b.service", "c.service"]


def test_installroot_plans_no_restart_at_all():
    before = snap(*DAEMONS)
    tx = restart_tx(pkg("libvirt-daemon", "9.1.0", UPGRADE, "libvirtd.service"),
                    pkg("libvirt-daemon-config-network", "9.1.0", UPGRADE))
    plan = plan_transaction(before, set(before.units), tx, Config(), live=None)
    assert plan.restarts == {} and plan.reloads == {}
    assert all("restart" not in r.actions for r in plan.rows)


@pytest.mark.parametrize("unit_files,links,guards,preset_reloaded,late,due", [
    (False, False, False, False, False, False),  # nothing changed
    (True, False, False, False, False, True),  # new unit files, no preset reload
    (True, False, False, True, False, False),  # the system preset call reloaded the manager
    (False, True, False, False, False, True),  # restored links
    (False, False, True, False, False, True),  # guards the manager still enforces
    (True, True, True, True, True, True),  # Also= touched links after the preset's reload
])
def test_daemon_reload_due_once_and_only_when_the_preset_did_not_do_it(unit_files, links, guards,
                                                                     preset_reloaded, late, due):
    plan = Plan(daemon_reload=unit_files)
    assert daemon_reload_due(plan, links_changed=links, guards_to_drop=guards, preset_reloaded=preset_reloaded,
                             late_links_changed=late) is due
