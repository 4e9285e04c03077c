"""Issue 2 end to end: real rpmbuild -> createrepo_c -> dnf --installroot, plugin from the tree.

Every scenario runs twice: `plugin=False` (the stock scriptlets alone: shows the bug) and
`plugin=True` (the same transaction with libvirt-units loaded).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.fixtures import PROXY_SOCKETS, Pool
from tests.e2e.harness import SESSION_CONF, InstallRoot, monolithic_host


@pytest.fixture
def bare_root(tmp_path: Path, bare_pool: Pool) -> InstallRoot:
    r = InstallRoot(tmp_path / "bare-root", tmp_path / "bare-home")
    r.setup(bare_pool)
    return r


def states(root: InstallRoot, *units: str, user: bool = False) -> dict[str, str]:
    return {u: root.is_enabled(u, user=user) for u in units}


# S1 + S8 --------------------------------------------------------------------------------

@pytest.mark.parametrize("filelists", ["with-filelists", "no-filelists"])
@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s1_split_upgrade_keeps_monolithic_host(root, repos, plugin, filelists):
    monolithic_host(root, repos.v900, plugin)
    before = root.links()
    repo = repos.v910 if filelists == "with-filelists" else repos.v910_nofl
    result = root.dnf("upgrade", repo=repo, plugin=plugin)
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"
    got = states(root, "libvirtd.socket", "libvirtd.service", *PROXY_SOCKETS)
    if not plugin:  # the seed's bug: the new package's %post re-applied the presets
        assert got["virtproxyd.socket"] == "enabled"
        return
    assert got == {"libvirtd.socket": "enabled", "libvirtd.service": "enabled",
                   **dict.fromkeys(PROXY_SOCKETS, "disabled")}, result.output
    after = root.links()
    # Every old link survives; new ones belong only to units new in 9.1.0 (the preset of
    # virtqemud-admin.socket, the stock %post of the unmanaged user units).
    assert {k: v for k, v in after.items() if k in before} == before
    assert {k for k in set(after) - set(before) if not k.startswith("user/")} == {
        "system/sockets.target.wants/virtqemud-admin.socket"}
    assert "Traceback" not in result.output and "libvirt-units:" not in result.stderr
    # every incoming file list came from rpm's transaction set: no header was read twice
    told = [line for line in root.read("var/log/dnf.log").splitlines() if "file lists of incoming" in line]
    assert told and re.search(r": [1-9][0-9]* from rpm's transaction set, 0 from headers$", told[-1]), told


# S2 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s2_admin_enabled_tls_socket_survives_split(root, repos, plugin):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=plugin)
    root.systemctl("enable", "virtproxyd-tls.socket")
    root.dnf("upgrade", repo=repos.v910, plugin=plugin)
    assert root.is_enabled("virtproxyd-tls.socket") == ("enabled" if plugin else "disabled")
    assert root.is_enabled("virtproxyd.socket") == "enabled"  # admin left the preset default


# S3 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s3_unit_added_to_installed_package_gets_its_preset(root, repos, plugin):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=plugin)
    assert root.is_enabled("virtqemud-admin.socket") == "not-found"
    root.dnf("upgrade", repo=repos.v910, plugin=plugin)
    got = states(root, "virtqemud-admin.socket", "virtqemud-tcp.socket")
    # enable rule (virtqemud-admin.socket) and disable rule (*-tcp.socket) both exercised
    assert got == {"virtqemud-admin.socket": "enabled" if plugin else "disabled",
                   "virtqemud-tcp.socket": "disabled"}
    # a unit outside the managed scope is left to the stock macros (not preset on upgrade)
    assert root.is_enabled("virtqemud-helper.service") == "disabled"


def test_s3_widened_scope_presets_unit_added_outside_default_scope(root, repos):
    conf = "[main]\nextra_units = virtqemud-helper.service\n"
    root.dnf("install", "libvirt", repo=repos.v900, plugin=True, plugin_conf=conf)
    root.dnf("upgrade", repo=repos.v910, plugin=True, plugin_conf=conf)
    assert root.is_enabled("virtqemud-helper.service") == "enabled"


# S4 -------------------------------------------------------------------------------------

def managed_units(root: InstallRoot) -> list[str]:
    from libvirt_presets.config import Config
    unit_dir = root.path / "usr/lib/systemd/system"
    return sorted(p.name for p in unit_dir.iterdir() if p.name in Config().scope)


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s4_fresh_install_presets_every_unit_like_systemctl(bare_root, repos, plugin):
    """Scriptlet-free packages: every enablement link is the plugin's own doing."""
    bare_root.dnf("install", "libvirt", repo=repos.bare, plugin=plugin)
    units = managed_units(bare_root)
    assert len(units) > 20
    got = states(bare_root, "virtproxyd.socket", "virtqemud.socket", "libvirtd.socket",
                 "virtproxyd-tls.socket", "libvirt-guests.service")
    if not plugin:
        assert set(got.values()) == {"disabled"}
        return
    assert got == {"virtproxyd.socket": "enabled", "virtqemud.socket": "enabled",
                   "libvirtd.socket": "disabled", "virtproxyd-tls.socket": "disabled",
                   "libvirt-guests.service": "enabled"}
    ours = bare_root.links()
    bare_root.systemctl("preset", *units)  # what systemctl itself makes of the same units
    assert bare_root.links() == ours


# S5 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s5_rename_by_obsoletes_keeps_admin_choice(root, repos, plugin):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=plugin)
    root.systemctl("disable", "virtsecretd.socket")  # preset: enable
    root.systemctl("enable", "virtsecretd-tls.socket")  # preset: disable
    root.dnf("upgrade", repo=repos.v910, plugin=plugin)
    pkgs = root.packages()
    assert "libvirt-daemon-secret" in pkgs and "libvirt-daemon-driver-secret" not in pkgs
    got = states(root, "virtsecretd.socket", "virtsecretd-tls.socket")
    if plugin:
        assert got == {"virtsecretd.socket": "disabled", "virtsecretd-tls.socket": "enabled"}
    else:  # the new name's %post presets, then the old name's %preun disables everything
        assert got == {"virtsecretd.socket": "disabled", "virtsecretd-tls.socket": "disabled"}


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s5_rename_keeps_preset_default_enablement(root, repos, plugin):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=plugin)
    assert root.is_enabled("virtsecretd.socket") == "enabled"  # preset default, admin untouched
    root.dnf("upgrade", repo=repos.v910, plugin=plugin)
    assert root.is_enabled("virtsecretd.socket") == ("enabled" if plugin else "disabled")


# S6 -------------------------------------------------------------------------------------

def admin_tweaks(root: InstallRoot) -> None:
    root.systemctl("disable", "virtlogd.socket", "virtnetworkd.socket")
    root.systemctl("enable", "virtproxyd-tls.socket", "virtqemud-tcp.socket")


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s6_downgrade_across_the_split_changes_no_enablement(root, repos, plugin, tmp_path):
    root.dnf("install", "libvirt", repo=repos.v910, plugin=plugin)
    admin_tweaks(root)
    before = root.links()
    # 9.1.0 -> 9.0.0: the virtproxyd units move back into libvirt-daemon, the proxy package goes
    script = tmp_path / "downgrade.dnf"
    names = ["libvirt", "libvirt-daemon", "libvirt-daemon-log", "libvirt-daemon-lock",
             "libvirt-daemon-driver-qemu", "libvirt-daemon-driver-network",
             "libvirt-daemon-driver-nwfilter", "libvirt-daemon-config-network",
             "libvirt-daemon-config-nwfilter", "libvirt-client"]
    script.write_text("remove libvirt-daemon-proxy libvirt-daemon-session libvirt-daemon-secret\n"
                      f"downgrade {' '.join(names)}\ninstall libvirt-daemon-driver-secret-9.0.0\nrun\n")
    root.dnf("shell", str(script), repo=repos.v910, plugin=plugin)
    assert root.packages()["libvirt-daemon"] == "9.0.0"
    assert "libvirt-daemon-proxy" not in root.packages()
    def surviving(links: dict[str, str]) -> dict[str, str]:
        """Links of the system units that exist in both versions."""
        gone = ("virtqemud-tcp", "virtqemud-admin", "virtqemud-helper")
        return {k: v for k, v in links.items()
                if k.startswith("system/") and not any(g in k for g in gone)}

    if plugin:
        assert surviving(root.links()) == surviving(before)
    else:  # the proxy package's %preun disabled units that live on in libvirt-daemon 9.0.0
        assert root.is_enabled("virtproxyd-tls.socket") == "disabled"


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s6_reinstall_and_plain_downgrade_change_no_enablement(root, repos, plugin):
    root.dnf("install", "libvirt-daemon-9.1.0", "libvirt-daemon-log-9.1.0",
             "libvirt-daemon-driver-qemu-9.1.0",
             "libvirt-daemon-driver-network-9.1.0", repo=repos.v910, plugin=plugin)
    admin_tweaks(root)
    before = root.links()
    root.dnf("reinstall", "libvirt-daemon-proxy", "libvirt-daemon-log", repo=repos.v910, plugin=plugin)
    assert root.links() == before
    root.dnf("downgrade", "libvirt-daemon-log", "libvirt-daemon-driver-network",
             repo=repos.v910, plugin=plugin)
    assert root.packages()["libvirt-daemon-log"] == "9.0.0"
    assert root.links() == before


# S7 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s7_masked_unit_stays_masked(root, repos, plugin):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=plugin)
    root.systemctl("mask", "virtproxyd.socket", "virtproxyd-tls.socket")
    root.dnf("upgrade", repo=repos.v910, plugin=plugin)
    assert states(root, "virtproxyd.socket", "virtproxyd-tls.socket") == {
        "virtproxyd.socket": "masked", "virtproxyd-tls.socket": "masked"}


# S9 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [("--downloadonly",), ("--assumeno",), ("--setopt=tsflags=test",)],
                         ids=["downloadonly", "assumeno", "tsflags-test"])
def test_s9_no_action_runs_change_no_link(root, repos, flags):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=True)
    root.systemctl("disable", "virtproxyd.socket")
    before, pkgs = root.links(), root.packages()
    result = root.dnf(*flags, "upgrade", repo=repos.v910, plugin=True, check=False)
    assert root.links() == before
    assert root.packages() == pkgs
    assert "libvirt-units:" not in result.output


def test_empty_transaction_changes_nothing(root, repos):
    root.dnf("install", "libvirt", repo=repos.v910, plugin=True)
    before = root.links()
    result = root.dnf("upgrade", repo=repos.v910, plugin=True)
    assert "Nothing to do" in result.output
    assert root.links() == before and "libvirt-units:" not in result.output


# S10 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["snapshot", "finish"])
def test_s10_plugin_failure_never_fails_the_transaction(root, repos, step):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=True)
    result = root.dnf("upgrade", repo=repos.v910, plugin=True,
                      env={"LIBVIRT_UNITS_TEST_CHECKPOINT": f"raise:{step}"})
    assert result.returncode == 0
    assert root.packages()["libvirt-daemon"] == "9.1.0"
    warnings = [line for line in result.output.splitlines() if "libvirt-units:" in line]
    assert len(warnings) == 1, result.output
    assert f"forced failure at checkpoint {step}" in warnings[0]
    assert "Traceback" not in result.output


# S11 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_s11_user_unit_preset_globally_when_it_first_appears(bare_root, repos, plugin):
    bare_root.dnf("install", "libvirt-daemon-session-9.1.0", repo=repos.bare, plugin=plugin,
                  plugin_conf=SESSION_CONF)
    expected = "enabled" if plugin else "disabled"
    assert bare_root.is_enabled("virtqemud-session.socket", user=True) == expected
    assert bare_root.is_enabled("virtqemud-session.service", user=True) == "disabled"


def test_s11_user_unit_untouched_on_later_upgrade(root, repos):
    root.dnf("install", "libvirt-daemon-session-9.1.0", repo=repos.v920, plugin=True,
             plugin_conf=SESSION_CONF)
    assert root.is_enabled("virtqemud-session.socket", user=True) == "enabled"
    root.systemctl("--global", "disable", "virtqemud-session.socket")
    root.systemctl("--global", "enable", "virtqemud-session.service")
    before = root.links()
    root.dnf("upgrade", repo=repos.v920, plugin=True, plugin_conf=SESSION_CONF)
    assert root.packages()["libvirt-daemon-session"] == "9.2.0"
    assert root.links() == before


# failed transaction elements ----------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_failed_element_acts_only_on_what_changed(root, repos, plugin):
    """libvirt-daemon-driver-qemu 9.1.0's %pre fails: rpm skips that element, the rest upgrades."""
    from tests.e2e.fixtures import FAIL_MARKER

    monolithic_host(root, repos.v900, plugin)
    (root.path / FAIL_MARKER.lstrip("/")).write_text("libvirt-daemon-driver-qemu")
    result = root.dnf("upgrade", repo=repos.v910, plugin=plugin, check=False)
    assert result.returncode != 0  # dnf reports the failed element
    pkgs = root.packages()
    assert pkgs["libvirt-daemon-driver-qemu"] == "9.0.0" and pkgs["libvirt-daemon-proxy"] == "9.1.0"
    assert root.is_enabled("virtqemud-admin.socket") == "not-found"  # never arrived: nothing to preset
    if plugin:
        for unit in ("virtproxyd.service", *PROXY_SOCKETS):
            assert root.is_enabled(unit) == "disabled", unit
        assert "Traceback" not in result.output
    else:
        assert root.is_enabled("virtproxyd.socket") == "enabled"
