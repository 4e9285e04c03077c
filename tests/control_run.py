"""Run plugin tests as their own control: every dnf the harnesses start gets ``--noplugins``.

    /usr/bin/python3 -m pytest -p tests.control_run tests/e2e/test_presets.py -k plugin

A plugin test that still passes here proves nothing about the plugin: its asserts hold for the
stock scriptlets alone. Such a test must say why (tests/README.md, "Checking that a test can
fail"). Only dnf's plugin switch is changed; the standalone ``libvirt-units`` command (plain
rpm, dnf5) is not a dnf plugin and is left alone.
"""

from __future__ import annotations

import functools

import pytest

from tests.e2e.guest import GuestDnf
from tests.e2e.harness import InstallRoot


def _without_plugin(dnf):  # wraps a harness's dnf method
    @functools.wraps(dnf)
    def control(self, *args, plugin: bool = True, **kwargs):
        return dnf(self, *args, plugin=False, **kwargs)

    return control


def pytest_configure(config: pytest.Config) -> None:
    InstallRoot.dnf = _without_plugin(InstallRoot.dnf)
    GuestDnf.dnf = _without_plugin(GuestDnf.dnf)


def pytest_report_header(config: pytest.Config) -> str:
    return "control run: every dnf runs with --noplugins (tests.control_run)"
