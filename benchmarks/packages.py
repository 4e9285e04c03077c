"""Generated RPM repositories for the dnf benchmarks: hundreds of packages from a few rpmbuilds.

One spec per (family, version, scriptlet style), every package a subpackage, files written by a
shell loop in ``%install``: seven rpmbuild calls in parallel build everything.

Packages (N = ``Layout.packages``, U = ``Layout.unit_packages``):

- ``bench-plain-NNNN`` (N - U of them): ``files_per_plain`` plain files, no scriptlets.
- ``bench-svc-NNN`` (U of them): ``bench-svc-NNN.service`` + ``bench-svc-NNN.socket`` and a
  helper script.  Version 1.1 adds ``bench-svc-NNN-admin.socket`` to every ``new_unit_every``-th
  one: a unit new to an installed package, which only the plugin (or libvirt's markers) presets.
  Two scriptlet styles:

  * ``stock``: Fedora's classic ``%systemd_post`` / ``%systemd_preun`` /
    ``%systemd_postun_with_restart`` spelled out (Debian's rpm has no systemd macros);
  * ``macro``: libvirt's own macros (libvirt.spec.in): ``%pre`` writes marker files in
    /var/lib/rpm-state/libvirt for units absent so far (preset) and for the service (restart);
    ``%posttrans`` runs one ``systemctl --no-reload preset`` per marked unit and one
    ``systemctl try-restart`` per service when /run/systemd/system exists.

- ``bench-root``: tests/e2e's fixture-root (busybox as sh, the host's systemctl and libraries)
  except that /usr/bin/systemctl is a wrapper that logs every call to
  /var/log/bench-systemctl.log and execs the real binary, and that /run/systemd/system exists,
  so scriptlets behave as on a booted host (systemctl itself ignores try-restart in a chroot).
- ``bench-presets``: ``enable bench-*`` plus the usual ``disable *``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from tests.e2e.fixtures import FixturePackage, files_lines, fixture_root, install_lines

V1 = "1.0"
V2 = "1.1"
RELEASE = "1"
STYLES = ("stock", "macro")
UNIT_DIR = "/usr/lib/systemd/system"
RPM_STATE = "/var/lib/rpm-state/libvirt"
ROOT_SYSTEMCTL_LOG = "/var/log/bench-systemctl.log"
INFRA_VERSION = "1"
APPLETS = ("touch", "rmdir", "seq", "wc")

RPMMACROS = """\
%_dbpath /var/lib/rpm
%__os_install_post %{nil}
%_build_id_links none
%_binaries_in_noarch_packages_terminate_build 0
%_binary_payload w.ufdio
"""

SYSTEMCTL_WRAPPER = f"""\
#!/bin/sh
# bench-root: count every systemctl process a scriptlet spawns, then run the real one.
# SYSTEMD_OFFLINE: /run/systemd/system exists (so libvirt's guards act as on a booted host), yet
# no manager runs here: preset works on files, try-restart is ignored ("Running in chroot").
echo "$*" >> {ROOT_SYSTEMCTL_LOG}
export SYSTEMD_OFFLINE=1
exec /usr/bin/systemctl.real "$@"
"""

PRESET = """\
enable bench-*.service
enable bench-*.socket
"""
DEFAULT_PRESET = "disable *\n"


@dataclass(frozen=True)
class Layout:
    packages: int = 500
    unit_packages: int = 50
    files_per_plain: int = 4
    new_unit_every: int = 10

    @property
    def plain_packages(self) -> int:
        return self.packages - self.unit_packages

    def plain_names(self) -> list[str]:
        return [f"bench-plain-{i:04d}" for i in range(1, self.plain_packages + 1)]

    def svc_ids(self) -> list[str]:
        return [f"{i:03d}" for i in range(1, self.unit_packages + 1)]

    def units(self, svc: str, version: str) -> list[str]:
        """Units of bench-svc-SVC, the service first (libvirt's macros want it first)."""
        units = [f"bench-svc-{svc}.service", f"bench-svc-{svc}.socket"]
        if version != V1 and int(svc) % self.new_unit_every == 0:
            units.append(f"bench-svc-{svc}-admin.socket")
        return units

    def new_units(self) -> list[str]:
        return sorted(set().union(*(self.units(s, V2) for s in self.svc_ids()))
                      - set().union(*(self.units(s, V1) for s in self.svc_ids())))

    @property
    def unit_count(self) -> int:
        return sum(len(self.units(s, V2)) for s in self.svc_ids())


def _header(name: str, version: str, provides: tuple[str, ...] = ()) -> list[str]:
    return [f"Name: {name}", f"Version: {version}", f"Release: {RELEASE}", "License: MIT",
            "BuildArch: noarch", "Summary: benchmark packages", "AutoReqProv: no",
            *(f"Provides: {p}" for p in provides), "", "%description", "Benchmark package set.", ""]


def _subpackage(name: str, requires: tuple[str, ...] = ()) -> list[str]:
    return ["", f"%package -n {name}", f"Summary: benchmark package {name}", "AutoReqProv: no",
            *(f"Requires: {r}" for r in requires), "", f"%description -n {name}", f"{name}.", ""]


def plain_spec(layout: Layout, version: str) -> str:
    out = _header("bench-plain-set", version)
    names = layout.plain_names()
    for name in names:
        out += _subpackage(name)
    out += [
        "%install",
        "set -e",
        f"for i in $(seq -f %%04g 1 {layout.plain_packages}); do",
        "  d=%{buildroot}/usr/share/bench/plain-$i",
        "  mkdir -p $d",
        f"  for f in $(seq 1 {layout.files_per_plain}); do",
        f'    echo "bench-plain-$i file $f version {version}" > $d/file-$f',
        "  done",
        "done",
    ]
    for i, name in enumerate(names, 1):
        out += ["", f"%files -n {name}", f"/usr/share/bench/plain-{i:04d}"]
    return "\n".join(out) + "\n"


def service_text(svc: str, version: str, units: list[str]) -> str:
    also = " ".join(u for u in units if u.endswith(".socket"))
    return (f"[Unit]\nDescription=bench service {svc} {version}\n\n"
            f"[Service]\nExecStart=/usr/libexec/bench/svc-{svc}\n\n"
            f"[Install]\nWantedBy=multi-user.target\nAlso={also}\n")


def socket_text(unit: str, version: str) -> str:
    stem = unit.removesuffix(".socket")
    svc = stem.removesuffix("-admin")
    return (f"[Unit]\nDescription=bench socket {unit} {version}\n\n"
            f"[Socket]\nListenStream=/run/{stem}.sock\nService={svc}.service\n\n"
            "[Install]\nWantedBy=sockets.target\n")


def _when(test: str, command: str) -> str:
    return f"if [ $1 {test} ]; then {command} >/dev/null 2>&1 || :; fi"


def scriptlets(units: list[str], style: str) -> dict[str, str]:
    service = units[0]
    names = " ".join(units)
    if style == "stock":
        return {
            "post": _when("-eq 1", f"systemctl --no-reload preset {names}"),
            "preun": _when("-eq 0", f"systemctl --no-reload disable --now {names}"),
            "postun": _when("-ge 1", f"systemctl try-restart {service}"),
        }
    # libvirt_systemd_restart_pre / libvirt_systemd_posttrans / libvirt_systemd_preun
    pre = [
        f"mkdir -p {RPM_STATE} || :",
        f"for unit in {names}; do",
        f"    if ! test -e {UNIT_DIR}/$unit; then",
        f"        touch {RPM_STATE}/preset-$unit || :",
        "    fi",
        "done",
        f"mkdir -p {RPM_STATE} || :",
        f"touch {RPM_STATE}/restart-{service} || :",
    ]
    # perform_preset takes the service last (its Also= must win over the sockets' presets)
    posttrans = [
        f"for unit in {' '.join(units[1:])} {service}; do",
        f"    if test -e {RPM_STATE}/preset-$unit; then",
        "        /usr/bin/systemctl --no-reload preset $unit || :",
        "    fi",
        f"    rm -f {RPM_STATE}/preset-$unit",
        "done",
        f"rmdir {RPM_STATE} 2>/dev/null || :",
        f"if test -d /run/systemd/system && test -e {RPM_STATE}/restart-{service}; then",
        f"    /usr/bin/systemctl try-restart {service} >/dev/null 2>&1 || :",
        "fi",
        f"rm -f {RPM_STATE}/restart-{service}",
        f"rmdir {RPM_STATE} 2>/dev/null || :",
    ]
    preun = [
        "if [ $1 -lt 1 ]; then",
        f"    /usr/bin/systemctl --no-reload disable {names} || :",
        "fi",
    ]
    return {"pre": "\n".join(pre), "posttrans": "\n".join(posttrans), "preun": "\n".join(preun)}


def _heredoc(path: str, text: str, mode: str = "0644") -> list[str]:
    return [f"mkdir -p %{{buildroot}}{os.path.dirname(path)}",
            f"cat > %{{buildroot}}{path} <<'BENCH_EOF'", text.rstrip("\n"), "BENCH_EOF",
            f"chmod {mode} %{{buildroot}}{path}"]


def svc_spec(layout: Layout, version: str, style: str) -> str:
    out = _header(f"bench-svc-set-{style}", version)
    for svc in layout.svc_ids():
        out += _subpackage(f"bench-svc-{svc}")
    out += ["%install", "set -e"]
    for svc in layout.svc_ids():
        units = layout.units(svc, version)
        out += _heredoc(f"/usr/libexec/bench/svc-{svc}", f"#!/bin/sh\necho svc-{svc} {version}\n", "0755")
        out += _heredoc(f"{UNIT_DIR}/{units[0]}", service_text(svc, version, units))
        for unit in units[1:]:
            out += _heredoc(f"{UNIT_DIR}/{unit}", socket_text(unit, version))
    for svc in layout.svc_ids():
        units = layout.units(svc, version)
        name = f"bench-svc-{svc}"
        out += ["", f"%files -n {name}", f"/usr/libexec/bench/svc-{svc}"]
        out += [f"{UNIT_DIR}/{u}" for u in units]
        for section, body in scriptlets(units, style).items():
            out += ["", f"%{section} -n {name}", body]
    return "\n".join(out) + "\n"


def bench_root() -> FixturePackage:
    with contextlib.redirect_stdout(io.StringIO()):  # fixtures.run() echoes every command
        base = fixture_root()
    copies = tuple(("/usr/bin/systemctl.real", src) if dst == "/usr/bin/systemctl" else (dst, src)
                   for dst, src in base.host_copies)
    return replace(
        base,
        name="bench-root",
        host_copies=copies,
        files=((("/usr/bin/systemctl", SYSTEMCTL_WRAPPER, 0o755),)),
        symlinks=base.symlinks + tuple((f"/usr/bin/{a}", "busybox") for a in APPLETS),
        dirs=(*base.dirs, "/run/systemd/system", "/var/lib/rpm-state"),
    )


def infra_spec() -> str:
    presets = FixturePackage(
        "bench-presets", INFRA_VERSION,
        files=(("/usr/lib/systemd/system-preset/80-bench.preset", PRESET, 0o644),
               ("/usr/lib/systemd/system-preset/99-default.preset", DEFAULT_PRESET, 0o644)),
        log_posttrans=False,
    )
    root = bench_root()
    out = _header("bench-root", INFRA_VERSION, root.provides)
    out += _subpackage("bench-presets")
    out += ["%install", "set -e", *install_lines(root), *install_lines(presets)]
    out += ["", "%files", *files_lines(root)]
    out += ["", "%files -n bench-presets", *files_lines(presets)]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Repos:
    """Repository directories (createrepo_c) of the benchmark."""

    stock_v1: Path
    stock_v2: Path
    stock_noop: Path  # plain packages at 1.1, unit packages still at 1.0: no unit touched
    macro_v1: Path
    macro_v2: Path


def build(work: Path, layout: Layout) -> Repos:
    """Build every spec (in parallel) and publish the repositories; returns their paths."""
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".rpmmacros").write_text(RPMMACROS)
    specs = {"infra": infra_spec()}
    for version in (V1, V2):
        specs[f"plain-{version}"] = plain_spec(layout, version)
        for style in STYLES:
            specs[f"{style}-{version}"] = svc_spec(layout, version, style)
    procs = []
    for key, text in specs.items():
        top = work / "rpmbuild" / key
        for sub in ("SPECS", "SOURCES", "BUILD", "BUILDROOT", "RPMS", "SRPMS"):
            (top / sub).mkdir(parents=True, exist_ok=True)
        spec = top / "SPECS" / f"{key}.spec"
        if spec.is_file() and spec.read_text() == text and any((top / "RPMS").rglob("*.rpm")):
            continue  # built by an earlier run with the same spec
        shutil.rmtree(top / "RPMS")
        (top / "RPMS").mkdir()
        spec.write_text(text + "# incomplete\n")  # marks a build that did not finish
        argv = ["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", str(spec)]
        env = {**os.environ, "HOME": str(home), "LC_ALL": "C.UTF-8"}
        procs.append((spec, text, argv, subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                                         stderr=subprocess.STDOUT, text=True)))
    for spec, text, argv, proc in procs:
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{out[-3000:]}")
        spec.write_text(text)

    def rpms(key: str) -> list[Path]:
        found = sorted((work / "rpmbuild" / key / "RPMS").rglob("*.rpm"))
        if not found:
            raise RuntimeError(f"rpmbuild of {key} produced no package")
        return found

    def repo(name: str, *keys: str) -> Path:
        dest = work / "repos" / name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for key in ("infra", *keys):
            for path in rpms(key):
                os.link(path, dest / path.name)
        subprocess.run(["createrepo_c", "--quiet", "--no-database", str(dest)], check=True)
        return dest

    return Repos(
        stock_v1=repo("stock-v1", f"plain-{V1}", f"stock-{V1}"),
        stock_v2=repo("stock-v2", f"plain-{V2}", f"stock-{V2}"),
        stock_noop=repo("stock-noop", f"plain-{V2}", f"stock-{V1}"),
        macro_v1=repo("macro-v1", f"plain-{V1}", f"macro-{V1}"),
        macro_v2=repo("macro-v2", f"plain-{V2}", f"macro-{V2}"),
    )
