"""The nspawn harness itself: a real systemd PID 1 that tests can use and then throw away."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.container import (
    BootedContainer,
    BootError,
    _is_namespace_init,
    nspawn_unavailable_reason,
    unique_machine_name,
)

PROBE_UNIT = "e2e-harness-probe.service"
PROBE_UNIT_TEXT = """\
[Unit]
Description=Probe unit written by the harness tests

[Service]
ExecStart=/bin/sleep infinity
"""


@pytest.fixture(scope="module", autouse=True)
def require_nspawn() -> None:
    reason = nspawn_unavailable_reason()
    if reason is not None:
        pytest.skip(f"cannot boot a systemd-nspawn container: {reason}")


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = tmp_path_factory.mktemp("shared")
    (shared / "from-host.txt").write_text("written on the host\n")
    return shared


@pytest.fixture(scope="module")
def scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scratch")


@pytest.fixture(scope="module")
def guest(require_nspawn: None, shared_dir: Path, scratch_dir: Path) -> Iterator[BootedContainer]:
    with BootedContainer(binds={shared_dir: "/srv/shared"},
                         writable_binds={scratch_dir: "/srv/scratch"}) as container:
        print(f"\nguest booted in {container.boot_seconds:.2f}s, state {container.state}")
        if container.failed_units:
            print(container.failed_units)
        yield container
        started = (container.root, container.nspawn_pid, container.pid1)
    _assert_torn_down(*started)


def _mount_lines_mentioning(fragment: str) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return [line for line in mountinfo if fragment in line]


def _pid_namespace_inits() -> set[int]:
    """Every process on the host that is PID 1 of a PID namespace below ours: running guests."""
    return {int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _is_namespace_init(int(entry.name), running_systemd=False)}


def _assert_torn_down(root: Path, nspawn_pid: int, pid1: int | None) -> None:
    overlay_dir = root.parent
    assert _mount_lines_mentioning(str(overlay_dir)) == []
    assert not overlay_dir.exists()
    for pid in (nspawn_pid, pid1):
        if pid is not None:
            assert not Path(f"/proc/{pid}").exists(), f"process {pid} still exists"


def test_guest_reaches_running_state(guest: BootedContainer) -> None:
    state = guest.run(["systemctl", "is-system-running"], check=False).stdout.strip()
    assert state in ("running", "degraded"), guest.failed_units


def test_guest_pid1_is_systemd_and_python_sees_a_booted_system(guest: BootedContainer) -> None:
    assert guest.read_file("/proc/1/comm").strip() == "systemd"
    booted = guest.run(
        ["/usr/bin/python3", "-c", "import systemd.daemon; print(systemd.daemon.booted())"]
    )
    assert booted.stdout.strip() == "True"


def test_guest_commands_get_a_clean_environment(guest: BootedContainer) -> None:
    env = dict(line.split("=", 1) for line in guest.run(["env"]).stdout.splitlines())
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env
    assert guest.run(["pwd"]).stdout.strip() == "/"
    assert guest.run(["pwd"], cwd="/srv/shared").stdout.strip() == "/srv/shared"
    assert guest.run(["env"], env={"EXTRA": "1"}).stdout.count("EXTRA=1") == 1


def test_unit_written_inside_starts_and_host_is_untouched(guest: BootedContainer) -> None:
    host_unit = Path("/etc/systemd/system") / PROBE_UNIT
    assert not host_unit.exists()

    guest.write_file(f"/etc/systemd/system/{PROBE_UNIT}", PROBE_UNIT_TEXT)
    guest.run(["systemctl", "daemon-reload"])
    guest.run(["systemctl", "start", PROBE_UNIT])

    assert guest.run(["systemctl", "is-active", PROBE_UNIT]).stdout.strip() == "active"
    assert (guest.root / "etc/systemd/system" / PROBE_UNIT).read_text() == PROBE_UNIT_TEXT
    assert not host_unit.exists()


def test_binds_share_host_directories(guest: BootedContainer, shared_dir: Path,
                                      scratch_dir: Path) -> None:
    assert guest.read_file("/srv/shared/from-host.txt") == "written on the host\n"
    refused = guest.run(["touch", "/srv/shared/nope"], check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr

    guest.write_file("/srv/scratch/from-guest.txt", "written in the guest\n")
    assert (scratch_dir / "from-guest.txt").read_text() == "written in the guest\n"

    # Without a bind the host's pytest tmp dirs are invisible: the guest's /tmp is its own tmpfs.
    assert guest.run(["test", "-e", str(shared_dir)], check=False).returncode != 0


def test_failing_command_reports_its_output(guest: BootedContainer) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        guest.run(["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"])
    assert failure.value.returncode == 3
    assert "to-stdout" in str(failure.value) and "to-stderr" in str(failure.value)


def test_exit_removes_mounts_processes_and_directories() -> None:
    # basic.target skips the host's multi-user services: this boot takes a fraction of a second.
    with BootedContainer(unit="basic.target") as container:
        root, nspawn_pid, pid1 = container.root, container.nspawn_pid, container.pid1
        assert len(_mount_lines_mentioning(str(root.parent))) == 2  # tmpfs + overlay
        assert Path(f"/proc/{pid1}").exists()
    _assert_torn_down(root, nspawn_pid, pid1)


def test_two_guests_at_once_get_their_own_names() -> None:
    """systemd-nspawn >= 257 refuses a second running container of the same --machine name."""
    with BootedContainer(unit="basic.target") as first, BootedContainer(unit="basic.target") as second:
        names = set()
        for guest in (first, second):
            guest.run(["true"])  # both are up
            argv = Path(f"/proc/{guest.nspawn_pid}/cmdline").read_text().split("\0")
            names |= {a.split("=", 1)[1] for a in argv if a.startswith("--machine=")}
        assert len(names) == 2 and all(name.startswith("e2e-guest-") for name in names)


def test_machine_names_are_unique_and_fit_a_host_name() -> None:
    names = [unique_machine_name("x" * 80) for _ in range(3)]
    assert len(set(names)) == 3 and all(len(name) <= 64 for name in names)


@pytest.mark.parametrize("fails", ["before PID 1 appears", "after PID 1 appears"])
def test_failed_boot_cleans_up_and_shows_the_console(monkeypatch: pytest.MonkeyPatch,
                                                     fails: str) -> None:
    # The deadlines are forced, not raced: on a loaded 2-core CI machine even mounting the
    # overlay can take longer than any "too short" timeout, which once made this test fail
    # before PID 1 existed.
    seen: dict[str, Any] = {}
    original = BootedContainer._wait_for_pid1

    def wait_for_pid1(self: BootedContainer, deadline: float) -> int:
        seen["root"], seen["nspawn_pid"] = self.root, self.nspawn_pid
        if fails == "before PID 1 appears":
            return original(self, time.monotonic())  # already expired
        seen["pid1"] = original(self, time.monotonic() + 60)
        return seen["pid1"]

    monkeypatch.setattr(BootedContainer, "_wait_for_pid1", wait_for_pid1)
    guests_before = _pid_namespace_inits()
    expected = "no systemd PID 1" if fails == "before PID 1 appears" else "guest not running"
    with pytest.raises(BootError, match=f"(?s){expected}.*console log"), \
            BootedContainer(unit="basic.target", boot_timeout=0.0):
        pytest.fail("an expired boot deadline cannot be met")
    _assert_torn_down(seen["root"], seen["nspawn_pid"], seen.get("pid1"))
    # Before PID 1 was found the harness cannot name it: no guest may be left running anyway.
    assert _pid_namespace_inits() <= guests_before


def test_degraded_boot_is_accepted_and_failed_units_are_recorded(tmp_path: Path) -> None:
    failing = tmp_path / "e2e-fail.service"
    failing.write_text("[Service]\nType=oneshot\nExecStart=/bin/false\n")
    with BootedContainer(binds={failing: "/etc/systemd/system/e2e-fail.service"},
                         unit="basic.target",
                         kernel_args=["systemd.wants=e2e-fail.service"]) as container:
        assert container.state == "degraded"
        assert "e2e-fail.service" in container.failed_units
