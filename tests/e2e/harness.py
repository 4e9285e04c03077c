"""A scratch ``--installroot`` driven by the real dnf, rpm and systemctl binaries.

Scriptlets run chrooted in the root (fixture-root gives them sh and systemctl); enablement is
read back with the host's ``systemctl --root``, which honours the root's preset files.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.fixtures import EVENTS_LOG, PROXY_SOCKETS, Pool, run

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_PATH = REPO_ROOT / "dnf-plugins"
PLUGIN_CONF_PATH = REPO_ROOT / "etc" / "dnf" / "plugins"
PLUGIN_CONF_NAME = "libvirt-units.conf"

DNF = "/usr/bin/dnf"
RPM = "/usr/bin/rpm"
SYSTEMCTL = "/usr/bin/systemctl"

DNF_CONF = """\
[main]
gpgcheck=0
install_weak_deps=0
metadata_expire=0
keepcache=0
"""
# a plugin config that also manages the per-user session units (outside the default scope)
SESSION_CONF = "[main]\nenabled = 1\nextra_units = virtqemud-session.*\n"
RPMMACROS = """\
# Debian's rpm keeps its database in ~/.rpmdb (Debian bug 1004863); with --installroot that
# would be R/root/.rpmdb.  rpm and dnf read this file through HOME.
%_dbpath /var/lib/rpm
"""


def repo_id(repo: Path) -> str:
    """One repo id per repo path, so two repos never share dnf's cached metadata."""
    return "fixture-" + hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:12]


class InstallRoot:
    """A root directory R plus the private HOME (rpm macros, dnf.conf) its tools run with."""

    def __init__(self, path: Path, home: Path) -> None:
        self.path = path.resolve()
        self.home = home.resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        macros = self.home / ".rpmmacros"
        if not macros.exists():
            macros.write_text(RPMMACROS)
        self.dnf_conf = self.home / "dnf.conf"
        self.dnf_conf.write_text(DNF_CONF)
        self.reposdir = self.home / "yum.repos.d"  # stays empty: only --repofrompath repos
        self.reposdir.mkdir(exist_ok=True)

    def __repr__(self) -> str:
        return f"InstallRoot({self.path})"

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home)}

    # -- dnf -------------------------------------------------------------------------------

    def dnf(
        self,
        *args: str,
        repo: Path,
        plugin: bool = True,
        plugin_conf: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real dnf against this root with repo as its only repository.

        plugin=True loads the repo's dnf-plugins/ with etc/dnf/plugins/ (or, given plugin_conf,
        a private libvirt-units.conf holding that text); plugin=False is the control run.
        The result carries stdout and stderr; ``output`` is both together.
        """
        repo = repo.resolve()
        rid = repo_id(repo)
        argv = [
            DNF,
            "-y",
            f"--installroot={self.path}",
            f"--config={self.dnf_conf}",
            "--releasever=1",
            f"--setopt=reposdir={self.reposdir}",
            f"--repofrompath={rid},{repo}",
            f"--repo={rid}",
            "--nogpgcheck",
            "--setopt=install_weak_deps=0",
            # Tests republish other contents at the same repo path between calls, and dnf keeps
            # its metadata cache in R/var/cache/dnf.  metadata_expire=0 is not enough: the cache
            # counts as fresh for the rest of the second it was written in.  --refresh expires
            # it explicitly; dnf then re-reads repomd.xml and reuses the cache only if unchanged.
            "--refresh",
        ]
        if plugin:
            argv += [
                f"--setopt=pluginpath={PLUGIN_PATH}",
                f"--setopt=pluginconfpath={self._plugin_conf_dir(plugin_conf)}",
            ]
        else:
            argv.append("--noplugins")
        argv += args
        # PYTHONPATH: the plugin imports libvirt_presets straight from the checkout.
        proc = run(argv, env={**self.env, "PYTHONPATH": str(REPO_ROOT), **(env or {})}, check=check)
        proc.output = proc.stdout + proc.stderr  # type: ignore[attr-defined]
        return proc

    def _plugin_conf_dir(self, plugin_conf: str | None) -> Path:
        if plugin_conf is None:
            return PLUGIN_CONF_PATH
        conf_dir = Path(tempfile.mkdtemp(prefix="pluginconf-", dir=self.home))
        (conf_dir / PLUGIN_CONF_NAME).write_text(plugin_conf)
        return conf_dir

    def setup(self, pool: Pool) -> None:
        """Make a fresh root usable: sh, systemctl and libraries, preset files (no plugin)."""
        repo = pool.make_repo(self.home / "setup-repo", versions=[])
        self.dnf("install", "fixture-root", "fixture-presets", repo=repo, plugin=False)

    # -- systemd ---------------------------------------------------------------------------

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """An admin action on the root, e.g. ``systemctl("disable", "x.socket")``;
        pass "--global" first for user units."""
        return run([SYSTEMCTL, f"--root={self.path}", *args], check=check)

    def is_enabled(self, unit: str, user: bool = False) -> str:
        """The state word ``systemctl is-enabled`` prints: enabled, disabled, masked, static,
        not-found, ... (a nonzero exit status is normal)."""
        scope = ["--global"] if user else []
        proc = self.systemctl(*scope, "is-enabled", "--", unit, check=False)
        words = proc.stdout.split()
        if words:
            return words[0]
        if "No such file" in proc.stderr or "not found" in proc.stderr.lower():
            return "not-found"
        raise AssertionError(f"systemctl is-enabled {unit}: no state printed\n{proc.stderr}")

    def links(self) -> dict[str, str]:
        """Every symlink under R/etc/systemd: path relative to R/etc/systemd -> link target."""
        base = self.path / "etc" / "systemd"
        found = {}
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                if path.is_symlink():
                    found[str(path.relative_to(base))] = os.readlink(path)
        return found

    # -- rpm -------------------------------------------------------------------------------

    def rpm_q(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return run([RPM, f"--root={self.path}", "-q", *args], env=self.env, check=check)

    def packages(self) -> dict[str, str]:
        """Installed packages: name -> version."""
        out = self.rpm_q("-a", "--qf", "%{NAME} %{VERSION}\\n", check=True).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    # -- files -----------------------------------------------------------------------------

    def read(self, path: str) -> str:
        return (self.path / path.lstrip("/")).read_text()

    def events(self) -> list[str]:
        """Lines the fixture scriptlets and services appended to /var/log/fixture-events.log."""
        log = self.path / EVENTS_LOG.lstrip("/")
        return log.read_text().splitlines() if log.exists() else []


def monolithic_host(root: InstallRoot, repo: Path, plugin: bool) -> None:
    """9.0.0 installed, then the admin switches to the monolithic libvirtd."""
    root.dnf("install", "libvirt", repo=repo, plugin=plugin)
    root.systemctl("disable", "virtproxyd.service", *PROXY_SOCKETS)
    root.systemctl("enable", "libvirtd.service", "libvirtd.socket")
