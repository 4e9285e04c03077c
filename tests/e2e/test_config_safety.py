"""Issue 15 item 1 end to end: nothing an admin writes in the configuration can break dnf.

dnf parses a plugin's ``<config_name>.conf`` itself, strictly, before any plugin runs: one line
its parser rejects stops every dnf command ("Parsing file failed"). libvirt-units.conf and its
drop-ins are therefore read by our own parser only (the plugin's ``config_name`` points dnf at a
file we do not ship). Each malformed variant below, in the main file or in a drop-in, goes
through the real dnf: the command succeeds, and the variant is reported as one warning naming
the file and the line wherever the configuration is read: a transaction that concerns managed
units, and the plugin's own command. A dnf command that concerns no unit (`repolist`) does not
read it at all (issue 16: the plugin's core is not even imported then).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.harness import PLUGIN_CONF_NAME, InstallRoot

BASE = "[main]\nenabled = 1\n"
# id -> (text appended after BASE, the 1-based line the warning must name)
MAIN_VARIANTS: dict[str, tuple[str, int]] = {
    "missing-equals": ("restarts yes\n", 3),
    "unclosed-section": ("[main\nguard = no\n", 3),
    "closing-bracket-twice": ("[main]]\n", 3),
    "duplicate-key": ("guard = yes\nguard = no\n", 4),
    "binary-junk": ("\x00\x01\x02\x7f\n", 3),
    "huge-line": ("units = " + "virtqemud.service " * 20_000 + "not/a/glob\n", 3),
    "unknown-key": ("colour = blue\n", 3),
    "unknown-section": ("[colours]\nred = 1\n", 3),
    "empty-key": ("= 1\n", 3),
    "bad-boolean": ("restarts = maybe\n", 3),
    "boolean-2": ("enabled = 2\n", 3),
    "value-with-inline-comment": ("guard = yes ; nope\n", 3),
    "equals-twice": ("guard = yes = no\n", 3),
    "interpolation": ("presets = %(enabled)s\n", 3),
    "shell-in-units": ("units = $(reboot).service\n", 3),
    "semicolon-in-units": ("extra_units = virtqemud.service;rm\n", 3),
    "path-in-units": ("extra_units = ../../etc/passwd\n", 3),
    "bad-glob": ("units = virt[qemud.service\n", 3),
    "policy-shell-name": ("[policy]\n$(reboot).service = reload\n", 4),
    "policy-backticks": ("[policy]\n`id`.service = never\n", 4),
    "policy-bad-value": ("[policy]\nvirtlogd.service = bounce\n", 4),
    "policy-space-in-name": ("[policy]\nvirt logd.service = reload\n", 4),
    "trigger-bad-service": ("[triggers]\nlibvirt-daemon = not a unit\n", 4),
    "trigger-shell-service": ("[triggers]\nlibvirt-daemon = $(id).service\n", 4),
    "trigger-pattern-with-space": ("[triggers]\nlib virt = libvirtd.service\n", 4),
    "setting-before-section": ("", 1),  # see PREFIXED
    "non-utf8": ("\udce9t\udce9 = 1\n", 3),
    "carriage-returns": ("guard = sometimes\r\n", 3),
    "nul-in-unit-name": ("[policy]\nvirt\x00logd.service = reload\n", 4),
    "very-long-key": ("k" * 5000 + " = 1\n", 3),
}
PREFIXED = {"setting-before-section": "guard = no\n"}  # before the [main] header
DROPIN_VARIANTS = ("missing-equals", "binary-junk", "unknown-section", "shell-in-units", "policy-bad-value")
TRANSACTION_VARIANTS = ("unclosed-section", "binary-junk", "huge-line", "policy-shell-name", "non-utf8")


def variant_text(name: str) -> str:
    extra, _ = MAIN_VARIANTS[name]
    return PREFIXED.get(name, "") + BASE + extra


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.fixture(scope="module")
def installed(classic_pool, tmp_path_factory) -> tuple[InstallRoot, Path]:
    base = tmp_path_factory.mktemp("config-safety")
    root = InstallRoot(base / "root", base / "home")
    root.setup(classic_pool)
    repo = classic_pool.make_repo(base / "repo", ["9.0.0", "9.1.0"])
    root.dnf("install", "libvirt-daemon-log-9.0.0", repo=repo, plugin=False)
    return root, repo


def conf_dir(tmp_path: Path, main: str | None, dropin: str | None = None) -> Path:
    directory = tmp_path / "pluginconf"
    shutil.rmtree(directory, ignore_errors=True)
    write(directory / PLUGIN_CONF_NAME, main if main is not None else BASE)
    if dropin is not None:
        write(directory / "libvirt-units.d" / "50-admin.conf", dropin)
    return directory


def dnf_with(root: InstallRoot, repo: Path, directory: Path, *args: str):
    return root.dnf(f"--setopt=pluginconfpath={directory}", *args, repo=repo, check=False)


@pytest.mark.parametrize("name", MAIN_VARIANTS)
def test_a_malformed_main_file_is_one_warning_and_dnf_works(installed, tmp_path, name):
    root, repo = installed
    directory = conf_dir(tmp_path, variant_text(name))
    result = dnf_with(root, repo, directory, "repolist")
    assert result.returncode == 0, result.output
    assert "Parsing file failed" not in result.output
    assert "libvirt-units" not in result.output, result.output  # not read: nothing to do
    status = dnf_with(root, repo, directory, "libvirt-units", "status")
    assert status.returncode == 0, status.output
    _, line = MAIN_VARIANTS[name]
    assert f"libvirt-units: {directory / PLUGIN_CONF_NAME}:{line}:" in status.output, status.output
    assert "Traceback" not in result.output + status.output


@pytest.mark.parametrize("name", DROPIN_VARIANTS)
def test_a_malformed_drop_in_is_one_warning_and_dnf_works(installed, tmp_path, name):
    root, repo = installed
    extra, line = MAIN_VARIANTS[name]
    directory = conf_dir(tmp_path, None, BASE + extra)
    result = dnf_with(root, repo, directory, "libvirt-units", "status")
    assert result.returncode == 0, result.output
    assert f"libvirt-units: {directory / 'libvirt-units.d' / '50-admin.conf'}:{line}:" in result.output


@pytest.mark.parametrize("name", TRANSACTION_VARIANTS)
def test_a_transaction_goes_through_a_malformed_configuration(installed, tmp_path, name):
    root, repo = installed
    directory = conf_dir(tmp_path, variant_text(name))
    upgrade = dnf_with(root, repo, directory, "upgrade", "libvirt-daemon-log")
    assert upgrade.returncode == 0, upgrade.output
    assert root.packages()["libvirt-daemon-log"] == "9.1.0"
    assert (root.path / "var/lib/dnf/libvirt-units/last-transaction.json").is_file()  # the plugin acted
    root.dnf("downgrade", "libvirt-daemon-log", repo=repo, plugin=False)


def test_check_reports_configuration_problems_and_exits_1(installed, tmp_path):
    root, repo = installed
    directory = conf_dir(tmp_path, variant_text("missing-equals"))
    result = dnf_with(root, repo, directory, "libvirt-units", "check")
    assert result.returncode == 1, result.output
    assert f"{directory / PLUGIN_CONF_NAME}:3:" in result.stdout
    assert "no problems found" not in result.output
