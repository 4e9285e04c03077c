"""host.is_live: the one definition of "the running host", decided as systemctl decides it."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from libvirt_presets import host


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """A fake machine: whether systemd booted it, and whether / is PID 1's root."""
    state = SimpleNamespace(booted=True, chroot=False, proc=True)
    real_stat, real_isdir = os.stat, os.path.isdir

    def stat(path, *args, **kwargs):
        if path == "/proc/1/root":
            if not state.proc:
                raise FileNotFoundError(path)
            return SimpleNamespace(st_dev=1, st_ino=2 if state.chroot else 1)
        if path == "/":
            return SimpleNamespace(st_dev=1, st_ino=1)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(host.os, "stat", stat)
    monkeypatch.setattr(host.os.path, "isdir",
                        lambda p: state.booted if p == "/run/systemd/system" else real_isdir(p))
    for name in ("SYSTEMD_OFFLINE", "SYSTEMD_IGNORE_CHROOT"):
        monkeypatch.delenv(name, raising=False)
    return state


def test_the_host_booted_with_systemd_is_live(machine):
    assert host.is_live(Path("/"))


def test_an_installroot_is_never_live(machine, tmp_path):
    assert not host.is_live(tmp_path)


def test_not_booted_with_systemd(machine):
    machine.booted = False
    assert not host.is_live(Path("/"))


@pytest.mark.parametrize("value", ["1", "yes", "true", "on"])
def test_systemd_offline_wins(machine, monkeypatch, value):
    monkeypatch.setenv("SYSTEMD_OFFLINE", value)
    assert not host.is_live(Path("/"))


def test_a_chroot_with_the_hosts_run_bound_in_is_not_live(machine):
    machine.chroot = True  # /run/systemd/system is there (bind mount), / is not PID 1's root
    assert not host.is_live(Path("/"))


def test_without_proc_nothing_says_live(machine):
    machine.proc = False
    assert not host.is_live(Path("/"))


def test_systemd_offline_0_and_ignore_chroot_force_online_as_for_systemctl(machine, monkeypatch):
    machine.chroot = True
    monkeypatch.setenv("SYSTEMD_IGNORE_CHROOT", "1")
    assert host.is_live(Path("/"))
    monkeypatch.delenv("SYSTEMD_IGNORE_CHROOT")
    monkeypatch.setenv("SYSTEMD_OFFLINE", "0")
    assert host.is_live(Path("/"))
