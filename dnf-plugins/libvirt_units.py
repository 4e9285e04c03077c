"""dnf 4 plugin: per-unit systemd presets and batched restarts (see libvirt_presets)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dnf
import dnf.transaction
import libdnf.transaction
import rpm

from libvirt_presets import facts, rpmdb, session
from libvirt_presets.config import Config, load_config

logger = logging.getLogger("dnf.plugin.libvirt-units")

MSG_FAILED = "libvirt-units: %s; the transaction goes on without per-unit handling"
MSG_CONFIG = "libvirt-units: %s"
MSG_NO_HEADER = "libvirt-units: cannot read the header of %s: %s"

ACTIONS = {
    dnf.transaction.PKG_INSTALL: facts.INSTALL,
    dnf.transaction.PKG_UPGRADE: facts.UPGRADE,
    dnf.transaction.PKG_DOWNGRADE: facts.DOWNGRADE,
    dnf.transaction.PKG_REINSTALL: facts.REINSTALL,
    dnf.transaction.PKG_OBSOLETE: facts.OBSOLETE,
}


def config_files(conf) -> list[Path]:  # noqa: ANN001 - dnf.conf.Conf
    """The main file from dnf's pluginconfpath, then its drop-ins in name order."""
    paths: list[Path] = []
    for directory in conf.pluginconfpath:
        main = Path(directory, "libvirt-units.conf")
        paths.append(main)
        paths += sorted(Path(directory, "libvirt-units.d").glob("*.conf"))
    return paths


class LibvirtUnits(dnf.Plugin):
    name = "libvirt-units"

    def __init__(self, base, cli):  # noqa: ANN001
        super().__init__(base, cli)
        self._config = Config()
        self._pending: session.Pending | None = None

    def config(self) -> None:
        self._config = load_config(config_files(self.base.conf))
        for problem in self._config.problems:
            logger.warning(MSG_CONFIG, problem)

    def pre_transaction(self) -> None:
        self._pending = None
        conf = self.base.conf
        if not self._config.enabled or "test" in conf.tsflags or conf.downloadonly:
            return
        self._guarded(self._begin)

    def transaction(self) -> None:
        if self._pending is not None:
            self._guarded(self._finish)

    def _guarded(self, step) -> None:  # noqa: ANN001
        # Hooks run inside the user's transaction: our failure must never become theirs.
        try:
            step()
        except Exception as exc:  # noqa: BLE001
            logger.warning(MSG_FAILED, exc)
            logger.debug("libvirt-units traceback", exc_info=True)

    def _begin(self) -> None:
        root = Path(self.base.conf.installroot or "/")
        self._pending = session.begin(root, self._config, self._changes(root), session.is_live(root))

    def _finish(self) -> None:
        assert self._pending is not None
        done = {str(tsi.pkg) for tsi in self.base.transaction
                if tsi.state == libdnf.transaction.TransactionItemState_DONE}
        session.finish(self._pending, done)

    def _changes(self, root: Path) -> list[facts.PackageChange]:
        changes = []
        for tsi in self.base.transaction:
            pkg = tsi.pkg
            action = ACTIONS.get(tsi.action)
            files: frozenset[str] = frozenset()
            if action is not None:
                try:
                    files = rpmdb.package_files(root, pkg.localPkg())[2]
                except (OSError, rpm.error) as exc:
                    logger.warning(MSG_NO_HEADER, os.path.basename(pkg.localPkg()), exc)
                    files = frozenset(pkg.files)
            changes.append(facts.PackageChange(pkg.name, str(pkg), action or facts.ERASE, files))
        return changes
