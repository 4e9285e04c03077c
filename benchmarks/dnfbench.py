"""Real dnf against installroots: the plugin on and off, and libvirt's macro scriptlets.

Every timed run starts from a fresh copy of a template root (packages at 1.0 installed, dnf's
metadata cache already filled), so the variants of one round see the same state; only the dnf
process is timed.  A `systemctl` wrapper first on the dnf process's PATH counts the plugin's
own systemctl processes; the root's /usr/bin/systemctl wrapper (bench-root) counts those of the
scriptlets.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from benchmarks.packages import ROOT_SYSTEMCTL_LOG, Layout, Repos

REPO_ROOT = Path(__file__).resolve().parents[1]
# /usr/bin/dnf with clocks around the plugin machinery (same for plugin-on and -off runs)
DNF = ["/usr/bin/python3", str(REPO_ROOT / "benchmarks" / "dnf_timed.py")]
TIMES_ENV = "BENCH_PLUGIN_TIMES"
HOST_SYSTEMCTL = "/usr/bin/systemctl"
LOG_ENV = "BENCH_SYSTEMCTL_LOG"
RUN_TIMEOUT = 900  # seconds; a valgrind run of the 500-package upgrade takes about 300
# dnf-plugins/libvirt_units.py MSG_FAILED: the plugin caught its own exception
PLUGIN_FAILED = "the transaction goes on without per-unit handling"

DNF_CONF = """\
[main]
gpgcheck=0
install_weak_deps=0
keepcache=0
# every timed run starts from the template's cache: never re-check the local repos
metadata_expire=-1
"""
HOST_WRAPPER = f"""\
#!/bin/sh
# libvirt-units benchmark: count the systemctl processes the plugin spawns
[ -n "${LOG_ENV}" ] && echo "$*" >> "${LOG_ENV}"
exec {HOST_SYSTEMCTL} "$@"
"""


def plugin_conf() -> str:
    # the generated units are outside the default (libvirt) scope: widen it
    return "[main]\nenabled = 1\nextra_units = bench-*.service bench-*.socket\n"


def repo_id(repo: Path) -> str:
    return "bench-" + hashlib.sha256(str(repo).encode()).hexdigest()[:10]


@dataclass
class RunResult:
    variant: str
    seconds: float
    returncode: int
    scriptlet_systemctl: int
    plugin_systemctl: int
    output: str = field(repr=False, default="")
    cpu_seconds: float = 0.0  # user + system time of dnf and every process it waited for
    enabled: int = -1  # how many of the checked (new) units are enabled afterwards
    plugin_seconds: float = 0.0  # inside dnf: loading plugins + their hooks
    self_cpu: float = math.nan  # user + system time of dnf's own process (the rest: its children)
    gc_seconds: float = math.nan  # dnf's garbage collections, wherever they ran
    plugin_tree: Path | None = None  # the checkout dnf's plugin was meant to import
    core_loaded: str | None = None  # the checkout whose libvirt_presets dnf did import

    @property
    def problem(self) -> str | None:
        """Why this run does not count, or None."""
        if self.returncode != 0 or "Complete!" not in self.output:
            return f"dnf failed (rc {self.returncode})"
        if "scriptlet failed" in self.output:
            return "a scriptlet failed"
        if self.plugin_tree is not None and self.core_loaded != str(self.plugin_tree):
            return f"libvirt_presets came from {self.core_loaded}, not {self.plugin_tree}"
        if PLUGIN_FAILED in self.output:
            line = next(line for line in self.output.splitlines() if PLUGIN_FAILED in line)
            return f"the plugin failed: {line}"
        return None


class DnfBench:
    """dnf runs against copies of template roots.  `plugin` is the checkout whose
    dnf-plugins/ and libvirt_presets/ dnf loads, or None for --noplugins."""

    def __init__(self, work: Path, layout: Layout, roots: Path | None = None, tree_config: bool = False) -> None:
        self.work = work
        self.layout = layout
        # tree_config: the plugin reads its tree's etc/dnf/plugins (the shipped default
        # configuration) instead of the benchmark's, which widens the scope to bench-* units
        self.tree_config = tree_config
        self.home = work / "dnf-home"
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / ".rpmmacros").write_text("%_dbpath /var/lib/rpm\n")
        self.conf = self.home / "dnf.conf"
        self.conf.write_text(DNF_CONF)
        self.reposdir = self.home / "yum.repos.d"
        self.reposdir.mkdir(exist_ok=True)
        self.pluginconf = self.home / "pluginconf"
        self.pluginconf.mkdir(exist_ok=True)
        (self.pluginconf / "libvirt-units.conf").write_text(plugin_conf())
        self.wrapdir = self.home / "bin"
        self.wrapdir.mkdir(exist_ok=True)
        wrapper = self.wrapdir / "systemctl"
        wrapper.write_text(HOST_WRAPPER)
        wrapper.chmod(0o755)
        self.runs = (roots or work) / "runs"
        if self.runs.exists():
            shutil.rmtree(self.runs)
        self.runs.mkdir(parents=True)

    # -- dnf ---------------------------------------------------------------------------------

    def argv(self, root: Path, repo: Path | str, plugin: Path | None, *args: str) -> list[str]:
        rid = "bench-http" if str(repo).startswith("http") else repo_id(Path(repo))
        argv = [*DNF, "-y", f"--installroot={root}", f"--config={self.conf}", "--releasever=1",
                f"--setopt=reposdir={self.reposdir}", f"--repofrompath={rid},{repo}", f"--repo={rid}",
                "--nogpgcheck", "--setopt=install_weak_deps=0"]
        if plugin is not None:
            conf = plugin / "etc" / "dnf" / "plugins" if self.tree_config else self.pluginconf
            argv += [f"--setopt=pluginpath={plugin / 'dnf-plugins'}", f"--setopt=pluginconfpath={conf}"]
        else:
            argv.append("--noplugins")
        return argv + list(args)

    def env(self, plugin: Path | None, log: Path | None = None) -> dict[str, str]:
        env = {**os.environ, "HOME": str(self.home), "LC_ALL": "C.UTF-8",
               "PATH": f"{self.wrapdir}:{os.environ.get('PATH', '')}"}
        env.pop(LOG_ENV, None)
        env.pop("PYTHONPATH", None)
        env.pop("BENCH_SITE", None)
        if plugin is not None:  # the plugin imports libvirt_presets from that tree (dnf_timed.py)
            env["BENCH_SITE"] = str(plugin)
        if log is not None:
            env[LOG_ENV] = str(log)
        return env

    def checked(self, root: Path, repo: Path | str, *args: str) -> None:
        proc = subprocess.run(self.argv(root, repo, None, *args), env=self.env(None),
                              capture_output=True, text=True, timeout=900, check=False,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or "scriptlet failed" in proc.stdout + proc.stderr:
            raise RuntimeError(f"dnf {' '.join(args)} failed (rc {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    # -- roots -------------------------------------------------------------------------------

    def template(self, name: str, install_repo: Path, upgrade_repos: list[Path]) -> Path:
        """Root with every package of install_repo installed (no plugin) and the metadata of
        upgrade_repos cached; the systemctl log of the setup is dropped."""
        root = self.work / "templates" / name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        self.checked(root, install_repo, "install", "bench-root", "bench-presets")
        self.checked(root, install_repo, "install", "bench-*")
        for repo in upgrade_repos:
            self.checked(root, repo, "makecache")
        (root / ROOT_SYSTEMCTL_LOG.lstrip("/")).unlink(missing_ok=True)
        return root

    def fresh_copy(self, template: Path) -> Path:
        dest = Path(tempfile.mkdtemp(prefix=f"{template.name}-", dir=self.runs))
        dest.rmdir()
        subprocess.run(["cp", "-a", "--reflink=auto", str(template), str(dest)], check=True)
        return dest

    def timed(self, variant: str, template: Path, repo: Path | str, plugin: Path | None,
              *args: str, check_units: Sequence[str] = (), wrap: Sequence[str] = (),
              extra_env: dict[str, str] | None = None) -> RunResult:
        """One timed dnf run on a fresh copy of template; the copy is removed afterwards.
        `wrap` goes before dnf's argv (valgrind for instruction counts, taskset for pinning)."""
        return self.finish(self.start(variant, template, repo, plugin, *args, check_units=check_units,
                                      wrap=wrap, extra_env=extra_env))

    def start(self, variant: str, template: Path, repo: Path | str, plugin: Path | None,
              *args: str, check_units: Sequence[str] = (), wrap: Sequence[str] = (),
              extra_env: dict[str, str] | None = None, root: Path | None = None) -> Started:
        """Start dnf on a fresh copy of template (or on `root`, a copy the caller made and
        synced): `finish` waits for it.  Two started runs may go on at once (the concurrent
        pairs), so each run's time and rusage are its own (wait4)."""
        if root is None:
            root = self.fresh_copy(template)
            os.sync()  # no writeback of the copy during the timed run
        log = Path(f"{root}.plugin-systemctl.log")
        times = Path(f"{root}.plugin-times.json")
        output = Path(f"{root}.output")
        argv = [*wrap, *self.argv(root, repo, plugin, *args)]
        env = {**self.env(plugin, log), TIMES_ENV: str(times), **(extra_env or {})}
        with open(output, "wb") as out:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        watchdog = threading.Timer(RUN_TIMEOUT, proc.kill)  # a hung dnf fails its run (rc -9)
        watchdog.start()
        return Started(variant, root, plugin, proc, start, watchdog, log, times, output,
                       list(check_units))

    def finish(self, run: Started, before_removal: Callable[[Path], None] | None = None) -> RunResult:
        """Wait for a started run and measure it; `before_removal(root)` runs before the root
        copy is deleted (collect files from it, unmount what the caller mounted there)."""
        _, status, usage = os.wait4(run.proc.pid, 0)  # this run's own rusage, not all children's
        seconds = time.perf_counter() - run.started
        run.watchdog.cancel()
        run.proc.returncode = os.waitstatus_to_exitcode(status)
        root = run.root
        result = RunResult(
            variant=run.variant, seconds=seconds, returncode=run.proc.returncode,
            scriptlet_systemctl=_lines(root / ROOT_SYSTEMCTL_LOG.lstrip("/")),
            plugin_systemctl=_lines(run.log),
            output=run.output.read_text(errors="replace"), cpu_seconds=usage.ru_utime + usage.ru_stime,
        )
        result.plugin_tree = run.plugin
        try:
            spent = json.loads(run.times.read_text())
            run.times.unlink()
            result.plugin_seconds = spent["total"]
            result.self_cpu = spent.get("self_cpu", math.nan)
            result.gc_seconds = spent.get("gc", math.nan)
            result.core_loaded = spent.get("libvirt_presets")
        except (OSError, ValueError, KeyError):
            result.plugin_seconds = math.nan
        if run.check_units:
            states = self.is_enabled(root, run.check_units)
            result.enabled = sum(1 for state in states if state == "enabled")
        run.log.unlink(missing_ok=True)
        run.output.unlink(missing_ok=True)
        if before_removal is not None:
            before_removal(root)
        shutil.rmtree(root)
        return result

    def is_enabled(self, root: Path, units: list[str]) -> list[str]:
        proc = subprocess.run([HOST_SYSTEMCTL, f"--root={root}", "is-enabled", "--", *units],
                              capture_output=True, text=True, check=False)
        return proc.stdout.split()


@dataclass
class Started:
    """A dnf run under way (DnfBench.start)."""

    variant: str
    root: Path
    plugin: Path | None
    proc: subprocess.Popen
    started: float
    watchdog: threading.Timer
    log: Path
    times: Path
    output: Path
    check_units: list[str]


def _lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


# -- metadata requests over HTTP --------------------------------------------------------------


class _Logged(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:  # http.server's naming
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class RepoServer:
    """The repo directory over http://127.0.0.1 (loopback only), remembering every request."""

    def __init__(self, directory: Path) -> None:
        self.requests: list[str] = []
        handler = type("Handler", (_Logged,), {"requests": self.requests})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     partial(handler, directory=str(directory)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> RepoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def take(self) -> list[str]:
        taken = list(self.requests)
        self.requests.clear()
        return taken


def metadata_requests(paths: list[str]) -> list[str]:
    return sorted(p for p in paths if "/repodata/" in p)





def profile_plugin(bench: DnfBench, template: Path, repo: Path, plugin: Path, top: int = 25) -> str:
    """One plugin-on upgrade under cProfile; the plugin's share of the profile, by own time."""
    import io
    import pstats

    root = bench.fresh_copy(template)
    out = Path(f"{root}.prof")
    argv = bench.argv(root, repo, plugin, "upgrade")
    env = {**bench.env(plugin), "BENCH_CPROFILE": str(out)}
    subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False,
                   stdin=subprocess.DEVNULL)
    shutil.rmtree(root)
    buf = io.StringIO()
    stats = pstats.Stats(str(out), stream=buf)
    stats.sort_stats("cumulative").print_stats(r"libvirt_units|libvirt_presets", top)
    out.unlink()
    text = buf.getvalue()
    return text[text.find("   ncalls"):] if "   ncalls" in text else text


__all__ = ["DnfBench", "RepoServer", "Repos", "RunResult", "metadata_requests", "profile_plugin"]
