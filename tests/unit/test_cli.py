"""The standalone command: its parser against the man pages, the dnf5 actions file, reading a
transaction back from two rpmdb maps, and the journal field the snapshot adds."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from libvirt_presets import cli, journal
from libvirt_presets.config import config_paths
from libvirt_presets.facts import DOWNGRADE, ERASE, INSTALL, OBSOLETE, REINSTALL, UPGRADE
from libvirt_presets.rpmdb import InstalledPackage
from libvirt_presets.rpmdiff import changes_between, split_nevra

REPO_ROOT = Path(__file__).resolve().parents[2]
MAN_CLI = (REPO_ROOT / "doc" / "libvirt-units.8.rst").read_text()
MAN_DNF4 = (REPO_ROOT / "doc" / "dnf4-libvirt-units.8.rst").read_text()
ACTIONS = REPO_ROOT / "etc" / "dnf" / "libdnf5-plugins" / "actions.d" / "libvirt-units.actions"


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}


def section(text: str, title: str) -> str:
    """One section of a reStructuredText man page (TITLE underlined with '=')."""
    match = re.search(rf"^{title}\n=+\n(.*?)(?=^\S[^\n]*\n=+\n|\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, title
    return match.group(1)


# --- help texts and man pages -------------------------------------------------------------------

def test_every_subcommand_and_option_is_in_the_man_page():
    subs = subparsers(cli.build_parser())
    assert list(subs) == ["snapshot", "apply", "status", "check", "resume", "last", "plan"]
    synopsis, commands, options = (section(MAN_CLI, t) for t in ("SYNOPSIS", "SUBCOMMANDS", "OPTIONS"))
    for name, sub in subs.items():
        line = next(x for x in synopsis.splitlines() if f"libvirt-units {name} " in x)
        assert f"``{name}``" in commands
        for opt in option_strings(sub):
            assert opt in line or opt in ("-q", "--quiet", "-v", "--verbose"), (name, opt)
            assert f"``{opt}" in options, opt
    assert "``--version``" in options and "-q|-v" in synopsis


def test_every_option_in_the_man_page_exists_in_the_parser():
    subs = subparsers(cli.build_parser())
    known = set().union(*(option_strings(s) for s in subs.values())) | {"--version"}
    documented = set(re.findall(r"``(--?[a-z][a-z-]*)", section(MAN_CLI, "OPTIONS")))
    assert documented == known


def test_help_names_each_subcommand_with_the_man_page_summary_words():
    text = cli.build_parser().format_help()
    for name in cli.SUBCOMMANDS:
        assert name in text
    assert "libvirt-units(8)" in text


def test_dnf4_man_page_matches_the_dnf_command():
    pytest.importorskip("dnf")
    sys.path.insert(0, str(REPO_ROOT / "dnf-plugins"))
    try:
        import libvirt_units
    finally:
        sys.path.pop(0)
    parser = argparse.ArgumentParser()
    libvirt_units.LibvirtUnitsCommand.set_argparser(parser)
    [sub] = [a for a in parser._actions if a.dest == "subcommand"]
    synopsis, commands = section(MAN_DNF4, "SYNOPSIS"), section(MAN_DNF4, "SUBCOMMANDS")
    for choice in sub.choices:
        assert choice in synopsis or f"\n``{choice}``\n" in commands, choice
    for opt in option_strings(parser):
        assert opt in MAN_DNF4, opt


def rpm_root(tmp_path: Path) -> Path:
    """A root with an (empty) rpm database where rpm looks for one."""
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["rpm", f"--root={root}", "--initdb"], check=True)
    return root


def test_exit_codes(tmp_path, capsys):
    root = rpm_root(tmp_path)
    (tmp_path / "none.conf").write_text("")
    assert cli.main(["check", "--root", str(root), "--config", str(tmp_path / "none.conf")]) == 0
    assert capsys.readouterr().out.strip() == "no problems found"
    with pytest.raises(SystemExit) as usage:
        cli.main(["frobnicate"])
    assert usage.value.code == 2


@pytest.mark.parametrize("args, message", [
    (["status", "--root", "{tmp}/missing"], "argument --root: {tmp}/missing: not a directory"),
    (["status", "--root", ""], "argument --root: empty: give the directory of the system to act on"),
    (["check", "--root", "{tmp}"], "libvirt-units: error: --root {tmp} has no rpm database (rpm's %_dbpath "
                                   "below it): not an rpm system"),
    (["status", "--root", "{root}", "--config", "/nonexistent.conf"],
     "libvirt-units: error: --config /nonexistent.conf: no such file"),
])
def test_bad_invocations_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    root = rpm_root(tmp_path)
    argv = [a.format(tmp=tmp_path, root=root) for a in args]
    try:
        code = cli.main(argv)
    except SystemExit as usage:  # argparse's own errors: usage, then the one line
        code = usage.code
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message.format(tmp=tmp_path))


@pytest.mark.parametrize("subcommand", ["snapshot", "apply", "resume"])
def test_commands_that_change_the_system_say_root_is_needed(tmp_path, capsys, monkeypatch, subcommand):
    root = rpm_root(tmp_path)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main([subcommand, "--root", str(root)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"libvirt-units: error: 'libvirt-units {subcommand}' changes the system: it must be run as root")


def test_python_m_runs_the_command_without_importing_dnf(tmp_path):
    """`python3 -m libvirt_presets` is the command, and nothing in it needs dnf."""
    blocker = tmp_path / "block" / "dnf"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('libvirt-units imported dnf')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'block'}:{REPO_ROOT}"}
    version = subprocess.run([sys.executable, "-m", "libvirt_presets", "--version"], env=env,
                             capture_output=True, text=True, check=True)
    assert version.stdout.startswith("libvirt-units ")
    root = rpm_root(tmp_path)
    check = subprocess.run([sys.executable, "-m", "libvirt_presets", "check", "--root", str(root)],
                           env=env, capture_output=True, text=True)
    assert check.returncode == 0 and "imported dnf" not in check.stderr, check.stderr


def test_config_files_are_the_main_file_then_drop_ins_in_name_order(tmp_path):
    drop = tmp_path / "libvirt-units.d"
    drop.mkdir()
    for name in ("20-b.conf", "10-a.conf", "ignored.txt"):
        (drop / name).write_text("")
    main = tmp_path / "libvirt-units.conf"
    assert config_paths(main) == [str(main), str(drop / "10-a.conf"), str(drop / "20-b.conf")]


# --- dnf5 actions file ----------------------------------------------------------------------

def test_actions_file_runs_snapshot_before_and_apply_after_on_the_host_only():
    lines = [x for x in ACTIONS.read_text().splitlines() if x.strip() and not x.startswith("#")]
    actions = [line.split(":", 4) for line in lines]
    assert [(a[0], a[1], a[2], a[3]) for a in actions] == [
        ("pre_transaction", "", "", "enabled=host-only"), ("post_transaction", "", "", "enabled=host-only")]
    commands = [a[4].split() for a in actions]
    assert commands == [["/usr/bin/libvirt-units", "snapshot"], ["/usr/bin/libvirt-units", "apply"]]
    spec = (REPO_ROOT / "libvirt-units.spec").read_text()
    assert "%{_bindir}/libvirt-units\n" in spec  # where the actions expect the command


# --- a transaction read back from the rpmdb ---------------------------------------------------

def pkg(nevra: str, files: tuple[str, ...] = (), obsoletes: tuple[str, ...] = ()) -> InstalledPackage:
    name, (epoch, version, release), arch = split_nevra(nevra)
    return InstalledPackage(name, nevra, epoch, version, release, arch, frozenset(files), frozenset(obsoletes))


def test_split_nevra():
    assert split_nevra("libvirt-daemon-9.1.0-1.fc41.x86_64") == ("libvirt-daemon", (None, "9.1.0", "1.fc41"), "x86_64")
    assert split_nevra("qemu-kvm-2:8.2.0-3.el9.noarch") == ("qemu-kvm", ("2", "8.2.0", "3.el9"), "noarch")


def test_changes_between_classifies_every_kind():
    pytest.importorskip("rpm")
    before = {"a-1.0-1.noarch": 1, "b-2.0-1.noarch": 1, "c-1.0-1.noarch": 1, "old-1-1.noarch": 1,
              "gone-1-1.noarch": 1, "same-1-1.noarch": 1}
    after = {"a-1.1-1.noarch": 2, "b-1.9-1.noarch": 2, "c-1.0-1.noarch": 2, "new-1-1.noarch": 2,
             "fresh-1-1.noarch": 2, "same-1-1.noarch": 1}
    unit = "/usr/lib/systemd/system/a.service"
    arrived = {n: pkg(n) for n in ("b-1.9-1.noarch", "c-1.0-1.noarch", "fresh-1-1.noarch")}
    arrived["a-1.1-1.noarch"] = pkg("a-1.1-1.noarch", files=(unit,))
    arrived["new-1-1.noarch"] = pkg("new-1-1.noarch", obsoletes=("old",))
    got = {c.nevra: c.action for c in changes_between(before, after, arrived)}
    assert got == {"a-1.1-1.noarch": UPGRADE, "b-1.9-1.noarch": DOWNGRADE, "c-1.0-1.noarch": REINSTALL,
                   "new-1-1.noarch": OBSOLETE, "fresh-1-1.noarch": INSTALL,
                   "a-1.0-1.noarch": ERASE, "b-2.0-1.noarch": ERASE, "old-1-1.noarch": ERASE,
                   "gone-1-1.noarch": ERASE}
    [upgrade] = [c for c in changes_between(before, after, arrived) if c.action == UPGRADE]
    assert upgrade.files == frozenset({unit}) and upgrade.name == "a"


def test_changes_between_prefers_the_same_arch_and_compares_epochs():
    before = {"x-1:1.0-1.x86_64": 1, "x-2.0-1.i686": 1}
    after = {"x-1:0.9-1.x86_64": 2, "x-2.0-1.i686": 1}
    calls = []

    def compare(a, b):
        calls.append((a, b))
        return -1

    changes = changes_between(before, after, {"x-1:0.9-1.x86_64": pkg("x-1:0.9-1.x86_64")}, compare)
    assert calls == [(("1", "0.9", "1"), ("1", "1.0", "1"))]
    assert [(c.nevra, c.action) for c in changes] == [("x-1:0.9-1.x86_64", DOWNGRADE), ("x-1:1.0-1.x86_64", ERASE)]


# --- the journal field --------------------------------------------------------------------

def test_decode_installed_accepts_the_snapshot_and_refuses_garbage():
    good = {journal.INSTALLED_BEFORE: {"a-1.0-1.noarch": 1700000000}}
    assert journal.decode_installed(good) == {"a-1.0-1.noarch": 1700000000}
    for bad in ({}, {journal.INSTALLED_BEFORE: []}, {journal.INSTALLED_BEFORE: {"a-1.0-1.noarch": "x"}},
                {journal.INSTALLED_BEFORE: {"noversion": 1}}, {journal.INSTALLED_BEFORE: {"a-1-1.noarch": True}}):
        with pytest.raises(journal.JournalError):
            journal.decode_installed(bad)


def test_decode_ignores_the_field():
    """A dnf 4 resume of a CLI journal still decodes it (the field is extra, not in the way)."""
    from libvirt_presets.facts import TransactionFacts
    from libvirt_presets.snapshot import Snapshot

    record = journal.encode(Snapshot(units={}, links={}), TransactionFacts(), live=False, invocations={},
                            rpmdb_cookie=None, done=[])
    record[journal.INSTALLED_BEFORE] = {"a-1.0-1.noarch": 1}
    _, facts, meta = journal.decode(record)
    assert facts.changes == () and meta.live is False and meta.installed_before == {"a-1.0-1.noarch": 1}
