"""Where the plugin's instructions go in one small transaction: one `dnf upgrade` of part 5 (the
split or the no-op, `small.py`) under callgrind, with marks around dnf's plugin hooks and around
the functions named (`marks.py`), printed as one line per stretch between two marks.

    /usr/bin/python3 benchmarks/marked.py --case split \\
        --marks "session.begin session.finish rpmdb.owners_and_cookie snapshot.take_snapshot"

The tree is staged installed-form (byte-compiled) under the work directory, whose template root
and repositories are built on the first run and kept. Instructions are those of dnf's own process
(the plugin's systemctl is not traced); the marks themselves add ~20,000 each, so compare runs
with the same marks, and take totals from `run.py --only small`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import small
from benchmarks.dnfbench import DnfBench
from benchmarks.packages import Layout

REPO_ROOT = Path(__file__).resolve().parents[1]
TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


def prepared(work: Path) -> tuple[DnfBench, Path, small.Repos]:
    """The bench, its 9.0.0 template root and the repositories, built once per work directory."""
    build = work / "build"
    repos = small.Repos(base=build / "repos" / "base", split=build / "repos" / "split", noop=build / "repos" / "noop")
    template = work / "templates" / "libvirt-9.0.0"
    bench = DnfBench(work, Layout(), tree_config=True)
    if not (template / "usr").is_dir() or not all(r.is_dir() for r in vars(repos).values()):
        repos = small.build(build)
        template = small.template(bench, repos)
    return bench, template, repos


def segments(out: Path, names: list[str]) -> list[tuple[str, int]]:
    """(stretch, instructions) of each dump: cg.out.1 ends at the first mark, cg.out at exit."""
    dumps = [*sorted(out.glob("cg.out.*"), key=lambda p: int(p.suffix[1:])), out / "cg.out"]
    labels = ["(start)", *names, "(exit)"]
    found = []
    for i, dump in enumerate(dumps):
        match = TOTAL.search(dump.read_text(errors="replace"))
        found.append((f"{labels[i]} .. {labels[i + 1] if i + 1 < len(labels) else '?'}",
                      int(match.group(1)) if match else 0))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("split", "no-op"), default="split")
    parser.add_argument("--marks", default="session.begin session.finish",
                        help="functions to mark, relative to libvirt_presets: module.function or module.Class.method")
    parser.add_argument("--tree", type=Path, default=REPO_ROOT, help="checkout to measure (default: this one)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/libvirt-units-marked"))
    parser.add_argument("--min", type=float, default=0.05, help="hide stretches below this many M instructions")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing (apt-get install valgrind)")
    work = args.workdir.resolve()
    bench, template, repos = prepared(work)
    tree = small.stage_trees(args.tree.resolve(), work / "tree")["installed"]
    out = work / "callgrind"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    names_file = out / "marks.txt"
    wrap = ["valgrind", "--tool=callgrind", "--cache-sim=no", "--branch-sim=no", "--dump-before=ffi_call",
            f"--callgrind-out-file={out}/cg.out"]
    env = {"PYTHONHASHSEED": "0", "BENCH_MARKS": args.marks, "BENCH_MARKS_FILE": str(names_file)}
    repo = repos.split if args.case == "split" else repos.noop
    result = bench.timed(args.case, template, repo, tree, "upgrade", wrap=wrap, extra_env=env)
    if result.problem:
        sys.exit(f"the run does not count: {result.problem}\n{result.output[-2000:]}")
    names = names_file.read_text().split() if names_file.exists() else []
    rows = segments(out, names)
    for label, count in rows:
        if count >= args.min * 1e6:
            print(f"{count / 1e6:10.2f} M  {label}")
    print(f"{sum(c for _, c in rows) / 1e6:10.2f} M  in all (dnf's process, marks included)")


if __name__ == "__main__":
    main()
