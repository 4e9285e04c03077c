"""File lists from the headers of downloaded package files, and the rpm transaction set that
reads them and the rpmdb.

A module of its own, with rpm imported when first needed: the dnf5 plugin reads the incoming
packages' headers before it knows whether a transaction concerns us (gate.py), and must not
load the core for that.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def transaction_set(root: str) -> Any:  # an rpm.TransactionSet: rpm has no type stubs
    """An rpm transaction set on `root` for reading headers and the rpmdb (rpm imported here,
    when first needed: dnf 4 has it loaded, dnf5's Python loader does not)."""
    import rpm

    ts = rpm.TransactionSet(root)
    # headers of downloaded packages were verified by dnf already; we only read file lists
    ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
    return ts


class HeaderReader:
    """File lists from package files' headers, through one rpm transaction set for all of them
    (a set per package cost ~20 ms per 500 packages)."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._ts: Any | None = None

    def files(self, package_file: str) -> frozenset[str]:
        import rpm

        if self._ts is None:
            self._ts = transaction_set(self._root)
        with open(package_file, "rb") as fd:
            hdr = self._ts.hdrFromFdno(fd.fileno())
        return frozenset(hdr[rpm.RPMTAG_FILENAMES])  # names only: no per-file info objects
