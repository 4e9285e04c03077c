"""Issue 5: hostile input to the core — configuration, unit names, symlinks, systemctl, journal.

Each test names the hostile thing and shows the safe behaviour: a problem line or a warning,
never a traceback, never a write outside the root, never a shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from libvirt_presets import journal, report, rpmdb, session, state
from libvirt_presets import systemctl as sc
from libvirt_presets.config import Config, load_config, parse_config
from libvirt_presets.executor import Outcome, apply_link, apply_presets
from libvirt_presets.facts import ERASE, UPGRADE, LiveFacts, PackageChange, TransactionFacts, units_in_files
from libvirt_presets.planner import LinkRestore, Plan, plan_transaction
from libvirt_presets.presets import load_presets
from libvirt_presets.snapshot import Snapshot, read_unit_settings, resolve_in_root, take_snapshot
from libvirt_presets.systemctl import Systemctl
from libvirt_presets.units import SYSTEM, UnitKey, is_valid_unit_name

REPO = Path(__file__).resolve().parents[2]
UNITS = "usr/lib/systemd/system"
ETC = "etc/systemd/system"
WANTS = f"{ETC}/multi-user.target.wants"


def S(name: str) -> UnitKey:
    return UnitKey(SYSTEM, name)


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def one_line(problem: str) -> bool:
    return problem.isprintable() and len(problem.splitlines()) == 1


# --- configuration ----------------------------------------------------------------------------

def test_the_shipped_configuration_has_no_problems_and_states_the_defaults():
    cfg = load_config([REPO / "etc/dnf/plugins/libvirt-units.conf"])
    assert cfg == Config()


def test_contradictory_policies_name_both_lines_and_the_later_wins():
    text = "[policy]\nvirtqemud.service = reload\nvirtlogd.service = never\nvirtqemud.service = never\n"
    cfg = parse_config(text, "/etc/x.conf")
    assert cfg.problems == ("/etc/x.conf:4: virtqemud.service: policy 'never' contradicts line 2 of "
                            "this file; the later line wins",)
    assert cfg.policy("virtqemud.service") == "never"


def test_repeating_the_same_policy_or_overriding_from_a_dropin_is_no_contradiction(tmp_path):
    cfg = parse_config("[policy]\nvirt*.service = never\nvirt*.service = never\n", "t")
    assert cfg.problems == ()
    main, dropin = tmp_path / "main.conf", tmp_path / "10-x.conf"
    main.write_text("[policy]\nvirtqemud.service = reload\n")
    dropin.write_text("[policy]\nvirtqemud.service = never\n")
    cfg = load_config([main, dropin])
    assert cfg.problems == () and cfg.policy("virtqemud.service") == "never"


def test_contradictions_in_main_and_triggers_are_reported_too():
    text = ("[main]\npresets = yes\npresets = no\n[triggers]\nfoo = libvirtd.service\n"
            "[policy]\nx.service = reload\n[triggers]\nfoo = virtqemud.service\n")
    cfg = parse_config(text, "t")
    assert [p.split(":")[1] for p in cfg.problems] == ["3", "9"]
    assert "presets: 'no' contradicts line 2" in cfg.problems[0]
    assert "foo: 'virtqemud.service' contradicts line 5" in cfg.problems[1]
    assert cfg.presets is False and cfg.triggers["foo"] == ("virtqemud.service",)


@pytest.mark.parametrize("section, line, key", [
    ("main", "colour = blue", "colour"),
    ("main", "enabled = perhaps", "enabled"),
    ("main", "units = libvirtd.service $(reboot)", "units"),
    ("main", "extra_units = -virtqemud.service", "extra_units"),
    ("policy", "virt qemud.service = reload", "virt qemud.service"),
    ("policy", "virtqemud.service = explode", "virtqemud.service"),
    ("policy", "$(reboot).service = never", "$(reboot).service"),
    ("triggers", "libvirt-daemon = libvirtd.service ;reboot", "libvirt-daemon"),
    ("triggers", "a b = libvirtd.service", "a b"),
    (None, "orphan = 1", "orphan"),
])
def test_every_bad_line_is_one_problem_naming_file_line_and_key(section, line, key):
    header = f"[{section}]\n" if section else ""
    cfg = parse_config(f"# comment\n{header}{line}\n", "/etc/dnf/plugins/libvirt-units.conf")
    lineno = 3 if section else 2
    assert len(cfg.problems) == 1, cfg.problems
    problem = cfg.problems[0]
    assert problem.startswith(f"/etc/dnf/plugins/libvirt-units.conf:{lineno}: ") and one_line(problem)
    assert key in problem
    assert cfg == Config(problems=cfg.problems)  # the line is ignored: the defaults stay in force


def test_malformed_section_header_is_one_problem_and_its_settings_are_ignored():
    cfg = parse_config("[policy\nvirtlogd.service = never\nvirtlockd.service = never\n[main]\n", "t")
    assert len(cfg.problems) == 1 and cfg.problems[0].startswith("t:1: malformed section header")
    assert cfg.policy("virtlogd.service") == "reload"


def test_control_characters_and_undecodable_bytes_stay_on_one_line(tmp_path):
    conf = tmp_path / "libvirt-units.conf"
    conf.write_bytes(b"[main]\ncolour\x0b\x1b[2J = blue\nunits = \xff\xfe\n[policy]\n"
                     b"virtqemud.service = never\r\nx\xe2\x80\xa8y = reload\n")
    cfg = load_config([conf])
    assert [p.split(":")[1] for p in cfg.problems] == ["2", "3", "6"]
    assert all(one_line(p) for p in cfg.problems), cfg.problems
    assert "not valid UTF-8" in cfg.problems[1]
    assert cfg.policy("virtqemud.service") == "never"  # \r\n line endings are fine


@pytest.mark.parametrize("kind", ["directory", "fifo", "huge"])
def test_a_config_path_that_is_no_config_file_is_one_problem_and_never_hangs(tmp_path, kind):
    conf = tmp_path / "libvirt-units.conf"
    if kind == "directory":
        conf.mkdir()
    elif kind == "fifo":
        os.mkfifo(conf)  # reading it would block until a writer comes
    else:
        conf.write_text("# padding\n" * 200_000)
    cfg = load_config([conf, tmp_path / "missing.conf"])
    assert len(cfg.problems) == 1 and cfg.problems[0].startswith(f"{conf}: unreadable")
    assert cfg == Config(problems=cfg.problems)


# --- unit names and systemctl argv ----------------------------------------------------------------

HOSTILE_NAMES = (
    "$(touch x).service", "`touch x`.service", "a;touch x.service", "a b.service", "a\tb.service",
    "a\nb.service", "a\0b.service", "'q'.service", '"q".service', "-x.service", "--now.service",
    "--root=.service", "../x.service", "a/b.service", "/x.service", "x.service/", "a|b.service",
    "a&b.service", "a>b.service", "*.service", "x.service\n", "é.service", "a%i.service",
)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_no_unit_names_and_never_reach_a_process(tmp_path, name):
    assert not is_valid_unit_name(name)
    marker = tmp_path / "ran"
    systemctl = Systemctl(tmp_path, binary=script(tmp_path / "systemctl", f"touch {marker}\n"))
    with pytest.raises(ValueError, match="refusing invalid unit name"):
        systemctl.preset(["virtqemud.service", name])
    assert systemctl.calls == [] and not marker.exists()


def test_unit_names_come_after_a_double_dash_in_an_argv_list(tmp_path):
    echo = script(tmp_path / "systemctl", 'for a in "$@"; do printf "%s\\n" "$a"; done\n')
    result = Systemctl(tmp_path, binary=echo).preset(["virtqemud.service", "getty@tty1.service"], user=True)
    assert result.stdout.splitlines() == [f"--root={tmp_path}", "--global", "--no-reload", "preset", "--",
                                          "virtqemud.service", "getty@tty1.service"]


def test_snapshot_and_facts_drop_hostile_file_names(tmp_path):
    unit_dir = tmp_path / UNITS
    unit_dir.mkdir(parents=True)
    names = [n for n in HOSTILE_NAMES if "/" not in n and "\0" not in n] + ["ok.service"]
    for name in names:
        (unit_dir / name).write_text("")
    os.mkdir(unit_dir / "nested.service")  # a directory named like a unit is no unit
    (unit_dir / "nested.service" / "inner.service").write_text("")
    assert set(take_snapshot(tmp_path).units) == {S("ok.service")}
    files = {f"/{UNITS}/{n}" for n in HOSTILE_NAMES} | {f"/{UNITS}/nested.service/inner.service",
                                                         f"/{UNITS}/ok.service"}
    assert units_in_files(files) == {S("ok.service")}


# --- systemctl missing, hanging, failing ----------------------------------------------------------

def test_missing_systemctl_is_one_failed_call_and_never_tried_again(tmp_path):
    systemctl = Systemctl(tmp_path, binary=str(tmp_path / "no-such-systemctl"))
    first = systemctl.preset(["virtqemud.socket"])
    assert first.returncode == sc.NOT_FOUND and first.stderr == f"{tmp_path}/no-such-systemctl: not found"
    again = systemctl.preset(["virtqemud.socket"])
    assert again.returncode == sc.NOT_FOUND and again.stderr.endswith("; not tried again")
    assert len(systemctl.calls) == 1
    assert systemctl.is_enabled(["virtqemud.socket"]) == ["unknown"]  # status: no traceback


def test_unexecutable_systemctl_is_a_failed_call(tmp_path):
    binary = tmp_path / "systemctl"
    binary.write_text("not a program")
    binary.chmod(0o644)
    result = Systemctl(tmp_path, binary=str(binary)).preset(["a.service"])
    assert result.returncode == sc.CANNOT_RUN and "cannot run" in result.stderr


def test_hanging_systemctl_is_killed_with_its_children_after_the_timeout(tmp_path):
    pidfile = tmp_path / "child.pid"
    hang = script(tmp_path / "systemctl", f"sleep 300 &\necho $! > {pidfile}\nwait\n")
    systemctl = Systemctl(tmp_path, binary=hang, timeout=0.5)
    start = time.monotonic()
    result = systemctl.preset(["a.service", "b.service"])
    again = systemctl.preset(["a.service"])  # the retry of one unit does not wait again
    assert time.monotonic() - start < 10
    assert result.returncode == sc.TIMED_OUT and result.stderr == "systemctl preset: timed out after 0.5 s"
    assert again.returncode == sc.TIMED_OUT and len(systemctl.calls) == 1
    child = int(pidfile.read_text())
    for _ in range(50):  # killed with its process group (a zombie at most, until reaped)
        try:
            if Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0] in "ZX":
                break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the systemctl's child {child} still runs")


def test_failing_systemctl_passes_status_and_stderr_and_stays_usable(tmp_path):
    fail = script(tmp_path / "systemctl", 'echo "Failed to preset unit: boom" >&2\nprintf "\\377\\n"\nexit 1\n')
    systemctl = Systemctl(tmp_path, binary=fail)
    result = systemctl.preset(["a.service"])
    assert result.returncode == 1 and result.stderr.strip() == "Failed to preset unit: boom"
    assert result.stdout == "\ufffd\n"  # undecodable output is no crash
    systemctl.preset(["a.service"])
    assert len(systemctl.calls) == 2 and systemctl.unusable is None


def test_binary_and_timeout_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(sc.SYSTEMCTL_ENV, "/opt/fake/systemctl")
    monkeypatch.setenv(sc.TIMEOUT_ENV, "2.5")
    assert (Systemctl().binary, Systemctl().timeout) == ("/opt/fake/systemctl", 2.5)
    for junk in ("", "soon", "-1", "0", "inf", "nan"):
        monkeypatch.setenv(sc.TIMEOUT_ENV, junk)
        assert Systemctl().timeout == sc.SYSTEMCTL_TIMEOUT
    monkeypatch.delenv(sc.SYSTEMCTL_ENV)
    assert Systemctl().binary.endswith("systemctl")


@pytest.mark.parametrize("kind", ["missing", "hanging", "failing"])
def test_presets_without_a_working_systemctl_warn_once_per_unit(tmp_path, kind):
    bodies = {"hanging": "exec sleep 300\n", "failing": "echo 'Failed to preset: no' >&2\nexit 1\n"}
    binary = script(tmp_path / "systemctl", bodies[kind]) if kind in bodies else str(tmp_path / "none")
    plan = Plan(presets=(S("virtqemud-admin.socket"), S("virtqemud-tcp.socket")))
    outcome = Outcome()
    start = time.monotonic()
    # Only the hanging one needs a short timeout; a loaded CI machine may be slow to start a shell.
    timeout = 0.5 if kind == "hanging" else 30
    apply_presets(plan, Systemctl(tmp_path, binary=binary, timeout=timeout), outcome)
    if kind == "hanging":
        assert time.monotonic() - start < 5  # one timeout, not one per unit
    assert outcome.preset == []
    assert [w.split(":")[0] for w in outcome.warnings] == [
        "preset of virtqemud-admin.socket failed", "preset of virtqemud-tcp.socket failed"]
    assert all(one_line(w) for w in outcome.warnings)


# --- symlinks in unit and enablement directories ---------------------------------------------------

@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the root: nothing may ever be read from or written to it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "outside.service").write_text("[Service]\n")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    (path / UNITS).mkdir(parents=True)
    (path / ETC).mkdir(parents=True)
    return path


def test_symlinked_unit_files_count_by_name_and_are_never_followed(root, outside):
    units = root / UNITS
    os.symlink("/dev/null", units / "masked.service")
    os.symlink(str(outside), units / "dir-outside.service")
    os.symlink("../../../../../../../../outside/outside.service", units / "escape.service")
    os.symlink("loop-a.service", units / "loop-b.service")
    os.symlink("loop-b.service", units / "loop-a.service")
    os.symlink("nowhere.service", units / "dangling.service")
    snap = take_snapshot(root)
    assert {u.name for u in snap.units} == {"masked.service", "dir-outside.service", "escape.service",
                                           "loop-a.service", "loop-b.service", "dangling.service"}
    assert snap.problems == ()


@pytest.mark.parametrize("how", ["absolute", "relative-escape"])
def test_a_unit_directory_symlinked_out_of_the_root_is_resolved_inside_it(root, outside, how):
    units = root / UNITS
    units.rmdir()
    target = str(outside) if how == "absolute" else "../../../../../../../../../../" + str(outside)
    os.symlink(target, units)
    inside = Path(resolve_in_root(root, UNITS))
    assert str(inside).startswith(str(root) + "/")
    inside.mkdir(parents=True)
    (inside / "inside.service").write_text("")
    assert {u.name for u in take_snapshot(root).units} == {"inside.service"}


def test_merged_usr_with_an_absolute_lib_link_never_reads_the_hosts_units(root):
    os.symlink("/usr/lib", root / "lib")  # on the host, /usr/lib/systemd/system is full of units
    (root / UNITS / "only.service").write_text("")
    snap = take_snapshot(root)
    assert set(snap.units) == {S("only.service")} and snap.problems == ()


def test_enablement_links_that_loop_or_leave_the_root_are_read_never_followed(root, outside):
    wants = root / WANTS
    wants.mkdir()
    os.symlink("loop.service", wants / "loop.service")
    os.symlink(str(outside / "outside.service"), wants / "outside.service")
    os.symlink("../../../../../../../../../etc/passwd", wants / "escape.service")
    os.symlink(str(outside), root / ETC / "sockets.target.wants")  # a symlinked wants directory
    snap = take_snapshot(root)
    assert snap.links == {
        f"{WANTS}/loop.service": "loop.service",
        f"{WANTS}/outside.service": str(outside / "outside.service"),
        f"{WANTS}/escape.service": "../../../../../../../../../etc/passwd",
        f"{ETC}/sockets.target.wants": str(outside),  # recorded as a link, never entered
    }
    assert snap.problems == ()


def test_an_absolutely_symlinked_enablement_directory_is_read_inside_the_root(root, outside):
    (root / ETC).rmdir()
    os.symlink(str(outside), root / ETC)  # on the host: outside; in the root: root/outside
    os.symlink("/dev/null", outside / "virtqemud.service")
    (root / outside.relative_to("/")).mkdir(parents=True)
    os.symlink("/dev/null", root / outside.relative_to("/") / "virtproxyd.service")
    assert take_snapshot(root).links == {f"{ETC}/virtproxyd.service": "/dev/null"}


def test_unit_settings_are_read_inside_the_root_from_regular_files_only(root, outside):
    """`check` and the live restart decision read unit files: never the host's, never a FIFO."""
    units = root / UNITS
    os.mkfifo(root / "fifo")
    os.symlink("../../../../fifo", units / "fifo.service")  # would block a plain read
    os.symlink(str(outside / "outside.service"), units / "abs.service")  # the host's file: not read
    (outside / "outside.service").write_text("[Service]\nType=oneshot\n")
    (units / "ok.service").write_text("[Service]\nType=notify\n")
    os.symlink(str(outside), units / "ok.service.d")  # a drop-in directory outside the root
    (outside / "x.conf").write_text("[Service]\nType=oneshot\n")
    snap = take_snapshot(root)
    assert read_unit_settings(root, snap, S("fifo.service")) == {}
    assert read_unit_settings(root, snap, S("abs.service")) == {}
    assert read_unit_settings(root, snap, S("ok.service")) == {"Type": ["notify"]}


@pytest.mark.parametrize("what", ["file", "loop"])
def test_a_unit_directory_that_is_no_directory_is_one_problem(root, what):
    user = root / "usr/lib/systemd/user"
    if what == "file":
        user.write_text("")
    else:
        os.symlink("user", user)
    (root / UNITS / "a.service").write_text("")
    snap = take_snapshot(root)
    assert set(snap.units) == {S("a.service")}
    assert len(snap.problems) == 1 and snap.problems[0].startswith(f"{user}: ")
    assert ("not a directory" if what == "file" else "Too many levels of symbolic links") in snap.problems[0]


def test_a_problem_with_odd_bytes_in_its_path_is_one_loggable_line(tmp_path):
    root = tmp_path / "r\udcff\noot"  # b"\xff" and a newline in the installroot's own path
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "usr/lib/systemd/user").write_text("")
    (problem,) = take_snapshot(root).problems
    assert one_line(problem) and "r\\udcff\\noot" in problem
    report.warn(problem)  # the journal refuses surrogates: it must never see one


def test_a_missing_unit_directory_is_no_problem(tmp_path):
    assert take_snapshot(tmp_path).problems == ()


def run_as_nobody(code: str) -> str:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-c", code], env={"PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
def test_unreadable_unit_and_enablement_directories_are_one_problem_each_for_a_user():
    """`dnf libvirt-units status` and `--dry-run` run as any user: EACCES is a problem line."""
    base = Path(tempfile.mkdtemp(prefix="hostile-", dir="/tmp"))
    try:
        base.chmod(0o755)
        for rel in (UNITS, ETC, "usr/lib/systemd/user", "etc/systemd/system-preset"):
            (base / rel).mkdir(parents=True)
            (base / rel / "x.service").write_text("")
            (base / rel).chmod(0)
        (base / "usr/lib/systemd/user").chmod(0o755)
        (base / "usr/lib/systemd").chmod(0o711)
        out = run_as_nobody(
            "import json; from pathlib import Path\n"
            "from libvirt_presets.snapshot import take_snapshot\n"
            "from libvirt_presets.presets import load_presets\n"
            f"snap = take_snapshot(Path({str(base)!r}))\n"
            f"presets = load_presets(Path({str(base)!r}), 'system')\n"
            "print(json.dumps([sorted(u.name for u in snap.units), list(snap.problems),"
            " presets.decide('x.service').action]))\n")
        units, problems, action = json.loads(out)
        assert units == ["x.service"]  # the readable user directory
        assert problems == [f"{base}/{UNITS}: cannot read unit directory: Permission denied",
                            f"{base}/{ETC}: cannot read enablement directory: Permission denied"]
        assert action == "enable"  # systemd skips an unreadable preset directory too
    finally:
        for dirpath, _, _ in os.walk(base):
            os.chmod(dirpath, 0o755)
        for rel in (UNITS, ETC, "etc/systemd/system-preset"):
            (base / rel).chmod(0o755)
        subprocess.run(["rm", "-rf", str(base)], check=True)


@pytest.mark.parametrize("how", ["file", "dangling"])
def test_preset_directory_that_is_no_directory_is_skipped_like_systemd_does(tmp_path, how):
    etc = tmp_path / "etc/systemd/system-preset"
    etc.parent.mkdir(parents=True)
    if how == "file":
        etc.write_text("disable *\n")
    else:
        os.symlink("/nowhere", etc)
    vendor = tmp_path / "usr/lib/systemd/system-preset"
    vendor.mkdir(parents=True)
    (vendor / "90-x.preset").write_text("disable a.service\n")
    presets = load_presets(tmp_path, SYSTEM)
    assert presets.fatal == "" and presets.decide("a.service").action == "disable"


# --- apply_link never writes outside the root -----------------------------------------------------

def files_below(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("target", ["absolute", "relative-escape", "inside-root-elsewhere"])
@pytest.mark.parametrize("action", ["create", "remove"])
def test_apply_link_refuses_a_wants_directory_symlinked_elsewhere(root, outside, target, action):
    wants = root / WANTS
    elsewhere = {"absolute": str(outside), "relative-escape": "../../../../../../../../../../" + str(outside),
                 "inside-root-elsewhere": "../../../usr/lib/systemd/system"}[target]
    os.symlink(elsewhere, wants)
    os.symlink("/usr/lib/systemd/system/victim.service", outside / "victim.service")
    before = files_below(outside), files_below(root / UNITS)
    target_of = "/usr/lib/systemd/system/victim.service" if action == "create" else None
    repair = LinkRestore(f"{WANTS}/victim.service", target_of)
    with pytest.raises(OSError, match="resolves outside"):
        apply_link(root, repair)
    assert (files_below(outside), files_below(root / UNITS)) == before


@pytest.mark.parametrize("link", [
    "/etc/systemd/system/x.service", f"{ETC}/../../../outside/x.service", f"{ETC}/./x.service",
    f"{ETC}//x.service", "etc/passwd", "usr/lib/systemd/system/x.service", f"{ETC}/x\0.service", ETC + "/",
])
def test_apply_link_refuses_links_that_are_no_plain_path_below_an_enablement_directory(root, link):
    before = files_below(root.parent)
    with pytest.raises(OSError, match="not a path below an enablement directory"):
        apply_link(root, LinkRestore(link, "/dev/null"))
    assert files_below(root.parent) == before


def test_apply_link_leaves_a_regular_file_alone(root):
    (root / ETC / "x.service").write_text("[Unit]\n")
    with pytest.raises(OSError, match="not a symlink"):
        apply_link(root, LinkRestore(f"{ETC}/x.service", "/dev/null"))
    assert (root / ETC / "x.service").read_text() == "[Unit]\n"


def test_apply_link_writes_through_an_enablement_directory_linked_inside_the_root(root):
    (root / ETC).rmdir()
    (root / "etc/systemd/real").mkdir()
    os.symlink("/etc/systemd/real", root / ETC)  # absolute: means root/etc/systemd/real
    apply_link(root, LinkRestore(f"{WANTS}/x.service", "/usr/lib/systemd/system/x.service"))
    assert os.readlink(root / "etc/systemd/real/multi-user.target.wants/x.service") == \
        "/usr/lib/systemd/system/x.service"
    assert take_snapshot(root).links == {f"{WANTS}/x.service": "/usr/lib/systemd/system/x.service"}


def test_restore_links_warns_about_a_hostile_link_and_restores_the_others(root, outside):
    os.symlink(str(outside), root / ETC / "sockets.target.wants")
    good = f"{WANTS}/virtqemud.service"
    plan = Plan(keep=(S("virtqemud.service"), S("virtqemud.socket")), keep_links={
        good: "/usr/lib/systemd/system/virtqemud.service",
        f"{ETC}/sockets.target.wants/virtqemud.socket": "/usr/lib/systemd/system/virtqemud.socket",
    })
    outcome = Outcome()
    session.restore_links(root, plan, outcome)
    assert os.readlink(root / good) == "/usr/lib/systemd/system/virtqemud.service"
    assert [r.link for r in outcome.restored] == [good]
    assert len(outcome.warnings) == 1 and "resolves outside" in outcome.warnings[0]
    assert files_below(outside) == ["outside.service"]


# --- the journal ------------------------------------------------------------------------------------

def pending(root: Path) -> Path:
    return Path(state.state_dir(root), journal.PENDING)


def test_a_symlinked_journal_file_is_refused_for_reading_and_writing(tmp_path, caplog):
    root, target = tmp_path / "root", tmp_path / "elsewhere.json"
    target.write_text('{"version": 1}')
    pending(root).parent.mkdir(parents=True)
    pending(root).symlink_to(target)
    assert journal.load(root) is None
    assert "journal refused" in caplog.text and "is a symlink" in caplog.text
    with pytest.raises(OSError, match="is a symlink"):
        journal.save(root, journal.Journal(created=None, live=False, rpmdb_cookie=None, invocations_before={}))
    assert target.read_text() == '{"version": 1}' and pending(root).is_symlink()


def test_a_fifo_or_directory_journal_is_refused_without_hanging(tmp_path):
    pending(tmp_path).parent.mkdir(parents=True)
    os.mkfifo(pending(tmp_path))
    assert journal.load(tmp_path) is None
    pending(tmp_path).unlink()
    pending(tmp_path).mkdir()
    assert journal.load(tmp_path) is None


def test_a_deeply_nested_journal_is_moved_aside(tmp_path):
    pending(tmp_path).parent.mkdir(parents=True)
    pending(tmp_path).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(journal.JournalError):
        journal.load(tmp_path)
    assert not pending(tmp_path).exists()
    assert list(pending(tmp_path).parent.glob("pending.json.corrupt-*"))


def good_record() -> dict:
    return journal.encode(Snapshot(), TransactionFacts(), live=False, invocations={}, rpmdb_cookie=None, done=[])


@pytest.mark.parametrize("field, value", [
    ("links_before", {"etc/systemd/system/../../../usr/bin/x": "/bin/sh"}),
    ("links_before", {"/etc/systemd/system/x.service": "/dev/null"}),
    ("links_before", {"etc/shadow": "/dev/null"}),
    ("links_before", {"etc/systemd/system/x.service": 3}),
    ("links_before", {"etc/systemd/system/x.service": "a\0b"}),
    ("live", "no"),
    ("units_before", [["system", "$(reboot).service", "usr/lib/systemd/system/x"]]),
    ("changes", [{"name": "x"}]),
])
def test_a_forged_journal_is_a_journal_error(field, value):
    record = good_record()
    journal.decode(json.loads(json.dumps(record)))  # the untouched record is fine
    record[field] = value
    with pytest.raises(journal.JournalError):
        journal.decode(record)


def test_a_journal_of_the_previous_version_with_began_usec_still_decodes():
    """Journals written before the timestamp signal was dropped carry "began_usec": ignored."""
    record = good_record()
    assert "began_usec" not in record
    old = {**json.loads(json.dumps(record)), "began_usec": 1234567890}
    assert journal.decode(old)[2] == journal.decode(record)[2]
    assert "began_usec" not in journal.decode(old)[2].to_json()


def test_a_journal_with_the_old_links_step_still_reads():
    """Older journals mark a step "links" (nothing read it): it is ignored, as any unknown step."""
    old = {**json.loads(json.dumps(good_record())), "done": ["unguard", "presets", "links", "nonsense"]}
    entry = journal.decode(old)[2]
    assert entry.done == ("unguard", "presets")
    assert json.dumps(entry.to_json()["done"]) == '["unguard", "presets"]'


# --- a huge transaction -------------------------------------------------------------------------------

def huge_transaction(n_packages: int, unit_every: int) -> tuple[Snapshot, set[UnitKey], TransactionFacts]:
    """n_packages upgrades plus their outgoing halves (2 * n_packages changes), each with a few
    data files; every unit_every-th keeps bulk-N.service and adds bulk-N-new.socket, and every
    other one of those services has an enablement link."""
    units_before: dict[UnitKey, str] = {}
    links: dict[str, str] = {}
    changes = []
    for i in range(n_packages):
        name = f"bulk-{i:05d}"
        data = {f"/usr/share/{name}/{k}.xml" for k in range(3)}
        old, new = set(data), set(data)
        if i % unit_every == 0:
            units_before[S(f"{name}.service")] = f"{UNITS}/{name}.service"
            if i % (2 * unit_every):
                links[f"{WANTS}/{name}.service"] = f"/{UNITS}/{name}.service"
            old.add(f"/{UNITS}/{name}.service")
            new |= {f"/{UNITS}/{name}.service", f"/{UNITS}/{name}-new.socket"}
        changes.append(PackageChange(name, f"{name}-2-1.noarch", UPGRADE, frozenset(new)))
        changes.append(PackageChange(name, f"{name}-1-1.noarch", ERASE, frozenset(old)))
    after = set(units_before) | {S(u.name.replace(".service", "-new.socket")) for u in units_before}
    return Snapshot(units=units_before, links=links), after, TransactionFacts(tuple(changes))


def check_huge_plan(plan: Plan, before: Snapshot, after: set[UnitKey]) -> None:
    assert set(plan.presets) == after - set(before.units) and set(plan.keep) == set(before.units)
    assert plan.keep_links == before.links


def test_a_20k_change_transaction_with_10k_units_plans_in_linear_time():
    before, after, tx = huge_transaction(10_000, unit_every=1)
    plan = plan_transaction(before, after, tx, parse_config("[main]\nunits = bulk-*\n", "t"), live=LiveFacts())
    check_huge_plan(plan, before, after)
    assert len(plan.presets) == 10_000 and len(plan.restarts) == 10_000  # every kept service changed


def test_a_20k_change_transaction_goes_through_begin_and_finish(tmp_path, monkeypatch):
    """20k package changes (2,000 units among them) through session.begin()/finish() in-process;
    rpm's part is simulated: the new sockets arrive and scriptlets flip every service's link."""
    before, after, tx = huge_transaction(10_000, unit_every=10)
    root = tmp_path
    (root / UNITS).mkdir(parents=True)
    (root / WANTS).mkdir(parents=True)
    for unit in before.units:
        (root / UNITS / unit.name).write_text("")
    for link, target in before.links.items():
        os.symlink(target, root / link)
    monkeypatch.setattr(rpmdb, "owners", lambda root, units: {})  # no rpmdb in this root
    monkeypatch.setattr(rpmdb, "cookie", lambda root: None)
    config = parse_config("[main]\nunits = bulk-*\n", "t")
    pending_tx = session.begin(root, config, tx.changes, live=False)
    for unit in after - set(before.units):
        (root / UNITS / unit.name).write_text("")
    for unit in before.units:
        link = root / WANTS / unit.name
        if link.is_symlink():
            link.unlink()
        else:
            os.symlink(f"/{UNITS}/{unit.name}", link)
    calls: list[list[str]] = []
    monkeypatch.setattr(sc, "run", lambda argv, timeout: calls.append(argv) or
                        subprocess.CompletedProcess(argv, 0, "", ""))
    outcome = session.finish(pending_tx, None, Systemctl(root))
    assert outcome.warnings == []
    assert len(calls) == 1 and len(outcome.preset) == 1_000  # one batched preset call
    assert take_snapshot(root).links == before.links  # every kept unit's links exactly as before
    assert len(outcome.restored) == 1_000 and not pending(root).exists()
