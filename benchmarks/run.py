#!/usr/bin/python3
"""libvirt-units benchmarks: planner scaling, dnf upgrades with and without the plugin,
libvirt's macro scriptlets, snapshot cost.  Prints a markdown report (see benchmarks/README.md).

    /usr/bin/python3 benchmarks/run.py                 # everything, 5 rounds (about 4 min)
    /usr/bin/python3 benchmarks/run.py --quick         # smoke run (small sizes, 2 rounds)
    /usr/bin/python3 benchmarks/run.py --only planner  # any part of PARTS, repeatable
    /usr/bin/python3 benchmarks/run.py --compare DIR   # also measure the checkout DIR, side by side

Needs root and Debian's /usr/bin/python3 with dnf/rpm (./scripts/deps) for the dnf parts.
Benchmarks are not tests: nothing here fails on a slow figure; targets are only reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import common  # noqa: E402
from benchmarks.common import kib, median, median_ci, seconds, spread, table, verdict_of_interval  # noqa: E402

PYTHON = "/usr/bin/python3"
WORKER = REPO_ROOT / "benchmarks" / "worker.py"
PARTS = ("planner", "snapshot", "dnf", "macros", "instructions", "concurrent", "small")
DEFAULT_WORKDIR = Path("/var/tmp/libvirt-units-bench")

# The targets of issue 6.
TARGET_RATIO = 1.03
TARGET_PROCESSES = 4
TARGET_PLANNER_SECONDS = 0.2
LINEAR_EXPONENT = 1.2  # t(10k)/t(1k) = 10^k; k <= 1.2 counts as linear growth


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def verdict(ok: bool | None) -> str:
    """None: no figure, or an interval that straddles the target (not resolved by this run)."""
    return "n/a / not resolved" if ok is None else ("met" if ok else "**missed**")


@dataclass
class Report:
    summary: list[tuple[str, str, str, str]] = field(default_factory=list)  # what, target, measured, verdict
    sections: list[tuple[int, str]] = field(default_factory=list)  # (benchmark number, markdown)

    def add(self, what: str, target: str, measured: str, ok: bool | None) -> None:
        self.summary.append((what, target, measured, verdict(ok)))


def worker(what: str, tree: Path, *args: str) -> dict:
    argv = [PYTHON, str(WORKER), what, "--tree", str(tree), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout) if what != "profile" else {"text": proc.stdout}


def in_turn(items: list, round_no: int) -> list:
    """The order of one round: rotated every round, so no variant always goes first."""
    k = round_no % len(items)
    return items[k:] + items[:k]


def tree_label(tree: Path, trees: list[Path]) -> str:
    return "this tree" if tree == trees[0] else f"compare: {tree}"


# -- 1. planner --------------------------------------------------------------------------------


def bench_planner(args: argparse.Namespace, trees: list[Path], report: Report) -> None:
    sizes = [100, 1000, 10000]
    times = {t: {n: [] for n in sizes} for t in trees}
    peak: dict = {t: {} for t in trees}
    files: dict[int, int] = {}
    for r in range(args.runs):
        for tree in in_turn(trees, r):
            log(f"planner round {r + 1}/{args.runs} ({tree_label(tree, trees)})")
            extra = ["--memory"] if r == 0 else []
            res = worker("planner", tree, "--sizes", ",".join(map(str, sizes)), *extra)["planner"]
            for n in sizes:
                times[tree][n].append(res[str(n)]["seconds"])
                files[n] = res[str(n)]["files"]
                if "peak_bytes" in res[str(n)]:
                    peak[tree][n] = res[str(n)]["peak_bytes"]
    out = ["## 1. Planner scaling (pure core, in process)", "",
           "Synthetic upgrade of N packages: each has an incoming half with 20 files, one of them a unit "
           "file (5 %), and an outgoing half with the old 20 files, as the dnf plugin reports them. "
           "All units are in the managed scope (`extra_units = bench-*`), 95 % existed before (a third "
           "of them enabled), 5 % are new; default triggers. Time of one `plan_transaction()` call "
           f"(median of {args.runs} rounds, one process per round); peak memory by tracemalloc "
           "(first round, separate call).", ""]
    for tree in trees:
        rows = []
        prev = None
        for n in sizes:
            t = median(times[tree][n])
            growth = f"{t / prev:.1f}× (×10 packages)" if prev else ""
            rows.append((f"{n:,}", f"{files[n]:,}", spread(times[tree][n], "{:.4f}") + " s",
                         f"{t / n * 1e6:.1f} µs", kib(peak[tree].get(n, math.nan)), growth))
            prev = t
        if len(trees) > 1:
            out += [f"**{tree_label(tree, trees)}**", ""]
        out += [table(("packages", "incoming files", "time: median (min–max)", "per package",
                       "peak memory", "growth"), rows), ""]
    t10k = median(times[trees[0]][10000])
    exponent = math.log10(t10k / median(times[trees[0]][1000]))
    if len(trees) > 1:
        rows = []
        for n in sizes:
            ratios = [b / a for a, b in zip(times[trees[0]][n], times[trees[1]][n])]
            rows.append((f"{n:,}", spread(ratios, "{:.3f}")))
        out += ["Side by side, per round: compare tree / this tree", "",
                table(("packages", "time ratio: median (min–max)"), rows), ""]
    report.sections.append((1, "\n".join(out)))
    report.add("Planner: 10k packages / 200k files", f"< {TARGET_PLANNER_SECONDS} s",
               f"{t10k:.3f} s (median of {args.runs})", t10k < TARGET_PLANNER_SECONDS)
    report.add("Planner: linear growth", f"t(10k)/t(1k) = 10^k, k ≤ {LINEAR_EXPONENT}",
               f"k = {exponent:.2f} ({t10k / median(times[trees[0]][1000]):.1f}× for 10× packages)",
               exponent <= LINEAR_EXPONENT)
    if args.profile:
        for tree in trees:
            text = worker("profile", tree, "--sizes", "10000")["text"]
            title = f"### cProfile of the planner, 10k packages ({tree_label(tree, trees)})"
            report.sections.append((1, f"{title}\n\n```\n{text.strip()}\n```"))


# -- 4. snapshot -------------------------------------------------------------------------------


def bench_snapshot(args: argparse.Namespace, trees: list[Path], report: Report) -> None:
    units, links = (200, 500) if args.quick else (2000, 5000)
    root = args.workdir / f"snapshot-root-{units}-{links}"
    keys = ("snapshot", "scope_filter", "links_of", "list_unit_files")
    samples = {t: {k: [] for k in keys} for t in trees}
    ratio = {t: [] for t in trees}
    extra: dict = {}
    for r in range(args.runs):
        for tree in in_turn(trees, r):
            log(f"snapshot round {r + 1}/{args.runs} ({tree_label(tree, trees)})")
            memory = ["--memory"] if r == 0 else []
            res = worker("snapshot", tree, "--root", str(root), "--unit-files", str(units),
                         "--links", str(links), "--repeat", "3", *memory)["snapshot"]
            for k in keys:
                samples[tree][k].append(res[k])
            ratio[tree].append(res["snapshot"] / res["list_unit_files"])
            extra.setdefault(tree, {}).update({k: res[k] for k in ("units", "links", "managed", "peak_bytes")
                                              if k in res})
    facts = extra[trees[0]]
    out = ["## 4. Snapshot cost", "",
           f"A root with {facts['units']:,} unit files and {facts['links']:,} enablement links "
           "(.wants/ links in five targets, template instances, aliases, masks). `take_snapshot()` reads "
           "both; the plugin takes three per transaction (before, after, and before restoring links). "
           "Beside it, what `session.begin()` does with it (keep the units of the default scope: "
           f"{facts['managed']} libvirt units here) and what the planner does with links (`links_of`), "
           "and, as a reference measured in the same rounds, one `systemctl --root=R list-unit-files`. "
           f"Medians of {args.runs} rounds (each the median of 3 calls; the reference once per round).", ""]
    for tree in trees:
        s = samples[tree]
        rows = [
            ("take_snapshot()", spread(s["snapshot"], "{:.4f}") + " s",
             kib(extra[tree].get("peak_bytes", math.nan))),
            ("× 3 per transaction", seconds(3 * median(s["snapshot"])), ""),
            ("scope filter of begin() (default scope)", spread(s["scope_filter"], "{:.4f}") + " s", ""),
            ("links_of(links, managed units)", spread(s["links_of"], "{:.4f}") + " s", ""),
            ("reference: systemctl --root list-unit-files",
             spread(s["list_unit_files"], "{:.3f}") + " s", ""),
            ("ratio snapshot / list-unit-files (per round)", spread(ratio[tree], "{:.4f}"), ""),
        ]
        if len(trees) > 1:
            out += [f"**{tree_label(tree, trees)}**", ""]
        out += [table(("measure", "median (min–max)", "peak memory"), rows), ""]
    if len(trees) > 1:
        rows = [(k, spread([b / a for a, b in zip(samples[trees[0]][k], samples[trees[1]][k])], "{:.3f}"))
                for k in keys[:3]]
        out += ["Side by side, per round: compare tree / this tree", "",
                table(("measure", "time ratio: median (min–max)"), rows), ""]
    report.sections.append((4, "\n".join(out)))
    total = 3 * median(samples[trees[0]]["snapshot"]) + median(samples[trees[0]]["scope_filter"])
    report.add(f"Snapshot of {facts['units']:,} units / {facts['links']:,} links", "(no target)",
               f"{seconds(median(samples[trees[0]]['snapshot']))} per snapshot; "
               f"{seconds(total)} per transaction (3 snapshots + scope filter)", None)


# -- 2./3. dnf ---------------------------------------------------------------------------------


@contextlib.contextmanager
def roots_tmpfs(args: argparse.Namespace) -> Iterator[Path | None]:
    """A private tmpfs for the timed roots: no disk writeback or fsync noise in the figures
    (and a harsher ratio for the plugin, whose cost is CPU).  None: roots stay on disk."""
    if args.roots_on_disk:
        yield None
        return
    mnt = args.workdir / "roots-tmpfs"
    mnt.mkdir(exist_ok=True)
    if os.path.ismount(mnt):
        subprocess.run(["umount", str(mnt)], check=False)
    argv = ["mount", "-t", "tmpfs", "-o", "size=4g,mode=0755", "libvirt-units-bench", str(mnt)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log(f"cannot mount a tmpfs ({proc.stderr.strip()}): roots stay on disk")
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def dnf_setup(args: argparse.Namespace, trees: list[Path], roots: Path | None, name: str):
    """The generated repositories (built once, cached), a DnfBench in workdir/name, and the
    measured checkouts byte-compiled, as installed from the RPM, whose build compiles every module."""
    from benchmarks.dnfbench import DnfBench
    from benchmarks.packages import Layout, build

    layout = Layout(packages=60, unit_packages=10, new_unit_every=5) if args.quick else Layout()
    log(f"building {layout.packages} packages × 2 versions (+ {layout.unit_packages} macro-style); "
        "cached in the work directory")
    start = time.perf_counter()
    repos = build(args.workdir / "build", layout)
    log(f"built in {time.perf_counter() - start:.0f} s; creating template roots")
    for tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "libvirt_presets"),
                        str(tree / "dnf-plugins")], check=True, stdout=subprocess.DEVNULL)
    for repo_dir in vars(repos).values():  # page cache: no variant pays for cold package files
        for rpm_file in Path(repo_dir).glob("*.rpm"):
            rpm_file.read_bytes()
    return layout, repos, DnfBench(args.workdir / name, layout, roots)


def where_the_difference_lies(results: dict, good) -> list[str]:
    """Per-round differences plugin-on minus plugin-off, split by process: callgrind (part 2b)
    counts dnf's own process and the plugin's systemctl, not the scriptlets; this shows whether
    the scriptlets (dnf's children) cost the same in both variants."""
    rows = []
    for group in results:
        pairs = [(a, b) for a, b in zip(results[group]["off"], results[group].get("on", []))
                 if not a.problem and not b.problem]
        if not pairs:
            continue

        measures = (lambda x: x.seconds, lambda x: x.cpu_seconds, lambda x: x.self_cpu,
                    lambda x: x.cpu_seconds - x.self_cpu, lambda x: x.gc_seconds)
        diffs = [f"{1000 * median(value(b) - value(a) for a, b in pairs):+.0f} ms" for value in measures]
        rows.append((group, len(pairs), *diffs, seconds(median(b.plugin_seconds for _, b in pairs))))
    return ["### Where the difference lies", "",
            "Medians of the per-round differences, plugin on minus plugin off. *dnf's own CPU* is "
            "the dnf process's rusage at exit; *children* is the rest of the run's CPU time (rpm's "
            "scriptlets, the plugin's systemctl); *GC* is the time of dnf's garbage collections "
            "(`gc.callbacks`), wherever they ran. Each figure scatters like the wall time.", "",
            table(("case", "pairs", "wall time", "CPU time", "dnf's own CPU", "children's CPU",
                   "GC", "plugin time (inside dnf, absolute)"), rows), ""]


def bench_dnf(args: argparse.Namespace, trees: list[Path], parts: set[str], report: Report,
              roots: Path | None) -> None:
    from benchmarks.dnfbench import RepoServer, metadata_requests

    layout, repos, bench = dnf_setup(args, trees, roots, "dnf")
    want_dnf, want_macros = "dnf" in parts, "macros" in parts
    stock = bench.template("stock", repos.stock_v1, [repos.stock_v2, repos.stock_noop])
    macro = bench.template("macro", repos.macro_v1, [repos.macro_v2]) if want_macros else None
    new_units = layout.new_units()
    this, *other = trees

    upgrade = [("off", stock, repos.stock_v2, None)] if want_dnf else []
    upgrade.append(("on", stock, repos.stock_v2, this))
    upgrade += [("on (compare)", stock, repos.stock_v2, t) for t in other]
    if want_macros:
        upgrade.append(("macro", macro, repos.macro_v2, None))
    noop = [("off", stock, repos.stock_noop, None), ("on", stock, repos.stock_noop, this)]
    noop += [("on (compare)", stock, repos.stock_noop, t) for t in other]
    groups = [("upgrade", upgrade)] + ([("no-op", noop)] if want_dnf else [])

    results: dict[str, dict[str, list]] = {g: {v[0]: [] for v in variants} for g, variants in groups}
    for r in range(args.dnf_runs):
        for group, variants in groups:
            for name, template, repo, plugin in in_turn(variants, r):
                log(f"dnf {group} round {r + 1}/{args.dnf_runs}: {name}")
                res = bench.timed(name, template, repo, plugin, "upgrade",
                                  check_units=new_units if group == "upgrade" else [])
                if res.problem:
                    log(f"  run does not count: {res.problem}")
                results[group][name].append(res)
                log(f"  {res.seconds:.2f} s, CPU {res.cpu_seconds:.2f} s (plugin {res.plugin_seconds:.3f} s), "
                    f"systemctl: "
                    f"{res.scriptlet_systemctl} scriptlets + {res.plugin_systemctl} plugin")

    def good(group: str, name: str) -> list:
        return [x for x in results[group][name] if not x.problem]

    def pair_ratios(group: str, a: str, b: str, attr: str = "seconds") -> list[float]:
        return [getattr(y, attr) / getattr(x, attr) for x, y in zip(results[group][a], results[group][b])
                if not x.problem and not y.problem]

    def shares(group: str, name: str) -> list[float]:
        return [x.plugin_seconds / x.seconds for x in good(group, name)]

    def counts(runs: list, attr: str) -> str:
        values = sorted({getattr(x, attr) for x in runs})
        return "/".join(map(str, values)) if values else "n/a"

    out = [f"## 2./3. dnf upgrade of {layout.packages} packages against an installroot", "",
           f"{layout.plain_packages} packages with {layout.files_per_plain} plain files each and "
           f"{layout.unit_packages} packages shipping a service and a socket each (1.0 → 1.1; "
           f"{len(new_units)} of them gain a new socket in 1.1), built by `benchmarks/packages.py`. "
           "Each run starts from a fresh copy of a template root (1.0 installed, metadata cached; "
           + ("copies on a private tmpfs" if roots else "copies on disk") +
           ") and times the whole `dnf -y upgrade` process. Variants alternate within each round, in a "
           f"rotating order; {args.dnf_runs} rounds; ratios are taken per round (side by side), then the "
           "median. *Plugin time* is measured inside the same dnf process (`benchmarks/dnf_timed.py`: "
           "clocks around dnf's plugin loading and hook calls), a figure far less noisy than the "
           "difference of two wall times. *CPU time* is user + system time of dnf and every process "
           "it waited for (rpm's scriptlets, systemctl), from the kernel's accounting of children. "
           "The measured checkouts are byte-compiled first (`python3 -m compileall`), as an installed "
           "package is. `systemctl` processes: the root's /usr/bin/systemctl is a "
           "logging wrapper (scriptlets); a logging wrapper first on dnf's PATH counts the plugin's "
           "own calls.", ""]
    rows = []
    labels = {
        "off": "stock scriptlets, `--noplugins`",
        "on": "stock scriptlets + plugin",
        "on (compare)": "stock scriptlets + plugin (compare tree)",
        "macro": "libvirt macro scriptlets, `--noplugins`",
    }
    for group, variants in groups:
        base = "on" if group == "upgrade" and not want_dnf else "off"
        for name, *_ in variants:
            runs = results[group][name]
            ok = good(group, name)
            ratio = spread(pair_ratios(group, base, name), "{:.3f}") if name != base else "1"
            cpu = spread(pair_ratios(group, base, name, "cpu_seconds"), "{:.3f}") if name != base else "1"
            enabled = (f"{counts(ok, 'enabled')}/{len(new_units)}" if group == "upgrade" else "–")
            inside = (f"{seconds(median(x.plugin_seconds for x in ok))} "
                      f"({100 * median(shares(group, name)):.1f} %)") if name.startswith("on") else "–"
            rows.append((group, labels[name], f"{len(ok)}/{len(runs)}",
                         spread([x.seconds for x in ok], "{:.2f}") + " s", ratio,
                         spread([x.cpu_seconds for x in ok], "{:.2f}") + " s", cpu, inside,
                         counts(ok, "scriptlet_systemctl"), counts(ok, "plugin_systemctl"), enabled))
    out += [table(("case", "variant", "valid runs", "wall time: median (min–max)",
                   "ratio to the first row of the case, per round", "CPU time: median (min–max)",
                   "CPU ratio, per round", "plugin time (share of the run)",
                   "systemctl by scriptlets", "systemctl by the plugin", "new units enabled"), rows), ""]

    if want_dnf:
        out += where_the_difference_lies(results, good)
        for label, attr in (("", "seconds"), (", CPU time (user + system of dnf and its children)", "cpu_seconds")):
            ratios = pair_ratios("upgrade", "off", "on", attr)
            low, high = median_ci(ratios)
            report.add(f"plugin-on / plugin-off, {layout.packages}-package upgrade{label}", f"≤ {TARGET_RATIO}",
                       f"{median(ratios):.3f} (median of {len(ratios)} pairs; 95 % CI of the median "
                       f"{low:.3f}–{high:.3f}; pairs {min(ratios, default=math.nan):.3f}–"
                       f"{max(ratios, default=math.nan):.3f})",
                       verdict_of_interval(low, high, TARGET_RATIO))
        share = shares("upgrade", "on")
        report.add(f"same, as the plugin's own time inside dnf / wall time ({layout.packages} packages)",
                   f"≤ {TARGET_RATIO - 1:.0%} (same target)",
                   f"{100 * median(share):.1f} % (median of {len(share)}; "
                   f"{seconds(median(x.plugin_seconds for x in good('upgrade', 'on')))})",
                   median(share) <= TARGET_RATIO - 1 if share else None)
        noop_ratio = pair_ratios("no-op", "off", "on")
        report.add(f"plugin-on / plugin-off, no-op upgrade "
                   f"({layout.plain_packages} packages, no unit touched)",
                   "(no target; ≤ 1.03 expected)",
                   f"{median(noop_ratio):.3f} (median of {len(noop_ratio)} pairs); plugin time "
                   f"{100 * median(shares('no-op', 'on')):.1f} % of the run", None)
        if other:
            cmp = pair_ratios("upgrade", "off", "on (compare)")
            report.add(f"plugin-on / plugin-off, {layout.packages}-package upgrade, compare tree",
                       f"≤ {TARGET_RATIO}", f"{median(cmp):.3f} (median of {len(cmp)} pairs)",
                       median(cmp) <= TARGET_RATIO if cmp else None)
    installroot_counts = "; ".join(
        f"{counts(good(g, 'on'), 'plugin_systemctl')} ({g})" for g in results if results[g].get("on"))
    if want_macros:
        macro_ratio = pair_ratios("upgrade", "on", "macro")
        m = good("upgrade", "macro")
        s = good("upgrade", "on")
        report.add("libvirt macros (`--noplugins`) / stock scriptlets + plugin, wall time", "(no target)",
                   f"{median(macro_ratio):.3f} (median of {len(macro_ratio)} pairs)", None)
        report.add("systemctl processes of the upgrade: macros vs stock + plugin", "(no target)",
                   f"macros: {counts(m, 'scriptlet_systemctl')}; stock + plugin: "
                   f"{counts(s, 'scriptlet_systemctl')} (scriptlets) + "
                   f"{counts(s, 'plugin_systemctl')} (plugin)",
                   None)

    # -- the plugin's systemctl processes on a booted host (stand-in), per package count
    sizes = "5,50" if args.quick else "50,500"
    live = worker("live", this, "--work", str(args.workdir / "live"), "--sizes", sizes)["live"]
    rows = [(f"{x['unit_packages']} ({x['packages']} elements)",
             "every 10th service" if x["reloaded"] else "none", x["preset"], x["restarted"], x["reloaded"],
             x["calls"], x.get("before_rpm", "?"), " + ".join(x["verbs"]), "; ".join(x["warnings"]) or "–")
            for x in live]
    out += ["### The plugin's own systemctl processes per transaction", "",
            "In an installroot the plugin only presets (offline, `--root`): the column above. On a booted "
            "host it also reloads the manager and restarts in batches. That path is counted in process: "
            "`session.begin()` and `finish()` with live=True on a synthetic root, with "
            "`libvirt_presets.systemctl.run()` (the one door of every process the project starts) "
            "recording each argv and answering like a booted host (exit 0; `show`: every unit active, "
            "with the invocation IDs the root holds) instead of starting systemctl. Every unit package "
            "is upgraded; every 10th gains a new socket.", "",
            table(("unit packages", "reload policy", "presets", "restarts", "reloads", "systemctl processes",
                   "of them before rpm runs", "calls in order", "warnings"), rows), ""]
    by_policy: dict[bool, set[int]] = {}
    for x in live:
        by_policy.setdefault(bool(x["reloaded"]), set()).add(x["calls"])
    independent = all(len(v) == 1 for v in by_policy.values())
    sizes_text = " and ".join(sorted({str(x["unit_packages"]) for x in live}, key=int))
    worst = max(x["calls"] for x in live)
    report.add("systemctl processes spawned by the plugin per transaction, independent of package count",
               f"≤ {TARGET_PROCESSES}",
               f"installroot: {installroot_counts}; booted host (counted in process): "
               f"{'/'.join(map(str, sorted(by_policy.get(False, set()))))} with restarts only, "
               f"{'/'.join(map(str, sorted(by_policy.get(True, set()))))} with restarts and reloads; "
               + (f"the same for {sizes_text} unit packages" if independent
                  else f"**varies** with the package count ({sizes_text} unit packages)"),
               worst <= TARGET_PROCESSES and independent)

    # -- metadata: the same requests with and without the plugin, over HTTP, filelists stripped
    if want_dnf:
        from tests.e2e.fixtures import strip_filelists_metadata

        http_repo = args.workdir / "http-repo"
        if http_repo.exists():
            shutil.rmtree(http_repo)
        http_repo.mkdir()
        for path in repos.stock_v2.glob("*.rpm"):
            os.link(path, http_repo / path.name)
        shutil.copytree(repos.stock_v2 / "repodata", http_repo / "repodata")
        strip_filelists_metadata(http_repo)
        seen = {}
        with RepoServer(http_repo) as server:
            for name, plugin in (("off", None), ("on", this)):
                log(f"metadata check over HTTP: plugin {name}")
                res = bench.timed(name, stock, server.url, plugin, "upgrade", check_units=new_units)
                requests = server.take()
                rpms = sum(1 for p in requests if p.endswith(".rpm"))
                seen[name] = (res, metadata_requests(requests), rpms)
        rows = [(name, "; ".join(p.rsplit("/", 1)[-1].split("-", 1)[-1] for p in meta) or "none",
                 rpms, f"{res.enabled}/{len(new_units)}", res.problem or "ok")
                for name, (res, meta, rpms) in seen.items()]
        out += ["### Repository metadata fetched by the automatic path", "",
                "The 1.1 repository served over HTTP on 127.0.0.1 with its filelists removed from "
                "repomd.xml (as on a mirror that publishes primary metadata only), upgraded once with and "
                "once without the plugin; every request logged.", "",
                table(("plugin", "metadata files requested", "packages downloaded", "new units enabled",
                       "run"), rows), ""]
        same = seen["off"][1] == seen["on"][1] and not seen["on"][0].problem
        report.add("extra repository metadata downloaded by the automatic path", "none",
                   "none: same metadata requests with and without the plugin, repo without filelists; "
                   f"the plugin still preset {seen['on'][0].enabled}/{len(new_units)} new units" if same
                   else f"differs: off {seen['off'][1]} vs on {seen['on'][1]}", same)
    if args.profile:
        from benchmarks.dnfbench import profile_plugin

        for tree in trees:
            log(f"cProfile of one plugin-on upgrade ({tree_label(tree, trees)})")
            text = profile_plugin(bench, stock, repos.stock_v2, tree, 30)
            out += [f"### cProfile of the plugin in one {layout.packages}-package upgrade "
                    f"({tree_label(tree, trees)}; by cumulative time, plugin functions only)", "",
                    "```", text.strip(), "```", ""]
    report.sections.append((2, "\n".join(out)))


# -- main ------------------------------------------------------------------------------------


# PYTHONHASHSEED pins set/dict order, the one Python-level source of drift between runs; the
# plugin runs the real systemctl (not the PATH wrapper, a shell), so that it is traced.
CALLGRIND_ENV = {"PYTHONHASHSEED": "0", "LIBVIRT_UNITS_SYSTEMCTL": "/usr/bin/systemctl"}
SHELLS = "/bin/sh,/usr/bin/sh,/bin/bash,/usr/bin/bash,/bin/dash,/usr/bin/dash"


def callgrind_wrap(out_dir: Path, scriptlets: bool = False) -> list[str]:
    """valgrind's argv before dnf's: every process dnf starts is traced (one cg.PID file each),
    except the shells (rpm's scriptlets, chrooted: valgrind cannot start there without
    valgrind_in_root) unless `scriptlets`."""
    wrap = ["valgrind", "--tool=callgrind", "--cache-sim=no", "--branch-sim=no", "--trace-children=yes",
            f"--callgrind-out-file={out_dir}/cg.%p"]
    if not scriptlets:
        wrap.insert(-1, f"--trace-children-skip={SHELLS}")
    return wrap


def callgrind_processes(out_dir: Path) -> list[tuple[str, int]]:
    """(program, instructions) of every traced process: "systemctl" or "dnf" (callgrind's `totals:`)."""
    found = []
    for path in out_dir.glob("cg.*"):
        program, total = "?", 0
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("cmd:"):
                program = "systemctl" if "systemctl" in line.split()[1] else "dnf"
            elif line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
                break
        found.append((program, total))
    return found


def callgrind_totals(out_dir: Path) -> dict[str, int]:
    """Instructions per traced program, summed over its processes."""
    totals: dict[str, int] = {}
    for program, total in callgrind_processes(out_dir):
        totals[program] = totals.get(program, 0) + total
    return totals


@contextlib.contextmanager
def valgrind_in_root(root: Path, out_dir: Path) -> Iterator[tuple[Path, Callable[[], int]]]:
    """Make a root copy able to run valgrind'd scriptlets: rpm chroots into the root before it
    execs /bin/sh, and valgrind (--trace-children) then needs its launcher, its tools and /proc
    inside.  Yields the root and a function that sums the instructions of the processes that
    ran in the chroot; /proc is unmounted before the copy can be removed."""
    for path in ("usr/bin/valgrind.bin", "usr/libexec/valgrind"):
        source = Path("/") / path
        if source.is_dir():
            shutil.copytree(source, root / path, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(source, root / path)
    inside = root / out_dir.relative_to("/")
    inside.mkdir(parents=True, exist_ok=True)
    proc = root / "proc"
    proc.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
    mounted = True

    def collect() -> int:
        nonlocal mounted
        subprocess.run(["umount", str(proc)], check=True)
        mounted = False
        return sum(callgrind_totals(inside).values())

    try:
        yield root, collect
    finally:
        if mounted:  # a failed run: never let the caller's rmtree reach into a live /proc
            subprocess.run(["umount", "--lazy", str(proc)], check=True)
        if root.exists():
            shutil.rmtree(root)


def bench_instructions(args: argparse.Namespace, trees: list[Path], report: Report,
                       roots: Path | None) -> None:
    """The upgrade and the no-op of part 2, each run under callgrind: instructions do not
    depend on what else the machine does, so a few runs settle a 3 % question."""
    if shutil.which("valgrind") is None:
        log("valgrind is missing (apt-get install valgrind): instruction counts skipped")
        return
    layout, repos, bench = dnf_setup(args, trees, roots, "instructions")
    stock = bench.template("stock", repos.stock_v1, [repos.stock_v2, repos.stock_noop])
    out_dir = args.workdir / "instructions" / "callgrind"
    scriptlets = args.with_scriptlets
    # Without --with-scriptlets the scriptlets (/bin/sh, chrooted into the root) run natively:
    # valgrind cannot start inside a chroot that lacks it and /proc. The plugin's systemctl is
    # traced: it is the plugin's cost.
    wrap = callgrind_wrap(out_dir, scriptlets)
    extra_env = CALLGRIND_ENV
    this, *other = trees
    variants = [("off", None, args.instruction_runs), ("on", this, args.instruction_runs)]
    variants += [("on (compare)", t, 1) for t in other]
    groups = [("upgrade", repos.stock_v2)] + ([] if scriptlets else [("no-op", repos.stock_noop)])
    rows, figures = [], {}
    for group, repo in groups:
        for name, plugin, runs in variants:
            counts = []
            for r in range(runs):
                shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir(parents=True)
                log(f"callgrind {group} {name} run {r + 1}/{runs}")
                if scriptlets:
                    totals: dict[str, int] = {}
                    with valgrind_in_root(bench.fresh_copy(stock), out_dir) as (root, collect):
                        res = bench.finish(
                            bench.start(name, stock, repo, plugin, "upgrade", wrap=wrap,
                                        extra_env=extra_env, root=root),
                            before_removal=lambda _, sink=totals: sink.update(scriptlets=collect()))
                else:
                    res = bench.timed(name, stock, repo, plugin, "upgrade", wrap=wrap, extra_env=extra_env)
                    totals = {}
                if res.problem:
                    log(f"  run does not count: {res.problem}")
                    continue
                totals.update(callgrind_totals(out_dir))
                counts.append(totals)
                log(f"  {res.seconds:.0f} s under valgrind; instructions {totals}")
            figures[(group, name)] = counts
    counted = ("dnf", "systemctl", "scriptlets") if scriptlets else ("dnf", "systemctl")
    for group, _ in groups:
        off = [sum(c.get(k, 0) for k in counted) for c in figures[(group, "off")]]
        for name, _, _ in variants:
            counts = figures[(group, name)]
            total = [sum(c.get(k, 0) for k in counted) for c in counts]
            ratio = median(total) / median(off) if off and total else math.nan
            rows.append((group, name, len(counts),
                         *(" / ".join(f"{c.get(k, 0) / 1e6:,.1f}" for c in counts) for k in counted),
                         f"{(median(total) - median(off)) / 1e6:,.0f}" if name != "off" and total else "–",
                         f"{ratio:.4f}" if name != "off" else "1"))
            if group == "upgrade" and name == "on":
                what = ("every process: dnf, the plugin's systemctl, the scriptlets" if scriptlets
                        else "dnf's process + the plugin's systemctl")
                report.add(f"plugin-on / plugin-off, {layout.packages}-package upgrade, in instructions "
                           f"(callgrind; {what})", f"≤ {TARGET_RATIO}",
                           f"{ratio:.4f} (median of {len(total)} runs each)", ratio <= TARGET_RATIO)
    if scriptlets:
        traced = ("Every process of the transaction is traced: dnf's own (Python, libdnf, librpm: "
                  "dependency solving, unpacking, the rpmdb, the plugin's hooks), the plugin's "
                  "`systemctl`, and the scriptlets' shells and `systemctl` calls inside the chroot "
                  "(`--with-scriptlets`: valgrind and a /proc mount are put into each root copy). "
                  "The upgrade only.")
    else:
        traced = ("Shells are skipped: the instructions of dnf's own process (Python, libdnf, librpm: "
                  "dependency solving, unpacking, the rpmdb, the plugin's hooks) and of the plugin's "
                  "`systemctl` processes are counted. The scriptlets' shells and their `systemctl` calls "
                  "run natively and are not counted (`--with-scriptlets` counts them).")
    out = ["## 2b. The same upgrades, counted in instructions", "",
           "Each variant of part 2's upgrade and no-op runs under `valgrind --tool=callgrind` "
           f"(`--trace-children=yes`). {traced} Unlike seconds, these counts do not depend "
           "on what else the machine is doing (`PYTHONHASHSEED=0`); the runs of one variant agree "
           "to within the figures shown.", "",
           table(("case", "variant", "runs", "dnf process, M instructions (each run)",
                  "plugin's systemctl, M instructions",
                  *(["scriptlets (in the chroot), M instructions"] if scriptlets else []),
                  "plugin's cost, M instructions (medians)", "ratio to `--noplugins`"), rows), ""]
    report.sections.append((2, "\n".join(out)))


def bench_concurrent(args: argparse.Namespace, trees: list[Path], report: Report,
                     roots: Path | None) -> None:
    """Part 2c: the plugin-on and plugin-off upgrades run at the same time, each pinned to its
    own CPU, sides swapped every round.  This VM's speed drifts by ±15 % from one minute to the
    next; two runs at the same time feel the same drift, two runs one after the other do not.
    A/A rounds (plugin off against plugin off, same pinning) show what the method itself adds."""
    from concurrent.futures import ThreadPoolExecutor

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        log("concurrent pairs need two CPUs and taskset: skipped")
        return
    layout, repos, bench = dnf_setup(args, trees, roots, "concurrent")
    stock = bench.template("stock", repos.stock_v1, [repos.stock_v2])
    new_units = layout.new_units()
    this = trees[0]
    control_every = 4  # every 4th round is an A/A round
    rounds = args.concurrent_runs + args.concurrent_runs // (control_every - 1)
    pairs: dict[str, list[tuple]] = {"A/B": [], "A/A": []}
    for r in range(rounds):
        kind = "A/A" if r % control_every == control_every - 1 else "A/B"
        second = ("on", this) if kind == "A/B" else ("off", None)
        sides = [("off", None), second]
        cpu_of = dict(zip((0, 1), cpus[:2] if r % 2 == 0 else cpus[1::-1]))
        copies = [bench.fresh_copy(stock) for _ in sides]
        os.sync()
        order = [0, 1] if (r // 2) % 2 == 0 else [1, 0]  # which side is started first
        started: dict[int, object] = {}
        for i in order:
            name, plugin = sides[i]
            started[i] = bench.start(name, stock, repos.stock_v2, plugin, "upgrade", root=copies[i],
                                     wrap=["taskset", "--cpu-list", str(cpu_of[i])],
                                     check_units=new_units)
        with ThreadPoolExecutor(2) as pool:  # each waits for its own process: its own end time
            a, b = pool.map(bench.finish, [started[0], started[1]])
        problems = [x.problem for x in (a, b) if x.problem]
        log(f"concurrent round {r + 1}/{rounds} ({kind}): {a.seconds:.2f} s on CPU {cpu_of[0]}, "
            f"{b.seconds:.2f} s on CPU {cpu_of[1]} ({b.variant}); ratio {b.seconds / a.seconds:.3f}"
            + (f"; does not count: {'; '.join(problems)}" if problems else ""))
        if not problems:
            pairs[kind].append((a, b))

    def ratios(kind: str, attr: str) -> list[float]:
        return [getattr(b, attr) / getattr(a, attr) for a, b in pairs[kind]]

    rows = []
    for kind, label in (("A/B", "plugin on / plugin off"), ("A/A", "plugin off / plugin off (control)")):
        wall, cpu = ratios(kind, "seconds"), ratios(kind, "cpu_seconds")
        low, high = median_ci(wall)
        ons = [b for _, b in pairs[kind] if b.variant == "on"]
        inside = (f"{seconds(median(b.plugin_seconds for b in ons))} "
                  f"({100 * median(b.plugin_seconds / b.seconds for b in ons):.1f} %)") if ons else "–"
        enabled = "/".join(sorted({str(b.enabled) for b in ons})) + f"/{len(new_units)}" if ons else "–"
        rows.append((label, len(wall), spread([a.seconds for a, _ in pairs[kind]], "{:.2f}") + " s",
                     spread(wall), f"{low:.3f}–{high:.3f}", spread(cpu), inside, enabled))
        if kind == "A/B":
            report.add(f"plugin-on / plugin-off, {layout.packages}-package upgrade, wall time, "
                       "**concurrent pairs** (each run pinned to its own CPU)", f"≤ {TARGET_RATIO}",
                       f"{median(wall):.3f} (median of {len(wall)} pairs; 95 % CI of the median "
                       f"{low:.3f}–{high:.3f}; pairs {min(wall, default=math.nan):.3f}–"
                       f"{max(wall, default=math.nan):.3f})", verdict_of_interval(low, high, TARGET_RATIO))
            clow, chigh = median_ci(cpu)
            report.add("the same in CPU time (dnf and its children, each run's own rusage)",
                       f"≤ {TARGET_RATIO}", f"{median(cpu):.3f} (95 % CI {clow:.3f}–{chigh:.3f})",
                       verdict_of_interval(clow, chigh, TARGET_RATIO))
        else:
            report.add("control: plugin-off / plugin-off in the same concurrent pairs",
                       "(no target; 1 expected)",
                       f"{median(wall):.3f} (median of {len(wall)} pairs; 95 % CI {low:.3f}–{high:.3f})",
                       None)
    out = ["## 2c. The same upgrade, plugin on and off at the same time", "",
           f"Each round copies the template root (1.0 installed) twice and starts two `dnf -y upgrade` "
           f"processes at once, each pinned with `taskset` to its own CPU ({cpus[0]} and {cpus[1]}); "
           "the CPUs are swapped every round and the start order every second round. The ratio is "
           "taken within the round. Every "
           f"{control_every}th round runs plugin-off on both sides (A/A): its ratios show the bias and "
           "spread of the method itself. Run time and CPU time are each process's own (wait4).", "",
           table(("pair", "pairs", "plugin-off wall time", "wall ratio: median (min–max)",
                  "95 % CI of the median", "CPU ratio: median (min–max)",
                  "plugin time (share of the run)", "new units enabled"), rows), ""]
    report.sections.append((2, "\n".join(out)))


# -- 5. small transactions (issue 16) ----------------------------------------------------------

TARGET_SMALL = {"split": 1.05, "no-op": 1.01}  # issue 16: instructions, plugin on / --noplugins


def bench_small(args: argparse.Namespace, trees: list[Path], report: Report, roots: Path | None) -> None:
    """Part 5: the seed's libvirt split upgrade and a one-package no-op (benchmarks/small.py), the
    plugin (default configuration) in two forms of each tree against --noplugins: callgrind
    instructions (dnf's process + the plugin's systemctl, as part 2b), then timed rounds
    (wall time, the plugin's own time inside dnf)."""
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks import small
    from benchmarks.dnfbench import DnfBench
    from benchmarks.packages import Layout

    if shutil.which("valgrind") is None:
        log("valgrind is missing (apt-get install valgrind): small transactions skipped")
        return
    work = args.workdir / "small"
    log("small: building the fixture packages (tests/e2e/fixtures.py) and the 9.0.0 template root")
    repos = small.build(work / "build")
    bench = DnfBench(work, Layout(), roots, tree_config=True)
    template = small.template(bench, repos)
    staged = [small.stage_trees(tree, work / "trees" / str(i)) for i, tree in enumerate(trees)]
    for repo in vars(repos).values():  # page cache: no variant pays for cold package files
        for rpm_file in Path(repo).glob("*.rpm"):
            rpm_file.read_bytes()
    # key, variant label, tree form, plugin directory (None: --noplugins)
    variants = [("off", "`--noplugins`", "–", None)]
    for i, tree in enumerate(trees):
        label = "plugin" if i == 0 else f"plugin, compare `{tree}`"
        variants += [(f"{i}:{form}", label, form, staged[i][form]) for form in small.FORMS]
    cases = [("split", repos.split), ("no-op", repos.noop)]
    env = {**CALLGRIND_ENV, "PYTHONDONTWRITEBYTECODE": "1"}  # the checkout form stays without .pyc

    # (a) instructions: runs are independent of each other, so `--small-jobs` go at once
    tasks = [(case, repo, variant, r) for r in range(args.instruction_runs) for case, repo in cases
             for variant in in_turn(variants, r)]
    counted: dict[tuple[str, str], list[dict[str, float]]] = {(c, v[0]): [] for c, _ in cases for v in variants}

    def callgrind(n: int, task: tuple) -> None:
        case, repo, (key, label, form, plugin), r = task
        out_dir = work / "callgrind" / str(n)
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        res = bench.timed(key, template, repo, plugin, "upgrade", wrap=callgrind_wrap(out_dir), extra_env=env,
                          check_units=small.CHECK_UNITS)
        processes = callgrind_processes(out_dir)
        shutil.rmtree(out_dir)
        if res.problem:
            log(f"  callgrind {case} {label} ({form}) run {r + 1} does not count: {res.problem}")
            return
        figures = {"dnf": sum(i for p, i in processes if p == "dnf"),
                   "systemctl": sum(i for p, i in processes if p == "systemctl"),
                   "systemctl processes": sum(1 for p, _ in processes if p == "systemctl")}
        counted[(case, key)].append(figures)
        log(f"callgrind {case} {label} ({form}) run {r + 1}/{args.instruction_runs}: {res.seconds:.0f} s; "
            f"dnf {figures['dnf'] / 1e6:,.1f} M, systemctl {figures['systemctl'] / 1e6:,.1f} M "
            f"({figures['systemctl processes']} processes)")

    log(f"small: {len(tasks)} callgrind runs, {args.small_jobs} at a time")
    with ThreadPoolExecutor(args.small_jobs) as pool:
        list(pool.map(callgrind, range(len(tasks)), tasks))

    # (b) time: sequential rounds, variants in a rotating order
    timed: dict[tuple[str, str], list] = {(c, v[0]): [] for c, _ in cases for v in variants}
    wall_ratio: dict[tuple[str, str], list[float]] = {(c, v[0]): [] for c, _ in cases for v in variants}
    for r in range(args.small_runs):
        for case, repo in cases:
            this_round = {}
            for key, label, form, plugin in in_turn(variants, r):
                res = bench.timed(key, template, repo, plugin, "upgrade", extra_env=env,
                                  check_units=small.CHECK_UNITS)
                if res.problem:
                    log(f"  timed {case} {label} ({form}) does not count: {res.problem}")
                    continue
                timed[(case, key)].append(res)
                this_round[key] = res
            for key in this_round:
                if "off" in this_round:
                    wall_ratio[(case, key)].append(this_round[key].seconds / this_round["off"].seconds)
        log(f"small: timed round {r + 1}/{args.small_runs} done")
    leaked = [p for s in staged for p in small.bytecode_in(s["checkout"])]

    def total(figures: dict[str, float]) -> float:
        return figures["dnf"] + figures["systemctl"]

    rows = []
    for case, _ in cases:
        off = median(total(f) for f in counted[(case, "off")])
        for key, label, form, _ in variants:
            cg = counted[(case, key)]
            runs = timed[(case, key)]
            totals = [total(f) for f in cg]
            ratio = median(totals) / off if cg else math.nan
            variation = (max(totals) - min(totals)) / min(totals) if len(totals) > 1 else math.nan
            said = sorted({small.plugin_summary(x.output) for x in runs})
            rows.append((
                case, label, form, len(cg),
                " / ".join(f"{t / 1e6:,.1f}" for t in totals) or "n/a",
                f"{100 * variation:.3f} %" if not math.isnan(variation) else "–",
                " / ".join(f"{f['systemctl'] / 1e6:,.1f} ({f['systemctl processes']})" for f in cg)
                if key != "off" else "–",
                f"{(median(totals) - off) / 1e6:,.1f}" if key != "off" else "–",
                f"**{ratio:.3f}**" if key != "off" else "1",
                spread([1000 * x.plugin_seconds for x in runs], "{:.0f}") if key != "off" else "–",
                spread([x.seconds for x in runs], "{:.2f}") + " s",
                spread(wall_ratio[(case, key)], "{:.3f}") if key != "off" else "1",
                f"{'/'.join(sorted({str(x.enabled) for x in runs}))}/{len(small.CHECK_UNITS)}",
                "; ".join(said) if key != "off" else "–",
            ))
            if key == "0:installed":
                checkout = [total(f) for f in counted[(case, "0:checkout")]]
                report.add(f"small transaction, {case} (issue 16): plugin / `--noplugins`, instructions "
                           "(dnf's process + the plugin's systemctl), installed form",
                           f"≤ {TARGET_SMALL[case]}",
                           f"{ratio:.3f} (+{(median(totals) - off) / 1e6:,.0f} M on {off / 1e6:,.0f} M; "
                           f"median of {len(totals)} runs each); checkout form "
                           f"{median(checkout) / off:.3f}; plugin time in dnf "
                           f"{seconds(median(x.plugin_seconds for x in runs))}",
                           ratio <= TARGET_SMALL[case] if cg else None)
    out = ["## 5. Small transactions (issue 16)", "",
           "One template root built from the end-to-end tests' fixture packages (`tests/e2e/fixtures.py`, "
           "classic scriptlets; `benchmarks/small.py`): libvirt 9.0.0 installed and the admin's switch "
           "to the monolithic libvirtd (virtproxyd's units disabled, libvirtd's enabled), plus one plain "
           "package `bench-lone` 1.0. *split*: `dnf -y upgrade` to 9.1.0, where the virtproxyd units move "
           "to the new libvirt-daemon-proxy (10 upgraded, 3 new packages); *no-op*: only `bench-lone` "
           "1.0 → 1.1 (no unit file, no scriptlet, no trigger name). The plugin runs with its shipped "
           "configuration (`etc/dnf/plugins/libvirt-units.conf`). Tree forms: *installed* = "
           "`libvirt_presets/` and `dnf-plugins/libvirt_units.py` laid out as the RPM installs them "
           "and byte-compiled (`compileall`); *checkout* = the same sources without `.pyc` files, "
           "run with PYTHONDONTWRITEBYTECODE=1, so every dnf run compiles them. Both are copies of "
           "the tree under the work directory, pointed at by pluginpath and pluginconfpath; the core is "
           "found at the end of sys.path, where an installed one is (`BENCH_SITE`, `dnf_timed.py`), "
           "not through PYTHONPATH, which would make each of dnf's own imports look in it first.",
           "",
           f"*Instructions*: callgrind as in part 2b (dnf's own process + the plugin's `systemctl` "
           f"processes; shells skipped; PYTHONHASHSEED=0), {args.instruction_runs} runs per variant, "
           f"up to {args.small_jobs} at a time (counts do not depend on load). *spread*: "
           "(max − min) / min of those runs. *Plugin time*: the plugin's loading and hooks inside "
           f"dnf (`dnf_timed.py`), and wall time, over {args.small_runs} rounds run one at a time, "
           "variants in a rotating order; *wall ratio*: per round, to that round's `--noplugins` run. "
           "*virtproxyd sockets enabled*: after each run (the stock scriptlets enable them, the plugin "
           "puts them back to disabled in the split).", "",
           table(("case", "variant", "tree form", "callgrind runs", "M instructions, each run",
                  "spread", "of them the plugin's systemctl, M (processes)", "plugin's cost, M",
                  "ratio to `--noplugins`", "plugin time in dnf, ms: median (min–max)",
                  "wall time: median (min–max)", "wall ratio, per round", "virtproxyd sockets enabled",
                  "plugin's summary"), rows), ""]
    if leaked:
        out += [f"**The checkout form was byte-compiled during the runs** ({len(leaked)} .pyc files, "
                f"e.g. `{leaked[0]}`): its figures are not those of a checkout without .pyc files.", ""]
    report.sections.append((5, "\n".join(out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 rounds: a smoke run")
    parser.add_argument("--runs", type=int, help="rounds per benchmark (default 5, --quick 2)")
    parser.add_argument("--dnf-runs", type=int,
                        help="rounds of the whole-dnf part (default 15, --quick 2): a 5 s run scatters by "
                             "±10 %% here, and the target is 3 %%")
    parser.add_argument("--instruction-runs", type=int, default=2,
                        help="callgrind runs per variant in the instructions part (default 2)")
    parser.add_argument("--concurrent-runs", type=int,
                        help="plugin-on/off pairs of the concurrent part (default 30, --quick 2); "
                             "a third as many A/A pairs are added")
    parser.add_argument("--small-runs", type=int,
                        help="timed rounds of the small part (default 9, --quick 3); its callgrind runs "
                             "per variant are --instruction-runs")
    parser.add_argument("--small-jobs", type=int, default=min(2, len(os.sched_getaffinity(0))),
                        help="callgrind runs of the small part at the same time (default: 2, or 1 on one CPU)")
    parser.add_argument("--with-scriptlets", action="store_true",
                        help="instructions part: trace the scriptlets in the chroot too (upgrade only)")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="another checkout (libvirt_presets/, dnf-plugins/) measured side by side")
    parser.add_argument("--profile", action="store_true",
                        help="append cProfiles: the 10k-package planner, the plugin in one dnf upgrade")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"scratch space; built packages are cached here (default {DEFAULT_WORKDIR})")
    parser.add_argument("--roots-on-disk", action="store_true",
                        help="time dnf on roots in the work directory instead of a private tmpfs")
    parser.add_argument("--output", type=Path, help="also write the markdown report to this file")
    args = parser.parse_args()
    args.runs = args.runs or (2 if args.quick else 5)
    args.dnf_runs = args.dnf_runs or (2 if args.quick else max(15, args.runs))
    args.concurrent_runs = args.concurrent_runs or (2 if args.quick else 30)
    args.small_runs = args.small_runs or (3 if args.quick else 9)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    parts = set(args.only or PARTS)
    trees = [REPO_ROOT] + ([args.compare.resolve()] if args.compare else [])
    facts = common.machine_facts()
    revisions = [common.git_revision(t) for t in trees]  # at the start: others may commit meanwhile
    command = " ".join(["/usr/bin/python3", "benchmarks/run.py", *sys.argv[1:]])
    report = Report()
    start = time.perf_counter()
    if "planner" in parts:
        bench_planner(args, trees, report)
    if "snapshot" in parts:
        bench_snapshot(args, trees, report)
    # The parts that run dnf need root (rpm --root, chrooted scriptlets) and a tmpfs for roots.
    for wanted, label, run_part in (
        ({"dnf", "macros"}, "dnf and macros", lambda roots: bench_dnf(args, trees, parts, report, roots)),
        ({"instructions"}, "instructions", lambda roots: bench_instructions(args, trees, report, roots)),
        ({"concurrent"}, "concurrent", lambda roots: bench_concurrent(args, trees, report, roots)),
        ({"small"}, "small", lambda roots: bench_small(args, trees, report, roots)),
    ):
        if not parts & wanted:
            continue
        if os.geteuid() != 0:
            log(f"{label}: needs root (rpm --root, chrooted scriptlets): skipped")
            continue
        with roots_tmpfs(args) as roots:
            run_part(roots)
    elapsed = time.perf_counter() - start
    facts.append(("load average at end", " ".join(Path("/proc/loadavg").read_text().split()[:3])))
    facts.append(("tree", f"{REPO_ROOT} at {revisions[0]}"))
    if args.compare:
        facts.append(("compare tree", f"{trees[1]} at {revisions[1]}"))
    facts.append(("run time", f"{elapsed / 60:.1f} min"))
    text = "\n\n".join([
        "# libvirt-units benchmark results" + (" (--quick: smoke sizes)" if args.quick else ""),
        f"Command: `{command}`",
        table(("machine", ""), facts),
        "## Targets",
        table(("what", "target", "measured", "verdict"), report.summary),
        *(text for _, text in sorted(report.sections, key=lambda s: s[0])),
    ]) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
