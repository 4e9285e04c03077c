"""`dnf libvirt-units` in process, as dnf-plugins-core tests its commands: dnf's own option
parser fills the command's options, then `configure()` runs against a stub cli."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("dnf", reason="dnf's Python bindings import only in Debian's /usr/bin/python3")
import dnf.cli.demand
import dnf.cli.option_parser

PLUGIN = Path(__file__).resolve().parents[2] / "dnf-plugins" / "libvirt_units.py"


@pytest.fixture(scope="module")
def command_class():
    spec = importlib.util.spec_from_file_location("libvirt_units_plugin", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LibvirtUnitsCommand


def configured(command_class, args: list[str]):
    """dnf-plugins-core's support.command_configure: parse with dnf's parser, configure."""
    conf = SimpleNamespace(cacheonly=False, optional_metadata_types=[], installroot="/", pluginconfpath=[])
    cli = SimpleNamespace(demands=dnf.cli.demand.DemandSheet(), base=SimpleNamespace(conf=conf))
    cmd = command_class(cli)
    parser = dnf.cli.option_parser.OptionParser()
    argv = ["libvirt-units", *args]
    parser.parse_main_args(argv)
    parser.parse_command_args(cmd, argv)
    cmd.configure()
    return cmd


@pytest.mark.parametrize("args", [
    ["--dry-run"], ["--dry-run", "upgrade"], ["--dry-run", "upgrade", "libvirt-daemon"],
    ["--dry-run", "install", "libvirt-daemon-proxy"], ["--dry-run", "remove", "libvirt-daemon-proxy", "--json"],
    ["status"], ["status", "--json"], ["check"], ["last", "--json"], ["resume"], ["resume", "--json"],
])
def test_valid_invocations_configure(command_class, args):
    cmd = configured(command_class, args)
    assert cmd.cli.demands.sack_activation
    assert cmd.cli.demands.root_user == (cmd.opts.subcommand == "resume")


@pytest.mark.parametrize("args, message", [
    (["--dry-run", "status"], "--dry-run plans a transaction (upgrade, install, remove), not 'status'"),
    (["--dry-run", "resume"], "not 'resume'"),
    (["status", "libvirt-daemon"], "'status' takes no package"),
    (["check", "x"], "'check' takes no package"),
    (["--dry-run", "install"], "'--dry-run install' needs the packages to install"),
    (["remove"], "'--dry-run remove' needs the packages to remove"),
    ([], "say --dry-run [upgrade|install|remove PKG...], status, check, last or resume"),
])
def test_invalid_combinations_are_refused_before_anything_runs(command_class, args, message):
    with pytest.raises(dnf.cli.CliError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        configured(command_class, args)


def test_a_subcommand_that_is_none_of_ours_is_a_usage_error(command_class):
    with pytest.raises(SystemExit):
        configured(command_class, ["frobnicate"])
