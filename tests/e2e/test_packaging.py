"""Issue 7: the RPM. libvirt-units.spec built by the real rpmbuild from a source tarball of the
working tree, installed into a scratch root by the real dnf, and the installed plugin passing the
seed's scenario S1 from its installed location (PYTHONPATH is the root's site-packages, never the
checkout).

The RPM requires python3-dnf, python3-rpm, systemd... which are Debian packages here, not rpms in
the root. The fixture package `fixture-host-python` provides exactly those requirements (read from
the built RPM), so dnf resolves the real dependency list instead of skipping it with --nodeps; the
code then runs on the host's interpreter, as every plugin in these tests does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from libvirt_presets import __version__
from tests.e2e import harness
from tests.e2e.fixtures import PROXY_SOCKETS, RPMMACROS, FixturePackage, Pool, run, spec_text
from tests.e2e.harness import REPO_ROOT, RPM, InstallRoot

NAME = "libvirt-units"
RECORD = "var/lib/dnf/libvirt-units/last-transaction.json"
MONOLITHIC = {"libvirtd.socket": "enabled", "libvirtd.service": "enabled", **dict.fromkeys(PROXY_SOCKETS, "disabled")}


def tree_files() -> list[str]:
    """The tracked and the new, not ignored files of the working tree (git archive would miss
    uncommitted work)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    return sorted(f for f in out.split("\0") if f and (REPO_ROOT / f).is_file())


def source_tarball(dest: Path) -> Path:
    tarball = dest / f"{NAME}-{__version__}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name in tree_files():
            tar.add(REPO_ROOT / name, arcname=f"{NAME}-{__version__}/{name}", recursive=False)
    return tarball


def rpmbuild_env(work: Path) -> dict[str, str]:
    home, topdir = work / "home", work / "rpmbuild"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".rpmmacros").write_text(RPMMACROS.format(topdir=topdir))
    return {"HOME": str(home)}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    if shutil.which("rst2man") is None:
        pytest.skip("rst2man is missing (apt-get install python3-docutils)")
    work = tmp_path_factory.mktemp("libvirt-units-rpm")
    env = rpmbuild_env(work)
    # --nodeps: the BuildRequires are Debian packages here, not rpms in the host's rpmdb
    run(["rpmbuild", "-ta", "--nodeps", "--quiet", str(source_tarball(work))], env=env)
    rpms = work / "rpmbuild" / "RPMS" / "noarch"
    [binary] = rpms.glob(f"{NAME}-{__version__}-*.noarch.rpm")
    [source] = (work / "rpmbuild" / "SRPMS").glob(f"{NAME}-{__version__}-*.src.rpm")
    return SimpleNamespace(rpm=binary, srpm=source, work=work, env=env)


def query(package: Path, *args: str) -> list[str]:
    return run([RPM, "-qp", *args, str(package)]).stdout.splitlines()


@pytest.fixture(scope="session")
def host_python(built: SimpleNamespace) -> Path:
    """An rpm that provides what the built RPM requires and the scratch root has no rpm for."""
    wanted = [r for r in query(built.rpm, "--requires") if not r.startswith(("rpmlib(", "/bin/sh"))]
    pkg = FixturePackage("fixture-host-python", "1", provides=tuple(wanted), log_posttrans=False)
    spec = built.work / "fixture-host-python.spec"
    spec.write_text(spec_text([pkg], "bare"))
    run(["rpmbuild", "-bb", "--quiet", str(spec)], env=built.env)
    return built.work / "rpmbuild" / "RPMS" / "noarch" / f"{pkg.nvr}.noarch.rpm"


@pytest.fixture(scope="session")
def repos_with_rpm(classic_pool: Pool, built, host_python, tmp_path_factory) -> SimpleNamespace:
    base = tmp_path_factory.mktemp("rpm-repos")
    repos = {}
    for key, versions in (("v900", ["9.0.0"]), ("v910", ["9.0.0", "9.1.0"])):
        repo = classic_pool.make_repo(base / key, versions)
        for extra in (built.rpm, host_python):
            shutil.copy2(extra, repo / extra.name)
        run(["createrepo_c", "--quiet", "--no-database", str(repo)])
        repos[key] = repo
    return SimpleNamespace(**repos)


def test_spec_version_matches_the_package(built):
    spec = (REPO_ROOT / f"{NAME}.spec").read_text()
    assert f"\nVersion:        {__version__}\n" in spec
    assert query(built.srpm, "--qf", "%{NAME}-%{VERSION}") == [f"{NAME}-{__version__}"]


def test_rpm_installs_plugin_package_config_actions_and_man_pages(built):
    files = set(query(built.rpm, "-l"))
    [sitelib] = {f.rsplit("/dnf-plugins/", 1)[0] for f in files if f.endswith("/dnf-plugins/libvirt_units.py")}
    for path in (f"{sitelib}/libvirt_presets/cli.py", f"{sitelib}/libvirt_presets/__main__.py",
                 "/usr/bin/libvirt-units", "/usr/bin/rpm-with-libvirt-units",
                 "/etc/dnf/plugins/libvirt-units.d",
                 "/usr/share/man/man8/libvirt-units.8", "/usr/share/man/man8/dnf4-libvirt-units.8",
                 "/usr/share/man/man8/dnf-libvirt-units.8"):
        assert path in files, path
    # what dnf suggests installing for `dnf libvirt-units` when the plugin is missing
    assert "dnf-command(libvirt-units)" in query(built.rpm, "--provides")
    assert set(query(built.rpm, "-c")) == {"/etc/dnf/plugins/libvirt-units.conf",
                                           "/etc/dnf/libdnf5-plugins/actions.d/libvirt-units.actions"}
    assert query(built.rpm, "--qf", "%{ARCH}") == ["noarch"]
    assert {"python3-rpm", "systemd"} <= set(query(built.rpm, "--requires"))


def test_installed_plugin_keeps_monolithic_host(root: InstallRoot, repos_with_rpm, monkeypatch):
    """S1 with the plugin, the core and the configuration the RPM put into the root."""
    root.dnf("install", NAME, repo=repos_with_rpm.v900, plugin=False)  # the real dnf installs it
    [plugin] = root.path.glob("usr/lib/python3*/site-packages/dnf-plugins/libvirt_units.py")
    sitelib = plugin.parent.parent
    monkeypatch.setattr(harness, "PLUGIN_PATH", plugin.parent)
    monkeypatch.setattr(harness, "PLUGIN_CONF_PATH", root.path / "etc/dnf/plugins")
    installed = {"PYTHONPATH": str(sitelib)}  # replaces the harness's checkout path
    # (dnf's sys.path starts with /usr/bin, never the current directory, which is the checkout
    # under pytest: PYTHONSAFEPATH keeps it off here as well)
    where = run(["/usr/bin/python3", "-c", "import libvirt_presets; print(libvirt_presets.__file__)"],
                env={**installed, "PYTHONSAFEPATH": "1"}).stdout.strip()
    assert Path(where).is_relative_to(sitelib)

    root.dnf("install", "libvirt", repo=repos_with_rpm.v900, env=installed)
    root.systemctl("disable", "virtproxyd.service", *PROXY_SOCKETS)
    root.systemctl("enable", "libvirtd.service", "libvirtd.socket")
    (root.path / RECORD).unlink()
    result = root.dnf("upgrade", repo=repos_with_rpm.v910, env=installed)
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"
    assert {u: root.is_enabled(u) for u in MONOLITHIC} == MONOLITHIC, result.output
    assert root.is_enabled("virtqemud-admin.socket") == "enabled"
    assert (root.path / RECORD).exists()  # the installed plugin did it
    assert "Traceback" not in result.output and "libvirt-units:" not in result.stderr

    # the installed command: same core, same journal and record, no dnf
    cli = run([str(root.path / "usr/bin/libvirt-units"), "check", "--root", str(root.path),
               "--config", str(root.path / "etc/dnf/plugins/libvirt-units.conf")], env={**root.env, **installed})
    assert cli.stdout.strip() == "no problems found"


def test_rpm_carries_man_pages_rendered_in_the_build(built, tmp_path):
    archive = tmp_path / "payload.tgz"
    with open(built.rpm, "rb") as package, open(archive, "wb") as out:  # the payload as a tar
        subprocess.run(["rpm2archive", "-"], stdin=package, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        for page in ("libvirt-units", "dnf4-libvirt-units"):
            roff = tar.extractfile(f"./usr/share/man/man8/{page}.8").read().decode()
            assert roff.startswith('.\\" Man page generated from reStructuredText')
            # docutils 0.19 (Debian 12) writes `.TH "NAME" 8 ...`, 0.21 (trixie) `.TH "NAME" "8" "" ""`,
            # 0.23 (sid) `.TH "name" "8" "" ""`: the page name as written, section 8 either way
            th = re.compile(rf'^\.TH "{re.escape(page)}" "?8"?( |$)', re.MULTILINE | re.IGNORECASE)
            assert th.search(roff), [line for line in roff.splitlines() if line.startswith(".TH")]
            assert "SYNOPSIS" in roff and "System Message" not in roff  # no docutils error inline


def test_dnf5_plugin_subpackage(built):
    """Issue 14: the native dnf5 plugin where libdnf5's Python loader looks, with its Requires."""
    [plugin] = built.rpm.parent.glob(f"{NAME}-dnf5-plugin-{__version__}-*.noarch.rpm")
    files = query(plugin, "-l")
    assert any(f.endswith("/libdnf_plugins/libvirt_units.py") for f in files), files
    assert "/etc/dnf/libdnf5-plugins/python_plugins_loader.d/libvirt_units.conf" in files
    assert "/etc/profile.d/libvirt-units-dnf5.sh" in files
    requires = " ".join(query(plugin, "--requires"))
    for needed in ("python3-libdnf5", "python3-libdnf5-python-plugins-loader", f"{NAME} = {__version__}"):
        assert needed in requires
