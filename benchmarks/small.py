"""Small transactions (issue 16): the roots, repositories and trees of `run.py --only small`.

Two cases, both on one template root built from the end-to-end tests' fixture packages
(`tests/e2e/fixtures.py`, classic scriptlets), as `tests/e2e/test_presets.py` builds its S1 host:

- **split**: libvirt 9.0.0 installed, then the admin switched to the monolithic libvirtd
  (virtproxyd's units disabled, libvirtd's enabled); `dnf upgrade` to 9.1.0, where the
  virtproxyd units move to the new libvirt-daemon-proxy package (10 upgraded, 3 new packages,
  new units to preset, links the scriptlets change to put back).
- **no-op**: the same root; one plain package (`bench-lone`: two data files, no unit file, no
  scriptlet, no trigger name) is upgraded 1.0 -> 1.1 and nothing else.

Each measured checkout is staged in two forms (see `stage_trees`): *installed*, laid out as the
RPM installs it and byte-compiled; *checkout*, the same sources without any `.pyc` file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.dnfbench import DnfBench
from tests.e2e import fixtures
from tests.e2e.fixtures import FixturePackage

FROM, TO = "9.0.0", "9.1.0"
LONE = "bench-lone"  # the no-op's package: not a libvirt name, no trigger of the default config
LONE_FROM, LONE_TO = "1.0", "1.1"
PROXY_UNITS = ("virtproxyd.service", "virtproxyd.socket", "virtproxyd-ro.socket", "virtproxyd-admin.socket")
MONOLITHIC_UNITS = ("libvirtd.service", "libvirtd.socket")
# what each run checks afterwards: the virtproxyd sockets stay disabled only with the plugin
CHECK_UNITS = PROXY_UNITS[1:]
FORMS = ("installed", "checkout")
CONFIG = Path("etc/dnf/plugins/libvirt-units.conf")


@dataclass(frozen=True)
class Repos:
    base: Path  # 9.0.0 + bench-lone 1.0: the template's packages
    split: Path  # + 9.1.0
    noop: Path  # 9.0.0 + bench-lone 1.1


def _quiet(call):
    with contextlib.redirect_stdout(io.StringIO()):  # fixtures.run() echoes every command
        return call()


def lone_package(version: str) -> FixturePackage:
    files = tuple((f"/usr/share/{LONE}/data-{i}", f"{LONE} data {i}, version {version}\n", 0o644)
                  for i in (1, 2))
    return FixturePackage(LONE, version, files=files, log_posttrans=False)


def build(work: Path) -> Repos:
    """The fixture pool (classic scriptlets) plus bench-lone 1.0 and 1.1; three repositories."""
    pool = _quiet(lambda: fixtures.build_pool(work / "pool", "classic"))
    rpms = dict(pool.rpms)
    top = work / "lone"
    for version in (LONE_FROM, LONE_TO):
        pkg = lone_package(version)
        for sub in ("SPECS", "SOURCES", "BUILD", "BUILDROOT", "RPMS/noarch", "SRPMS"):
            (top / sub).mkdir(parents=True, exist_ok=True)
        spec = top / "SPECS" / f"{pkg.nvr}.spec"
        spec.write_text(fixtures.spec_text([pkg], "classic"))
        # the pool's HOME: its .rpmmacros (_topdir there, rpmdb path, no build-id links)
        env = {"HOME": str(work / "pool" / "home")}
        _quiet(lambda s=spec, e=env: fixtures.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
                                                   str(s)], env=e))
        rpms[(LONE, version)] = top / "RPMS" / "noarch" / f"{pkg.nvr}.noarch.rpm"
    pool = dataclasses.replace(pool, rpms=rpms)
    repos = work / "repos"
    return Repos(
        base=_quiet(lambda: pool.make_repo(repos / "base", [FROM, LONE_FROM])),
        split=_quiet(lambda: pool.make_repo(repos / "split", [FROM, TO, LONE_FROM])),
        noop=_quiet(lambda: pool.make_repo(repos / "noop", [FROM, LONE_TO])),
    )


def template(bench: DnfBench, repos: Repos) -> Path:
    """9.0.0 and bench-lone 1.0 installed without the plugin, the admin's switch to the
    monolithic daemon (test_presets.monolithic_host), the metadata of both upgrades cached."""
    root = bench.work / "templates" / "libvirt-9.0.0"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    bench.checked(root, repos.base, "install", "fixture-root", "fixture-presets")
    bench.checked(root, repos.base, "install", "libvirt", LONE)
    for argv in (("disable", *PROXY_UNITS), ("enable", *MONOLITHIC_UNITS)):
        subprocess.run(["/usr/bin/systemctl", f"--root={root}", "--quiet", *argv], check=True,
                       capture_output=True)
    for repo in (repos.split, repos.noop):
        bench.checked(root, repo, "makecache")
    (root / fixtures.EVENTS_LOG.lstrip("/")).unlink(missing_ok=True)
    return root


def stage_trees(tree: Path, dest: Path) -> dict[str, Path]:
    """The plugin and core of checkout `tree`, twice, each a directory the plugin's pluginpath
    (DIR/dnf-plugins), pluginconfpath (DIR/etc/dnf/plugins) and BENCH_SITE (DIR, appended to
    sys.path by dnf_timed.py where site-packages is) point at:

    - installed: as the RPM lays them out in site-packages (libvirt_presets/,
      dnf-plugins/libvirt_units.py) and byte-compiled (`compileall`, as %py_byte_compile does);
    - checkout: the same sources without any .pyc, so every dnf run compiles them, as a run
      from a fresh checkout does where PYTHONDONTWRITEBYTECODE=1 (this workplace).

    Both are copies: the checkout itself may hold __pycache__/ from the other parts."""
    staged = {}
    for form in FORMS:
        out = dest / form
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tree / "libvirt_presets", out / "libvirt_presets",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (out / "dnf-plugins").mkdir()
        shutil.copy2(tree / "dnf-plugins" / "libvirt_units.py", out / "dnf-plugins")
        (out / CONFIG).parent.mkdir(parents=True)
        shutil.copy2(tree / CONFIG, out / CONFIG)  # the default configuration, as shipped
        (out / CONFIG.parent / "libvirt-units.d").mkdir()
        if form == "installed":
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(out / "libvirt_presets"),
                            str(out / "dnf-plugins")], check=True, stdout=subprocess.DEVNULL)
        staged[form] = out
    return staged


def bytecode_in(path: Path) -> list[str]:
    """.pyc files under path (none may appear in the checkout form)."""
    return [str(p) for p in path.rglob("*.pyc")]


def plugin_summary(output: str) -> str:
    """The plugin's first line in dnf's output ("2 new unit(s) preset, kept 5"), or "silent"."""
    for line in output.splitlines():
        if line.startswith("libvirt-units: "):
            return line.removeprefix("libvirt-units: ").strip()
    return "silent"
