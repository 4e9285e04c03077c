"""dnf 4 plugin: per-unit systemd presets and batched restarts (see libvirt_presets).

Loaded by every dnf command, so it imports only what dnf has loaded already and
libvirt_presets.gate: the core (pathlib and typing with it) is imported when a transaction
concerns us, a journal is pending, or our own command runs.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

import dnf
import dnf.cli
import dnf.exceptions
import dnf.transaction
import libdnf.transaction
import rpm

from libvirt_presets import gate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import ArgumentParser
    from typing import Any, Callable

    from libvirt_presets import facts
    from libvirt_presets.config import Config
    from libvirt_presets.headers import HeaderReader
    from libvirt_presets.host import Root
    from libvirt_presets.session import Pending

    Item = tuple[int, Any]  # transaction_items(): dnf's action, the package

logger = logging.getLogger(gate.LOGGER_NAME)

MSG_FAILED = "libvirt-units: %s; the transaction goes on without per-unit handling"
MSG_CONFIG = "libvirt-units: %s"
MSG_NOT_ROOT = ("libvirt-units: not running as root: planning from the metadata cache (as with -C); "
                "run as root to refresh repository metadata")
MSG_USAGE = "libvirt-units: say --dry-run [upgrade|install|remove PKG...], status, check, last or resume"
MSG_DRY_RUN_WITH = "libvirt-units: --dry-run plans a transaction (upgrade, install, remove), not '{}'"
MSG_NO_PACKAGES = "libvirt-units: '{}' takes no package"
MSG_WANTS_PACKAGES = "libvirt-units: '--dry-run {}' needs the packages to {}"
MSG_NOT_CONCERNED = "libvirt-units: no package of the transaction ships a systemd file or matches a trigger"
MSG_CONCERNED = "libvirt-units: the transaction concerns managed units: %s"
TRANSACTIONS = ("upgrade", "install", "remove")
READ_ONLY = ("status", "check", "last")
MSG_NO_HEADER = "libvirt-units: cannot read the header of %s: %s"
MSG_FILE_LISTS = "libvirt-units: file lists of incoming packages: %d from rpm's transaction set, %d from headers"

# dnf's actions for the incoming half of a transaction; every other action is outgoing
INBOUND = (dnf.transaction.PKG_INSTALL, dnf.transaction.PKG_UPGRADE, dnf.transaction.PKG_DOWNGRADE,
           dnf.transaction.PKG_REINSTALL, dnf.transaction.PKG_OBSOLETE)


def config_files(conf: Any) -> list[str]:  # a dnf.conf.Conf (dnf has no type stubs)
    """The main file from each directory of dnf's pluginconfpath, then its drop-ins."""
    name = os.path.basename(gate.CONFIG_FILE)
    return [p for directory in conf.pluginconfpath for p in gate.config_files(os.path.join(directory, name))]


def load_config(conf: Any) -> Config:  # a dnf.conf.Conf
    from libvirt_presets.config import load_config

    return load_config(config_files(conf))


class LibvirtUnits(dnf.Plugin):  # type: ignore[misc]  # dnf has no type stubs: its classes are Any
    name = "libvirt-units"
    # dnf parses <config_name>.conf itself, strictly, before any plugin runs, and one line it
    # cannot parse stops every dnf command. So dnf reads a file we do not ship (an admin may
    # still write `[main] enabled = 0` there to keep dnf from loading us), and libvirt-units.conf
    # with its drop-ins is read by our own parser only: a bad line is a warning, never an error.
    config_name = "libvirt-units-dnf"

    def __init__(self, base: Any, cli: Any) -> None:  # dnf.Base, dnf.cli.Cli or None
        super().__init__(base, cli)
        self._config: Config | None = None  # read when a transaction or a journal needs it
        self._pending: Pending | None = None
        if cli is not None:
            cli.register_command(LibvirtUnitsCommand)

    def config(self) -> None:
        # An earlier dnf killed between rpm and our step left a journal: its on-disk part is
        # completed now, on any command that may act (root, not a test run, not our own
        # command); its restarts wait for a transaction (pre_transaction) or `resume`, so that
        # a `dnf makecache` from a timer never restarts libvirtd at a random hour.
        if self._journal_pending() and self._enabled():
            self._guarded(lambda: self._resume(self._root(), live_actions=False))

    def pre_transaction(self) -> None:
        self._pending = None
        if self._may_act() and not self.base.conf.downloadonly:
            self._guarded(self._pre_transaction)

    def _pre_transaction(self) -> None:
        pending = self._journal_pending()
        known = rpm_ts_file_lists(self.base)
        items = transaction_items(self.base.transaction)
        if not pending:
            reason = self._concerns(known, items)
            if reason is None:
                logger.debug(MSG_NOT_CONCERNED)
                return
            logger.debug(MSG_CONCERNED, reason)
        if not self._enabled():
            return
        if pending:  # a transaction now: the earlier one's restarts first
            self._guarded(lambda: self._resume(self._root()))
        self._begin(known, items)

    def _concerns(self, known: dict[str, frozenset[str]] | None, items: list[Item]) -> str | None:
        """Why this transaction concerns us (gate.concerns), from the file lists dnf holds:
        rpm's for the incoming packages, the rpmdb's for the outgoing ones."""
        if known is None:
            return "rpm's transaction set holds no file lists"
        try:
            triggers = gate.trigger_patterns(config_files(self.base.conf))
        except OSError as exc:
            return str(exc)
        packages = []
        inbound = 0
        for action, pkg in items:
            if action in INBOUND:
                inbound += 1
                packages.append((pkg.name, known.get(str(pkg), ())))
            else:
                packages.append((pkg.name, pkg.files))
        if inbound != len(known):
            return "rpm's transaction set and dnf's differ"
        return gate.concerns(packages, triggers)

    def _root(self) -> str:
        return str(self.base.conf.installroot or "/")

    def _read_config(self) -> Config:
        """Our configuration, read once; each bad line said once, as a warning."""
        if self._config is None:
            self._config = load_config(self.base.conf)
            for problem in self._config.problems:
                logger.warning(MSG_CONFIG, problem)
        return self._config

    def _enabled(self) -> bool:
        try:
            return self._read_config().enabled
        except Exception as exc:  # noqa: BLE001 - a hook must never fail the transaction
            logger.warning(MSG_FAILED, exc)
            return False

    def _journal_pending(self) -> bool:
        return (self._may_act() and os.geteuid() == 0
                and gate.journal_pending(self.base.conf.installroot or "/"))

    def _may_act(self) -> bool:
        """Not in a test transaction, never under our own read-only command (and the
        configuration's `enabled` is asked only when there is something to do)."""
        ours = isinstance(getattr(self.cli, "command", None), LibvirtUnitsCommand)
        return "test" not in self.base.conf.tsflags and not ours

    def transaction(self) -> None:
        if self._pending is not None:
            self._guarded(self._finish)
            self._pending = None

    def _after_dnf(self) -> None:
        """At exit, when pre_transaction ran but the transaction hook did not (rpm never started:
        another plugin or dnf itself gave up after our hook): complete or discard the journal
        now, so that no guard outlives this dnf. resume() drops a journal whose transaction
        never reached rpm, guards included."""
        if self._pending is not None:
            root, self._pending = self._pending.root, None
            self._guarded(lambda: self._resume(root))

    def _resume(self, root: Root, live_actions: bool = True) -> None:
        """Complete an earlier transaction's journal: the core's transaction code is loaded
        when a journal (or a transaction) needs it."""
        from libvirt_presets import session

        session.resume(root, self._read_config(), live_actions=live_actions)

    def _guarded(self, step: Callable[[], object]) -> None:
        # Hooks run inside the user's transaction: our failure must never become theirs.
        try:
            step()
        except Exception as exc:
            journal = sys.modules.get("libvirt_presets.journal")
            if journal is not None and isinstance(exc, journal.JournalError):
                return  # an unusable journal was moved aside, and that was said in one line
            logger.warning(MSG_FAILED, exc)
            logger.debug("libvirt-units traceback", exc_info=True)

    def _begin(self, known: dict[str, frozenset[str]] | None, items: list[Item]) -> None:
        from libvirt_presets import host, session

        root = self._root()
        changes = transaction_changes(items, root, from_headers=True, known=known)
        rpm_ts = getattr(getattr(self.base, "_priv_ts", None), "ts", None)  # dnf 4's, database open
        self._pending = session.begin(root, self._read_config(), changes, host.is_live(root), rpm_ts)
        atexit.register(self._after_dnf)

    def _finish(self) -> None:
        from libvirt_presets import session

        assert self._pending is not None
        done = {str(tsi.pkg) for tsi in self.base.transaction
                if tsi.state == libdnf.transaction.TransactionItemState_DONE}
        session.finish(self._pending, done, history_id=self._history_id())

    def _history_id(self) -> int | None:
        """The ID `dnf history` gives the transaction that just ran, for the record."""
        try:
            last = self.base.history.last()
            return int(last.tid) if last is not None else None
        except Exception:  # noqa: BLE001 - a nicety: never fail the transaction for it
            return None


def rpm_ts_file_lists(base: Any) -> dict[str, frozenset[str]] | None:  # a dnf.Base
    """File lists of the incoming packages, from the rpm transaction set dnf has just filled
    (its elements' keys are dnf's transaction items): no header is read twice. None if this
    dnf keeps its set elsewhere; the downloaded headers are read instead."""
    lists: dict[str, frozenset[str]] = {}
    try:
        elements = iter(base._priv_ts.ts)  # dnf 4's TransactionWrapper around rpm.TransactionSet
    except (AttributeError, TypeError):
        return None
    for element in elements:
        pkg = getattr(element.Key(), "pkg", None)
        if element.Type() != rpm.TR_ADDED or pkg is None:
            continue
        files = element.Files()
        lists[str(pkg)] = frozenset(f.name for f in files) if files is not None else frozenset()
    return lists


def transaction_items(transaction: Any) -> list[Item]:  # a dnf.Base.transaction
    """(action, package) of each item, read once per hook: each read of dnf's transaction items
    goes through its Python wrappers. A package's NEVRA string is made only where it is used
    (str() of a dnf package costs ~8,000 instructions: the gate of a 450-package upgrade needs
    it for the incoming half only)."""
    return [(tsi.action, tsi.pkg) for tsi in transaction]


def transaction_changes(items: list[Item], root: str, from_headers: bool,
                        known: dict[str, frozenset[str]] | None = None) -> list[facts.PackageChange]:
    """Package changes of a dnf transaction. Incoming file lists come from rpm (`known`, by
    NEVRA) or the downloaded headers: dnf >= 4.19 loads no filelists metadata by default; a
    dry run, which has neither, takes them from metadata."""
    from libvirt_presets import facts

    actions = {
        dnf.transaction.PKG_INSTALL: facts.INSTALL,
        dnf.transaction.PKG_UPGRADE: facts.UPGRADE,
        dnf.transaction.PKG_DOWNGRADE: facts.DOWNGRADE,
        dnf.transaction.PKG_REINSTALL: facts.REINSTALL,
        dnf.transaction.PKG_OBSOLETE: facts.OBSOLETE,
    }
    changes = []
    known = known or {}
    headers: HeaderReader | None = None  # most runs take every list from rpm's set
    taken = 0
    for dnf_action, pkg in items:
        name, nevra = pkg.name, str(pkg)
        action = actions.get(dnf_action)
        files: frozenset[str] = frozenset()
        if not from_headers:
            files = frozenset(pkg.files)
        elif action is not None:  # outgoing packages' files are not needed after the fact
            if nevra in known:
                files = known[nevra]
                taken += 1
            else:
                try:
                    if headers is None:
                        from libvirt_presets.headers import HeaderReader

                        headers = HeaderReader(str(root))
                    files = headers.files(pkg.localPkg())
                except (OSError, rpm.error) as exc:
                    logger.warning(MSG_NO_HEADER, os.path.basename(pkg.localPkg()), exc)
                    files = frozenset(pkg.files)
        changes.append(facts.PackageChange(name, nevra, action or facts.ERASE, files))
    if from_headers:
        logger.debug(MSG_FILE_LISTS, taken, sum(1 for c in changes if c.inbound) - taken)
    return changes


class LibvirtUnitsCommand(dnf.cli.Command):  # type: ignore[misc]  # dnf has no type stubs
    """`dnf libvirt-units`: see what the plugin would do, and check the units it manages."""

    aliases = ("libvirt-units",)
    summary = "show the per-unit plan of a transaction, the managed units' status, or problems"

    @staticmethod
    def set_argparser(parser: ArgumentParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="resolve a transaction (default: upgrade) and print the plan; change nothing")
        parser.add_argument("--json", action="store_true", help="print one JSON object (doc/json.md)")
        parser.add_argument("--all", action="store_true",
                            help="with --dry-run: list every managed unit, also those that only keep their state")
        parser.add_argument("subcommand", nargs="?", default=None,
                            choices=[*TRANSACTIONS, *READ_ONLY, "resume"],
                            help="with --dry-run: the transaction to plan; else status, check, last or resume")
        parser.add_argument("packages", nargs="*", help="package specs for install/remove/upgrade")

    def configure(self) -> None:
        self._check_grammar()
        demands = self.cli.demands
        demands.sack_activation = True
        sub = self.opts.subcommand
        demands.root_user = sub == "resume"
        if self.opts.dry_run or sub in TRANSACTIONS:
            demands.available_repos = sub != "remove"
            if os.geteuid() != 0 and not self.base.conf.cacheonly:
                logger.warning(MSG_NOT_ROOT)
                demands.cacheonly = True
            # the dry run needs file lists from metadata (the real hook reads rpm headers)
            types = getattr(self.base.conf, "optional_metadata_types", None)
            if types is not None and "filelists" not in types:
                self.base.conf.optional_metadata_types = [*types, "filelists"]

    def _check_grammar(self) -> None:
        """--dry-run [upgrade|install|remove PKG...] | status | check | last | resume: refuse the
        rest before anything runs (`--dry-run status` used to plan a transaction 'dnf status')."""
        sub, packages = self.opts.subcommand, self.opts.packages
        if sub is None and not self.opts.dry_run:
            raise dnf.cli.CliError(MSG_USAGE)
        if self.opts.all and not (self.opts.dry_run or sub in TRANSACTIONS):
            raise dnf.cli.CliError("libvirt-units: --all goes with --dry-run")
        if sub in (*READ_ONLY, "resume"):
            if self.opts.dry_run:
                raise dnf.cli.CliError(MSG_DRY_RUN_WITH.format(sub))
            if packages:
                raise dnf.cli.CliError(MSG_NO_PACKAGES.format(sub))
        if sub in ("install", "remove") and not packages:
            raise dnf.cli.CliError(MSG_WANTS_PACKAGES.format(sub, sub))

    def run(self) -> None:
        # loaded for this command only: the hooks of every other dnf run do without them
        from libvirt_presets import commands, host, render, session, state
        from libvirt_presets.journal import JournalError

        opts = self.opts
        root = str(self.base.conf.installroot or "/")
        config = load_config(self.base.conf)
        sub = opts.subcommand
        if sub != "check":  # check lists them itself
            for problem in config.problems:
                logger.warning(MSG_CONFIG, problem)
        if opts.dry_run or sub in TRANSACTIONS:
            self._dry_run(root, config, sub or "upgrade", opts.packages)
        elif sub == "status":
            pending = commands.pending_problem(root, "dnf libvirt-units resume")
            print(render.status_text(commands.status(root, config, host.is_live(root)), str(root), opts.json, pending))
        elif sub == "resume":
            try:
                resumed = session.resume(root, config)
            except JournalError as exc:
                raise dnf.exceptions.Error(f"libvirt-units: {exc}; nothing was completed") from exc
            if opts.json:
                record = state.read_json(root, state.LAST_TRANSACTION) if resumed is not None else None
                nothing = render.dumps(render.empty_json("resume", str(root)))
                print(render.last_text(record, True) if record else nothing)
            elif resumed is None:
                print("libvirt-units: no unfinished transaction to complete")
        elif sub == "last":
            print(render.last_text(state.read_json(root, state.LAST_TRANSACTION), opts.json))
        elif sub == "check":
            problems = commands.check(root, config)
            print(render.check_text(problems, str(root), opts.json))
            if problems:
                raise dnf.exceptions.Error(f"libvirt-units: {len(problems)} problem(s) found")
        else:
            raise dnf.cli.CliError(MSG_USAGE)

    def _dry_run(self, root: str, config: Config, sub: str, packages: list[str]) -> None:
        from libvirt_presets import commands, host, render

        base = self.base
        try:
            if sub == "upgrade":
                if packages:
                    for spec in packages:
                        base.upgrade(spec)
                else:
                    base.upgrade_all()
            elif sub == "install":
                for spec in packages:
                    base.install(spec)
            else:
                for spec in packages:
                    base.remove(spec)
            base.resolve(allow_erasing=sub == "remove")
        except dnf.exceptions.Error as exc:
            raise dnf.exceptions.Error(f"libvirt-units: cannot resolve the {sub}: {exc}") from exc
        changes = transaction_changes(transaction_items(base.transaction), root, from_headers=False)
        plan = commands.dry_run(root, config, changes, host.is_live(root))
        states = commands.enablement(root, [r.unit for r in plan.rows if r.package_before])
        tx = [{"package": c.nevra, "action": c.action} for c in changes]
        if self.opts.json:
            print(render.dumps(render.plan_json(plan, "dry-run", str(root), states, tx)))
        else:
            print(f"libvirt-units plan for: dnf {sub} {' '.join(packages)} (nothing will be changed)")
            print(render.plan_table(plan, states, self.opts.all))
