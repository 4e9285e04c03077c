"""gate.py: which transactions concern libvirt-units, decided without the core."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from libvirt_presets import gate
from libvirt_presets.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_plain_packages_do_not_concern_us():
    packages = [("bash", ["/usr/bin/bash", "/usr/share/doc/bash/README"]), ("coreutils", [])]
    assert gate.concerns(packages, set(gate.DEFAULT_TRIGGERS)) is None


@pytest.mark.parametrize("path", [
    "/usr/lib/systemd/system/virtqemud.service",
    "/lib/systemd/system/foo.socket",
    "/usr/lib/systemd/user/virtqemud-session.socket",
    "/usr/lib/systemd/system/libvirtd.service.d/50-drop.conf",
    "/usr/lib/systemd/system-preset/90-default.preset",
    "/etc/systemd/system/admin.service",
])
def test_any_systemd_file_concerns_us(path):
    assert "ships " + path in (gate.concerns([("pkg", ["/usr/bin/x", path])], set()) or "")


def test_triggers_by_name_and_by_file():
    triggers = {"libvirt-daemon-config-*", "/usr/share/qemu/firmware/*.json"}
    assert gate.concerns([("libvirt-daemon-config-network", [])], triggers)
    assert gate.concerns([("edk2-ovmf", ["/usr/share/qemu/firmware/60-ovmf.json"])], triggers)
    assert gate.concerns([("edk2-ovmf", ["/usr/share/edk2/README"])], triggers) is None


def test_plain_trigger_names_and_paths_match_without_fnmatch(monkeypatch):
    """Plain keys (the shipped ones are) are compared as strings: fnmatch would compile a
    regular expression for each, on every transaction."""
    monkeypatch.setattr(gate.fnmatch, "fnmatchcase", lambda *a: pytest.fail(f"fnmatch called: {a}"))
    triggers = {"libvirt-daemon-config-network", "/etc/qemu/firmware.json"}
    assert gate.concerns([("bash", ["/usr/bin/bash"])], triggers) is None
    assert gate.concerns([("libvirt-daemon-config-network", [])], triggers)
    assert gate.concerns([("qemu", ["/etc/qemu/firmware.json"])], triggers)


def test_trigger_patterns_are_a_superset_of_what_config_accepts(tmp_path):
    main = tmp_path / "libvirt-units.conf"
    main.write_text("[main]\nenabled = 1\n[triggers]\nqemu-kvm* = virtqemud.service\n"
                    "libvirt-daemon-config-network =\nbad key = x.service\n[ triggers ]\r\n/opt/x/* = a.service\n")
    drop = tmp_path / gate.DROPIN_DIR
    drop.mkdir()
    (drop / "10-a.conf").write_text("[policy]\nnot-a-trigger = reload\n[triggers]\nedk2-* = virtqemud.service\n")
    (drop / "README").write_text("[triggers]\nignored = x.service\n")
    files = gate.config_files(str(main))
    assert files == [str(main), str(drop / "10-a.conf")]
    patterns = gate.trigger_patterns(files)
    accepted = load_config(Path(p) for p in files).triggers
    assert set(accepted) <= patterns
    assert patterns == {*gate.DEFAULT_TRIGGERS, "qemu-kvm*", "bad key", "/opt/x/*", "edk2-*"}


def test_a_configuration_file_that_is_no_regular_file_is_unreadable(tmp_path):
    fifo = tmp_path / "libvirt-units.conf"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        gate.trigger_patterns([str(fifo)])
    assert gate.trigger_patterns([str(tmp_path / "absent.conf")]) == set(gate.DEFAULT_TRIGGERS)


def test_journal_pending(tmp_path):
    assert not gate.journal_pending(str(tmp_path))
    (tmp_path / gate.STATE_DIR).mkdir(parents=True)
    (tmp_path / gate.STATE_DIR / gate.PENDING).write_text("{}")
    assert gate.journal_pending(str(tmp_path))


def test_the_gate_imports_nothing_of_the_core():
    code = "import sys, libvirt_presets.gate; print(sorted(m for m in sys.modules if m.startswith('libvirt_presets')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['libvirt_presets', 'libvirt_presets.gate']"
