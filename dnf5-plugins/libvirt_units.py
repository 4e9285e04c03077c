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
from pathlib import Path

import libdnf5  # the loader looks `libdnf5` up in this module: keep the plain import

from libvirt_presets import facts, host, resolve, rpmdb, state
from libvirt_presets.config import CONFIG_PATH, Config, config_paths, load_config
from libvirt_presets.journal import JournalError

logger = logging.getLogger("dnf.plugin.libvirt-units")

MSG_FAILED = "libvirt-units: %s; the transaction goes on without per-unit handling"
MSG_CONFIG = "libvirt-units: %s"
MSG_NO_HEADER = "libvirt-units: cannot read the header of %s: %s"
# The actions file's `libvirt-units snapshot/apply` step aside while this plugin is loaded:
# dnf5 runs the actions' commands as its children, which inherit this variable (cli.py).
NATIVE_ENV = "LIBVIRT_UNITS_DNF5_PLUGIN"
CONFIG_ENV = "LIBVIRT_UNITS_CONFIG"  # another main configuration file (tests, unusual set-ups)

def _session():  # noqa: ANN202 - the libvirt_presets.session module, loaded when needed
    from libvirt_presets import session

    return session


def _log_to_stderr() -> None:
    """dnf5 does not route Python logging: our lines go to stderr, as the CLI's do."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def transaction_changes(transaction, root: Path) -> list[facts.PackageChange]:  # noqa: ANN001
    """Package changes of a libdnf5 transaction about to run (resolve.libdnf5_changes): incoming
    file lists from the downloaded rpm headers (repositories may carry no filelists); outgoing
    ones are not needed once rpm has run."""
    headers = rpmdb.HeaderReader(root)

    def files_of(pkg, inbound: bool) -> frozenset[str]:  # noqa: ANN001
        if not inbound:
            return frozenset()
        path = pkg.get_package_path()
        try:
            return headers.files(path)
        except Exception as exc:  # noqa: BLE001 - rpm.error has no common base here
            logger.warning(MSG_NO_HEADER, os.path.basename(path), exc)
            return frozenset(pkg.get_files())

    return resolve.libdnf5_changes(transaction, files_of)


class Plugin(libdnf5.plugin.IPlugin2_1):
    def __init__(self, data) -> None:  # noqa: ANN001
        super().__init__(data)
        self._config = Config()
        self._pending = None
        self._exit_registered = False
        os.environ[NATIVE_ENV] = "1"

    @staticmethod
    def get_api_version():  # noqa: ANN205
        version = libdnf5.conf.PluginAPIVersion()
        version.major, version.minor = 2, 1
        return version

    @staticmethod
    def get_name() -> str:
        return "libvirt_units"

    @staticmethod
    def get_version():  # noqa: ANN205
        return libdnf5.plugin.Version(0, 1, 0)

    def get_attribute(self, name: str) -> str | None:
        attributes = {"author_name": "libvirt-units", "description": "per-unit systemd presets and batched restarts"}
        return attributes.get(name)

    # -- hooks: each one guarded ------------------------------------------------------------

    def post_base_setup(self) -> None:
        self._guarded(self._configure)

    def pre_transaction(self, transaction) -> None:  # noqa: ANN001
        self._pending = None
        self._guarded(lambda: self._pre_transaction(transaction))

    def post_transaction(self, transaction) -> None:  # noqa: ANN001
        if self._pending is not None:
            self._guarded(self._finish)
            self._pending = None

    def finish(self) -> None:
        """libdnf5 unloads its plugins: the exit handler's job, if the transaction hook never ran."""
        self._guarded(self._after_dnf)

    # -- the work -----------------------------------------------------------------------------

    def _root(self) -> Path:
        return Path(self.get_base().get_config().get_installroot_option().get_value() or "/")

    def _configure(self) -> None:
        _log_to_stderr()
        main = Path(os.environ.get(CONFIG_ENV) or CONFIG_PATH)
        self._config = load_config(config_paths(main))
        for problem in self._config.problems:
            logger.warning(MSG_CONFIG, problem)
        # A dnf5 killed between rpm and our step left a journal: its on-disk part now, its
        # restarts with the next transaction (or `libvirt-units resume`), as with dnf 4.
        if self._journal_pending():
            self._guarded(lambda: _session().resume(self._root(), self._config, live_actions=False))

    def _may_act(self) -> bool:
        conf = self.get_base().get_config()
        return (self._config.enabled and os.geteuid() == 0
                and "test" not in conf.get_tsflags_option().get_value()
                and not conf.get_downloadonly_option().get_value())

    def _journal_pending(self) -> bool:
        return self._may_act() and os.path.lexists(state.state_dir(self._root()) / state.PENDING)

    def _pre_transaction(self, transaction) -> None:  # noqa: ANN001
        if not self._may_act():
            return
        root = self._root()
        if self._journal_pending():  # a transaction now: the earlier one's restarts first
            self._guarded(lambda: _session().resume(root, self._config))
        changes = transaction_changes(transaction, root)
        self._pending = _session().begin(root, self._config, changes, host.is_live(root))
        if not self._exit_registered:
            atexit.register(self._after_dnf)
            self._exit_registered = True

    def _finish(self) -> None:
        """What rpm really did comes from the rpmdb: dnf5 says `Started` for every item, failed
        or not. An incoming NEVRA is done when installed, an outgoing one when gone."""
        pending = self._pending
        installed = rpmdb.installed_nevras(pending.root)
        done = {c.nevra for c in pending.facts.changes if (c.nevra in installed) == c.inbound}
        _session().finish(pending, done)

    def _after_dnf(self) -> None:
        """pre_transaction ran but post_transaction did not (rpm never started: dnf5 or another
        plugin gave up after our hook): complete or discard the journal, so that no guard
        outlives this dnf5. resume() drops a journal whose transaction never reached rpm."""
        if self._pending is not None:
            root, self._pending = self._pending.root, None
            self._guarded(lambda: _session().resume(root, self._config))

    def _guarded(self, step) -> None:  # noqa: ANN001
        # An exception escaping a hook aborts dnf5 (rc 134): our failure must never become the user's.
        try:
            step()
        except JournalError:
            pass  # an unusable journal was moved aside, and that was said in one line
        except Exception as exc:  # noqa: BLE001
            logger.warning(MSG_FAILED, exc)
            logger.debug("libvirt-units traceback", exc_info=True)
        except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt too: never abort dnf5
            logger.warning(MSG_FAILED, repr(exc))
