"""The harness itself, checked against the real dnf/rpm/systemctl without the plugin: fixture
packages install, their scriptlets run chrooted, and the split upgrade shows the seed bug."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.fixtures import Pool
from tests.e2e.harness import InstallRoot

VIRTPROXYD_UNITS = (
    "virtproxyd.service",
    "virtproxyd.socket",
    "virtproxyd-ro.socket",
    "virtproxyd-admin.socket",
)


def assert_scriptlets_ran(result) -> None:
    # rpm reports a failing scriptlet (e.g. exit 127 without /bin/sh) while dnf still says
    # Complete!, so the exit status alone proves nothing.
    assert "scriptlet failed" not in result.output
    assert "Complete!" in result.stdout


def test_fresh_install_applies_presets(root: InstallRoot, classic_pool: Pool, tmp_path: Path):
    repo = classic_pool.make_repo(tmp_path / "repo", ["9.0.0"])

    result = root.dnf("install", "libvirt", repo=repo, plugin=False)

    assert_scriptlets_ran(result)
    assert root.packages()["libvirt-daemon"] == "9.0.0"
    assert root.is_enabled("virtproxyd.socket") == "enabled"
    assert root.is_enabled("virtqemud.service") == "enabled"
    assert root.is_enabled("libvirt-guests.service") == "enabled"
    assert root.is_enabled("libvirtd.socket") == "disabled"
    assert root.is_enabled("libvirtd.service") == "disabled"
    assert root.is_enabled("virtproxyd-tls.socket") == "disabled"
    # %posttrans ran chrooted for every package of the transaction.
    assert "posttrans libvirt-daemon-9.0.0" in root.events()
    assert "posttrans libvirt-9.0.0" in root.events()
    # "$$$$" survives rpm's macro expansion: systemd reads "$$" as a literal "$".
    unit = root.read("/usr/lib/systemd/system/virtproxyd.service")
    assert "echo \"start virtproxyd $$$$\" >> /var/log/fixture-events.log" in unit
    assert "Also=virtproxyd.socket virtproxyd-ro.socket virtproxyd-admin.socket" in unit


def test_split_upgrade_without_plugin_reenables_virtproxyd(
    root: InstallRoot, classic_pool: Pool, tmp_path: Path
):
    repo = tmp_path / "repo"
    classic_pool.make_repo(repo, ["9.0.0"])
    root.dnf("install", "libvirt", repo=repo, plugin=False)
    # The admin runs the monolithic daemon instead of the split-mode proxy.
    root.systemctl("disable", *VIRTPROXYD_UNITS)
    root.systemctl("enable", "libvirtd.socket")
    assert root.is_enabled("virtproxyd.socket") == "disabled"

    # Same repo path, new contents: proves dnf does not reuse stale cached metadata.
    classic_pool.make_repo(repo, ["9.1.0"])
    result = root.dnf("upgrade", repo=repo, plugin=False)

    assert_scriptlets_ran(result)
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"
    # The seed bug: libvirt-daemon-proxy is a *new* package, so its %post presets the
    # virtproxyd units, which now fight libvirtd.socket for /run/libvirt/libvirt-sock.
    assert root.is_enabled("virtproxyd.socket") == "enabled"
    assert root.is_enabled("virtproxyd.service") == "enabled"
    assert root.is_enabled("libvirtd.socket") == "enabled"


def test_upgrade_from_repo_without_filelists(
    root: InstallRoot, classic_pool: Pool, tmp_path: Path
):
    old = classic_pool.make_repo(tmp_path / "old", ["9.0.0"], strip_filelists=True)
    new = classic_pool.make_repo(tmp_path / "new", ["9.0.0", "9.1.0"], strip_filelists=True)
    repomd = (new / "repodata" / "repomd.xml").read_text()
    assert 'type="primary"' in repomd
    assert "filelists" not in repomd
    assert not list((new / "repodata").glob("*filelists*"))

    root.dnf("install", "libvirt", repo=old, plugin=False)
    result = root.dnf("upgrade", repo=new, plugin=False)

    assert_scriptlets_ran(result)
    installed = root.packages()
    assert installed["libvirt"] == "9.1.0"
    assert installed["libvirt-daemon-secret"] == "9.1.0"  # the Obsoletes rename went through
    assert "libvirt-daemon-driver-secret" not in installed
    assert root.is_enabled("virtqemud-tcp.socket") == "disabled"


def test_bare_style_install_runs_no_unit_scriptlets(
    root: InstallRoot, bare_pool: Pool, tmp_path: Path
):
    repo = bare_pool.make_repo(tmp_path / "repo", ["9.1.0"])

    result = root.dnf("install", "libvirt", repo=repo, plugin=False)

    assert_scriptlets_ran(result)
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"
    for unit in ("virtproxyd.socket", "virtqemud.service", "libvirt-guests.service"):
        assert root.is_enabled(unit) == "disabled"
    assert root.is_enabled("virtqemud-session.socket", user=True) == "disabled"
    assert root.links() == {}
    # Only the unit scriptlets are missing: %posttrans still ran.
    assert "posttrans libvirt-daemon-proxy-9.1.0" in root.events()


def test_user_units_preset_globally_and_erase_disables(
    root: InstallRoot, classic_pool: Pool, tmp_path: Path
):
    repo = classic_pool.make_repo(tmp_path / "repo", ["9.1.0"], names=["libvirt-daemon-session"])

    root.dnf("install", "libvirt-daemon-session", repo=repo, plugin=False)
    assert root.is_enabled("virtqemud-session.socket", user=True) == "enabled"
    assert root.is_enabled("virtqemud-session.service", user=True) == "disabled"
    assert "user/sockets.target.wants/virtqemud-session.socket" in root.links()

    root.dnf("remove", "libvirt-daemon-session", repo=repo, plugin=False)
    # %preun's "disable" removed the link before rpm removed the unit file.
    assert root.links() == {}
    assert root.is_enabled("virtqemud-session.socket", user=True) == "not-found"


def test_classic_preun_disable_now_works_chrooted(
    root: InstallRoot, classic_pool: Pool, tmp_path: Path
):
    repo = classic_pool.make_repo(tmp_path / "repo", ["9.0.0"])
    root.dnf("install", "libvirt-daemon-driver-network", repo=repo, plugin=False)
    assert root.is_enabled("virtnetworkd.socket") == "enabled"
    linked_before = root.links()

    root.dnf("remove", "libvirt-daemon-driver-network", repo=repo, plugin=False)

    # "disable --now" cannot stop anything without a running manager (it exits 1, which the
    # scriptlet swallows) but the disable half still removes the links.
    assert "system/sockets.target.wants/virtnetworkd.socket" in linked_before
    assert root.links() == {}


def test_header_reader_lists_what_rpm_lists(classic_pool: Pool, tmp_path: Path):
    """The plugin's fallback when dnf's rpm transaction set is out of reach: one header per
    downloaded package, read through one transaction set, must list exactly what rpm -qlp does."""
    from libvirt_presets.headers import HeaderReader

    reader = HeaderReader(str(tmp_path))
    checked = 0
    for path in sorted(classic_pool.rpms.values()):
        listed = subprocess.run(["rpm", "-qlp", "--nosignature", "--nodigest", str(path)],
                                capture_output=True, text=True, check=True).stdout.split("\n")
        expected = frozenset(line for line in listed if line.startswith("/"))
        assert reader.files(str(path)) == expected, path.name
        checked += 1
    assert checked >= 20
