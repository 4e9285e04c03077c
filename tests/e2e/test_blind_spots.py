"""Issue 19, items 4 and 5 (installroot half): behaviours no other test would notice breaking,
and plugin scenarios whose control run (``--noplugins``) really loses the admin's state.

Each test here was seen failing with the product broken on purpose (tests/README.md, "Checking
that a test can fail"); the mutation is named in its docstring. The booted-host half is
test_blind_spots_live.py.

Fedora's macros touch enablement only on a first install (``$1 -eq 1``: preset) and an erase
(``$1 -eq 0``: disable), so a reinstall or a plain downgrade with them changes nothing and a
mask survives them: test_presets' S6 reinstall/downgrade and S7 pass with ``--noplugins`` too
(they guard against harm done by the plugin, not for its benefit). The packages built here have
the scriptlet shapes that do lose the admin's state: a ``%post`` that presets on every run
(vendors' specs that skip the ``$1`` test) and a ``%post`` that unmasks its units on upgrade (a
package undoing a mask an earlier version of it set).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.fixtures import PROXY_SOCKETS, FixturePackage, Pool, link_or_copy, run, spec_text
from tests.e2e.guest import build_rpms
from tests.e2e.harness import InstallRoot, monolithic_host

UNIT_DIR = "/usr/lib/systemd/system"
PRESET_DIR = "/usr/lib/systemd/system-preset"
JOURNAL = "var/lib/dnf/libvirt-units/pending.json"
QUIET = ">/dev/null 2>&1 || :"

# fixture-vendor: %post presets its units on every run (install, upgrade, reinstall, downgrade)
VENDOR = ("virtinterfaced.service", "virtinterfaced.socket", "virtinterfaced-ro.socket")
# fixture-unmask: %post unmasks its units on upgrade and reinstall
UNMASK = ("virtnodedevd.service", "virtnodedevd.socket")
# fixture-storage: 2 adds virtstoraged.service, whose Also= names 1's virtstoraged.socket
STORAGE_SOCKET, STORAGE_SERVICE = "virtstoraged.socket", "virtstoraged.service"


def service_text(unit: str, also: tuple[str, ...] = ()) -> str:
    text = (f"[Unit]\nDescription=fixture {unit}\n\n[Service]\nExecStart=/bin/sh -c 'exec sleep infinity'\n\n"
            "[Install]\nWantedBy=multi-user.target\n")
    return text + (f"Also={' '.join(also)}\n" if also else "")


def socket_text(unit: str) -> str:
    return (f"[Unit]\nDescription=fixture {unit}\n\n[Socket]\nListenStream=/run/{unit}\n\n"
            "[Install]\nWantedBy=sockets.target\n")


def unit_files(units: tuple[str, ...], also: dict[str, tuple[str, ...]] | None = None) -> list[tuple[str, str, int]]:
    return [(f"{UNIT_DIR}/{u}", socket_text(u) if u.endswith(".socket") else service_text(u, (also or {}).get(u, ())),
             0o644) for u in units]


def package(name: str, version: str, units: tuple[str, ...], preset: str,
            also: dict[str, tuple[str, ...]] | None = None) -> FixturePackage:
    files = [*unit_files(units, also), (f"{PRESET_DIR}/50-{name}.preset", preset, 0o644)]
    return FixturePackage(name, version, files=tuple(files), log_posttrans=False)


def spec(pkg: FixturePackage, post: str) -> str:
    """A scriptlet-free fixture spec plus the given %post."""
    return spec_text([pkg], "bare") + f"\n%post -n {pkg.name}\n{post}\n"


def first_install_preset(units: tuple[str, ...]) -> str:
    """Fedora's %systemd_post."""
    return f"if [ $1 -eq 1 ]; then systemctl --no-reload preset {' '.join(units)} {QUIET}; fi"


def own_specs() -> dict[str, str]:
    vendor_preset = "enable virtinterfaced.socket\nenable virtinterfaced-ro.socket\n"
    unmask_preset = "enable virtnodedevd.socket\n"
    storage_preset = f"enable {STORAGE_SERVICE}\nenable {STORAGE_SOCKET}\n"
    specs = {}
    for version in ("1", "2"):
        specs[f"fixture-vendor-{version}"] = spec(
            package("fixture-vendor", version, VENDOR, vendor_preset),
            f"systemctl --no-reload preset {' '.join(VENDOR)} {QUIET}")
        specs[f"fixture-unmask-{version}"] = spec(
            package("fixture-unmask", version, UNMASK, unmask_preset),
            first_install_preset(UNMASK) + f"\nif [ $1 -gt 1 ]; then systemctl --no-reload unmask "
                                           f"{' '.join(UNMASK)} {QUIET}; fi")
    storage = {"1": (STORAGE_SOCKET,), "2": (STORAGE_SOCKET, STORAGE_SERVICE)}
    for version, units in storage.items():
        specs[f"fixture-storage-{version}"] = spec(
            package("fixture-storage", version, units, storage_preset, also={STORAGE_SERVICE: (STORAGE_SOCKET,)}),
            first_install_preset(units))
    return specs


@pytest.fixture(scope="module")
def own_repo(classic_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The infrastructure packages plus fixture-vendor, -unmask and -storage 1 and 2."""
    built = build_rpms(tmp_path_factory.mktemp("blind-spot-rpms"), own_specs())
    repo = classic_pool.make_repo(tmp_path_factory.mktemp("blind-spot-repo") / "repo", versions=[])
    for path in built.values():
        link_or_copy(path, repo / path.name)
    run(["createrepo_c", "--quiet", "--no-database", str(repo)])
    return repo


def states(root: InstallRoot, units: tuple[str, ...]) -> dict[str, str]:
    return {u: root.is_enabled(u) for u in units}


def dangling(root: InstallRoot) -> list[str]:
    """Links under R/etc/systemd whose target does not exist in R (a mask's /dev/null does)."""
    base = root.path / "etc" / "systemd"
    found = []
    for link, target in root.links().items():
        path = (root.path / target.lstrip("/")) if target.startswith("/") else (base / link).parent / target
        if not os.path.lexists(path):
            found.append(f"{link} -> {target}")
    return sorted(found)


# item 5: S6 and S7 with scriptlets that do lose the admin's state ---------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_reinstall_and_downgrade_keep_admin_choice_against_a_preset_on_every_run(root, own_repo, plugin):
    """Control: the %post presets on reinstall and downgrade too, the admin's choice is lost.
    Mutation seen failing: planner.plan_transaction `held = ()` (nothing kept)."""
    root.dnf("install", "fixture-vendor-2", repo=own_repo, plugin=plugin)
    preset = {"virtinterfaced.service": "disabled", "virtinterfaced.socket": "enabled",
              "virtinterfaced-ro.socket": "enabled"}
    assert states(root, VENDOR) == preset
    root.systemctl("disable", "virtinterfaced.socket")
    root.systemctl("enable", "virtinterfaced.service")
    admin, links = states(root, VENDOR), root.links()
    assert admin != preset

    root.dnf("reinstall", "fixture-vendor", repo=own_repo, plugin=plugin)
    after_reinstall = states(root, VENDOR)
    root.dnf("downgrade", "fixture-vendor", repo=own_repo, plugin=plugin)
    assert root.packages()["fixture-vendor"] == "1"
    after_downgrade = states(root, VENDOR)
    if not plugin:  # the scriptlet's preset won, twice
        assert after_reinstall == after_downgrade == preset
        return
    assert after_reinstall == after_downgrade == admin
    assert root.links() == links


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_masked_units_stay_masked_against_a_scriptlet_that_unmasks(root, own_repo, plugin):
    """Control: the %post unmasks on upgrade and on reinstall.
    Mutation seen failing: planner.plan_transaction `held = ()` (nothing kept)."""
    root.dnf("install", "fixture-unmask-1", repo=own_repo, plugin=plugin)
    root.systemctl("mask", *UNMASK)
    masked = dict.fromkeys(UNMASK, "masked")
    assert states(root, UNMASK) == masked

    root.dnf("upgrade", "fixture-unmask", repo=own_repo, plugin=plugin)
    assert root.packages()["fixture-unmask"] == "2"
    after_upgrade = states(root, UNMASK)
    root.dnf("reinstall", "fixture-unmask", repo=own_repo, plugin=plugin)
    after_reinstall = states(root, UNMASK)
    if not plugin:
        assert "masked" not in after_upgrade.values() and "masked" not in after_reinstall.values()
        return
    assert after_upgrade == after_reinstall == masked


# item 4 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_new_unit_whose_also_enables_an_admin_disabled_unit_is_put_back(root, own_repo, plugin):
    """fixture-storage 2 adds virtstoraged.service (preset: enable) with Also=virtstoraged.socket,
    which the admin disabled: the plugin's own preset of the new unit enables the socket again,
    and the second restore (after the presets) must take that back.
    Control: nothing presets a unit added on upgrade (S3). Mutation seen failing:
    session.finish `repaired_late = 0` (no second restore)."""
    root.dnf("install", "fixture-storage-1", repo=own_repo, plugin=plugin)
    assert root.is_enabled(STORAGE_SOCKET) == "enabled"
    root.systemctl("disable", STORAGE_SOCKET)
    root.dnf("upgrade", "fixture-storage", repo=own_repo, plugin=plugin)
    assert root.packages()["fixture-storage"] == "2"
    got = states(root, (STORAGE_SERVICE, STORAGE_SOCKET))
    assert got == {STORAGE_SERVICE: "enabled" if plugin else "disabled", STORAGE_SOCKET: "disabled"}
    if plugin:
        record = json.loads((root.path / "var/lib/dnf/libvirt-units/last-transaction.json").read_text())
        assert record["outcome"]["preset"] == [STORAGE_SERVICE]
        assert any(r["link"].endswith(f"sockets.target.wants/{STORAGE_SOCKET}") and r["target"] is None
                   for r in record["outcome"]["restored_links"]), record["outcome"]


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_links_of_removed_units_are_not_restored(root, repos, plugin):
    """Erase two drivers (and the meta package) after the admin changed their units: the erased
    units' links must go with them, the surviving units' links stay as the admin left them.
    Control passes too (the stock %preun disables what it erases): this guards against the
    plugin. Mutation seen failing: planner.plan_transaction `keep_links=links_of(before.links,
    set(held) | set(gone))` (the removed units' links restored: dangling links)."""
    root.dnf("install", "libvirt", repo=repos.v910, plugin=plugin)
    root.systemctl("enable", "virtqemud-tcp.socket", "virtnetworkd-admin.socket", "virtproxyd-tls.socket")
    root.systemctl("disable", "virtlogd.socket")
    survivors = ("virtproxyd-tls.socket", "virtlogd.socket", "virtproxyd.socket")
    kept = states(root, survivors)
    root.dnf("remove", "--setopt=clean_requirements_on_remove=False", "libvirt-daemon-driver-qemu",
             "libvirt-daemon-driver-network", repo=repos.v910, plugin=plugin)
    assert "libvirt-daemon-driver-qemu" not in root.packages()
    assert "libvirt-daemon-proxy" in root.packages()
    assert dangling(root) == []
    assert not [link for link in root.links() if link.startswith("system/")
                and ("/virtqemud" in link or "/virtnetworkd" in link)]
    assert states(root, survivors) == kept


def test_test_transaction_does_not_complete_a_pending_journal(root, repos):
    """tsflags=test: nothing of ours happens, not even the completion of an earlier killed run
    (dnf calls the plugin's config() hook on every command; pre_transaction never runs for a
    test transaction). Mutation seen failing: libvirt_units._may_act without the
    `"test" not in tsflags` check."""
    monolithic_host(root, repos.v900, plugin=True)
    killed = root.dnf("upgrade", repo=repos.v910, check=False, env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:finish"})
    assert killed.returncode == -signal.SIGKILL, killed.output
    assert (root.path / JOURNAL).exists()
    test_run = root.dnf("--setopt=tsflags=test", "reinstall", "libvirt-daemon-proxy", repo=repos.v910)
    assert "completing the unfinished transaction" not in test_run.output
    assert (root.path / JOURNAL).exists()
    assert root.is_enabled("virtproxyd.socket") == "enabled"  # the scriptlets' damage, still there
    real_run = root.dnf("list", "installed", repo=repos.v910)
    assert "completing the unfinished transaction" in real_run.output
    assert not (root.path / JOURNAL).exists()
    for unit in ("virtproxyd.service", *PROXY_SOCKETS):
        assert root.is_enabled(unit) == "disabled", unit
