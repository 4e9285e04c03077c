"""In-process measurements of the core library, one round per process, JSON on stdout.

    /usr/bin/python3 benchmarks/worker.py planner|snapshot|live --tree DIR [options]

``--tree`` is the checkout whose ``libvirt_presets`` is measured (first on sys.path), so
run.py can measure two checkouts side by side (``--compare``).  run.py starts one worker per
round and per tree, alternating, and takes medians.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

BENCH_SCOPE_CONF = "[main]\nextra_units = bench-*.service bench-*.socket\n"
FILES_PER_PACKAGE = 20
UNIT_DIR = "/usr/lib/systemd/system"


# -- 1. planner --------------------------------------------------------------------------------


def synthetic_transaction(n: int):  # library types, imported late
    """An upgrade of n packages, as the dnf plugin reports it.

    Each package: an incoming half (UPGRADE) with 20 files, one of them a unit file (5 %),
    and an outgoing half (ERASE) with the old version's 20 files.  Units alternate service /
    socket, all in the managed scope (bench-*); 95 % existed before (a third of those enabled:
    one link each), 5 % are new.
    """
    from libvirt_presets.facts import ERASE, UPGRADE, PackageChange, TransactionFacts
    from libvirt_presets.snapshot import Snapshot
    from libvirt_presets.units import SYSTEM, UnitKey

    changes = []
    units_before: dict = {}
    links: dict[str, str] = {}
    units_after = set()
    owners = {}
    for i in range(n):
        name = f"bench-pkg-{i:05d}"
        kind = "service" if i % 2 == 0 else "socket"
        unit = f"bench-{i:05d}.{kind}"
        plain = [f"/usr/share/bench/{name}/file-{j:02d}" for j in range(FILES_PER_PACKAGE - 1)]
        files = frozenset([f"{UNIT_DIR}/{unit}", *plain])
        old = f"{name}-1.0-1.noarch"
        changes.append(PackageChange(name, f"{name}-1.1-1.noarch", UPGRADE, files))
        changes.append(PackageChange(name, old, ERASE, files))
        key = UnitKey(SYSTEM, unit)
        units_after.add(key)
        if i % 20 != 19:
            units_before[key] = f"usr/lib/systemd/system/{unit}"
            owners[key] = old
            if i % 3 == 0:
                wants = "multi-user.target.wants" if kind == "service" else "sockets.target.wants"
                links[f"etc/systemd/system/{wants}/{unit}"] = f"{UNIT_DIR}/{unit}"
    tx = TransactionFacts(tuple(changes), owners)
    return Snapshot(units=units_before, links=links), units_after, tx


def booted_host(before):  # a Snapshot; LiveFacts (or True for older trees)
    """The live facts of a booted host where every service of `before` runs: the planner then
    makes every live decision, as after a real transaction. Trees from before the live facts
    (commit d4de939) take `live=True` instead."""
    try:
        from libvirt_presets.facts import LiveFacts, ServiceState
    except ImportError:
        return True
    services = [u.name for u in before.units if u.name.endswith(".service")]
    return LiveFacts({s: f"id-{s}" for s in services},
                     {s: ServiceState(s, "loaded", "active", "simple", False, f"id-{s}") for s in services})


def planner_round(sizes: list[int], memory: bool) -> dict:
    from libvirt_presets.config import parse_config
    from libvirt_presets.planner import plan_transaction

    config = parse_config(BENCH_SCOPE_CONF, "benchmark")
    before, after, tx = synthetic_transaction(100)
    plan_transaction(before, after, tx, config, live=booted_host(before))  # warm-up: imports, regex caches
    out: dict = {}
    for n in sizes:
        before, after, tx = synthetic_transaction(n)
        live = booted_host(before)
        gc.collect()
        start = time.perf_counter()
        plan = plan_transaction(before, after, tx, config, live=live)
        seconds = time.perf_counter() - start
        row = {"seconds": seconds, "files": sum(len(c.files) for c in tx.changes if c.inbound),
               "presets": len(plan.presets), "kept": len(plan.kept), "restarts": len(plan.restarts)}
        if memory:
            del plan
            gc.collect()
            tracemalloc.start()
            plan = plan_transaction(before, after, tx, config, live=live)
            row["peak_bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        out[str(n)] = row
    return out


def planner_profile(n: int, top: int) -> str:
    import cProfile
    import io
    import pstats

    from libvirt_presets.config import parse_config
    from libvirt_presets.planner import plan_transaction

    config = parse_config(BENCH_SCOPE_CONF, "benchmark")
    before, after, tx = synthetic_transaction(n)
    profiler = cProfile.Profile()
    profiler.runcall(plan_transaction, before, after, tx, config, live=booted_host(before))
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# -- 4. snapshot -------------------------------------------------------------------------------


def build_snapshot_root(root: Path, unit_files: int, links: int) -> dict:
    """A root with unit_files vendor units and links enablement symlinks (idempotent).

    Units: services and sockets named bench-NNNN, plus the libvirt daemons' units (so the
    default scope selects some), plus a few templates.  Links: .wants/ links of units in three
    targets, aliases and masks, until there are `links` of them.
    """
    from libvirt_presets.units import DEFAULT_UNIT_GLOBS

    stamp = root / ".bench-stamp"
    wanted = f"{unit_files} {links}\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return json.loads((root / ".bench-names").read_text())
    if root.exists():
        import shutil

        shutil.rmtree(root)
    unit_dir = root / "usr/lib/systemd/system"
    unit_dir.mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    names = list(DEFAULT_UNIT_GLOBS)[: unit_files // 10]
    names += [f"bench-tpl-{i:03d}@.service" for i in range(unit_files // 50)]
    i = 0
    while len(names) < unit_files:
        names.append(f"bench-{i // 2:04d}.{'service' if i % 2 == 0 else 'socket'}")
        i += 1
    for name in names:
        (unit_dir / name).write_text(f"[Unit]\nDescription={name}\n[Install]\nWantedBy=multi-user.target\n")
    made = 0
    wants = ("multi-user.target.wants", "sockets.target.wants", "graphical.target.wants",
             "timers.target.wants", "default.target.wants")
    rounds = 0
    while made < links:
        for j, name in enumerate(names):
            if made >= links:
                break
            if name.endswith("@.service"):
                link_name = name.replace("@.", f"@inst{rounds}.")
                where = root / "etc/systemd/system" / "getty.target.wants"
            elif rounds < len(wants):
                link_name, where = name, root / "etc/systemd/system" / wants[rounds]
            elif j % 2:
                link_name = f"alias{rounds}-{name}"
                where = root / "etc/systemd/system"
            else:
                link_name = f"masked{rounds}-{name}"
                where = root / "etc/systemd/system"
            where.mkdir(parents=True, exist_ok=True)
            target = "/dev/null" if link_name.startswith("masked") else f"{UNIT_DIR}/{name}"
            os.symlink(target, where / link_name)
            made += 1
        rounds += 1
    (root / ".bench-names").write_text(json.dumps({"units": len(names), "links": made}))
    stamp.write_text(wanted)
    return {"units": len(names), "links": made}


def snapshot_round(root: Path, repeat: int, memory: bool) -> dict:
    import subprocess

    from libvirt_presets.config import parse_config
    from libvirt_presets.snapshot import links_of, take_snapshot

    config = parse_config("", "benchmark")  # the default scope: the libvirt daemons' units
    take_snapshot(root)  # warm the dentry cache and the imports
    out: dict = {}

    def clock(fn, repeat: int = repeat) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    snap = take_snapshot(root)
    out["units"] = len(snap.units)
    out["links"] = len(snap.links)
    out["snapshot"] = clock(lambda: take_snapshot(root))
    managed = {u: p for u, p in snap.units.items() if u in config.scope}
    out["managed"] = len(managed)
    # what session.begin() does with the snapshot: keep the managed units
    out["scope_filter"] = clock(lambda: {u: p for u, p in snap.units.items() if u in config.scope})
    out["links_of"] = clock(lambda: links_of(snap.links, set(managed)))
    argv = ["systemctl", f"--root={root}", "list-unit-files", "--no-pager", "--no-legend"]

    def reference() -> None:
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    out["list_unit_files"] = clock(reference, 1)
    if memory:
        gc.collect()
        tracemalloc.start()
        take_snapshot(root)
        out["peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out


# -- 3. the plugin's systemctl processes on a live host ------------------------------------------

def _fake_show(root: Path, argv: list[str]) -> str:
    """`systemctl show` on a booted host where every unit is loaded and active, with the
    invocation ID the synthetic root's /run/systemd/units holds."""
    units = argv[argv.index("--") + 1:] if "--" in argv else []
    blocks = []
    for unit in units:
        try:
            inv = os.readlink(root / "run/systemd/units" / f"invocation:{unit}")
        except OSError:
            inv = ""
        blocks.append(f"Id={unit}\nLoadState=loaded\nActiveState=active\n"
                      "Type=simple\nRefuseManualStop=no\n"
                      f"InvocationID={inv}\nReloadResult=success")
    return "\n\n".join(blocks) + "\n"


def live_round(work: Path, unit_packages: int, reload_every: int) -> dict:
    """One transaction through session.begin()/finish() with live=True on a synthetic root,
    counting the systemctl processes the plugin starts on a booted host.

    Every external process of the project goes through libvirt_presets.systemctl.run(); here it
    records the argv and answers like a booted host (exit 0, `show`: every unit active) instead
    of starting systemctl, and Systemctl.offline is False so argv are those of a live host.
    unit_packages packages each ship NAME.service + NAME.socket and are upgraded; every 10th
    gains a new socket; every reload_every-th service has policy reload (0: none).
    """
    import shutil
    import subprocess

    from libvirt_presets import session
    from libvirt_presets import systemctl as sc
    from libvirt_presets.config import parse_config
    from libvirt_presets.facts import ERASE, UPGRADE, PackageChange

    root = work / f"live-{unit_packages}-{reload_every}"
    if root.exists():
        shutil.rmtree(root)
    unit_dir = root / "usr/lib/systemd/system"
    unit_dir.mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    runtime = root / "run/systemd/units"
    runtime.mkdir(parents=True)
    conf = BENCH_SCOPE_CONF
    if reload_every:
        conf += "[policy]\n" + "".join(f"bench-svc-{i:04d}.service = reload\n"
                                       for i in range(0, unit_packages, reload_every))
    config = parse_config(conf, "benchmark")

    changes = []
    new_units = []
    for i in range(unit_packages):
        name = f"bench-svc-{i:04d}"
        units = [f"{name}.service", f"{name}.socket"]
        for u in units:
            (unit_dir / u).write_text("[Unit]\n")
        os.symlink(f"{i:032x}", runtime / f"invocation:{name}.service")
        after = units + ([f"{name}-admin.socket"] if i % 10 == 0 else [])
        new_units += after[2:]
        files = frozenset(f"{UNIT_DIR}/{u}" for u in after)
        changes.append(PackageChange(name, f"{name}-1.1-1.noarch", UPGRADE, files))
        changes.append(PackageChange(name, f"{name}-1.0-1.noarch", ERASE,
                                     frozenset(f"{UNIT_DIR}/{u}" for u in units)))

    calls: list[list[str]] = []

    def fake_run(argv, timeout: float = 0.0):
        argv = [str(a) for a in argv]
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, _fake_show(root, argv) if "show" in argv else "", "")

    sc.run = fake_run
    sc.Systemctl.offline = property(lambda self: False)  # type: ignore[method-assign]
    pending = session.begin(root, config, changes, True)
    before_rpm = len(calls)
    for u in new_units:  # rpm installs the new files
        (unit_dir / u).write_text("[Unit]\n")
    outcome = session.finish(pending, None)
    verbs = [next((w for w in c[1:] if not w.startswith("-")), "?") for c in calls]
    return {"unit_packages": unit_packages, "packages": 2 * unit_packages, "calls": len(calls),
            "before_rpm": before_rpm, "verbs": verbs, "preset": len(outcome.preset),
            "restarted": len(outcome.live.get("restart", [])),
            "reloaded": len(outcome.live.get("reload", [])),
            "warnings": list(outcome.warnings)}


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("planner", "profile", "snapshot", "live"))
    parser.add_argument("--tree", type=Path, default=REPO_ROOT)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--root", type=Path)
    parser.add_argument("--unit-files", type=int, default=2000)
    parser.add_argument("--links", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    sys.path[:0] = [str(args.tree.resolve()), str(REPO_ROOT)]
    import libvirt_presets

    where = str(Path(libvirt_presets.__file__).resolve().parent)
    if args.what == "planner":
        result: dict = {"planner": planner_round([int(s) for s in args.sizes.split(",")], args.memory)}
    elif args.what == "profile":
        print(planner_profile(int(args.sizes.split(",")[-1]), 20))
        return
    elif args.what == "snapshot":
        made = build_snapshot_root(args.root, args.unit_files, args.links)
        result = {"snapshot": {**snapshot_round(args.root, args.repeat, args.memory), "built": made}}
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        result = {"live": [live_round(args.work, n, r) for n in map(int, args.sizes.split(","))
                           for r in (0, 10)]}
    result["libvirt_presets"] = where
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
