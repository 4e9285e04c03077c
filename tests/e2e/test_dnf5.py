"""Issue 14 end to end: the native dnf5 plugin (libdnf5's Python plugin loader) on real dnf5.

Runs where dnf5, python3-libdnf5 and the Python plugin loader are installed (the sid stack);
elsewhere each test skips with DNF5_PLUGIN_MISSING. The plugin is loaded from the checkout the
way an installed one is: a loader conf named libvirt_units.conf in a private pluginconfpath,
and $LIBDNF_PYTHON_PLUGIN_DIR holding libvirt_units.py (a symlink to
dnf5-plugins/libvirt_units.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.fixtures import PROXY_SOCKETS, Pool, run
from tests.e2e.harness import REPO_ROOT, InstallRoot

JOURNAL = "var/lib/dnf/libvirt-units/pending.json"
RECORD = "var/lib/dnf/libvirt-units/last-transaction.json"
PLUGIN_SOURCE = REPO_ROOT / "dnf5-plugins" / "libvirt_units.py"
CONFIG = REPO_ROOT / "etc/dnf/plugins/libvirt-units.conf"
LOADER = "/etc/dnf/libdnf5-plugins/python_plugins_loader.conf"
MONOLITHIC = {"libvirtd.socket": "enabled", "libvirtd.service": "enabled", **dict.fromkeys(PROXY_SOCKETS, "disabled")}


def dnf5_plugin_missing() -> str | None:
    if shutil.which("dnf5") is None:
        return "dnf5 is not installed here (Debian 12 and trixie ship none; the sid stack runs these tests)"
    if not os.path.exists(LOADER):
        return "libdnf5's Python plugin loader is not installed (python3-libdnf5-python-plugins-loader)"
    try:
        import libdnf5  # noqa: F401
    except ImportError:
        return "python3-libdnf5 is not installed"
    return None


DNF5_PLUGIN_MISSING = dnf5_plugin_missing()
pytestmark = pytest.mark.skipif(DNF5_PLUGIN_MISSING is not None, reason=str(DNF5_PLUGIN_MISSING))


class Dnf5:
    """dnf5 against an installroot with only a fixture repo, our plugin loaded from the checkout."""

    def __init__(self, root: InstallRoot, workdir: Path, plugin: bool = True, actions: bool = False) -> None:
        self.root = root
        self.conf_dir = workdir / "libdnf5-plugins"
        (self.conf_dir / "python_plugins_loader.d").mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "python_plugins_loader.conf").write_text("[main]\nname = python_plugins_loader\nenabled = 1\n")
        if plugin:
            (self.conf_dir / "python_plugins_loader.d" / "libvirt_units.conf").write_text(
                (REPO_ROOT / "etc/dnf/libdnf5-plugins/python_plugins_loader.d/libvirt_units.conf").read_text())
        if actions:  # the shipped actions file, made installroot-only and pointed at the checkout
            (self.conf_dir / "actions.d").mkdir(exist_ok=True)
            (self.conf_dir / "actions.conf").write_text("[main]\nname = actions\nenabled = 1\n")
            shipped = (REPO_ROOT / "etc/dnf/libdnf5-plugins/actions.d/libvirt-units.actions").read_text()
            command = f"/usr/bin/env PYTHONPATH={REPO_ROOT} /usr/bin/python3 -m libvirt_presets"
            lines = [line.replace("enabled=host-only", "enabled=installroot-only")
                     .replace("/usr/bin/libvirt-units", command) + f" --root ${{conf.installroot}} --config {CONFIG}"
                     for line in shipped.splitlines() if line and not line.startswith("#")]
            (self.conf_dir / "actions.d" / "test.actions").write_text("\n".join(lines) + "\n")
        self.plugin_dir = workdir / "python-plugins"
        self.plugin_dir.mkdir(exist_ok=True)
        link = self.plugin_dir / "libvirt_units.py"
        if not link.exists():
            link.symlink_to(PLUGIN_SOURCE)

    def __call__(self, repo: Path, *args: str, check: bool = True, env: dict[str, str] | None = None):
        argv = ["dnf5", "-y", f"--installroot={self.root.path}", "--use-host-config", "--releasever=1",
                f"--setopt=reposdir={self.root.reposdir}", f"--repofrompath=fixture,{repo}", "--repo=fixture",
                "--setopt=pkg_gpgcheck=0", f"--setopt=pluginconfpath={self.conf_dir}", *args]
        environment = {**self.root.env, "PYTHONPATH": str(REPO_ROOT), "LIBDNF_PYTHON_PLUGIN_DIR": str(self.plugin_dir),
                       "LIBVIRT_UNITS_CONFIG": str(CONFIG), **(env or {})}
        result = run(argv, env=environment, check=check)
        result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
        return result


def states(root: InstallRoot, *units: str) -> dict[str, str]:
    return {u: root.is_enabled(u) for u in units}


def monolithic(root: InstallRoot, dnf5: Dnf5, repo: Path) -> None:
    dnf5(repo, "install", "libvirt-9.0.0")
    root.systemctl("disable", "virtproxyd.service", *PROXY_SOCKETS)
    root.systemctl("enable", "libvirtd.service", "libvirtd.socket")


@pytest.fixture
def repo(classic_pool: Pool, tmp_path: Path) -> Path:
    return classic_pool.make_repo(tmp_path / "repo", ["9.0.0", "9.1.0"])


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_dnf5_split_upgrade_keeps_monolithic_host(root, repo, tmp_path, plugin):
    """Offline (--installroot): every admin setting kept, only the new unit gets its preset."""
    dnf5 = Dnf5(root, tmp_path, plugin=plugin)
    monolithic(root, dnf5, repo)
    before = root.links()
    result = dnf5(repo, "upgrade")
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"
    got = states(root, *MONOLITHIC)
    if not plugin:  # the seed's bug, with dnf5 as with dnf 4
        assert got["virtproxyd.socket"] == "enabled"
        return
    assert got == MONOLITHIC, result.output
    after = root.links()
    assert {k: v for k, v in after.items() if k in before} == before
    assert {k for k in set(after) - set(before) if not k.startswith("user/")} == {
        "system/sockets.target.wants/virtqemud-admin.socket"}
    assert not (root.path / JOURNAL).exists()
    record = json.loads((root.path / RECORD).read_text())
    rows = {u["unit"]: u for u in record["units"]}
    assert rows["virtproxyd.socket"]["actions"] == ["keep"]
    assert rows["virtqemud-admin.socket"]["actions"] == ["preset:enable"]
    assert "Traceback" not in result.output


def test_dnf5_plugin_and_actions_file_together_act_once(root, repo, tmp_path):
    """Both installed: the actions' snapshot/apply step aside for the loaded plugin."""
    dnf5 = Dnf5(root, tmp_path, plugin=True, actions=True)
    monolithic(root, dnf5, repo)
    result = dnf5(repo, "upgrade")
    assert states(root, *MONOLITHIC) == MONOLITHIC, result.output
    assert "never reached rpm" not in result.output and "completing the unfinished" not in result.output
    assert not (root.path / JOURNAL).exists()


@pytest.mark.parametrize("where", ["snapshot", "finish"])
def test_dnf5_hook_that_raises_does_not_abort_dnf5(root, repo, tmp_path, where):
    """An exception escaping a hook aborts dnf5 (rc 134): ours are caught, the transaction runs."""
    dnf5 = Dnf5(root, tmp_path)
    monolithic(root, dnf5, repo)
    result = dnf5(repo, "upgrade", env={"LIBVIRT_UNITS_TEST_CHECKPOINT": f"raise:{where}"}, check=False)
    assert result.returncode == 0, result.output
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"
    assert f"forced failure at checkpoint {where}" in result.output
    assert "the transaction goes on without per-unit handling" in result.output


@pytest.mark.parametrize("how", ["--assumeno", "--setopt=tsflags=test", "--downloadonly"])
def test_dnf5_runs_that_change_nothing_leave_no_trace(root, repo, tmp_path, how):
    dnf5 = Dnf5(root, tmp_path)
    monolithic(root, dnf5, repo)
    before = root.links()
    args = ["upgrade", how] if how == "--downloadonly" else [how, "upgrade"]
    dnf5(repo, *args, check=False)
    assert root.links() == before
    assert not (root.path / JOURNAL).exists()


def test_dnf5_killed_after_rpm_next_run_completes(root, repo, tmp_path):
    """dnf5 killed between rpm and our step: the next dnf5 command completes the plan."""
    dnf5 = Dnf5(root, tmp_path)
    monolithic(root, dnf5, repo)
    killed = dnf5(repo, "upgrade", env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:after-rpm"}, check=False)
    assert killed.returncode != 0
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"
    assert (root.path / JOURNAL).exists()
    assert root.is_enabled("virtproxyd.socket") == "enabled"  # the scriptlets' damage, not yet undone
    later = dnf5(repo, "install", "fixture-presets")  # any command that may act
    assert "completing the unfinished transaction" in later.output
    assert states(root, *MONOLITHIC) == MONOLITHIC
    assert root.is_enabled("virtqemud-admin.socket") == "enabled"
    assert not (root.path / JOURNAL).exists()


def test_dnf5_transaction_without_units_does_not_load_the_core(root, repo, tmp_path):
    """Issue 16 with dnf5 (gate.py): a package without systemd files or triggers loads only the
    gate and the header reader, read from Python's own import list; one with unit files loads
    the core."""
    dnf5 = Dnf5(root, tmp_path)
    dnf5(repo, "install", "libvirt-docs-9.0.0", "libvirt-daemon-log-9.0.0")
    (root.path / RECORD).unlink()  # that install shipped units: the plugin acted
    imports = {"PYTHONPROFILEIMPORTTIME": "1"}
    plain = dnf5(repo, "upgrade", "libvirt-docs", env=imports)
    assert root.packages()["libvirt-docs"] == "9.1.0"
    ours = {line.rsplit("|", 1)[1].strip() for line in plain.stderr.splitlines()
            if line.startswith("import time:") and "libvirt_presets" in line}
    # gate.py decides; headers.py (a leaf, rpm only) read the incoming headers it decides on
    assert ours == {"libvirt_presets", "libvirt_presets.gate", "libvirt_presets.headers"}, plain.output
    assert not (root.path / RECORD).exists()
    units = dnf5(repo, "upgrade", "libvirt-daemon-log", env=imports)
    assert "libvirt_presets.session" in units.stderr
    assert (root.path / RECORD).exists()


# a live host: dnf5 with the plugin in a booted container (installroot /) ------------------

LIVE_PACKAGES = ("libvirt-daemon", "libvirt-daemon-proxy", "libvirt-daemon-log",
                 "libvirt-daemon-driver-qemu", "libvirt-daemon-driver-network")
LIVE_SERVICES = ("libvirtd.service", "virtqemud.service")


def test_dnf5_live_upgrade_guards_then_restarts_each_service_once(classic_pool, tmp_path):
    """Classic %postun try-restart scriptlets, systemd 262: the guards refuse them, virtlogd is
    reloaded once with the same MainPID, libvirtd and virtqemud restarted once each, no guard left."""
    from tests.e2e.container import nspawn_unavailable_reason
    from tests.e2e.guest import (
        HOME,
        REPO_DIR,
        SRC,
        GuestDnf,
        booted_guest,
        publish_repos,
        reloads,
        starts,
        wait_for_start_lines,
    )

    reason = nspawn_unavailable_reason()
    if reason is not None:
        pytest.skip(f"cannot boot a systemd-nspawn container: {reason}")
    repos = publish_repos(classic_pool, tmp_path / "repos", {"v900": ["9.0.0"], "v910": ["9.0.0", "9.1.0"]})
    watch = (*LIVE_SERVICES, "virtlogd.service")
    conf_dir, plugin_dir = "/var/lib/e2e-dnf/libdnf5-plugins", "/var/lib/e2e-dnf/python-plugins"
    with booted_guest(REPO_ROOT, repos) as container:
        guest = GuestDnf(container)
        guest.setup("v900")
        guest.dnf("install", *(p for p in LIVE_PACKAGES if p != "libvirt-daemon-proxy"), repo="v900", plugin=False)
        container.run(["sh", "-c", f"mkdir -p {conf_dir}/python_plugins_loader.d {plugin_dir} && "
                       f"ln -sf {SRC}/dnf5-plugins/libvirt_units.py {plugin_dir}/libvirt_units.py && "
                       f"cp {SRC}/etc/dnf/libdnf5-plugins/python_plugins_loader.d/libvirt_units.conf "
                       f"{conf_dir}/python_plugins_loader.d/ && "
                       f"printf '[main]\\nname = python_plugins_loader\\nenabled = 1\\n' "
                       f"> {conf_dir}/python_plugins_loader.conf"])
        guest.start(*watch)
        wait_for_start_lines(guest, watch)
        before = guest.show(*watch)
        mark = len(guest.events())
        argv = ["dnf5", "-y", "--releasever=1", "--setopt=reposdir=/var/lib/e2e-dnf/repos.d",
                f"--repofrompath=v910,{REPO_DIR}/v910", "--repo=v910", "--setopt=pkg_gpgcheck=0",
                f"--setopt=pluginconfpath={conf_dir}", "upgrade"]
        env = {"HOME": HOME, "PYTHONPATH": SRC, "LIBDNF_PYTHON_PLUGIN_DIR": plugin_dir,
               "LIBVIRT_UNITS_CONFIG": f"{SRC}/etc/dnf/plugins/libvirt-units.conf"}
        result = container.run(argv, check=False, env=env)
        print(result.stdout, result.stderr)
        assert result.returncode == 0, result.stderr
        wait_for_start_lines(guest, watch)
        events = guest.events()[mark:]
        assert guest.packages()["libvirt-daemon"] == "9.1.0"
        assert "guarding" in result.stderr, result.stderr
        started = {u: len(starts(events, u.removesuffix(".service"))) for u in LIVE_SERVICES}
        assert started == dict.fromkeys(LIVE_SERVICES, 1), events
        after = guest.show(*watch)
        assert (len(starts(events, "virtlogd")), reloads(events, "virtlogd")) == (0, 1), events
        assert after["virtlogd.service"].main_pid == before["virtlogd.service"].main_pid
        assert all(s.active_state == "active" for s in after.values())
        assert guest.guards() == []
        assert "Traceback" not in result.stderr
