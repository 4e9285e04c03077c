"""Restart markers: the decision table, the parser, and the converter over a fake systemctl."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from libvirt_presets import guards
from libvirt_presets.config import Config, config_paths, parse_config
from libvirt_presets.markers import (
    MarkerSystemctl,
    UnitMarks,
    convert_restart_markers,
    parse_marks,
    plan_marker_changes,
)
from libvirt_presets.systemctl import UNMARK

RESTART_MARK = UnitMarks(frozenset({"needs-restart"}))


@pytest.mark.parametrize("unit,marks,guarded,expected", [
    # reload policy (default for virtlogd/virtlockd): unmarked; reloaded here unless guarded
    ("virtlogd.service", {"needs-restart"}, False, ("virtlogd.service", True)),
    ("virtlogd.service", {"needs-restart"}, True, ("virtlogd.service", False)),
    # needs-reload too: --marked restarts those on systemd < 255
    ("virtlockd.service", {"needs-reload"}, False, ("virtlockd.service", True)),
    ("virtlockd.service", {"needs-reload", "needs-restart"}, True, ("virtlockd.service", False)),
    # never policy: unmarked, not reloaded
    ("libvirt-guests.service", {"needs-restart"}, False, ("libvirt-guests.service", False)),
    # restart policy: left to systemd; nothing marked: nothing to do
    ("libvirtd.service", {"needs-restart"}, False, None),
    ("virtlogd.service", set(), False, None),
])
def test_plan_marker_changes(unit, marks, guarded, expected):
    changes = plan_marker_changes({unit: UnitMarks(frozenset(marks))}, Config(), {unit} if guarded else set())
    assert [(c.unit, c.reload) for c in changes] == ([expected] if expected else [])


def test_policy_from_the_configuration_decides():
    config = parse_config("[policy]\nvirtlogd.service =\nvirtqemud.service = reload\n", "t.conf")
    marks = {"virtlogd.service": RESTART_MARK, "virtqemud.service": RESTART_MARK}
    assert [c.unit for c in plan_marker_changes(marks, config, ())] == ["virtqemud.service"]


def test_parse_marks():
    text = ("Id=virtlogd.service\nMarkers=needs-restart needs-reload\nNeedDaemonReload=yes\n\n"
            "NeedDaemonReload=no\nMarkers=\nId=virtlockd.service\n")
    assert parse_marks(text) == {
        "virtlogd.service": UnitMarks(frozenset({"needs-restart", "needs-reload"}), True),
        "virtlockd.service": UnitMarks(frozenset(), False),
    }


class FakeSystemctl(MarkerSystemctl):
    """Answers `show` from a table and records every call instead of running systemctl."""

    def __init__(self, root: Path, table: dict[str, str], fail: tuple[str, ...] = ()) -> None:
        super().__init__(root, binary="systemctl")
        self.table, self.fail = table, fail

    def _live(self, *args: str, units=()):
        argv = [*args, *units]
        self.calls.append(argv)
        if args[0] == "show":
            out = "\n\n".join(f"Id={u}\nMarkers={self.table.get(u, '')}\nNeedDaemonReload=no" for u in units)
            return subprocess.CompletedProcess(argv, 0, out, "")
        rc = 1 if any(f in argv for f in self.fail) else 0
        return subprocess.CompletedProcess(argv, rc, "", "boom" if rc else "")


def unit_root(tmp_path: Path, *names: str) -> Path:
    unit_dir = tmp_path / "usr/lib/systemd/system"
    unit_dir.mkdir(parents=True)
    for name in names:
        (unit_dir / name).write_text("[Service]\nExecStart=/bin/true\n")
    return tmp_path


def test_converter_unmarks_and_reloads_once(tmp_path):
    root = unit_root(tmp_path, "virtlogd.service", "virtlockd.service", "libvirtd.service",
                     "libvirt-guests.service", "unrelated.service")
    guards.place(root, ["virtlockd.service"])  # the dnf plugin runs this transaction for virtlockd
    fake = FakeSystemctl(root, {"virtlogd.service": "needs-restart", "virtlockd.service": "needs-restart",
                                "libvirt-guests.service": "needs-restart"})
    assert convert_restart_markers(Config(), root, fake, live=True) == [
        "libvirt-guests.service", "virtlockd.service", "virtlogd.service"]
    assert fake.calls == [
        # restart-policy libvirtd is not even asked about; unmanaged units neither
        ["show", "-p", "Id,Markers,NeedDaemonReload", "libvirt-guests.service", "virtlockd.service",
         "virtlogd.service"],
        ["set-property", "--", "libvirt-guests.service", f"Markers={UNMARK}"],
        ["set-property", "--", "virtlockd.service", f"Markers={UNMARK}"],
        ["set-property", "--", "virtlogd.service", f"Markers={UNMARK}"],
        ["try-reload-or-restart", "virtlogd.service"],  # guarded virtlockd: the plugin reloads it
    ]


def test_converter_does_nothing_when_nothing_is_marked_or_not_live(tmp_path):
    root = unit_root(tmp_path, "virtlogd.service")
    fake = FakeSystemctl(root, {})
    assert convert_restart_markers(Config(), root, fake, live=True) == []
    assert [c[0] for c in fake.calls] == ["show"]
    fake = FakeSystemctl(root, {"virtlogd.service": "needs-restart"})
    assert convert_restart_markers(Config(), root, fake, live=False) == []
    assert convert_restart_markers(parse_config("[main]\nenabled = 0\n", "t"), root, fake, live=True) == []
    assert fake.calls == []


def test_a_unit_that_cannot_be_unmarked_is_not_reloaded(tmp_path):
    root = unit_root(tmp_path, "virtlogd.service", "virtlockd.service")
    fake = FakeSystemctl(root, {"virtlogd.service": "needs-restart", "virtlockd.service": "needs-restart"},
                         fail=("virtlogd.service",))
    assert convert_restart_markers(Config(), root, fake, live=True) == ["virtlockd.service"]
    assert fake.calls[-1] == ["try-reload-or-restart", "virtlockd.service"]


def test_config_paths_read_the_drop_ins_in_order(tmp_path):
    (tmp_path / "libvirt-units.d").mkdir()
    for name in ("b.conf", "a.conf", "c.txt"):
        (tmp_path / "libvirt-units.d" / name).write_text("")
    names = [os.path.basename(p) for p in config_paths(tmp_path / "libvirt-units.conf")]
    assert names == ["libvirt-units.conf", "a.conf", "b.conf"]
