"""Config parsing, unit-name grammar and scope matching."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from libvirt_presets.config import DEFAULT_POLICIES, Config, load_config, parse_config
from libvirt_presets.snapshot import take_snapshot
from libvirt_presets.units import SYSTEM, USER, Scope, UnitKey, is_valid_unit_name, parse_boolean, template_of


@pytest.mark.parametrize("name", [
    "libvirtd.service", "virtproxyd-tls.socket", "getty@tty1.service", "foo@.service",
    "a:b_c.d-e.socket", "-.mount",
])
def test_valid_unit_names(name):
    assert is_valid_unit_name(name) == (name != "-.mount")  # leading '-' is refused on purpose


@pytest.mark.parametrize("name", [
    "", "foo", "foo.txt", "a b.service", "x;rm -rf /.service", "$(id).service", "../x.service",
    "a/b.service", '"q".service', "-x.service", "x" * 300 + ".service", "@foo.service",
])
def test_hostile_unit_names_are_rejected(name):
    assert not is_valid_unit_name(name)


def test_template_of():
    assert template_of("getty@tty1.service") == "getty@.service"
    assert template_of("getty@.service") is None
    assert template_of("libvirtd.service") is None


def test_default_scope_is_the_libvirt_units():
    scope = Scope()
    for name in ("libvirtd.service", "virtproxyd.socket", "virtproxyd-tls.socket",
                 "virtlogd-admin.socket", "virtqemud-ro.socket", "libvirt-guests.service"):
        assert name in scope
    for name in ("sshd.service", "virtqemud-helper.service", "libvirt-dbus.service"):
        assert name not in scope
    assert UnitKey(USER, "virtqemud.socket") in scope


def test_star_manages_everything():
    cfg = parse_config("[main]\nunits = *\n", "t.conf")
    assert "sshd.service" in cfg.scope and cfg.problems == ()


def test_bad_lines_are_reported_with_file_and_line_and_defaults_kept():
    text = "\n".join([
        "[main]",
        "enabled = maybe",
        "colour = blue",
        "units = libvirtd.service bad$glob",
        "[policy]",
        "virtlogd.service = explode",
        "[triggers]",
        "libvirt-daemon-config-network = libvirtd.service 'x'",
        "garbage line",
    ])
    cfg = parse_config(text, "/etc/dnf/plugins/libvirt-units.conf")
    assert [p.split(":")[1] for p in cfg.problems] == ["2", "3", "4", "6", "8", "9"]
    assert all(p.startswith("/etc/dnf/plugins/libvirt-units.conf:") for p in cfg.problems)
    assert cfg.enabled is True and cfg.scope == Config().scope
    assert cfg.policy("virtlogd.service") == "reload"
    assert cfg.triggers == Config().triggers


def test_dropins_override_in_order(tmp_path):
    main = tmp_path / "libvirt-units.conf"
    main.write_text("[policy]\nvirtqemud.service = reload\n")
    d1 = tmp_path / "10-a.conf"
    d1.write_text("[policy]\nvirtqemud.service = never\nvirtlogd.service =\n"
                  "[main]\nextra_units = foo.service\n")
    cfg = load_config([main, d1, tmp_path / "missing.conf"])
    assert cfg.policy("virtqemud.service") == "never"
    assert "virtlogd.service" not in cfg.policies and cfg.policy("virtlogd.service") == "restart"
    assert "foo.service" in cfg.scope and "libvirtd.service" in cfg.scope
    assert set(DEFAULT_POLICIES) - set(cfg.policies) == {"virtlogd.service"}


def test_policy_exact_name_beats_glob():
    cfg = parse_config("[policy]\nvirt*.service = never\nvirtqemud.service = reload\n", "t")
    assert cfg.policy("virtqemud.service") == "reload"
    assert cfg.policy("virtnetworkd.service") == "never"


def test_snapshot_reads_units_and_links_and_survives_odd_entries(tmp_path):
    root = tmp_path
    sysdir = root / "usr/lib/systemd/system"
    sysdir.mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")  # merged /usr: read once
    (sysdir / "libvirtd.service").write_text("[Service]\n")
    (sysdir / "loop.service").symlink_to("loop.service")  # a symlink loop is still a unit name
    (sysdir / "not a unit").write_text("")
    (sysdir / "multi-user.target.wants").mkdir()
    wants = root / "etc/systemd/system/sockets.target.wants"
    wants.mkdir(parents=True)
    os.symlink("/usr/lib/systemd/system/libvirtd.socket", wants / "libvirtd.socket")
    os.symlink("/dev/null", root / "etc/systemd/system/virtproxyd.socket")
    snap = take_snapshot(root)
    assert set(snap.units) == {UnitKey(SYSTEM, "libvirtd.service"), UnitKey(SYSTEM, "loop.service")}
    assert snap.links == {
        "etc/systemd/system/sockets.target.wants/libvirtd.socket": "/usr/lib/systemd/system/libvirtd.socket",
        "etc/systemd/system/virtproxyd.socket": "/dev/null",
    }
    assert snap.problems == ()


def test_snapshot_of_missing_root_is_empty(tmp_path: Path):
    snap = take_snapshot(tmp_path / "nothing")
    assert snap.units == {} and snap.links == {}


@pytest.mark.parametrize("word, value", [("yes", True), ("Y", True), ("on", True), ("1", True), ("TRUE", True),
                                         ("no", False), ("off", False), ("F", False), ("0", False),
                                         ("maybe", None), ("", None), (" yes", None)])
def test_one_set_of_boolean_words_systemds(word, value):
    assert parse_boolean(word) is value
    assert parse_config(f"[main]\nguard = {word}\n", "t.conf").guard is (True if value is None else value)
