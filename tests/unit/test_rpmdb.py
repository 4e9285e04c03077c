"""rpmdb._owners reads one header per owning package: against one query per unit file (the
lookup it replaced) over a fake rpmdb that answers as rpm does, lowest instance first."""

from __future__ import annotations

import rpm
from hypothesis import given
from hypothesis import strategies as st

from libvirt_presets import rpmdb
from libvirt_presets.units import SYSTEM, UnitKey

DIRS = ("/usr/lib/systemd/system/", "/lib/systemd/system/", "/etc/systemd/system/")
FILES = [d + n for d in DIRS for n in ("a.service", "b.socket", "c.service", "d.timer")]


class Header(dict):
    pass


class Iterator:
    def __init__(self, hits: list[tuple[int, Header]]) -> None:
        self._hits = iter(hits)
        self._instance = 0

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Header:
        self._instance, hdr = next(self._hits)
        return hdr

    def instance(self) -> int:
        return self._instance


class FakeDb:
    """Installed packages by instance; a file query matches either merged-/usr spelling."""

    def __init__(self, packages: dict[int, Header]) -> None:
        self.packages = packages
        self.queries = 0

    def dbMatch(self, tag: str, path: str) -> Iterator:  # rpm's name
        assert tag == "basenames"
        self.queries += 1
        same = set(rpmdb._path_variants(path)) | {path}
        return Iterator([(i, h) for i, h in sorted(self.packages.items())
                         if same & set(h[rpm.RPMTAG_FILENAMES])])


def header(name: str, files: list[str]) -> Header:
    return Header({"name": name, "epoch": None, "version": "1", "release": "1", "arch": "noarch",
                   rpm.RPMTAG_FILENAMES: files})


def naive(db: FakeDb, units: dict[UnitKey, str]) -> dict[UnitKey, str]:
    found = {}
    for key, rel in units.items():
        for path in rpmdb._path_variants("/" + rel):
            for hdr in db.dbMatch("basenames", path):
                found[key] = rpmdb.nevra(hdr)
                break
            if key in found:
                break
    return found


def canonical(path: str) -> str:
    return path.removeprefix("/usr")


@st.composite
def databases(draw: st.DrawFn) -> tuple[FakeDb, dict[UnitKey, str]]:
    files = draw(st.lists(st.sampled_from(FILES), unique=True, min_size=1))
    # one owner per file (4: none); a merged-/usr root has one file under either spelling
    owner = {f: draw(st.integers(0, 4)) for f in sorted({canonical(f) for f in files})}
    owner = {f: owner[canonical(f)] for f in files}
    instances = draw(st.permutations(range(1, 5)))
    packages = {instances[n]: header(f"p{n}", [f for f in files if owner[f] == n]) for n in range(4)}
    units = {UnitKey(SYSTEM, f"u{i}"): f.lstrip("/") for i, f in enumerate(draw(st.permutations(files)))}
    return FakeDb(packages), units


@given(databases())
def test_one_header_per_owning_package_gives_the_answers_of_one_query_per_unit(case):
    db, units = case
    expected = naive(db, units)
    db.queries = 0
    assert rpmdb._owners(db, units, {}) == expected
    assert db.queries <= len(set(expected.values())) + 2 * (len(units) - len(expected))


def test_a_file_owned_twice_goes_to_the_lowest_instance_among_the_packages_read():
    """The one divergence (rpmdb._owners): b.service, which `late` lists, is answered from the
    header of `late` read for a.service; rpm would name `early`, which was not read."""
    a, b = UnitKey(SYSTEM, "a.service"), UnitKey(SYSTEM, "b.service")
    units = {a: "usr/lib/systemd/system/a.service", b: "usr/lib/systemd/system/b.service"}
    db = FakeDb({7: header("late", ["/" + units[a], "/" + units[b]]), 3: header("early", ["/" + units[b]])})
    assert naive(db, units) == {a: "late-1-1.noarch", b: "early-1-1.noarch"}
    assert rpmdb._owners(db, units, {}) == {a: "late-1-1.noarch", b: "late-1-1.noarch"}
    # in the other order both headers are read: the answers are rpm's, whatever the order
    assert rpmdb._owners(db, {b: units[b], a: units[a]}, {}) == naive(db, units)
    read = {"/" + units[b]: (3, "early-1-1.noarch")}  # e.g. `early` is erased by the transaction
    assert rpmdb._owners(db, units, read) == naive(db, units)
