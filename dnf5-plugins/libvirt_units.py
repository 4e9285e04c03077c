"""dnf5 plugin (libdnf5's Python plugin loader): per-unit systemd presets, guards and batched
restarts, the same core as the dnf 4 plugin (libvirt_presets.session). Installed as
libvirt_units.py in $LIBDNF_PYTHON_PLUGIN_DIR (%{python3_sitelib}/libdnf_plugins), enabled by
/etc/dnf/libdnf5-plugins/python_plugins_loader.d/libvirt_units.conf.

Every hook is guarded: an exception escaping a hook aborts dnf5 (rc 134), so ours never does.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

import libdnf5  # the loader looks `libdnf5` up in this module: keep the plain import

from libvirt_presets import gate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from libvirt_presets import facts
    from libvirt_presets.config import Config
    from libvirt_presets.host import Root
    from libvirt_presets.session import Pending

logger = logging.getLogger(gate.LOGGER_NAME)

MSG_FAILED = "libvirt-units: %s; the transaction goes on without per-unit handling"
MSG_CONFIG = "libvirt-units: %s"
MSG_NO_HEADER = "libvirt-units: cannot read the header of %s: %s"
MSG_NOT_CONCERNED = "libvirt-units: no package of the transaction ships a systemd file or matches a trigger"
MSG_CONCERNED = "libvirt-units: the transaction concerns managed units: %s"
# The actions file's `libvirt-units snapshot/apply` step aside while this plugin is loaded:
# dnf5 runs the actions' commands as its children, which inherit this variable (cli.py).
NATIVE_ENV = "LIBVIRT_UNITS_DNF5_PLUGIN"
CONFIG_ENV = "LIBVIRT_UNITS_CONFIG"  # another main configuration file (tests, unusual set-ups)


def _log_to_stderr() -> None:
    """dnf5 does not route Python logging: our lines go to stderr, as the CLI's do."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def incoming_files(transaction: Any, root: str) -> dict[str, frozenset[str]]:  # a libdnf5 transaction
    """File lists of the incoming packages, by NEVRA, from the downloaded rpm headers
    (repositories may carry no filelists)."""
    from libvirt_presets.headers import HeaderReader

    headers = HeaderReader(root)
    actions = libdnf5.transaction
    inbound = (actions.TransactionItemAction_INSTALL, actions.TransactionItemAction_UPGRADE,
               actions.TransactionItemAction_DOWNGRADE, actions.TransactionItemAction_REINSTALL)
    lists: dict[str, frozenset[str]] = {}
    for item in transaction.get_transaction_packages():
        if item.get_action() not in inbound:
            continue
        pkg = item.get_package()
        path = pkg.get_package_path()
        try:
            lists[pkg.get_nevra()] = headers.files(path)
        except Exception as exc:  # noqa: BLE001 - rpm.error has no common base here
            logger.warning(MSG_NO_HEADER, os.path.basename(path), exc)
            lists[pkg.get_nevra()] = frozenset(pkg.get_files())
    return lists


def concerns(transaction: Any, incoming: dict[str, frozenset[str]], triggers: set[str]) -> str | None:
    """gate.concerns over a libdnf5 transaction: incoming files from the headers, outgoing
    ones from the rpmdb (libdnf5's system repository)."""
    packages = []
    for item in transaction.get_transaction_packages():
        pkg = item.get_package()
        files = incoming.get(pkg.get_nevra())
        packages.append((pkg.get_name(), files if files is not None else pkg.get_files()))
    return gate.concerns(packages, triggers)


def transaction_changes(transaction: Any, incoming: dict[str, frozenset[str]]) -> list[facts.PackageChange]:
    """Package changes of a libdnf5 transaction about to run (resolve.libdnf5_changes); outgoing
    file lists are not needed once rpm has run."""
    from libvirt_presets import resolve

    def files_of(pkg: Any, inbound: bool) -> frozenset[str]:  # a libdnf5 package
        return incoming.get(pkg.get_nevra(), frozenset()) if inbound else frozenset()

    return resolve.libdnf5_changes(transaction, files_of)


class Plugin(libdnf5.plugin.IPlugin2_1):  # type: ignore[misc]  # libdnf5 has no type stubs: its classes are Any
    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self._config: Config | None = None  # read when a transaction or a journal needs it
        self._pending: Pending | None = None
        self._exit_registered = False
        os.environ[NATIVE_ENV] = "1"

    @staticmethod
    def get_api_version() -> Any:  # a libdnf5.conf.PluginAPIVersion
        version = libdnf5.conf.PluginAPIVersion()
        version.major, version.minor = 2, 1
        return version

    @staticmethod
    def get_name() -> str:
        return "libvirt_units"

    @staticmethod
    def get_version() -> Any:  # a libdnf5.plugin.Version
        return libdnf5.plugin.Version(0, 1, 0)

    def get_attribute(self, name: str) -> str | None:
        attributes = {"author_name": "libvirt-units", "description": "per-unit systemd presets and batched restarts"}
        return attributes.get(name)

    # -- hooks: each one guarded ------------------------------------------------------------

    def post_base_setup(self) -> None:
        self._guarded(self._configure)

    def pre_transaction(self, transaction: Any) -> None:
        self._pending = None
        self._guarded(lambda: self._pre_transaction(transaction))

    def post_transaction(self, transaction: Any) -> None:
        if self._pending is not None:
            self._guarded(self._finish)
            self._pending = None

    def finish(self) -> None:
        """libdnf5 unloads its plugins: the exit handler's job, if the transaction hook never ran."""
        self._guarded(self._after_dnf)

    # -- the work -----------------------------------------------------------------------------

    def _root(self) -> str:
        return self._root_str()

    def _root_str(self) -> str:
        return str(self.get_base().get_config().get_installroot_option().get_value() or "/")

    def _config_files(self) -> list[str]:
        return gate.config_files(os.environ.get(CONFIG_ENV) or gate.CONFIG_FILE)

    def _read_config(self) -> Config:
        """Our configuration, read once; each bad line said once, as a warning."""
        if self._config is None:
            from libvirt_presets.config import load_config

            self._config = load_config(self._config_files())
            for problem in self._config.problems:
                logger.warning(MSG_CONFIG, problem)
        return self._config

    def _configure(self) -> None:
        _log_to_stderr()
        # A dnf5 killed between rpm and our step left a journal: its on-disk part now, its
        # restarts with the next transaction (or `libvirt-units resume`), as with dnf 4.
        if self._journal_pending() and self._read_config().enabled:
            self._guarded(lambda: self._resume(self._root(), live_actions=False))

    def _may_act(self) -> bool:
        """Root, not a test transaction, not a download (the configuration's `enabled` is asked
        only when there is something to do)."""
        conf = self.get_base().get_config()
        return (os.geteuid() == 0
                and "test" not in conf.get_tsflags_option().get_value()
                and not conf.get_downloadonly_option().get_value())

    def _journal_pending(self) -> bool:
        return self._may_act() and gate.journal_pending(self._root_str())

    def _pre_transaction(self, transaction: Any) -> None:
        if not self._may_act():
            return
        pending = self._journal_pending()
        incoming = incoming_files(transaction, self._root_str())
        if not pending:
            try:
                reason = concerns(transaction, incoming, gate.trigger_patterns(self._config_files()))
            except OSError as exc:
                reason = str(exc)
            if reason is None:
                logger.debug(MSG_NOT_CONCERNED)
                return
            logger.debug(MSG_CONCERNED, reason)
        config = self._read_config()
        if not config.enabled:
            return
        root = self._root()
        if pending:  # a transaction now: the earlier one's restarts first
            self._guarded(lambda: self._resume(root))
        from libvirt_presets import host, session

        changes = transaction_changes(transaction, incoming)
        self._pending = session.begin(root, config, changes, host.is_live(root))
        if not self._exit_registered:
            atexit.register(self._after_dnf)
            self._exit_registered = True

    def _finish(self) -> None:
        """What rpm really did comes from the rpmdb: dnf5 says `Started` for every item, failed
        or not. An incoming NEVRA is done when installed, an outgoing one when gone."""
        from libvirt_presets import rpmdb, session

        pending = self._pending
        assert pending is not None
        installed = rpmdb.installed_nevras(pending.root)
        done = {c.nevra for c in pending.facts.changes if (c.nevra in installed) == c.inbound}
        session.finish(pending, done)

    def _after_dnf(self) -> None:
        """pre_transaction ran but post_transaction did not (rpm never started: dnf5 or another
        plugin gave up after our hook): complete or discard the journal, so that no guard
        outlives this dnf5. resume() drops a journal whose transaction never reached rpm."""
        if self._pending is not None:
            root, self._pending = self._pending.root, None
            self._guarded(lambda: self._resume(root))

    def _resume(self, root: Root, live_actions: bool = True) -> None:
        """Complete an earlier transaction's journal: the core's transaction code is loaded
        when a journal (or a transaction) needs it."""
        from libvirt_presets import session

        session.resume(root, self._read_config(), live_actions=live_actions)

    def _guarded(self, step: Callable[[], object]) -> None:
        # An exception escaping a hook aborts dnf5 (rc 134): our failure must never become the user's.
        try:
            step()
        except Exception as exc:
            journal = sys.modules.get("libvirt_presets.journal")
            if journal is not None and isinstance(exc, journal.JournalError):
                return  # an unusable journal was moved aside, and that was said in one line
            logger.warning(MSG_FAILED, exc)
            logger.debug("libvirt-units traceback", exc_info=True)
        except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt too: never abort dnf5
            logger.warning(MSG_FAILED, repr(exc))
