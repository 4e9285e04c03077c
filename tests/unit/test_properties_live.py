"""Properties of the live planner, rpmdiff and the executor (hypothesis; issue 19, item 6).

Each property runs the `ci` profile's 1,000 derandomised examples (tests/conftest.py), or
20,000 random ones with HYPOTHESIS_PROFILE=long. An exception other than the documented ones
is a failure: hypothesis reports it with the smallest input it finds.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from libvirt_presets import executor, journal, report, rpmdiff, session
from libvirt_presets import systemctl as systemctl_module
from libvirt_presets.config import NEVER, RELOAD, RESTART, Config
from libvirt_presets.executor import Outcome
from libvirt_presets.facts import (
    DOWNGRADE,
    ERASE,
    INBOUND,
    INSTALL,
    OBSOLETE,
    REINSTALL,
    UPGRADE,
    LiveFacts,
    PackageChange,
    ServiceState,
    TransactionFacts,
)
from libvirt_presets.planner import (
    GUARDED_TYPES,
    LinkRestore,
    LiveActions,
    Plan,
    batch_retries,
    daemon_reload_due,
    link_restores,
    plan_transaction,
)
from libvirt_presets.rpmdb import InstalledPackage
from libvirt_presets.snapshot import Snapshot, link_units, resolve_in_root, scan_links
from libvirt_presets.systemctl import Systemctl, UnitState
from libvirt_presets.units import ENABLEMENT_DIRS, SYSTEM, USER, VENDOR_DIRS, Scope, UnitKey, is_valid_unit_name

TMP = [HealthCheck.function_scoped_fixture]  # each example works in a directory of its own


@pytest.fixture(autouse=True)
def no_system_journal(monkeypatch):
    """report.unit_action/warn also write to journald: thousands of examples must not spam the host."""
    monkeypatch.setattr(report, "_send", lambda message, fields: None)


# --- the live planner -------------------------------------------------------------------------------

SERVICES = ("libvirtd.service", "virtqemud.service", "virtlogd.service", "virtproxyd.service",
            "libvirt-guests.service", "virtnetworkd.service", "sshd.service", "getty@tty1.service",
            "a:b\\x2d.service")
OTHERS = ("libvirtd.socket", "libvirtd-ro.socket", "virtqemud.socket", "virtlogd.socket", "virtproxyd-tls.socket",
          "virtqemud.path", "virtlogd.timer", "sshd.socket", "foo@bar.socket", "libvirtd.target")
UNITS = SERVICES + OTHERS
RUNNING = ("active", "reloading", "activating")
ACTIVE_STATES = (*RUNNING, "inactive", "failed", "deactivating", "")
TYPES = ("simple", "exec", "forking", "notify", "notify-reload", "dbus", "oneshot", "")
PACKAGES = ("libvirt-daemon", "libvirt-daemon-log", "libvirt-client", "libvirt-daemon-config-network",
            "openssh-server", "libvirt-libs")
OTHER_FILES = ("/usr/lib64/libvirt/qemu.so", "/usr/bin/virsh", "/usr/lib/systemd/system/virtqemud.service.d/x.conf")

UNIT_KEYS = tuple(UnitKey(SYSTEM, u) for u in UNITS) + tuple(UnitKey(USER, u) for u in UNITS[::3])


def pick(pool: tuple, mask: int) -> frozenset:
    return frozenset(item for bit, item in enumerate(pool) if mask >> bit & 1)


def subsets(pool: tuple) -> st.SearchStrategy[frozenset]:
    """A subset of `pool` in one draw (a bit mask): sets of many elements drawn one by one cost
    most of the run time, and an integer shrinks as well as a set."""
    return st.integers(0, 2 ** len(pool) - 1).map(functools.partial(pick, pool))


SCOPES = st.sampled_from([Scope(), Scope(("*",)), Scope(("virt*", "libvirtd*")), Scope(("*.service",))])
POLICY_MAPS = st.one_of(
    st.just(Config().policies),
    st.just({"libvirt-guests.service": NEVER, "virt*.service": RELOAD}),
    st.dictionaries(st.sampled_from((*SERVICES, "virt*.service", "*", "*.service")),
                    st.sampled_from((RESTART, RELOAD, RELOAD, NEVER)), max_size=4),
)
TRIGGER_MAPS = st.dictionaries(
    st.sampled_from(("libvirt-daemon-config-network", "libvirt-*", "openssh*", "/usr/lib64/libvirt/*.so",
                     "/usr/bin/*")),
    subsets(SERVICES[:6]).map(sorted).map(tuple), max_size=3)
MOSTLY = st.sampled_from((True, True, True, False))
CONFIGS = st.builds(Config, scope=SCOPES, presets=st.booleans(), keep=st.sampled_from((None, True, False)),
                    restarts=MOSTLY, guard=MOSTLY,
                    policies=POLICY_MAPS, triggers=TRIGGER_MAPS)


def unit_file(key: UnitKey) -> str:
    return f"/{VENDOR_DIRS[key.scope][0]}/{key.name}"


def package_change(name, version, action, units, files, done) -> PackageChange:
    return PackageChange(name, f"{name}-{version}-1.noarch", action, frozenset(map(unit_file, units)) | files, done)


# Named functions, not lambdas, in builds() and map(): hypothesis 6.67 reads a lambda's source
# again for every example it draws (80% of the run time here).
CHANGES = st.lists(st.builds(
    package_change, st.sampled_from(PACKAGES), st.sampled_from(["9.0.0", "9.1.0"]),
    st.sampled_from((*INBOUND, ERASE, ERASE)), subsets(UNIT_KEYS[:9]).map(set).map(sorted) | subsets(UNIT_KEYS),
    subsets(OTHER_FILES), MOSTLY,
), max_size=6)

# one service's state, in one draw: load, active, type, RefuseManualStop, invocation (the one
# from before, a new one, none) and which record (snapshot's ServiceState or systemctl's UnitState)
STATES = [(load, active, type_, refuse, invocation, show)
          for load in ("loaded", "not-found", "masked", "error") for active in ACTIVE_STATES for type_ in TYPES
          for invocation in ("same", "new", "none") for refuse in (False, True) for show in (False, True)]
# half of them as most services are: loaded, running since before rpm (or stopped), no refusal
USUAL = [("loaded", active, type_, False, invocation, show) for active, invocation in
         (("active", "same"), ("active", "same"), ("active", "same"), ("inactive", "none"), ("active", "new"))
         for type_ in ("simple", "notify", "notify-reload") for show in (False, True)]
STATE = st.one_of(st.sampled_from(USUAL), st.sampled_from(USUAL), st.sampled_from(STATES))
GUARDED = st.none() | subsets(UNITS).map(sorted).map(tuple)

HOSTILE_NAMES = st.one_of(
    st.sampled_from(UNITS),
    st.sampled_from(["-rf.service", "a b.service", "$(reboot).service", "../x.service", "x.service\n", "",
                     "x;y.service", "@.service", "x/../y.service", "--now", "é.service", "x.service\0",
                     "a" * 300 + ".service"]),
    st.text(max_size=12), st.builds("{}.service".format, st.text(alphabet="ab-$ ;/.\n@", max_size=8)),
)


def service_state(name: str, drawn: tuple, running: dict[str, str]):
    """A state as snapshot.read_service_states (ServiceState) or `systemctl show` (UnitState) give it."""
    load, active, type_, refuse, invocation, show = drawn
    ident = {"same": running.get(name, ""), "new": f"new-{name}", "none": ""}[invocation]
    if show:
        return UnitState(name, load, active, type_, refuse, ident, "")
    return ServiceState(name, load, active, type_, refuse, ident)


def live_facts(hostile: bool = False) -> st.SearchStrategy[LiveFacts]:
    """Random manager facts over the unit pool; `hostile` adds odd names everywhere but in the
    guards (the journal checks those)."""
    extra_names = st.lists(HOSTILE_NAMES, max_size=4) if hostile else st.just([])
    trigger_names = st.sampled_from(UNITS + (("-x.service", "a b.service") if hostile else ()))

    @st.composite
    def build(draw) -> LiveFacts:
        extra = tuple(draw(extra_names))
        running = {u: f"id-{u}" for u in draw(subsets(UNITS)) | draw(subsets(UNITS)) | set(extra[:2])}
        with_state = sorted(set(UNITS) - (draw(subsets(UNITS)) & draw(subsets(UNITS))) | set(extra[1:]))
        states = {name: service_state(name, draw(STATE), running) for name in with_state}
        triggers = draw(st.dictionaries(trigger_names, trigger_names, max_size=5))
        marked = tuple(sorted(draw(subsets(SERVICES)))) + extra[2:]
        return LiveFacts(running, states, triggers, draw(GUARDED), marked)

    return build()


LIVE_FACTS = live_facts()
UNIT_SETS = subsets(UNIT_KEYS)
OWNED_BY = st.sampled_from([f"{p}-9.0.0-1.noarch" for p in PACKAGES])


@st.composite
def transactions(draw, live=LIVE_FACTS):
    before_units = draw(UNIT_SETS)
    after = draw(UNIT_SETS) | (before_units & draw(UNIT_SETS))
    before = Snapshot(units={u: unit_file(u)[1:] for u in before_units})
    owner, other_owner = draw(OWNED_BY), draw(OWNED_BY)
    owned, by_other = draw(UNIT_SETS), draw(UNIT_SETS)
    owners = {u: other_owner if u in by_other else owner for u in sorted(before_units & owned)}
    tx = TransactionFacts(tuple(draw(CHANGES)), owners)
    return before, after, tx, draw(CONFIGS), draw(live)


def kept_of(before: Snapshot, after: set[UnitKey], config: Config) -> set[UnitKey]:
    """Managed units present before and after (what the planner keeps, presets or not)."""
    return {u for u in config.scope.select(set(before.units) | after) if u in before.units and u in after}


def live_names(acts: LiveActions) -> list[str]:
    return [*acts.guard, *acts.quiet_reload, *acts.restart, *acts.reload, *acts.start, *acts.stop,
            *acts.unmark, *acts.skipped]


def row_actions(plan: Plan) -> dict[UnitKey, list[tuple[str, str]]]:
    return {r.unit: list(zip(r.actions, r.reasons)) for r in plan.rows}


@given(transactions())
def test_an_installroot_gets_no_live_action_at_all(tx):
    before, after, facts, config, _ = tx
    plan = plan_transaction(before, after, facts, config, live=None)
    assert plan.live == LiveActions() and plan.restarts == {} and plan.reloads == {}
    live_words = {"guard", "restart", "reload", "start", "stop", "unmark"}
    assert not any(live_words & set(r.actions) for r in plan.rows)


@given(transactions())
def test_live_actions_follow_the_rules_of_doc_live_md(tx):
    before, after, facts, config, live = tx
    plan = plan_transaction(before, after, facts, config, live=live)
    acts = plan.live
    kept = kept_of(before, after, config)
    kept_system = {u.name for u in kept if u.scope == SYSTEM}
    was_running, states = live.active_before, live.states

    # each daemon once: no unit twice in a batch, none in two of restart/reload/start/stop
    done = [*acts.restart, *acts.reload, *acts.start, *acts.stop]
    assert len(done) == len(set(done))
    assert all(len(t) == len(set(t)) for t in (acts.guard, acts.quiet_reload, acts.unmark))
    assert len(acts.restart_batch) == len(set(acts.restart_batch))
    assert not set(acts.skipped) & set(acts.restart + acts.reload + acts.start)
    if not config.restarts:
        assert acts.restart == acts.reload == acts.start == () and acts.skipped == {}
    # restart and reload: kept services (or ones a [triggers] line names, in or out of the scope,
    # present before and after) running before, running now with the same invocation
    named = {s for services in config.triggers.values() for s in services
             if UnitKey(SYSTEM, s) in before.units and UnitKey(SYSTEM, s) in after}
    for service in acts.restart + acts.reload:
        st_ = states[service]
        assert service in kept_system | named and service.endswith(".service")
        assert st_.load_state == "loaded" and st_.active_state in RUNNING and st_.type != "oneshot"
        assert not st_.refuse_manual_stop and was_running[service] == st_.invocation_id
    assert all(config.policy(s) == RESTART and s in plan.restarts for s in acts.restart)
    assert all(config.policy(s) == RELOAD and s in plan.reloads for s in acts.reload)
    # start: ran before, still there, stopped now, loaded, not oneshot, not `never`
    for service in acts.start:
        st_ = states[service]
        assert service in was_running and service in kept_system | named
        assert st_.load_state == "loaded" and st_.active_state not in RUNNING and st_.type != "oneshot"
    # ... and every such service is started (activity is kept)
    candidates = set(plan.restarts) | set(plan.reloads)
    if config.restarts:
        eligible = (kept_system | named & candidates) & set(was_running)
        should_start = {s for s in eligible if s.endswith(".service") and s in states
                        and states[s].load_state == "loaded" and states[s].active_state not in RUNNING
                        and states[s].type != "oneshot" and config.policy(s) != NEVER}
        assert set(acts.start) == should_start
    # `never` is never acted on, whoever asks
    never = {s for s in set(done) | set(acts.quiet_reload) if config.policy(s) == NEVER}
    assert not never - set(acts.stop)
    # each candidate gets exactly one decision (with restarts = no: none)
    decided = [s for s in acts.restart + acts.reload + acts.start + tuple(acts.skipped) if s in candidates]
    assert sorted(decided) == (sorted(candidates) if config.restarts else [])
    assert not set(plan.restarts) & set(plan.reloads)
    # guards: as recorded, or chosen among units that exist before and after
    if live.guarded is not None:
        assert acts.guard == live.guarded
    elif not (config.restarts and config.guard):
        assert acts.guard == ()
    else:
        assert set(acts.guard) <= kept_system and all(u.endswith(GUARDED_TYPES) for u in acts.guard)
        assert {u for u in acts.guard if u.endswith(".service")} <= set(was_running)
        assert list(acts.guard) == sorted(acts.guard)
    # stop: exactly the guarded units rpm removed
    assert acts.stop == tuple(u for u in acts.guard if UnitKey(SYSTEM, u) not in after)
    assert set(acts.unmark) <= set(live.marked) & set(acts.guard)
    assert all(config.policy(s) != RESTART for s in acts.unmark)
    assert set(acts.quiet_reload) <= set(acts.guard) & candidates
    assert all(config.policy(s) != NEVER for s in acts.quiet_reload)
    for name in ("guard", "quiet_reload", "restart", "reload", "start", "stop", "unmark", "skipped"):
        event(f"{name}: {'some' if getattr(acts, name) else 'none'}")


@given(transactions())
def test_every_live_action_is_a_report_row_with_its_reason_and_every_row_an_action(tx):
    before, after, facts, config, live = tx
    plan = plan_transaction(before, after, facts, config, live=live)
    acts, rows = plan.live, row_actions(plan)
    assert all(len(r.actions) == len(r.reasons) and all(r.reasons) for r in plan.rows)
    expected: dict[UnitKey, list[str]] = {}
    for action, units in (("guard", acts.guard), ("restart", acts.restart), ("reload", acts.reload),
                          ("start", acts.start), ("stop", acts.stop), ("unmark", acts.unmark)):
        for unit in units:
            expected.setdefault(UnitKey(SYSTEM, unit), []).append(action)
    seen = {unit: sorted(a for a, _ in pairs if a in ("guard", "restart", "reload", "start", "stop", "unmark"))
            for unit, pairs in rows.items()}
    assert {u: a for u, a in seen.items() if a} == {u: sorted(a) for u, a in expected.items()}
    for service, why in acts.skipped.items():
        assert ("none", why) in rows[UnitKey(SYSTEM, service)] and why


@given(transactions(), st.randoms(use_true_random=False))
def test_the_live_plan_is_the_same_whatever_the_order_of_the_facts(tx, rng):
    before, after, facts, config, live = tx
    plan = plan_transaction(before, after, facts, config, live=live)

    def shuffled(mapping):
        items = list(mapping.items())
        rng.shuffle(items)
        return dict(items)

    units = shuffled(before.units)
    after_list = sorted(after)
    rng.shuffle(after_list)
    live2 = live.replace(active_before=shuffled(live.active_before), states=shuffled(live.states),
                         triggers=shuffled(live.triggers))
    facts2 = TransactionFacts(facts.changes, shuffled(facts.owners_before))
    assert plan_transaction(Snapshot(units=units), set(after_list), facts2, config, live=live2) == plan


@given(transactions())
def test_the_dry_run_and_the_run_agree_when_the_guards_hold(tx):
    """The dry run plans with guarded=None (it chooses the guards); the run is handed the guards
    begin() placed and no triggers (read_live_facts reads them only while guards are to choose):
    with the same states, every live action and every row is the same."""
    before, after, facts, config, live = tx
    dry = plan_transaction(before, after, facts, config, live=live.replace(guarded=None))
    run = plan_transaction(before, after, facts, config, live=live.replace(guarded=dry.live.guard, triggers={}))
    assert run.live == dry.live
    assert run.rows == dry.rows


def fake_run(calls: list[list[str]]):
    def run(argv, timeout=0):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")
    return run


@settings(suppress_health_check=TMP)
@given(transactions(live=live_facts(hostile=True)))
def test_hostile_names_in_the_live_facts_never_reach_systemctl(monkeypatch, tx):
    """Names in /run/systemd/units or the journal's invocations are not checked on the way in:
    the plan carries only unit names that exist before (checked by the snapshot) or guards
    (checked by the journal), and the executor checks every name again before any argv."""
    before, after, facts, config, live = tx
    plan = plan_transaction(before, after, facts, config, live=live)
    assert all(is_valid_unit_name(name) for name in live_names(plan.live))
    calls: list[list[str]] = []
    monkeypatch.setattr(systemctl_module, "run", fake_run(calls))
    session.apply_live(plan, live, Systemctl(Path("/"), binary="systemctl-fake"), Outcome())
    for argv in calls:
        assert argv[0] == "systemctl-fake"
        assert all(is_valid_unit_name(a) for a in argv[argv.index("--") + 1:] if not a.startswith("Markers="))


@settings(suppress_health_check=TMP)
@given(st.sampled_from(["restart", "reload_or_restart", "stop", "try_reload_or_restart", "preset", "unmark"]),
       st.lists(HOSTILE_NAMES, min_size=1, max_size=4))
def test_the_executor_refuses_every_invalid_unit_name_before_any_process(monkeypatch, verb, names):
    calls: list[list[str]] = []
    monkeypatch.setattr(systemctl_module, "run", fake_run(calls))
    ctl = Systemctl(Path("/"), binary="systemctl-fake")
    call = getattr(ctl, verb)
    names = names[:1] if verb == "unmark" else names
    valid = all(is_valid_unit_name(n) for n in names)
    try:
        call(names[0]) if verb == "unmark" else call(names)
    except ValueError as exc:
        assert not valid and "refusing invalid unit name" in str(exc)
        assert calls == []
        return
    assert valid and len(calls) == 1
    argv = calls[0]
    after_dashes = argv[argv.index("--") + 1:]
    assert after_dashes == ([names[0], f"Markers={systemctl_module.UNMARK}"] if verb == "unmark" else names)

ACTIVE = st.sampled_from(("active", "active", "inactive", "failed", "activating", "reloading"))
def shown_state(active: str, ident: str, result: str) -> UnitState:
    return UnitState("", "loaded", active, "simple", False, ident, result)


STATE_OF = st.builds(shown_state, ACTIVE, st.sampled_from(("id", "new", "")),
                     st.sampled_from(("success", "exit-code", "")))


@given(st.sampled_from(("restart", "reload")), st.lists(st.sampled_from(SERVICES), max_size=8),
       st.dictionaries(st.sampled_from(SERVICES), st.sampled_from(("id", "other"))),
       st.dictionaries(st.sampled_from(SERVICES), STATE_OF))
def test_batch_retries_partition_the_batch_by_the_managers_word(kind, units, before, now):
    did, again = batch_retries(kind, units, before, now)
    assert sorted(did + again) == sorted(units)
    assert did == sorted(did) and again == sorted(again)
    for unit in set(units):
        st_ = now.get(unit)
        renewed = st_ is not None and st_.active_state == "active" and st_.invocation_id != before.get(unit)
        reloaded = st_ is not None and st_.active_state == "active" and st_.reload_result == "success"
        assert (unit in did) is (renewed or (kind == "reload" and reloaded))
        assert (unit in did) is not (unit in again)


@pytest.mark.parametrize("unit_files,links,guards,preset_reloaded,late", list(itertools.product((False, True),
                                                                                                repeat=5)))
def test_daemon_reload_due_truth_table(unit_files, links, guards, preset_reloaded, late):
    """Exhaustive (32 rows): one reload before the live batches when unit files, links or guards
    changed and the preset call did not reload; links an Also= touched after it need one more."""
    something_changed = unit_files or links or guards
    due = daemon_reload_due(Plan(daemon_reload=unit_files), links_changed=links, guards_to_drop=guards,
                            preset_reloaded=preset_reloaded, late_links_changed=late)
    assert due is ((something_changed and not preset_reloaded) or late)
    if not something_changed and not late:
        assert due is False  # nothing to reload for


# --- rpmdiff: a transaction read back from two rpmdb stamps -----------------------------------------

# rpm's own grammar: names of letters, digits and -._+; versions and releases without "-"
PKG_NAMES = st.sampled_from(("libvirt-daemon", "libvirt-daemon-kvm", "kernel", "a", "python3.11-x+y", "gpg-pubkey",
                             "x-1", "libvirt_daemon", "9"))
VERSIONS = st.sampled_from(("1", "1.0", "1.0~rc1", "1.0^git1", "10", "9.1.0", "1.0a", "2", "0", "1_2", "1.0+x",
                            "A", "v1"))
RELEASES = st.sampled_from(("1", "1.fc39", "2.el9", "0.1", "1~", "10", "a"))
EPOCHS = st.sampled_from((None, None, "0", "1", "2", "10"))
ARCHES = st.sampled_from(("x86_64", "x86_64", "i686", "noarch", "aarch64"))


def installed(name: str, epoch: str | None, version: str, release: str, arch: str,
              files: frozenset, obsoletes: frozenset) -> InstalledPackage:
    """An rpmdb package, its NEVRA spelled as rpmdb.nevra() spells it (no epoch 0)."""
    nevra = f"{name}-{epoch + ':' if epoch not in (None, '0') else ''}{version}-{release}.{arch}"
    return InstalledPackage(name, nevra, epoch, version, release, arch, files, obsoletes)


PACKAGES_RPM = st.builds(installed, PKG_NAMES, EPOCHS, VERSIONS, RELEASES, ARCHES,
                         subsets(tuple(unit_file(k) for k in UNIT_KEYS[:4]) + OTHER_FILES),
                         subsets(("libvirt-daemon", "kernel", "a", "gone")))


@st.composite
def rpmdb_pair(draw):
    """Two installed_stamps() maps and the headers finish_observed() reads for the NEVRAs that
    are new or carry a new transaction ID."""
    pool = {p.nevra: p for p in draw(st.lists(PACKAGES_RPM, max_size=10))}
    nevras = tuple(sorted(pool))
    before = dict.fromkeys(draw(subsets(nevras)), 1)
    stay, reinstalled = draw(subsets(nevras)), draw(subsets(nevras))
    after = {n: 2 if n in reinstalled else 1 for n in before if n in stay}
    after.update({n: 2 for n in draw(subsets(nevras)) if n not in before})
    arrived = {n: pool[n] for n, tid in after.items() if before.get(n) != tid}
    return before, after, arrived


def evr(pkg: InstalledPackage) -> tuple:
    return (pkg.epoch, pkg.version, pkg.release)


@given(rpmdb_pair())
def test_rpmdiff_reports_every_arrival_inbound_and_every_departure_outbound_exactly_once(pair):
    before, after, arrived = pair
    changes = rpmdiff.changes_between(before, after, arrived)  # rpm's own labelCompare
    inbound = [c for c in changes if c.inbound]
    outbound = [c for c in changes if not c.inbound]
    assert sorted(c.nevra for c in inbound) == sorted(arrived)
    assert sorted(c.nevra for c in outbound) == sorted(set(before) - set(after))
    assert all(c.action == ERASE and c.files == frozenset() for c in outbound)
    assert all(c.name == rpmdiff.split_nevra(c.nevra)[0] for c in outbound)
    left = {rpmdiff.split_nevra(n)[0]: [] for n in set(before) - set(after)}
    for n in set(before) - set(after):
        left[rpmdiff.split_nevra(n)[0]].append(n)
    for change in inbound:
        pkg = arrived[change.nevra]
        assert change.name == pkg.name and change.files == pkg.files and change.done
        if change.nevra in before:  # same NEVRA, new transaction ID
            assert change.action == REINSTALL
        elif pkg.name in left:
            assert change.action in (UPGRADE, DOWNGRADE, REINSTALL)
        elif pkg.obsoletes & set(left):
            assert change.action == OBSOLETE
        else:
            assert change.action == INSTALL
        event(f"rpmdiff: {change.action}")


@given(rpmdb_pair())
def test_rpmdiff_upgrade_and_downgrade_follow_the_evr_order(pair):
    """Against the one package of the same name (the same arch first) that left."""
    before, after, arrived = pair
    changes = rpmdiff.changes_between(before, after, arrived)
    gone = [rpmdiff.split_nevra(n) for n in set(before) - set(after)]
    for change in changes:
        if not change.inbound or change.nevra in before:
            continue
        pkg = arrived[change.nevra]
        olds = [evr_ for name, evr_, arch in gone if name == pkg.name and arch == pkg.arch] or \
               [evr_ for name, evr_, arch in gone if name == pkg.name]
        if not olds:
            continue
        orders = {rpmdiff.rpm_compare(evr(pkg), old) for old in olds}
        expected = {1: UPGRADE, -1: DOWNGRADE, 0: REINSTALL}
        assert change.action in {expected[(o > 0) - (o < 0)] for o in orders}
        if len(orders) == 1:  # every candidate says the same: no choice to make
            (order,) = orders
            assert change.action == expected[(order > 0) - (order < 0)]


@given(rpmdb_pair(), st.randoms(use_true_random=False))
def test_rpmdiff_is_the_same_whatever_the_order_of_the_rpmdb(pair, rng):
    before, after, arrived = pair

    def shuffled(mapping):
        items = list(mapping.items())
        rng.shuffle(items)
        return dict(items)

    assert rpmdiff.changes_between(shuffled(before), shuffled(after), shuffled(arrived)) == \
        rpmdiff.changes_between(before, after, arrived)


ODD_PARTS = st.text(alphabet="1a:.~^-é", max_size=4)


@example(("libvirt-daemon", "", "1"))
@given(st.tuples(PKG_NAMES, ODD_PARTS, ODD_PARTS))
def test_rpmdiff_never_raises_on_a_journal_the_decoder_accepts(parts):
    """The CLI's snapshot keeps installed_before in the journal; what decode_installed accepts
    there must never make changes_between raise (a corrupt journal is a JournalError)."""
    name, version, release = parts
    gone = f"{name}-{version}-{release}.x86_64"
    try:
        before = journal.decode_installed({journal.INSTALLED_BEFORE: {gone: 1}})
    except journal.JournalError:
        return
    new = installed(name, None, "9.1.0", "1", "x86_64", frozenset(), frozenset())
    assume(new.nevra != gone)
    changes = rpmdiff.changes_between(before, {new.nevra: 2}, {new.nevra: new})
    assert [c.nevra for c in changes if c.inbound] == [new.nevra]


# --- the executor against a scratch root ------------------------------------------------------------

ETC_SYSTEM, ETC_USER = ENABLEMENT_DIRS[SYSTEM], ENABLEMENT_DIRS[USER]
LINK_NAMES = ("virtqemud.service", "virtqemud.socket", "a:b\\x2d.service", "x@inst.socket", "x@.service",
              "libvirt.service", "v-1_2.timer")
SUBDIRS = ("multi-user.target.wants", "sockets.target.wants", "libvirtd.service.requires")
LINK_POOL = tuple(f"{ETC_SYSTEM}/{d}{n}" for d in ("", *(s + "/" for s in SUBDIRS)) for n in LINK_NAMES) + \
    tuple(f"{ETC_USER}/{d}{n}" for d in ("", "default.target.wants/") for n in LINK_NAMES[:3])
TARGETS = ("/dev/null", "/usr/lib/systemd/system/{}", "../{}", "/usr/lib/systemd/system/libvirtd.service",
           "/x y/{}\t")
# what stands where a link is wanted or not: nothing, a link (right or wrong), a file, a directory
PRESENT = ("same", "other", "file", "dir")
# what an enablement subdirectory is: a directory of its own, or a symlink out of the root
# (absolute or relative), to elsewhere in it, a file, a loop, a dangling symlink. Absolute
# targets name paths this host does not have: a write through one on the host's terms fails.
HAZARDS = ("outside-absolute", "outside-relative", "inside-elsewhere", "file", "loop", "dangling")
ELSEWHERE = "usr/lib/libvirt-units-test"


def target_of(link: str, choice: int) -> str:
    return TARGETS[choice].format(os.path.basename(link))


def tree(top: Path) -> dict[str, tuple]:
    """Everything below `top`, never following a symlink: path -> (kind, content or target)."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, top)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir",)
            else:
                found[rel] = ("file", Path(path).read_bytes())
    return found


def build_root(base: Path, top_linked: bool, hazards: dict[str, str], present: dict[str, str],
               wanted: dict[str, str]) -> tuple[Path, Path]:
    """A root with its hazards. The test itself writes through no symlink: every path is
    resolved inside the root first."""
    root, outside = base / "root", base / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "victim.service").write_text("[Service]\n")
    os.symlink("/dev/null", outside / "masked.service")
    (root / ELSEWHERE).mkdir(parents=True)
    (root / ELSEWHERE / "libvirtd.service").write_text("[Service]\n")
    top = root / ETC_SYSTEM
    if top_linked:  # an absolute link: `systemctl --root` reads it as root/etc/systemd/real
        top = root / "etc/systemd/real"
        top.mkdir(parents=True)
        os.symlink("/etc/systemd/real", root / ETC_SYSTEM)
    else:
        top.mkdir(parents=True)
    (root / ETC_USER).mkdir(parents=True)
    for subdir, hazard in hazards.items():
        if hazard == "file":
            (top / subdir).write_text("not a directory\n")
            continue
        os.symlink({"outside-absolute": str(outside), "outside-relative": "../../../../outside",
                    "inside-elsewhere": f"/{ELSEWHERE}", "loop": subdir,
                    "dangling": "/nonexistent-libvirt-units-test"}[hazard], top / subdir)
    for link, what in present.items():
        try:
            parent = Path(resolve_in_root(root, os.path.dirname(link)))
        except OSError:
            continue  # a loop on the way
        if not str(parent).startswith(str(root / "etc/systemd") + "/"):
            continue  # through a hazard: nothing placed
        path = parent / os.path.basename(link)
        try:
            parent.mkdir(parents=True, exist_ok=True)
            if what == "file":
                path.write_text("an admin's file\n")
            elif what == "dir":
                path.mkdir()
            else:
                os.symlink(wanted.get(link, "/dev/null") if what == "same" else "/usr/lib/elsewhere", path)
        except OSError:
            continue  # a file on the way, or already placed
    return root, outside


@settings(suppress_health_check=TMP)
@given(top_linked=st.sampled_from((False, False, False, True)),
       hazards=st.dictionaries(st.sampled_from(SUBDIRS), st.sampled_from(HAZARDS), max_size=2),
       wanted_choice=st.dictionaries(st.sampled_from(LINK_POOL), st.integers(0, len(TARGETS) - 1), max_size=8),
       present=st.dictionaries(st.sampled_from(LINK_POOL), st.sampled_from(PRESENT), max_size=8),
       more_units=subsets((*(UnitKey(SYSTEM, n) for n in LINK_NAMES), UnitKey(USER, LINK_NAMES[0]))))
def test_restore_links_in_a_hostile_root_warns_never_writes_outside_and_is_idempotent(
        tmp_path, top_linked, hazards, wanted_choice, present, more_units):
    """(A wants directory linked to another enablement directory is the xfail below.)"""
    wanted = {link: target_of(link, choice) for link, choice in wanted_choice.items()}
    kept = set(more_units).union(*(link_units(link, target) for link, target in wanted.items()))
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        root, _outside = build_root(base, top_linked, hazards, present, wanted)
        plan = Plan(keep=tuple(sorted(kept)), keep_links=wanted)
        before = tree(base)
        first = Outcome()
        session.restore_links(root, plan, first)
        after = tree(base)
        # nothing outside the root, nor outside its enablement directories, changed
        changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
        assert all(p.startswith("root/etc/systemd/") for p in changed), sorted(changed)
        assert all(after.get(p) == before[p] for p in before if before[p][0] == "file")
        assert all(kind == ("dir",) or kind[0] == "link" for p, kind in after.items() if p in changed)
        # every repair was made or warned about, once; a warning is one printable line
        assert len(first.warnings) == len(first.unrestorable)
        assert not {r.link for r in first.restored} & first.unrestorable
        assert all(w.isprintable() for w in first.warnings)
        # the kept units' links are as wanted, but for the ones warned about
        left = link_restores(wanted, scan_links(root), kept)
        assert {r.link for r in left} <= first.unrestorable
        for link in set(wanted) - first.unrestorable:
            where = Path(resolve_in_root(root, os.path.dirname(link)), os.path.basename(link))  # as systemctl --root
            assert os.readlink(where) == wanted[link]
        # a second run changes nothing and warns about the same links
        second = Outcome()
        session.restore_links(root, plan, second)
        assert tree(base) == after
        assert second.restored == [] and second.unrestorable == first.unrestorable
        event(f"restore: {'some' if first.restored else 'no'} repairs, {'some' if first.warnings else 'no'} warnings")
    finally:
        shutil.rmtree(base)


def test_restore_links_never_writes_through_a_wants_directory_linked_to_another(tmp_path):
    """A wants directory that is a symlink to another one inside the root: the snapshot records
    it as a link and never enters it, so a link written through it would show up under the other
    directory's name and the next restore would undo it (on after odd runs, gone after even
    ones). It is refused, with one warning each run, and nothing flips."""
    root = tmp_path / "root"
    (root / ETC_SYSTEM / "sockets.target.wants").mkdir(parents=True)
    os.symlink(f"/{ETC_SYSTEM}/sockets.target.wants", root / ETC_SYSTEM / "libvirtd.service.requires")
    link = f"{ETC_SYSTEM}/libvirtd.service.requires/virtqemud.service"
    plan = Plan(keep=(UnitKey(SYSTEM, "virtqemud.service"),), keep_links={link: "/dev/null"})
    first, second = Outcome(), Outcome()
    session.restore_links(root, plan, first)
    assert first.restored == [] and len(first.warnings) == 1 and "not written through" in first.warnings[0]
    assert not os.path.lexists(root / ETC_SYSTEM / "sockets.target.wants/virtqemud.service")
    session.restore_links(root, plan, second)
    assert second.restored == [] and second.warnings == first.warnings


HOSTILE_LINKS = st.one_of(
    st.sampled_from(LINK_POOL),
    st.sampled_from([f"{ETC_SYSTEM}/../../../outside/x.service", f"/{ETC_SYSTEM}/x.service",
                     f"{ETC_SYSTEM}/./x.service", f"{ETC_SYSTEM}//x.service", f"{ETC_SYSTEM}/x\0.service",
                     ETC_SYSTEM, ETC_SYSTEM + "/",
                     "etc/passwd", f"{ETC_SYSTEM}/multi-user.target.wants/../../../../outside/victim.service",
                     f"{ETC_USER}/x.service\n", f"{ETC_SYSTEM}/" + "a" * 300]),
    st.builds("{}/{}".format, st.sampled_from((ETC_SYSTEM, ETC_USER, ETC_SYSTEM + "/sockets.target.wants")),
              st.text(alphabet="ab./\0\n é", max_size=8)),
)
LINK_TARGETS = st.one_of(st.none(), st.sampled_from(("/dev/null", "/usr/lib/systemd/system/x.service")),
                         st.text(max_size=10))


@settings(suppress_health_check=TMP)
@given(hazards=st.dictionaries(st.sampled_from(SUBDIRS), st.sampled_from(HAZARDS), max_size=2),
       present=st.dictionaries(st.sampled_from(LINK_POOL), st.sampled_from(PRESENT), max_size=4),
       repairs=st.lists(st.builds(LinkRestore, HOSTILE_LINKS, LINK_TARGETS), min_size=1, max_size=4))
def test_apply_link_sets_the_link_or_raises_oserror_and_never_leaves_the_root(tmp_path, hazards, present, repairs):
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        root, _ = build_root(base, False, hazards, present, {})
        before = tree(base)
        for repair in repairs:
            try:
                executor.apply_link(root, repair)
            except OSError:
                event("apply_link: refused")
                continue
            event("apply_link: done")
            where = Path(resolve_in_root(root, os.path.dirname(repair.link)), os.path.basename(repair.link))
            if repair.target is None:
                assert not os.path.lexists(where)
            else:
                assert os.readlink(where) == repair.target
        after = tree(base)
        changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
        assert all(p.startswith("root/etc/systemd/") for p in changed), sorted(changed)
    finally:
        shutil.rmtree(base)
