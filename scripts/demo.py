"""The seed's libvirt 9.0.0 -> 9.1.0 split on two sandbox installroots: stock vs. libvirt-units.

Builds the fixture RPMs (tests/e2e/fixtures.py), installs 9.0.0 into two scratch roots, makes
the admin's changes, upgrades one root with `--noplugins` and the other with the plugin loaded
from this tree, then prints what `systemctl --root is-enabled` says per unit.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.fixtures import build_pool  # noqa: E402
from tests.e2e.harness import InstallRoot  # noqa: E402

# (unit, what the admin did on 9.0.0, what should survive the upgrade)
ADMIN = [
    ("libvirtd.service", "enable", "admin runs the monolithic daemon"),
    ("libvirtd.socket", "enable", "admin runs the monolithic daemon"),
    ("virtproxyd.service", "disable", "would fight libvirtd for its socket"),
    ("virtproxyd.socket", "disable", "same path as libvirtd.socket"),
    ("virtproxyd-ro.socket", "disable", "same path as libvirtd-ro.socket"),
    ("virtproxyd-admin.socket", "disable", "same path as libvirtd-admin.socket"),
    ("virtsecretd-tls.socket", "enable", "remote access; package renamed in 9.1.0"),
]
NEW_UNITS = [("virtqemud-admin.socket", "new in 9.1.0, preset says enable"),
             ("virtqemud-tcp.socket", "new in 9.1.0, preset says disable")]


def prepare(root: InstallRoot, repo: Path, plugin: bool) -> None:
    root.dnf("install", "libvirt-9.0.0", repo=repo, plugin=plugin)
    for unit, verb, _ in ADMIN:
        root.systemctl(verb, unit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the roots here (default: a temp dir)")
    parser.add_argument("--log", type=Path, help="write every command and its output here")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="libvirt-units-demo-"))
    log_path = args.log or work / "demo.log"
    work.mkdir(parents=True, exist_ok=True)
    print(f"building fixture RPMs and roots in {work} (command log: {log_path})")
    with open(log_path, "w") as log, contextlib.redirect_stdout(log):
        pool = build_pool(work / "pool", "classic")
        repo = pool.make_repo(work / "repo", ["9.0.0", "9.1.0"])
        roots = {}
        for name, plugin in (("stock", False), ("plugin", True)):
            root = InstallRoot(work / name / "root", work / name / "home")
            root.setup(pool)
            prepare(root, repo, plugin)
            roots[name] = root
        before = {u: roots["stock"].is_enabled(u) for u, _, _ in ADMIN}
        for name, plugin in (("stock", False), ("plugin", True)):
            roots[name].dnf("upgrade", repo=repo, plugin=plugin)
        after = {name: {u: r.is_enabled(u) for u, _, _ in ADMIN + [(n, "", "") for n, _ in NEW_UNITS]}
                 for name, r in roots.items()}

    header = f"{'unit':26} {'admin set (9.0.0)':18} {'stock upgrade':14} {'with libvirt-units':19} note"
    print("\nlibvirt 9.0.0 -> 9.1.0 (virtproxyd* move to the new libvirt-daemon-proxy package)\n")
    print(header)
    print("-" * len(header))
    broken = 0
    for unit, _, note in ADMIN:
        stock, ours = after["stock"][unit], after["plugin"][unit]
        flag = "  <- admin's choice lost" if stock != before[unit] else ""
        broken += bool(flag)
        print(f"{unit:26} {before[unit]:18} {stock:14} {ours:19} {note}{flag}")
    for unit, note in NEW_UNITS:
        stock, ours = after["stock"][unit], after["plugin"][unit]
        print(f"{unit:26} {'(absent)':18} {stock:14} {ours:19} {note}")
    kept = all(after["plugin"][u] == before[u] for u, _, _ in ADMIN)
    print(f"\nstock macros changed {broken} admin setting(s); libvirt-units kept "
          f"{'all of them' if kept else 'NOT all of them'} and preset only the new units.")
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
