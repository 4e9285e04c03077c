"""`libvirt-units`: the plugin's guarantees around transactions dnf 4 does not run.

dnf5 (its actions plugin) and plain `rpm -U` hand us no package list and load no Python plugin,
so the same core runs as a command: `snapshot` before the transaction records the facts and every
installed package, `apply` after it reads the transaction back from the rpmdb and acts; `status`,
`check` and `resume` are the `dnf libvirt-units` ones. Same configuration, same journal. No dnf
import: a host with rpm alone runs this.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__, commands, host, journal, render, resolve, rpmdb, session, state
from .config import CONFIG_PATH, Config, config_paths, load_config
from .gate import DROPIN_DIR
from .report import log

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2

MSG_DISABLED = "libvirt-units: disabled in the configuration (enabled = 0); nothing done"
MSG_NATIVE = "libvirt-units: the dnf5 plugin is loaded in this dnf5 and does the work; nothing done"
# Set by the native dnf5 plugin (dnf-plugins/libvirt_units_dnf5.py) in dnf5's environment: the
# actions file's snapshot/apply, which dnf5 runs as its children, then leave the work to it.
NATIVE_DNF5_ENV = "LIBVIRT_UNITS_DNF5_PLUGIN"
MSG_NO_SNAPSHOT = "no snapshot to apply: run 'libvirt-units snapshot' before the transaction"
MSG_COMPLETING = "libvirt-units: completing the unfinished transaction recorded in %s"
MSG_NOTHING_TO_RESUME = "libvirt-units: no unfinished transaction to complete"
MSG_PROBLEMS = "libvirt-units: {} problem(s) found"
MSG_ERROR = "libvirt-units: error: {}"
MSG_NOT_ROOT = "'{}' changes the system: it must be run as root"
MSG_NO_RPMDB = "--root {} has no rpm database (rpm's %_dbpath below it): not an rpm system"
MSG_NO_CONFIG = "--config {}: no such file"
WRITES = ("snapshot", "apply", "resume")  # the subcommands that change the system

DESCRIPTION = "Per-unit systemd presets, kept enablement and batched restarts around rpm transactions."
EPILOG = ("Around plain rpm: 'libvirt-units snapshot && rpm -U PKGS; libvirt-units apply' "
          "(or rpm-with-libvirt-units -U PKGS). dnf5 runs snapshot/apply through "
          "/etc/dnf/libdnf5-plugins/actions.d/libvirt-units.actions; dnf 4 loads the plugin instead. "
          "See libvirt-units(8).")
SUBCOMMANDS = {
    "snapshot": "before a transaction: record the units, their enablement links and the installed packages",
    "apply": "after it: preset new units, restore the enablement of the others, restart changed services",
    "status": "the managed units: package, enablement, preset, drift, active state",
    "check": "find enabled sockets that conflict, sockets without their service, dangling links (exit 1)",
    "resume": "complete a transaction a killed dnf or an interrupted 'apply' left unfinished",
    "last": "the record of the last transaction: when, which packages, what was done to which unit",
    "plan": "resolve a transaction (default: upgrade) without running it and print the per-unit plan",
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=Path("/"), type=root_dir,
                        help="act on the system installed in DIR, like rpm --root (default: /)")
    common.add_argument("--config", metavar="FILE", default=None, type=Path,
                        help=f"configuration file, then FILE's directory/{DROPIN_DIR}/*.conf "
                             f"(default: {CONFIG_PATH})")
    noise = common.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    noise.add_argument("-v", "--verbose", action="store_true", help="print debug messages too")
    with_json = argparse.ArgumentParser(add_help=False)
    with_json.add_argument("--json", action="store_true", help="print one JSON object (doc/json.md)")

    parser = argparse.ArgumentParser(prog="libvirt-units", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subs = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    for name, summary in SUBCOMMANDS.items():
        parents = [common, with_json] if name in ("status", "check", "resume", "last") else [common]
        sub = subs.add_parser(name, parents=parents, help=summary, description=summary)
        if name == "plan":
            add_plan_arguments(sub)
    return parser


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """`plan`: `dnf libvirt-units --dry-run` for hosts without dnf 4 (resolve.py)."""
    parser.add_argument("--json", action="store_true", help="print one JSON object (doc/json.md)")
    parser.add_argument("--all", action="store_true",
                        help="list every managed unit, also those that only keep their state")
    parser.add_argument("--repofrompath", metavar="ID,PATH", action="append", default=[], type=repo_from_path,
                        help="an extra repository (only these and --repo ones are used), as in dnf")
    parser.add_argument("--repo", metavar="ID", action="append", default=[], help="use only this repository")
    parser.add_argument("--releasever", metavar="VERSION", default=None, help="$releasever for the repositories")
    parser.add_argument("--cacheonly", action="store_true", help="use the metadata cache only")
    parser.add_argument("verb", nargs="?", default="upgrade", choices=resolve.TRANSACTIONS,
                        help="the transaction to plan (default: upgrade)")
    parser.add_argument("packages", nargs="*", help="package specs for install/remove/upgrade")


def repo_from_path(text: str) -> tuple[str, str]:
    repo_id, sep, path = text.partition(",")
    if not sep or not repo_id or not path:
        raise argparse.ArgumentTypeError(f"{text}: say ID,PATH")
    return repo_id, path


def root_dir(text: str) -> Path:
    """--root: a directory that exists (an empty word would mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give the directory of the system to act on")
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    return Path(text)


def log_to_stderr(quiet: bool, verbose: bool) -> logging.Handler:
    # stderr only: dnf5's actions plugin parses our stdout as `var.x=...` requests
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    log.addHandler(handler)
    log.setLevel(min(log.getEffectiveLevel(), handler.level))
    return handler


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    handler = log_to_stderr(opts.quiet, opts.verbose)
    try:
        return run(opts)
    except BrokenPipeError:  # `libvirt-units status | head`: the reader had enough, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK
    finally:
        log.removeHandler(handler)


def run(opts: argparse.Namespace) -> int:
    try:
        if opts.subcommand in WRITES and os.geteuid() != 0:
            raise PermissionError(MSG_NOT_ROOT.format(f"libvirt-units {opts.subcommand}"))
        if opts.config is not None and not opts.config.is_file():
            raise FileNotFoundError(MSG_NO_CONFIG.format(opts.config))
        if rpmdb.database_path(opts.root) is None:
            raise FileNotFoundError(MSG_NO_RPMDB.format(opts.root))
        config = load_config(config_paths(opts.config or CONFIG_PATH))
        for problem in config.problems:
            log.warning("libvirt-units: %s", problem)
        return RUNNERS[opts.subcommand](opts.root, config, opts)
    except journal.JournalError:
        return EXIT_ERROR  # journal.quarantine() has said why, in one line
    except BrokenPipeError:
        raise
    except Exception as exc:  # one clear line, not a traceback
        if opts.verbose:
            raise
        print(MSG_ERROR.format(exc), file=sys.stderr)
        return EXIT_ERROR


def run_snapshot(root: Path, config: Config, opts: argparse.Namespace) -> int:
    if not config.enabled:
        log.info(MSG_DISABLED)
        return EXIT_OK
    if os.environ.get(NATIVE_DNF5_ENV) == "1":
        log.debug(MSG_NATIVE)
        return EXIT_OK
    complete_unfinished(root, config, announce=True)  # a transaction we never saw end comes first
    session.begin_observed(root, config)
    return EXIT_OK


def run_apply(root: Path, config: Config, opts: argparse.Namespace) -> int:
    if not config.enabled:
        log.info(MSG_DISABLED)
        return EXIT_OK
    if os.environ.get(NATIVE_DNF5_ENV) == "1":
        log.debug(MSG_NATIVE)
        return EXIT_OK
    if journal.load(root) is None:
        raise RuntimeError(MSG_NO_SNAPSHOT)
    complete_unfinished(root, config)
    return EXIT_OK


def run_resume(root: Path, config: Config, opts: argparse.Namespace) -> int:
    if journal.load(root) is None:
        print(render.dumps(render.empty_json("resume", str(root))) if opts.json else MSG_NOTHING_TO_RESUME)
        return EXIT_OK
    complete_unfinished(root, config, announce=True)
    if opts.json:
        print(render.last_text(state.read_json(root, state.LAST_TRANSACTION), True))
    return EXIT_OK


def run_last(root: Path, config: Config, opts: argparse.Namespace) -> int:
    print(render.last_text(state.read_json(root, state.LAST_TRANSACTION), opts.json))
    return EXIT_OK


def complete_unfinished(root: Path, config: Config, announce: bool = False) -> None:
    """Finish the journal in the root, whoever wrote it: our snapshot or a killed dnf 4."""
    record = journal.load(root)
    if record is None:
        return
    if journal.INSTALLED_BEFORE in record:
        if announce:  # session.resume() says the same for dnf 4 journals
            log.warning(MSG_COMPLETING, state.state_dir(root))
        session.finish_observed(root, config, record)
    else:
        session.resume(root, config)


def run_status(root: Path, config: Config, opts: argparse.Namespace) -> int:
    pending = commands.pending_problem(root, "libvirt-units resume")
    print(render.status_text(commands.status(root, config, host.is_live(root)), str(root), opts.json, pending))
    return EXIT_OK


def run_check(root: Path, config: Config, opts: argparse.Namespace) -> int:
    problems = commands.check(root, config, resume="libvirt-units resume")
    print(render.check_text(problems, str(root), opts.json))
    if problems:
        print(MSG_PROBLEMS.format(len(problems)), file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def run_plan(root: Path, config: Config, opts: argparse.Namespace) -> int:
    """The dry run of `dnf libvirt-units --dry-run`, resolved with libdnf5 (or dnf 4): the same
    planning function, table and JSON."""
    if opts.verb in ("install", "remove") and not opts.packages:
        raise ValueError(f"'plan {opts.verb}' needs the packages to {opts.verb}")
    request = resolve.Request(root, opts.verb, tuple(opts.packages), tuple(opts.repofrompath),
                              tuple(opts.repo), opts.releasever, opts.cacheonly or os.geteuid() != 0)
    changes = resolve.resolve(request)
    plan = commands.dry_run(root, config, changes, host.is_live(root))
    states = commands.enablement(root, [r.unit for r in plan.rows if r.package_before])
    if opts.json:
        tx = [{"package": c.nevra, "action": c.action} for c in changes]
        print(render.dumps(render.plan_json(plan, "dry-run", str(root), states, tx)))
    else:
        print(f"libvirt-units plan for: {resolve.describe(opts.verb, opts.packages)} (nothing will be changed)")
        print(render.plan_table(plan, states, opts.all))
    return EXIT_OK


RUNNERS = {"plan": run_plan, "snapshot": run_snapshot, "apply": run_apply, "status": run_status, "check": run_check,
           "resume": run_resume, "last": run_last}
