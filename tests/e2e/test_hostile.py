"""Issue 5 end to end: broken configuration and hostile input never fail the user's transaction.

Each test runs the real dnf with the plugin against an installroot and shows the whole story an
admin sees: the transaction completes, each problem is one `libvirt-units:` warning line, and
the enablement of the units that existed before is still put back.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import pytest

from libvirt_presets.units import is_valid_unit_name
from tests.e2e.fixtures import PROXY_SOCKETS, run
from tests.e2e.harness import PLUGIN_CONF_NAME, monolithic_host

STATE = "var/lib/dnf/libvirt-units"
NEW_IN_910 = ("virtqemud-admin.socket", "virtqemud-tcp.socket")  # managed units 9.1.0 adds


def warnings(result) -> list[str]:
    """The plugin's warning lines (dnf prints warnings on stderr, the info log on stdout)."""
    return [line for line in result.stderr.splitlines() if "libvirt-units:" in line]


def assert_completed(result) -> None:
    assert result.returncode == 0 and "Complete!" in result.output, result.output
    assert "Traceback" not in result.output


def conf_dir(base: Path, main: str, dropins: dict[str, str]) -> Path:
    """A pluginconfpath directory: libvirt-units.conf plus libvirt-units.d/*.conf drop-ins."""
    base.mkdir()
    (base / PLUGIN_CONF_NAME).write_text(main)
    (base / "libvirt-units.d").mkdir()
    for name, text in dropins.items():
        (base / "libvirt-units.d" / name).write_text(text)
    return base


def with_conf_dir(path: Path) -> str:
    # dnf applies --setopt in order: this one, after the harness's own, is the one in force.
    return f"--setopt=pluginconfpath={path}"


# --- configuration ---------------------------------------------------------------------------------

MAIN_CONF = """\
[main]
enabled = yes

[policy]
virtqemud.service = reload
virtnetworkd.service = never
virtqemud.service = never
"""
DROPIN = """\
# widen the scope to a unit the default globs leave out
[main]
extra_units = virtqemud-helper.service
this line is no setting
"""


def test_dropin_widens_the_scope_and_each_broken_line_is_one_warning(root, repos, tmp_path):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=False)
    confs = conf_dir(tmp_path / "pluginconf", MAIN_CONF, {"50-helper.conf": DROPIN, "README": "not read"})
    result = root.dnf(with_conf_dir(confs), "upgrade", repo=repos.v910)
    assert_completed(result)
    # the drop-in's extra unit is managed: new in 9.1.0, so the plugin presets it (preset: enable)
    assert root.is_enabled("virtqemud-helper.service") == "enabled"
    assert warnings(result) == [
        f"libvirt-units: {confs}/libvirt-units.conf:7: virtqemud.service: policy 'never' contradicts "
        "line 5 of this file; the later line wins",
        f"libvirt-units: {confs}/libvirt-units.d/50-helper.conf:4: expected 'key = value', "
        "got 'this line is no setting'",
    ]


# --- hostile unit file names -----------------------------------------------------------------------

HOSTILE_FILES = (
    "$(touch hostile-ran).service", "`touch hostile-ran`.service", "virtqemud;touch hostile-ran.service",
    "virt qemud.service", "-virtqemud.service", "--root=.service", "virt'q.service", 'virt"q.service',
    "virtqemud.service|touch hostile-ran", "virtnested.service/inner.service",
)
SPEC = """\
Name: hostile-units
Version: 1
Release: 1
License: MIT
BuildArch: noarch
Summary: unit files with hostile names
AutoReqProv: no

%description
Unit files named to break a shell.

%install
mkdir -p %{{buildroot}}/usr/lib/systemd/system
cp -a {staging}/. %{{buildroot}}/usr/lib/systemd/system/

%files
/usr/lib/systemd/system/*
"""
RECORDER = """\
#!/bin/sh
# systemctl stand-in: one line per call, arguments NUL-separated, then the real systemctl
for arg in "$@"; do printf '%s\\0' "$arg"; done >> {log}
echo >> {log}
exec /usr/bin/systemctl "$@"
"""


def build_hostile_repo(work: Path) -> Path:
    staging = work / "staging"
    staging.mkdir(parents=True)
    for name in (*HOSTILE_FILES, "hostile-ok.service"):
        (staging / name).parent.mkdir(exist_ok=True)
        (staging / name).write_text("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")
    top = work / "rpmbuild"
    spec = work / "hostile-units.spec"
    spec.write_text(SPEC.format(staging=shlex.quote(str(staging))))
    run(["rpmbuild", "-bb", "--quiet", f"--define=_topdir {top}", "--define=_build_id_links none",
         "--define=__os_install_post %{nil}", str(spec)])
    repo = work / "repo"
    repo.mkdir()
    (top / "RPMS/noarch/hostile-units-1-1.noarch.rpm").rename(repo / "hostile-units-1-1.noarch.rpm")
    run(["createrepo_c", "--quiet", "--no-database", str(repo)])
    return repo


def test_hostile_unit_file_names_never_reach_systemctl(root, tmp_path):
    repo = build_hostile_repo(tmp_path / "build")
    log = tmp_path / "systemctl.log"
    recorder = tmp_path / "systemctl"
    recorder.write_text(RECORDER.format(log=shlex.quote(str(log))))
    recorder.chmod(0o755)
    preset = root.path / "etc/systemd/system-preset/10-hostile.preset"
    preset.parent.mkdir(parents=True)
    preset.write_text("enable hostile-ok.service\n")  # the fixture presets disable everything else
    result = root.dnf("install", "hostile-units", repo=repo, plugin_conf="[main]\nunits = *\n",
                      env={"LIBVIRT_UNITS_SYSTEMCTL": str(recorder)})
    assert_completed(result)
    unit_dir = root.path / "usr/lib/systemd/system"
    assert all((unit_dir / name).exists() for name in HOSTILE_FILES)  # rpm installed them all
    calls = [line.split("\0")[:-1] for line in log.read_text().splitlines()]
    assert calls, "the plugin never ran systemctl"
    for argv in calls:
        units = argv[argv.index("--") + 1:]
        assert all(is_valid_unit_name(u) for u in units), argv
        assert not set(argv) & {n.split("/")[0] for n in HOSTILE_FILES}, argv
    assert calls[0][-4:] == ["--no-reload", "preset", "--", "hostile-ok.service"]
    assert root.is_enabled("hostile-ok.service") == "enabled"  # the valid one got its preset
    for where in (Path.cwd(), root.path, tmp_path, Path("/tmp")):  # nothing ran any of the names
        assert not list(where.glob("hostile-ran*")), where
    assert warnings(result) == []


# --- systemctl missing, hanging, failing ------------------------------------------------------------

SYSTEMCTLS = {
    "hanging": "#!/bin/sh\nsleep 300 &\nwait\n",  # a child holding the output pipes open
    "failing": "#!/bin/sh\necho 'Failed to preset unit: Access denied' >&2\nexit 1\n",
}
REASONS = {
    "missing": "{binary}: not found",
    "hanging": "systemctl preset: timed out after 1 s",
    "failing": "Failed to preset unit: Access denied",
}


@pytest.mark.parametrize("kind", ["missing", "hanging", "failing"])
def test_without_a_working_systemctl_links_are_still_restored(root, repos, tmp_path, kind):
    monolithic_host(root, repos.v900, plugin=False)
    binary = tmp_path / "systemctl"
    if kind in SYSTEMCTLS:
        binary.write_text(SYSTEMCTLS[kind])
        binary.chmod(0o755)
    start = time.monotonic()
    result = root.dnf("upgrade", repo=repos.v910, env={"LIBVIRT_UNITS_SYSTEMCTL": str(binary),
                                                       "LIBVIRT_UNITS_SYSTEMCTL_TIMEOUT": "1"})
    elapsed = time.monotonic() - start
    assert_completed(result)
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"
    # the new package's %post preset enabled the proxy sockets; the restore needs no systemctl
    for unit in ("virtproxyd.service", *PROXY_SOCKETS):
        assert root.is_enabled(unit) == "disabled", unit
    assert root.is_enabled("libvirtd.socket") == "enabled"
    reason = REASONS[kind].format(binary=binary)
    got = warnings(result)
    assert len(got) == len(NEW_IN_910), result.output  # one line per preset that did not happen
    for line, unit in zip(got, NEW_IN_910):
        assert line.startswith(f"libvirt-units: preset of {unit} failed: {reason}"), line
    assert elapsed < 60  # one 1 s timeout, not one per unit nor the 300 s sleep
    record = json.loads((root.path / STATE / "last-transaction.json").read_text())
    assert record["outcome"]["preset"] == [] and len(record["outcome"]["warnings"]) == 2


# --- unusable directories and files ---------------------------------------------------------------

def test_a_unit_directory_that_is_a_file_is_one_warning(root, repos):
    user_units = root.path / "usr/lib/systemd/user"  # 9.0.0 ships no user units: rpm never looks
    user_units.rmdir()
    user_units.write_text("not a directory\n")
    result = root.dnf("install", "libvirt", repo=repos.v900)
    assert_completed(result)
    assert warnings(result) == [f"libvirt-units: {user_units}: not a directory; no unit in it is read"]


GARBAGE_PRESET = b"""\
# an admin's preset file with a few broken lines
frobnicate virtqemud.socket
ignore virtqemud-tcp.socket
enable-all
\xff\xfe binary junk \x01
disable virtqemud-admin.socket
"""


def test_a_preset_file_with_garbage_lines_never_aborts_and_its_good_lines_count(root, repos):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=False)
    preset = root.path / "etc/systemd/system-preset/10-admin.preset"
    preset.parent.mkdir(parents=True)
    preset.write_bytes(GARBAGE_PRESET)
    result = root.dnf("upgrade", repo=repos.v910)
    assert_completed(result)
    assert root.is_enabled("virtqemud-admin.socket") == "disabled"  # the good line won
    record = json.loads((root.path / STATE / "last-transaction.json").read_text())
    reasons = {row["unit"]: row for row in record["units"]}
    assert "10-admin.preset:6" in json.dumps(reasons["virtqemud-admin.socket"])
    about = [w for w in warnings(result) if "10-admin.preset" in w]
    assert len(about) == len(set(about)) <= 4  # at most once per broken line, if surfaced at all
    assert all(":" in w.split("10-admin.preset", 1)[1][:3] for w in about)  # names the line


def test_a_symlinked_journal_file_is_refused(root, repos, tmp_path):
    root.dnf("install", "libvirt", repo=repos.v900)
    outside = tmp_path / "outside.json"
    outside.write_text('{"version": 1, "live": false}\n')
    journal = root.path / STATE / "pending.json"
    journal.symlink_to(outside)
    result = root.dnf("upgrade", repo=repos.v910)
    assert_completed(result)
    assert root.packages()["libvirt-daemon"] == "9.1.0"
    got = warnings(result)
    assert got and all(f"{journal} is a symlink" in w for w in got), got
    assert "journal refused" in got[0]
    assert outside.read_text() == '{"version": 1, "live": false}\n' and journal.is_symlink()
    assert os.path.realpath(journal) == str(outside)
