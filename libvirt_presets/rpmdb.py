"""Facts from rpm's database: who owns a unit file before the transaction, what is installed.

File lists come from rpm headers (the rpmdb here; downloaded package files through
headers.HeaderReader), never from repository metadata: dnf >= 4.19 no longer loads filelists by
default.
"""

from __future__ import annotations

import os

from .records import Record
from .units import UnitKey

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

    from .host import Root

_set = object.__setattr__


def _ts(root: Root) -> Any:  # an rpm.TransactionSet: rpm has no type stubs
    from .headers import transaction_set  # not when dnf lends its own set (owners_and_cookie)

    return transaction_set(os.fspath(root))


def database_path(root: Root) -> str | None:
    """Where rpm keeps the database of `root` (its %_dbpath below the root), or None when there
    is none: a root without one is no rpm system (a typo in --root, an empty directory)."""
    import rpm

    path = os.path.join(root, rpm.expandMacro("%{_dbpath}").lstrip("/"))
    names = ("rpmdb.sqlite", "Packages", "Packages.db")
    return path if any(os.path.isfile(os.path.join(path, name)) for name in names) else None


def nevra(hdr: Any) -> str:  # an rpm.hdr
    epoch = hdr["epoch"]
    evr = f"{epoch}:" if epoch else ""
    return f"{hdr['name']}-{evr}{hdr['version']}-{hdr['release']}.{hdr['arch'] or 'noarch'}"


def owners(root: Root, units: dict[UnitKey, str]) -> dict[UnitKey, str]:
    """Owning package (NEVRA) of each unit file, looked up in the root's rpmdb."""
    if not units:
        return {}
    return owners_and_cookie(root, units)[0]


def owners_and_cookie(root: Root, units: dict[UnitKey, str],
                      ts: Any | None = None) -> tuple[dict[UnitKey, str], str | None]:
    """owners() and cookie() with one opening of the database: begin() needs both.

    `ts` may be a transaction set whose database is open already (dnf 4's own at
    pre_transaction): it saves the opening, and its erase elements are installed packages whose
    headers rpm has read already. It is only read from (no flag set, no iterator left open).
    Without it, or if its database is not open, one is opened here.
    """
    if ts is not None:
        cookie: str | None = ts.dbCookie()  # None: its database is not open
        if cookie is not None:
            return _owners(ts, units, _erased(ts)), cookie
    ts = _ts(root)
    try:
        ts.openDB()
        return _owners(ts, units, {}), ts.dbCookie()
    finally:
        ts.closeDB()


# file -> (instance, NEVRA) of the package with the lowest rpmdb instance (header number) among
# those whose headers were read that list the file
if TYPE_CHECKING:
    Listed = dict[str, tuple[int, str]]


def _owners(ts: Any, units: dict[UnitKey, str], listed: Listed) -> dict[UnitKey, str]:
    """The owner of each unit file, with one rpmdb lookup per owning package rather than per unit
    (~0.4 M instructions each: rpm reads the header twice and builds a fingerprint cache): the
    header found for one unit lists the package's other units. rpm answers a file query with the
    owner of the lowest instance, and so do we among the packages read; the two differ only for
    a unit file that a package not read owns too, with a lower instance."""
    import rpm

    found: dict[UnitKey, str] = {}
    rest: dict[UnitKey, tuple[str, ...]] = {}
    for key, rel in units.items():
        variants = tuple(_path_variants("/" + rel))
        if any(path in listed for path in variants):
            rest[key] = variants
            continue
        for path in variants:
            hit = _first_owner(ts, path)
            if hit is not None:
                instance, hdr = hit
                found[key] = nevra(hdr)
                _list(listed, instance, found[key], hdr[rpm.RPMTAG_FILENAMES])
                break
    for key, variants in rest.items():  # after all lookups: the lowest instance among all read
        found[key] = next(listed[path][1] for path in variants if path in listed)
    return found


def _first_owner(ts: Any, path: str) -> tuple[int, Any] | None:
    """rpm's first answer to "who owns `path`" (instance, header); the iterator ends here."""
    mi = ts.dbMatch("basenames", path)
    for hdr in mi:
        return mi.instance(), hdr
    return None


def _list(listed: Listed, instance: int, owner: str, files: Iterable[str]) -> None:
    for name in files:
        if name not in listed or instance < listed[name][0]:
            listed[name] = (instance, owner)


def _erased(ts: Any) -> Listed:
    """The files of a transaction set's erase elements (installed packages, read by rpm)."""
    import rpm

    listed: Listed = {}
    for te in ts:  # to the end: rpm's set keeps one iterator, which ends reset
        if te.Type() == rpm.TR_REMOVED:
            files = te.Files()
            _list(listed, te.DBOffset(), _te_nevra(te), () if files is None else (f.name for f in files))
    return listed


def _te_nevra(te: Any) -> str:  # an rpm.te: nevra() of its header, which Python cannot reach
    epoch = te.E()
    evr = f"{epoch}:" if epoch and epoch != "0" else ""
    return f"{te.N()}-{evr}{te.V()}-{te.R()}.{te.A() or 'noarch'}"


def _path_variants(path: str) -> Iterable[str]:
    """A merged-/usr root has one file that packages may list under /lib or /usr/lib."""
    yield path
    if path.startswith("/usr/lib/"):
        yield path[len("/usr"):]
    elif path.startswith("/lib/"):
        yield "/usr" + path


def cookie(root: Root) -> str | None:
    """rpm's database cookie: it changes whenever rpm changes the database."""
    ts = _ts(root)
    try:
        ts.openDB()
        value: str | None = ts.dbCookie()
        return value
    finally:
        ts.closeDB()


def installed_nevras(root: Root) -> set[str]:
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


def installed_stamps(root: Root) -> dict[str, int]:
    """Every installed package: NEVRA -> the ID of the rpm transaction that installed it.

    A reinstall keeps the NEVRA and changes the ID, so two of these maps tell installs,
    erasures and reinstalls apart without a list of the transaction's packages.
    """
    ts = _ts(root)
    try:
        return {nevra(hdr): int(hdr["installtid"] or 0) for hdr in ts.dbMatch()}
    finally:
        ts.closeDB()


def installed_packages(root: Root, nevras: Iterable[str]) -> dict[str, InstalledPackage]:
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
