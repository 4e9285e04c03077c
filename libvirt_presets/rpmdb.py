"""Facts from rpm's database: who owns a unit file before the transaction, what is installed.

File lists come from rpm headers (the rpmdb here; downloaded package files through
headers.HeaderReader), never from repository metadata: dnf >= 4.19 no longer loads filelists by
default.
"""

from __future__ import annotations

from pathlib import Path

from .headers import transaction_set
from .records import Record
from .units import UnitKey

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

_set = object.__setattr__


def _ts(root: Path) -> Any:  # an rpm.TransactionSet: rpm has no type stubs
    return transaction_set(str(root))


def database_path(root: Path) -> Path | None:
    """Where rpm keeps the database of `root` (its %_dbpath below the root), or None when there
    is none: a root without one is no rpm system (a typo in --root, an empty directory)."""
    import rpm

    path = root / rpm.expandMacro("%{_dbpath}").lstrip("/")
    names = ("rpmdb.sqlite", "Packages", "Packages.db")
    return path if any((path / name).is_file() for name in names) else None


def nevra(hdr: Any) -> str:  # an rpm.hdr
    epoch = hdr["epoch"]
    evr = f"{epoch}:" if epoch else ""
    return f"{hdr['name']}-{evr}{hdr['version']}-{hdr['release']}.{hdr['arch'] or 'noarch'}"


def owners(root: Path, units: dict[UnitKey, str]) -> dict[UnitKey, str]:
    """Owning package (NEVRA) of each unit file, looked up in the root's rpmdb."""
    if not units:
        return {}
    return owners_and_cookie(root, units)[0]


def owners_and_cookie(root: Path, units: dict[UnitKey, str]) -> tuple[dict[UnitKey, str], str | None]:
    """owners() and cookie() with one opening of the database: begin() needs both."""
    found: dict[UnitKey, str] = {}
    ts = _ts(root)
    try:
        ts.openDB()
        for key, rel in units.items():
            for path in _path_variants("/" + rel):
                for hdr in ts.dbMatch("basenames", path):
                    found[key] = nevra(hdr)
                    break
                if key in found:
                    break
        return found, ts.dbCookie()
    finally:
        ts.closeDB()


def _path_variants(path: str) -> Iterable[str]:
    """A merged-/usr root has one file that packages may list under /lib or /usr/lib."""
    yield path
    if path.startswith("/usr/lib/"):
        yield path[len("/usr"):]
    elif path.startswith("/lib/"):
        yield "/usr" + path


def cookie(root: Path) -> str | None:
    """rpm's database cookie: it changes whenever rpm changes the database."""
    ts = _ts(root)
    try:
        ts.openDB()
        value: str | None = ts.dbCookie()
        return value
    finally:
        ts.closeDB()


def installed_nevras(root: Path) -> set[str]:
    ts = _ts(root)
    try:
        return {nevra(hdr) for hdr in ts.dbMatch()}
    finally:
        ts.closeDB()


class InstalledPackage(Record):
    """One package as the rpmdb holds it (for transactions nobody described to us)."""

    __slots__ = ("name", "nevra", "epoch", "version", "release", "arch", "files", "obsoletes")
    name: str
    nevra: str
    epoch: str | None
    version: str
    release: str
    arch: str
    files: frozenset[str]
    obsoletes: frozenset[str]  # names this package obsoletes

    def __init__(self, name: str, nevra: str, epoch: str | None, version: str, release: str, arch: str,
                 files: frozenset[str], obsoletes: frozenset[str]) -> None:
        _set(self, "name", name)
        _set(self, "nevra", nevra)
        _set(self, "epoch", epoch)
        _set(self, "version", version)
        _set(self, "release", release)
        _set(self, "arch", arch)
        _set(self, "files", files)
        _set(self, "obsoletes", obsoletes)


def installed_stamps(root: Path) -> dict[str, int]:
    """Every installed package: NEVRA -> the ID of the rpm transaction that installed it.

    A reinstall keeps the NEVRA and changes the ID, so two of these maps tell installs,
    erasures and reinstalls apart without a list of the transaction's packages.
    """
    ts = _ts(root)
    try:
        return {nevra(hdr): int(hdr["installtid"] or 0) for hdr in ts.dbMatch()}
    finally:
        ts.closeDB()


def installed_packages(root: Path, nevras: Iterable[str]) -> dict[str, InstalledPackage]:
    """The installed packages among `nevras`, with their file lists from the rpmdb headers."""
    import rpm

    wanted = set(nevras)
    found: dict[str, InstalledPackage] = {}
    if not wanted:
        return found
    ts = _ts(root)
    try:
        for name in sorted({n.rsplit("-", 2)[0] for n in wanted}):  # versions hold no "-"
            for hdr in ts.dbMatch("name", name):
                key = nevra(hdr)
                if key in wanted:
                    epoch = hdr["epoch"]
                    found[key] = InstalledPackage(
                        hdr["name"], key, None if epoch is None else str(epoch), hdr["version"],
                        hdr["release"], hdr["arch"] or "noarch", frozenset(hdr[rpm.RPMTAG_FILENAMES]),
                        frozenset(hdr["obsoletename"] or ()))
    finally:
        ts.closeDB()
    return found
