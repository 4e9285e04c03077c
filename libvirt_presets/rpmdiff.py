"""A transaction nobody described to us, read back from the rpmdb before and after it.

dnf 4 hands the plugin its package list; plain `rpm -U` and dnf5's actions plugin do not. There
the CLI records every installed NEVRA (with the ID of the rpm transaction that installed it) before
the transaction and compares after it: new NEVRAs came in, vanished ones went out, a NEVRA whose
install ID changed was reinstalled. Pure: the rpmdb reads are the caller's.
"""

from __future__ import annotations

from .facts import DOWNGRADE, ERASE, INSTALL, OBSOLETE, REINSTALL, UPGRADE, PackageChange

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, Optional, Tuple

    from .rpmdb import InstalledPackage

    EVR = Tuple[Optional[str], str, str]


def split_nevra(nevra: str) -> tuple[str, EVR, str]:
    """``name-[epoch:]version-release.arch`` -> (name, (epoch, version, release), arch)."""
    rest, _, arch = nevra.rpartition(".")
    name, version, release = rest.rsplit("-", 2)
    epoch: str | None = None
    if ":" in version:
        epoch, version = version.split(":", 1)
    return name, (epoch, version, release), arch


def rpm_compare(a: EVR, b: EVR) -> int:
    import rpm

    order: int = rpm.labelCompare(a, b)
    return order


def changes_between(
    before: Mapping[str, int],
    after: Mapping[str, int],
    arrived: Mapping[str, InstalledPackage],
    compare: Callable[[EVR, EVR], int] = rpm_compare,
) -> list[PackageChange]:
    """Package changes from two `rpmdb.installed_stamps()` maps.

    `arrived` holds the headers of the NEVRAs that are new or reinstalled in `after`. The kind of
    each incoming package follows from the packages that left: the same name (same arch first)
    makes an upgrade, downgrade or reinstall, a left name it obsoletes makes an obsolete, anything
    else an install. Outgoing packages carry no file list: their headers left the rpmdb with them.
    """
    left = sorted(n for n in before if n not in after)
    left_by_name: dict[str, list[tuple[str, EVR, str]]] = {}
    for nevra in left:
        name, evr, arch = split_nevra(nevra)
        left_by_name.setdefault(name, []).append((nevra, evr, arch))

    changes = []
    for nevra in sorted(arrived):
        pkg = arrived[nevra]
        if nevra in before:
            action = REINSTALL  # same NEVRA, new install ID (rpm --reinstall, -U --replacepkgs)
        else:
            olds = sorted(left_by_name.get(pkg.name, ()), key=lambda o: o[2] != pkg.arch)
            if olds:
                order = compare((pkg.epoch, pkg.version, pkg.release), olds[0][1])
                action = UPGRADE if order > 0 else DOWNGRADE if order < 0 else REINSTALL
            elif pkg.obsoletes & set(left_by_name):
                action = OBSOLETE
            else:
                action = INSTALL
        changes.append(PackageChange(pkg.name, nevra, action, pkg.files))
    changes += [PackageChange(split_nevra(n)[0], n, ERASE) for n in left]
    return changes
