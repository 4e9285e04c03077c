"""Issue 12 end to end: on real libvirt packaging, the plugin never makes the running host worse.

Fixture packages in the ``libvirt`` style (tests/e2e/fixtures.py, ``libvirt_scriptlets``) have
the shapes of libvirt's own scriptlets: restarts scheduled in ``%pre`` and done in
``%posttrans``, libvirtd stopped, its sockets restarted and libvirtd started again in
``%posttrans``, ``disable --now`` in ``%preun``, virtlogd/virtlockd reloaded from ``%postun``
*and* ``%posttrans``, sockets with ``RemoveOnStop=yes``.

Each scenario runs with the plugin and, as the control, with ``--noplugins`` in a booted
systemd (tests/e2e/guest.py), and compares what the running host went through:

- the libvirt socket paths, sampled every 20 ms in the guest while dnf runs: with the plugin
  never missing longer than in the control run (before the cure, guarding libvirtd.service
  alone left its sockets down until the end of the transaction);
- ``systemctl is-active`` of every managed unit before and after: what ran before runs after,
  what was stopped stays stopped, what rpm removed is not started;
- starts and reloads as the units log them: each daemon restarted at most once, virtlogd and
  virtlockd reloaded exactly once (the control reloads them twice) and never restarted;
- the dry run before the transaction against the record the real run leaves: the same live
  action for every unit.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.fixtures import LOCAL_SOCKETS, Pool, catalog
from tests.e2e.guest import (
    TRIGGERS,
    GuestDnf,
    Run,
    booted_guest,
    container_module,
    counts_line,
    our_triggers_rpm,
    publish_repos,
    transact,
)
from tests.e2e.harness import REPO_ROOT

COUNT_LINES: list[str] = []
module_setup = container_module("live-behaviour tests", "issue 12: the running host, with and without the plugin",
                                COUNT_LINES)

SOCKET_PATHS = ("/run/libvirt/libvirt-sock", "/run/libvirt/libvirt-sock-ro", "/run/libvirt/libvirt-admin-sock")
SAMPLE_EVERY = 0.02
STOP_FILE = "/run/e2e-sampler-stop"
# Samples the paths until STOP_FILE appears; prints the longest time each was missing.
SAMPLER = f"""
import json, os, sys, time
paths = sys.argv[1:]
since = dict.fromkeys(paths); longest = dict.fromkeys(paths, 0.0); missing = dict.fromkeys(paths, 0)
samples = 0
while not os.path.exists({STOP_FILE!r}):
    now = time.monotonic(); samples += 1
    for p in paths:
        if os.path.exists(p):
            if since[p] is not None:
                longest[p] = max(longest[p], now - since[p]); since[p] = None
        else:
            missing[p] += 1
            since[p] = now if since[p] is None else since[p]
    time.sleep({SAMPLE_EVERY})
now = time.monotonic()
for p in paths:
    if since[p] is not None:
        longest[p] = max(longest[p], now - since[p])
print(json.dumps({{"samples": samples, "missing": missing, "longest": longest}}))
"""


def system_units(*versions: str) -> tuple[str, ...]:
    return tuple(sorted({u for v in versions for p in catalog(v) for u in p.units}))


UNITS = system_units("9.0.0", "9.1.0")
RELOADED = ("virtlogd.service", "virtlockd.service")
LIBVIRTD = ("libvirtd.service", *(f"libvirtd{x}.socket" for x in LOCAL_SOCKETS))


@dataclass
class Samples:
    samples: int
    missing: dict[str, int]
    longest: dict[str, float]


@contextlib.contextmanager
def sampling(guest: GuestDnf, paths: Sequence[str]) -> Iterator[list[Samples]]:
    """Sample `paths` in the guest every 20 ms while the block runs; the list holds the result
    once the block is left."""
    guest.c.run(["rm", "-f", STOP_FILE])
    result: list[Samples] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        job = pool.submit(guest.c.run, ["/usr/bin/python3", "-c", SAMPLER, *paths], timeout=600)
        try:
            yield result
        finally:
            guest.c.run(["touch", STOP_FILE])
            data = json.loads(job.result().stdout)
            result.append(Samples(data["samples"], data["missing"], data["longest"]))


def is_active(guest: GuestDnf) -> dict[str, str]:
    out = guest.systemctl("is-active", "--", *UNITS, check=False).stdout.split()
    assert len(out) == len(UNITS), out
    return dict(zip(UNITS, out))


@pytest.fixture(scope="module")
def repos(libvirt_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The libvirt-style packages, and the rpm triggers the libvirt-units RPM ships beside its
    plugin (doc/markers.md): the hosts here are set up as a real install is."""
    extra = dict.fromkeys(("v900", "both"), (our_triggers_rpm(tmp_path_factory.mktemp("live-rpms")),))
    return publish_repos(libvirt_pool, tmp_path_factory.mktemp("guest-repos-libvirt"),
                         {"v900": ["9.0.0"], "both": ["9.0.0", "9.1.0"]}, extra=extra)


@contextlib.contextmanager
def host(repos: Path, repo: str, packages: Sequence[str], plugin: bool) -> Iterator[GuestDnf]:
    with booted_guest(REPO_ROOT, repos) as container:
        guest = GuestDnf(container)
        guest.setup(repo)
        guest.dnf("install", TRIGGERS, *packages, repo=repo, plugin=plugin)
        guest.install_systemctl_wrapper()
        yield guest


def changed(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {u: (before[u], after[u]) for u in before if before[u] != after[u]}


# -- the monolithic upgrade: libvirt's %posttrans socket dance, reloads, a rename ----------------

MONOLITHIC = ("libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-daemon-log", "libvirt-daemon-lock",
              "libvirt-daemon-driver-secret")


@pytest.fixture(scope="module")
def upgrades(repos: Path) -> Iterator[dict[str, tuple[Run, Samples, dict[str, str], dict[str, str], dict]]]:
    """9.0.0 -> 9.1.0, once without and once with the plugin, on a host running the monolithic
    libvirtd (service and its three sockets), virtlogd and virtlockd, and an idle virtsecretd
    (socket only) whose package the upgrade renames (driver-secret -> libvirt-daemon-secret,
    Obsoletes). The plugin's guest plans it with the dry run first and keeps the record the
    real run leaves."""
    results = {}
    for plugin in (False, True):
        with booted_guest(REPO_ROOT, repos) as container:
            guest = GuestDnf(container)
            guest.setup("v900")
            guest.dnf("install", TRIGGERS, *MONOLITHIC, repo="v900", plugin=plugin)
            guest.install_systemctl_wrapper()
            guest.systemctl("disable", "virtproxyd.socket", "virtproxyd-ro.socket", "virtproxyd-admin.socket",
                            "virtproxyd.service")
            guest.systemctl("enable", *LIBVIRTD, "virtsecretd.socket")
            guest.start(*LIBVIRTD[1:], "libvirtd.service", *RELOADED, "virtsecretd.socket")
            dry: dict = {}
            if plugin:
                out = guest.dnf("libvirt-units", "--dry-run", "--json", "upgrade", repo="both").stdout
                dry = json.loads(out[out.index("{"):])
            before = is_active(guest)
            with sampling(guest, SOCKET_PATHS) as samples:
                run = transact(guest, "upgrade", repo="both", plugin=plugin,
                               watch=("libvirtd.service", *RELOADED))
            after = is_active(guest)
            record = json.loads(guest.c.read_file("/var/lib/dnf/libvirt-units/last-transaction.json")) \
                if plugin else {}
            assert guest.packages()["libvirt-daemon"] == "9.1.0"
            assert "libvirt-daemon-secret" in guest.packages()
            name = "plugin" if plugin else "stock"
            counts_line(f"L1 libvirt {name}", run, ("libvirtd.service", *RELOADED), COUNT_LINES)
            line = (f"COUNTS L1 libvirt {name}: socket paths missing longest "
                    + ", ".join(f"{Path(p).name}={samples[0].longest[p]:.3f}s" for p in SOCKET_PATHS)
                    + f" ({samples[0].samples} samples)")
            print(line)
            COUNT_LINES.append(line)
            results[name] = (run, samples[0], before, after, {"dry": dry, "record": record,
                                                              "guards": guest.guards()})
    yield results


def test_libvirtd_sockets_never_missing_longer_than_without_the_plugin(upgrades):
    _, stock, _, _, _ = upgrades["stock"]
    run, ours, _, _, _ = upgrades["plugin"]
    assert ours.samples > 10  # the sampler really ran through the transaction
    for path in SOCKET_PATHS:
        assert ours.longest[path] <= stock.longest[path], (path, ours, stock)
    assert ours.missing == dict.fromkeys(SOCKET_PATHS, 0), ours
    assert "Traceback" not in run.output


def test_what_ran_before_runs_after_and_nothing_else_starts(upgrades):
    _, _, before, after, extra = upgrades["plugin"]
    assert changed(before, after) == {}
    assert before["virtsecretd.socket"] == before["libvirtd.socket"] == "active"
    assert extra["guards"] == []
    # the control: the old driver-secret's %preun `disable --now` took the renamed socket down
    _, _, stock_before, stock_after, _ = upgrades["stock"]
    assert changed(stock_before, stock_after) == {"virtsecretd.socket": ("active", "inactive")}


def test_each_daemon_restarted_once_and_log_daemons_reloaded_exactly_once(upgrades):
    run, _, _, _, _ = upgrades["plugin"]
    assert run.starts("libvirtd.service") == 1, run.events
    assert run.after["libvirtd.service"].main_pid != run.before["libvirtd.service"].main_pid
    for unit in RELOADED:
        assert (run.starts(unit), run.reloads(unit)) == (0, 1), (unit, run.events)
        assert run.after[unit].main_pid == run.before[unit].main_pid  # fds kept
        assert run.index(f"reload {unit.removesuffix('.service')}") > run.last_posttrans()
    assert len(run.calls) <= 4, run.calls
    # the control: the scriptlets reload them twice (%postun and %posttrans)
    stock, _, _, _, _ = upgrades["stock"]
    assert {u: stock.reloads(u) for u in RELOADED} == dict.fromkeys(RELOADED, 2), stock.events


def test_the_dry_run_plans_exactly_what_the_run_does(upgrades):
    _, _, _, _, extra = upgrades["plugin"]
    dry, record = extra["dry"], extra["record"]
    planned = {u["unit"]: u["actions"] for u in dry["units"]}
    done = {u["unit"]: u["actions"] for u in record["units"]}
    assert planned == done
    assert dry["guards"] == record["guards"] and dry["guards"]
    outcome = record["outcome"]
    for action, key in (("restart", "restarted"), ("reload", "reloaded"), ("start", "started"),
                        ("stop", "stopped")):
        assert sorted(outcome[key]) == sorted(u for u, acts in planned.items() if action in acts), key
    assert outcome["restarted"] == ["libvirtd.service"]
    assert sorted(outcome["reloaded"]) == sorted(RELOADED)
    # stopped, disabled services are not planned for a restart (the dry run used to say so)
    assert "restart" not in planned.get("virtsecretd.service", [])


# -- the idle host: sockets only, across a downgrade and an erase ---------------------------------

SPLIT = ("libvirt-daemon", "libvirt-daemon-proxy", "libvirt-daemon-driver-qemu", "libvirt-daemon-log",
         "libvirt-daemon-lock")
IDLE_SOCKETS = ("virtproxyd.socket", "virtproxyd-ro.socket", "virtproxyd-admin.socket", "virtproxyd-tls.socket",
                "virtqemud.socket", "virtqemud-ro.socket", "virtlogd.socket", "virtlockd.socket")
DOWNGRADE = ("remove libvirt-daemon-proxy\n"
             "downgrade libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-log libvirt-daemon-lock\nrun\n")


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_idle_host_keeps_its_sockets_across_a_downgrade_and_an_erase(repos, plugin):
    """The normal Fedora state: daemons exited, only sockets listening. 9.1.0 -> 9.0.0 moves
    the virtproxyd units back into libvirt-daemon; the proxy package's %preun runs
    `disable --now` on them. Then two packages are reinstalled, and one driver is erased: its
    units go, the rest stay."""
    with host(repos, "both", SPLIT, plugin) as guest:
        guest.systemctl("enable", "virtproxyd-tls.socket")
        guest.start(*IDLE_SOCKETS)
        before = is_active(guest)
        guest.c.write_file("/var/tmp/downgrade.dnf", DOWNGRADE)
        with sampling(guest, SOCKET_PATHS[:1]) as samples:
            run = transact(guest, "shell", "/var/tmp/downgrade.dnf", repo="both", plugin=plugin, watch=())
        after = is_active(guest)
        assert guest.packages()["libvirt-daemon"] == "9.0.0" and "libvirt-daemon-proxy" not in guest.packages()
        name = "plugin" if plugin else "stock"
        line = (f"COUNTS L2 libvirt {name}: libvirt-sock missing {samples[0].longest[SOCKET_PATHS[0]]:.3f}s; "
                f"units whose activity changed: {sorted(changed(before, after))}")
        print(line)
        COUNT_LINES.append(line)
        proxy = ("virtproxyd.socket", "virtproxyd-ro.socket", "virtproxyd-admin.socket", "virtproxyd-tls.socket")
        if not plugin:  # the stock scriptlets take the proxy's listeners down until reboot
            assert set(changed(before, after)) == set(proxy)
            return
        assert changed(before, after) == {}
        assert all(before[s] == "active" for s in IDLE_SOCKETS)
        assert samples[0].missing[SOCKET_PATHS[0]] == 0
        assert run.starts("virtproxyd.service") == run.starts("virtqemud.service") == 0  # idle stays idle
        assert guest.is_enabled("virtproxyd-tls.socket") == "enabled"
        assert guest.guards() == []

        # a reinstall: old and new %preun/%postun run on every unit of the package; nothing changes
        reinstall = transact(guest, "reinstall", "libvirt-daemon", "libvirt-daemon-log", repo="both",
                             plugin=plugin, watch=())
        assert changed(after, is_active(guest)) == {}
        assert reinstall.starts("virtproxyd.service") == reinstall.reloads("virtlogd.service") == 0
        assert guest.guards() == []

        # erase with the rest kept: the driver's units go (not started), nothing else changes
        erase = transact(guest, "remove", "libvirt-daemon-driver-qemu", repo="both", plugin=plugin, watch=())
        gone = is_active(guest)
        assert {u for u, (_, now) in changed(after, gone).items()} == {"virtqemud.socket", "virtqemud-ro.socket"}
        assert all(gone[u] == "inactive" for u in UNITS if u.startswith("virtqemud"))
        assert not any(c[:1] in (["start"], ["restart"]) for c in erase.calls), erase.calls
        assert guest.guards() == []
