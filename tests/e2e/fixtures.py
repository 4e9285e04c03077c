"""Fixture RPMs for the end-to-end tests: the libvirt 9.0.0 -> 9.1.0 package split, modelled small.

The catalog is plain data (``catalog(version)``); ``build_pool`` turns it into spec files and
builds them with the real ``rpmbuild`` (one spec per version, every package a subpackage, all
specs in parallel); ``Pool.make_repo`` publishes a chosen subset with ``createrepo_c``.

Three scriptlet styles exist because the plugin must cope with every kind of package:
``classic`` spells out Fedora's ``%systemd_post``/``%systemd_preun``/``%systemd_postun`` macros
(Debian's rpm has no systemd macros), ``bare`` has no unit scriptlets at all, and ``libvirt``
has the shapes of libvirt's own spec file (see ``libvirt_scriptlets``): restarts scheduled in
``%pre`` and done in ``%posttrans``, libvirtd stopped with its sockets restarted and started
again, virtlogd/virtlockd reloaded from ``%postun`` *and* ``%posttrans``, sockets with
``RemoveOnStop=yes``.  All styles build the same NEVRAs, so each style lives in its own pool
directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

STYLES = ("classic", "bare", "libvirt")
VERSIONS = ("9.0.0", "9.1.0", "9.2.0")
INFRA_VERSION = "1"
RELEASE = "1"

SYSTEM_UNIT_DIR = "/usr/lib/systemd/system"
USER_UNIT_DIR = "/usr/lib/systemd/user"
EVENTS_LOG = "/var/log/fixture-events.log"

# Packages every repo carries, whatever versions a test asks for.
INFRA_PACKAGES = ("fixture-root", "fixture-presets", "fixture-shell")

# The real libvirt conflict: the monolithic libvirtd and the split-mode virtproxyd listen on the
# same UNIX socket paths, so only one family of sockets may be enabled.
SHARED_SOCKET_STEM = {"libvirtd": "libvirt", "virtproxyd": "libvirt"}
SOCKET_SUFFIXES = ("-ro", "-admin", "-tls", "-tcp")
TLS_PORT = "16514"
TCP_PORT = "16509"
RELOADABLE = ("virtlogd.service", "virtlockd.service")

SYSTEM_PRESET = """\
# fixture-presets: a small model of Fedora's 80-libvirt.preset (modular daemons enabled,
# the monolithic libvirtd and the network listeners disabled).  The order matters: the first
# matching line wins.
enable virtqemud.service
enable virtqemud.socket
enable virtqemud-ro.socket
enable virtqemud-admin.socket
enable virtqemud-helper.service
enable virtproxyd.service
enable virtproxyd.socket
enable virtproxyd-ro.socket
enable virtproxyd-admin.socket
enable virtnetworkd.socket
enable virtnetworkd-ro.socket
enable virtnetworkd-admin.socket
enable virtnwfilterd.socket
enable virtnwfilterd-ro.socket
enable virtnwfilterd-admin.socket
enable virtsecretd.socket
enable virtlogd.socket
enable virtlogd-admin.socket
enable virtlockd.socket
enable virtlockd-admin.socket
enable libvirt-guests.service
disable *-tls.socket
disable *-tcp.socket
disable libvirtd.service
disable libvirtd*.socket
"""
USER_PRESET = """\
# fixture-presets: user units of the session daemon.
enable virtqemud-session.socket
"""
DEFAULT_PRESET = """\
# fixture-presets: like Fedora's 99-default-disable.preset.
disable *
"""

# Applets the chrooted scriptlets (and a curious developer) need besides sh itself.
BUSYBOX_APPLETS = (
    "sh", "[", "[[", "test", "true", "false", "echo", "cat", "ls", "mkdir", "rm", "ln",
    "sleep", "grep", "sed", "env", "kill",
)
# A test that wants dnf killed in the middle of the rpm transaction creates this file (with the
# package name in it) in the root; that package's %post then kills its parent, dnf.
KILL_MARKER = "/etc/fixture-kill-dnf-in"
# ... and this one makes that package's %pre fail, so rpm fails just that transaction element.
FAIL_MARKER = "/etc/fixture-fail-pre-in"


class CommandFailed(AssertionError):
    """A helper command exited nonzero; the message carries its argv and output."""


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run one external tool (argv list, never a shell string) and capture its text output.

    The command and its output are always printed, so pytest shows them for a failing test.
    """
    args = [str(a) for a in argv]
    full_env = {**os.environ, "LC_ALL": "C.UTF-8", **(env or {})}
    proc = subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
    print(f"$ {' '.join(args)}  [rc={proc.returncode}]")
    if proc.stdout:
        print(proc.stdout, end="" if proc.stdout.endswith("\n") else "\n")
    if proc.stderr:
        print("[stderr]\n" + proc.stderr, end="" if proc.stderr.endswith("\n") else "\n")
    if check and proc.returncode != 0:
        raise CommandFailed(
            f"{' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


# --------------------------------------------------------------------------------------------
# Catalog


@dataclass(frozen=True)
class FixturePackage:
    name: str
    version: str
    units: tuple[str, ...] = ()  # system units, under SYSTEM_UNIT_DIR
    user_units: tuple[str, ...] = ()  # user units, under USER_UNIT_DIR
    files: tuple[tuple[str, str, int], ...] = ()  # (path, text, mode)
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    obsoletes: tuple[str, ...] = ()
    # Only fixture-root uses these: files copied from the host, symlinks, empty dirs, devices.
    host_copies: tuple[tuple[str, str], ...] = ()  # (path in package, host source)
    symlinks: tuple[tuple[str, str], ...] = ()  # (path, target)
    dirs: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # %files lines such as "%dev(c,1,3) /dev/null"
    log_posttrans: bool = True  # %posttrans appends "posttrans NAME-VERSION" to EVENTS_LOG

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(u for u in self.units if u.endswith(".service"))

    @property
    def nvr(self) -> str:
        return f"{self.name}-{self.version}-{RELEASE}"


def daemon_units(daemon: str, *suffixes: str) -> tuple[str, ...]:
    """``daemon_units("virtqemud", "", "-ro")`` -> the service plus those sockets."""
    return (f"{daemon}.service", *(f"{daemon}{s}.socket" for s in suffixes))


ALL_SOCKETS = ("", "-ro", "-admin", "-tls", "-tcp")
LOCAL_SOCKETS = ("", "-ro", "-admin")
# virtproxyd's local sockets: in libvirt-daemon up to 9.0.0, in libvirt-daemon-proxy from 9.1.0;
# they share their paths with libvirtd's, so a monolithic host has them disabled
PROXY_SOCKETS = ("virtproxyd.socket", "virtproxyd-ro.socket", "virtproxyd-admin.socket")


def catalog(version: str) -> tuple[FixturePackage, ...]:
    """The libvirt packages of one version (9.0.0 before the split, 9.1.0 after, 9.2.0 only
    ships a newer libvirt-daemon-session)."""
    if version not in VERSIONS:
        raise ValueError(f"unknown fixture version {version!r}; known: {VERSIONS}")
    session = FixturePackage(
        "libvirt-daemon-session",
        version,
        user_units=("virtqemud-session.service", "virtqemud-session.socket"),
    )
    if version == "9.2.0":
        return (session,)
    split = version != "9.0.0"
    v = version

    proxy_units = daemon_units("virtproxyd", *ALL_SOCKETS)
    daemon = FixturePackage(
        "libvirt-daemon",
        v,
        units=daemon_units("libvirtd", *ALL_SOCKETS) + (() if split else proxy_units),
        requires=(f"libvirt-daemon-proxy = {v}",) if split else (),
    )
    # 9.1.0 adds units to an already-installed package: one each for an enable and a disable
    # preset rule (in the default managed scope), and one outside that scope.
    qemu_units = daemon_units("virtqemud", "", "-ro")
    if split:
        qemu_units += ("virtqemud-admin.socket", "virtqemud-tcp.socket", "virtqemud-helper.service")
    secret_units = daemon_units("virtsecretd", "", "-tls")
    if split:
        secret = FixturePackage(
            "libvirt-daemon-secret",
            v,
            units=secret_units,
            obsoletes=(f"libvirt-daemon-driver-secret < {v}",),
            provides=(f"libvirt-daemon-driver-secret = {v}",),
        )
    else:
        secret = FixturePackage("libvirt-daemon-driver-secret", v, units=secret_units)

    packages = [
        daemon,
        *([FixturePackage("libvirt-daemon-proxy", v, units=proxy_units)] if split else []),
        FixturePackage("libvirt-daemon-log", v, units=daemon_units("virtlogd", "", "-admin")),
        FixturePackage("libvirt-daemon-lock", v, units=daemon_units("virtlockd", "", "-admin")),
        FixturePackage("libvirt-daemon-driver-qemu", v, units=qemu_units),
        FixturePackage(
            "libvirt-daemon-driver-network", v, units=daemon_units("virtnetworkd", *LOCAL_SOCKETS)
        ),
        FixturePackage(
            "libvirt-daemon-driver-nwfilter", v, units=daemon_units("virtnwfilterd", *LOCAL_SOCKETS)
        ),
        secret,
        FixturePackage(
            "libvirt-daemon-config-network",
            v,
            files=(("/usr/share/libvirt/networks/default.xml", network_xml(v), 0o644),),
        ),
        FixturePackage(
            "libvirt-daemon-config-nwfilter",
            v,
            files=(("/usr/share/libvirt/nwfilter/allow-arp.xml", nwfilter_xml(v), 0o644),),
        ),
        FixturePackage(
            "libvirt-client",
            v,
            units=("libvirt-guests.service",),
            files=(("/usr/bin/virsh-fixture", virsh_script(v), 0o755),),
        ),
        *([session] if split else []),
    ]
    # The session package is also shipped as 9.2.0 alone, so the meta package must not pin it.
    meta_requires = tuple(
        f"{p.name} >= {v}" if p.name == session.name else f"{p.name} = {v}" for p in packages
    )
    # No unit, no trigger: a transaction of it alone does not concern the plugin (gate.py).
    docs = FixturePackage(
        "libvirt-docs", v, files=(("/usr/share/doc/libvirt-docs/README", f"libvirt {v}\n", 0o644),)
    )
    return (FixturePackage("libvirt", v, requires=meta_requires), *packages, docs)


def infrastructure() -> tuple[FixturePackage, ...]:
    """fixture-root (what an installroot needs for chrooted scriptlets), fixture-presets and
    fixture-shell (only ``Provides: /bin/sh``, for a booted container that already has one)."""
    presets = FixturePackage(
        "fixture-presets",
        INFRA_VERSION,
        files=(
            ("/usr/lib/systemd/system-preset/80-libvirt.preset", SYSTEM_PRESET, 0o644),
            ("/usr/lib/systemd/system-preset/99-default.preset", DEFAULT_PRESET, 0o644),
            ("/usr/lib/systemd/user-preset/80-libvirt.preset", USER_PRESET, 0o644),
            ("/usr/lib/systemd/user-preset/99-default.preset", DEFAULT_PRESET, 0o644),
        ),
        log_posttrans=False,
    )
    shell = FixturePackage("fixture-shell", INFRA_VERSION, provides=("/bin/sh",), log_posttrans=False)
    return (fixture_root(), presets, shell)


def fixture_root() -> FixturePackage:
    busybox = shutil.which("busybox", path="/usr/bin:/bin") or "/usr/bin/busybox"
    copies = [("/usr/bin/busybox", busybox), ("/usr/bin/systemctl", "/usr/bin/systemctl")]
    copies += [(in_root_path(lib), lib) for lib in shared_libraries("/usr/bin/systemctl")]
    return FixturePackage(
        "fixture-root",
        INFRA_VERSION,
        # /usr/bin/sh is reached as /bin/sh only through the /bin symlink, which rpm's file
        # provides do not follow: without this, dnf refuses every package with scriptlets.
        provides=("/bin/sh",),
        host_copies=tuple(dict(copies).items()),
        symlinks=(
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
            *((f"/usr/bin/{applet}", "busybox") for applet in BUSYBOX_APPLETS),
        ),
        dirs=(
            "/usr/sbin",
            "/etc/systemd/system",
            "/etc/systemd/user",
            SYSTEM_UNIT_DIR,
            USER_UNIT_DIR,
            "/var/log",
            "/var/tmp",
            "/tmp",
            "/run",
        ),
        devices=("%attr(0666,root,root) %dev(c,1,3) /dev/null",),
        log_posttrans=False,
    )


def shared_libraries(binary: str) -> list[str]:
    """Every library ``ldd`` lists for binary, the dynamic loader included (host paths)."""
    out = run(["ldd", binary]).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words:
            target = words[words.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif words and words[0].startswith("/"):
            libs.append(words[0])  # the loader, e.g. /lib64/ld-linux-x86-64.so.2
    return libs


def in_root_path(host_path: str) -> str:
    """Where a host library goes in a merged-/usr root (/lib/x -> /usr/lib/x)."""
    for top in ("/lib64/", "/lib/", "/bin/", "/sbin/"):
        if host_path.startswith(top):
            return "/usr" + host_path
    return host_path


def network_xml(version: str) -> str:
    return f"<network>\n  <name>default</name>\n  <!-- fixture {version} -->\n</network>\n"


def nwfilter_xml(version: str) -> str:
    return f"<filter name='allow-arp' chain='arp'>\n  <!-- fixture {version} -->\n</filter>\n"


def virsh_script(version: str) -> str:
    return f'#!/bin/sh\necho "virsh-fixture {version}"\n'


# --------------------------------------------------------------------------------------------
# Unit files


def unit_text(unit: str, package: FixturePackage, user: bool = False, style: str = "classic") -> str:
    if unit.endswith(".socket"):
        return socket_text(unit, user, style)
    return service_text(unit, package, user, style)


def split_socket(unit: str) -> tuple[str, str]:
    """``virtqemud-ro.socket`` -> ``("virtqemud", "-ro")``."""
    stem = unit.removesuffix(".socket")
    for suffix in SOCKET_SUFFIXES:
        if stem.endswith(suffix):
            return stem.removesuffix(suffix), suffix
    return stem, ""


def service_text(unit: str, package: FixturePackage, user: bool, style: str = "classic") -> str:
    daemon = unit.removesuffix(".service")
    wanted_by = "default.target" if user else "multi-user.target"
    if daemon == "libvirt-guests":
        return (
            f"[Unit]\nDescription=fixture {daemon}\n\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/bin/sh -c 'echo \"start {daemon}\" >> {EVENTS_LOG}'\n\n"
            f"[Install]\nWantedBy={wanted_by}\n"
        )
    # "$$$$" in the unit file: systemd turns "$$" into "$", so sh sees "$$" (its own PID).
    shipped = package.user_units if user else package.units
    also = [s for s in (f"{daemon}{x}.socket" for x in LOCAL_SOCKETS) if s in shipped]
    lines = ["[Unit]", f"Description=fixture {daemon}"]
    if style == "libvirt" and also:  # as libvirtd.service: a start pulls its sockets in first
        lines += [f"Wants={' '.join(also)}", f"After={' '.join(also)}"]
    lines += [
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart=/bin/sh -c 'echo \"start {daemon} $$$$\" >> {EVENTS_LOG}; exec sleep infinity'",
        # A Type=simple unit is active as soon as it is forked: `systemctl start/try-restart` would
        # return before its line is written, and a test reading the log under load would miss it.
        f"ExecStartPost=/bin/sh -c 'until grep -qx \"start {daemon} $$MAINPID\" {EVENTS_LOG}; do sleep 0.01; done'",
    ]
    if unit in RELOADABLE:
        lines.append(f"ExecReload=/bin/sh -c 'echo \"reload {daemon}\" >> {EVENTS_LOG}'")
    lines += ["", "[Install]", f"WantedBy={wanted_by}"]
    if also:
        lines.append("Also=" + " ".join(also))
    return "\n".join(lines) + "\n"


def socket_text(unit: str, user: bool, style: str = "classic") -> str:
    daemon, suffix = split_socket(unit)
    stem = SHARED_SOCKET_STEM.get(daemon, daemon)
    run_dir = "%t/libvirt" if user else "/run/libvirt"
    listen = {
        "": f"{run_dir}/{stem}-sock",
        "-ro": f"{run_dir}/{stem}-sock-ro",
        "-admin": f"{run_dir}/{stem}-admin-sock",
        "-tls": TLS_PORT,
        "-tcp": TCP_PORT,
    }[suffix]
    return (
        f"[Unit]\nDescription=fixture {unit}\n\n"
        f"[Socket]\nListenStream={listen}\nService={daemon}.service\n"
        + ("RemoveOnStop=yes\n" if style == "libvirt" else "") + "\n"
        "[Install]\nWantedBy=sockets.target\n"
    )


# --------------------------------------------------------------------------------------------
# Spec files


def when(test: str, command: str) -> str:
    """A scriptlet line running command (quietly, never failing) when ``[ $1 TEST ]``."""
    return f"if [ $1 {test} ]; then {command} >/dev/null 2>&1 || :; fi"


def scriptlets(pkg: FixturePackage, style: str) -> dict[str, str]:
    """Scriptlet bodies by section name (post, preun, postun, posttrans).

    classic: Fedora's %systemd_post (preset on first install), %systemd_preun (disable --now on
    erase), %systemd_postun_with_restart (try-restart the package's own services on upgrade),
    and %systemd_user_post/%systemd_user_preun for user units.
    """
    if style not in STYLES:
        raise ValueError(f"unknown scriptlet style {style!r}; known: {STYLES}")
    sections: dict[str, list[str]] = {"pre": [], "post": [], "preun": [], "postun": [], "posttrans": []}
    if style == "libvirt":
        for section, lines in libvirt_scriptlets(pkg).items():
            sections[section] += lines
    if style == "classic":
        if pkg.units:
            units = " ".join(pkg.units)
            sections["post"].append(when("-eq 1", f"systemctl --no-reload preset {units}"))
            sections["preun"].append(when("-eq 0", f"systemctl --no-reload disable --now {units}"))
        if pkg.services:
            sections["postun"].append(when("-ge 1", f"systemctl try-restart {' '.join(pkg.services)}"))
        if pkg.user_units:
            units = " ".join(pkg.user_units)
            sections["post"].append(when("-eq 1", f"systemctl --global preset {units}"))
            sections["preun"].append(when("-eq 0", f"systemctl --global disable {units}"))
    if pkg.log_posttrans:  # the libvirt packages (not the infrastructure)
        sections["pre"].append(f'if [ "$(cat {FAIL_MARKER} 2>/dev/null)" = "{pkg.name}" ]; then exit 1; fi')
        sections["post"].append(
            f'if [ "$(cat {KILL_MARKER} 2>/dev/null)" = "{pkg.name}" ]; then '
            f'rm -f {KILL_MARKER}; kill -9 $PPID; sleep 5; fi')
        line = f"posttrans {pkg.name}-{pkg.version}"
        sections["posttrans"].append(f'[ -d /var/log ] && echo "{line}" >> {EVENTS_LOG} || :')
    return {name: "\n".join(body) for name, body in sections.items() if body}


RESTART_STATE = "/var/lib/rpm-state/libvirt"


def libvirt_scriptlets(pkg: FixturePackage) -> dict[str, list[str]]:
    """The shapes of libvirt's own scriptlets (libvirt.spec, 9.x):

    - ``%post``: ``%systemd_post`` (preset on first install); ``%preun``: ``%systemd_preun``
      (``disable --now`` on erase, also when a rename or a move takes the units over);
    - a restart scheduled in ``%pre`` (a marker file if the service runs) and done in
      ``%posttrans`` (``try-restart``); for libvirtd: stop the service, ``try-restart`` its
      sockets, start it again (the monolithic daemon's socket conversion);
    - virtlogd/virtlockd: ``reload-or-try-restart`` in ``%postun``, ``try-reload-or-restart`` in
      ``%posttrans``: two reloads per upgrade from the scriptlets alone.
    """
    out: dict[str, list[str]] = {"pre": [], "post": [], "preun": [], "postun": [], "posttrans": []}
    if not pkg.units:
        return out
    units = " ".join(pkg.units)
    out["post"].append(when("-eq 1", f"systemctl --no-reload preset {units}"))
    out["preun"].append(when("-eq 0", f"systemctl --no-reload disable --now {units}"))
    for service in pkg.services:
        daemon = service.removesuffix(".service")
        marker = f"{RESTART_STATE}/restart-{daemon}"
        if service in RELOADABLE:
            out["postun"].append(when("-ge 1", f"systemctl reload-or-try-restart {service}"))
            out["posttrans"].append(f"systemctl try-reload-or-restart {service} >/dev/null 2>&1 || :")
            continue
        if daemon == "libvirt-guests":
            continue
        out["pre"].append(f"if [ $1 -gt 1 ] && systemctl is-active --quiet {service}; then "
                          f"mkdir -p {RESTART_STATE} && : > {marker}; fi; :")
        if daemon == "libvirtd":
            sockets = " ".join(f"libvirtd{x}.socket" for x in LOCAL_SOCKETS)
            restart = (f"systemctl stop {service}; systemctl try-restart {sockets}; "
                       f"systemctl start {service}")
        else:
            restart = f"systemctl try-restart {service}"
        out["posttrans"].append(f"if [ -f {marker} ]; then rm -f {marker}; {{ {restart}; }} >/dev/null 2>&1; fi; :")
    return out


def package_files(pkg: FixturePackage, style: str = "classic") -> dict[str, tuple[str, int]]:
    """Every generated file of pkg: path -> (text, mode)."""
    files = {path: (text, mode) for path, text, mode in pkg.files}
    for unit in pkg.units:
        files[f"{SYSTEM_UNIT_DIR}/{unit}"] = (unit_text(unit, pkg, style=style), 0o644)
    for unit in pkg.user_units:
        files[f"{USER_UNIT_DIR}/{unit}"] = (unit_text(unit, pkg, user=True, style=style), 0o644)
    return files


def rpm_escape(text: str) -> str:
    # rpm expands macros in %install, heredocs included; "$" is not special to rpm.
    return text.replace("%", "%%")


def install_lines(pkg: FixturePackage, style: str = "classic") -> list[str]:
    lines = [f"# {pkg.name}"]
    for path, (text, mode) in package_files(pkg, style).items():
        target = f"%{{buildroot}}{path}"
        lines += [
            f"mkdir -p %{{buildroot}}{os.path.dirname(path)}",
            f"cat > {target} <<'FIXTURE_EOF'",
            rpm_escape(text).rstrip("\n"),
            "FIXTURE_EOF",
            f"chmod {mode:04o} {target}",
        ]
    for path, source in pkg.host_copies:
        lines.append(f"install -D -m 0755 {source} %{{buildroot}}{path}")
    for path in pkg.dirs:
        lines.append(f"mkdir -p %{{buildroot}}{path}")
    for path, target in pkg.symlinks:
        lines += [
            f"mkdir -p %{{buildroot}}{os.path.dirname(path)}",
            f"ln -sfn {target} %{{buildroot}}{path}",
        ]
    return lines


def files_lines(pkg: FixturePackage) -> list[str]:
    lines = list(package_files(pkg))
    lines += [path for path, _ in pkg.host_copies]
    lines += [f"%dir {path}" for path in pkg.dirs]
    lines += [path for path, _ in pkg.symlinks]
    lines += list(pkg.devices)
    return lines


def spec_text(packages: Sequence[FixturePackage], style: str) -> str:
    """One spec building every package of one version as (sub)packages."""
    main = packages[0]
    if any(p.version != main.version for p in packages):
        raise ValueError("a spec holds packages of one version only")
    out = [
        f"Name: {main.name}",
        f"Version: {main.version}",
        f"Release: {RELEASE}",
        "License: MIT",
        "BuildArch: noarch",
    ]
    for i, pkg in enumerate(packages):
        if i:
            out += ["", f"%package -n {pkg.name}"]
        out += [f"Summary: fixture package {pkg.name}", "AutoReqProv: no"]
        out += [f"Requires: {r}" for r in pkg.requires]
        out += [f"Provides: {p}" for p in pkg.provides]
        out += [f"Obsoletes: {o}" for o in pkg.obsoletes]
        out += ["", f"%description -n {pkg.name}" if i else "%description"]
        out += [f"Fixture package {pkg.name} {pkg.version} ({style} scriptlets)."]
    out += ["", "%install", "set -e"]
    for pkg in packages:
        out += install_lines(pkg, style)
    for pkg in packages:
        out += ["", f"%files -n {pkg.name}", *files_lines(pkg)]
        for section, body in scriptlets(pkg, style).items():
            out += ["", f"%{section} -n {pkg.name}", body]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Building and publishing

RPMMACROS = """\
%_topdir {topdir}
# Debian's rpm keeps its database in ~/.rpmdb (Debian bug 1004863); with --installroot that
# would be R/root/.rpmdb.  dnf, rpm and rpmbuild all read this file through HOME.
%_dbpath /var/lib/rpm
# Fast, host-independent builds: no stripping/compressing/build-id links, and fixture-root
# ships host binaries in a noarch package on purpose.
%__os_install_post %{{nil}}
%_build_id_links none
%_binaries_in_noarch_packages_terminate_build 0
%_binary_payload w.ufdio
"""


@dataclass(frozen=True)
class Pool:
    """Built RPMs of every catalog version plus the infrastructure packages, for one style."""

    style: str
    workdir: Path
    rpms: Mapping[tuple[str, str], Path] = field(repr=False)  # (name, version) -> file

    def rpm_path(self, name: str, version: str) -> Path:
        try:
            return self.rpms[(name, version)]
        except KeyError:
            raise KeyError(f"no fixture package {name}-{version} in the {self.style} pool") from None

    def make_repo(
        self,
        dest: Path,
        versions: Iterable[str],
        names: Iterable[str] | None = None,
        strip_filelists: bool = False,
    ) -> Path:
        """Publish the chosen catalog packages (plus the infrastructure ones) as a repo at dest.

        dest is emptied first, so the same path can be republished with other contents.
        """
        versions = list(versions)
        wanted = set(names) if names is not None else None
        chosen = [
            path
            for (name, version), path in self.rpms.items()
            if name in INFRA_PACKAGES
            or (version in versions and (wanted is None or name in wanted))
        ]
        if wanted is not None:
            unknown = wanted - {n for (n, v) in self.rpms if v in versions}
            if unknown:
                raise ValueError(f"no packages {sorted(unknown)} in versions {versions}")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for path in chosen:
            link_or_copy(path, dest / path.name)
        run(["createrepo_c", "--quiet", "--no-database", str(dest)])
        if strip_filelists:
            strip_filelists_metadata(dest)
        return dest


def link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


REPO_NS = "http://linux.duke.edu/metadata/repo"
RPM_NS = "http://linux.duke.edu/metadata/rpm"


def strip_filelists_metadata(repo: Path) -> None:
    """Drop every filelists-ish record (filelists, filelists_db, filelists_ext...) from
    repomd.xml and delete the files, like a mirror that publishes primary metadata only."""
    repomd = repo / "repodata" / "repomd.xml"
    ET.register_namespace("", REPO_NS)
    ET.register_namespace("rpm", RPM_NS)
    tree = ET.parse(repomd)
    top = tree.getroot()
    for data in top.findall(f"{{{REPO_NS}}}data"):
        if data.get("type", "").startswith("filelists"):
            location = data.find(f"{{{REPO_NS}}}location")
            if location is not None:
                (repo / location.get("href", "")).unlink(missing_ok=True)
            top.remove(data)
    tree.write(repomd, xml_declaration=True, encoding="UTF-8")


def spec_groups() -> list[tuple[FixturePackage, ...]]:
    return [catalog(v) for v in VERSIONS] + [infrastructure()]


def build_pool(workdir: Path, style: str) -> Pool:
    """Build every catalog version and the infrastructure packages for one scriptlet style.

    One rpmbuild per version (each package a subpackage), all of them in parallel.
    """
    if style not in STYLES:
        raise ValueError(f"unknown scriptlet style {style!r}; known: {STYLES}")
    home = workdir / "home"
    topdir = workdir / "rpmbuild"
    specdir = topdir / "SPECS"
    home.mkdir(parents=True, exist_ok=True)
    # Parallel rpmbuilds race to create these ("failed to create directory ... File exists").
    for sub in ("SPECS", "SOURCES", "BUILD", "BUILDROOT", "RPMS/noarch", "SRPMS"):
        (topdir / sub).mkdir(parents=True, exist_ok=True)
    (home / ".rpmmacros").write_text(RPMMACROS.format(topdir=topdir))
    env = {**os.environ, "HOME": str(home), "LC_ALL": "C.UTF-8"}

    groups = spec_groups()
    procs = []
    for group in groups:
        spec = specdir / f"{group[0].name}-{group[0].version}.spec"
        spec.write_text(spec_text(group, style))
        argv = ["rpmbuild", "-bb", "--quiet", str(spec)]
        procs.append((argv, subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )))
    for argv, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise CommandFailed(
                f"{' '.join(argv)} exited {proc.returncode}\n--- stdout ---\n{stdout}\n"
                f"--- stderr ---\n{stderr}"
            )

    rpms = {}
    for group in groups:
        for pkg in group:
            path = topdir / "RPMS" / "noarch" / f"{pkg.nvr}.noarch.rpm"
            if not path.is_file():
                raise CommandFailed(f"rpmbuild did not produce {path}")
            rpms[(pkg.name, pkg.version)] = path
    return Pool(style=style, workdir=workdir, rpms=rpms)
