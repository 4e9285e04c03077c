"""Issue 19 items 2 and 3 end to end: where the plugin must leave the service manager alone.

- A transaction that never reaches rpm after our ``pre_transaction`` placed its guards (another
  plugin refuses it): no guard may outlive dnf; the manager must accept ``systemctl restart``
  right away.
- An image build or a chroot: ``SYSTEMD_OFFLINE=1``, or a build root with the host's /run bound
  in, is never the running host, whatever ``/run/systemd/system`` says. The plugin must not
  guard, reload or restart anything there, as the scriptlets' own systemctl does not.

Real dnf in a booted systemd (tests/e2e/guest.py), classic fixture pool; the plugin's systemctl
calls are counted by the wrapper first on dnf's PATH.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.e2e.fixtures import EVENTS_LOG, Pool
from tests.e2e.guest import (
    SRC,
    GuestDnf,
    booted_guest,
    container_module,
    guarded_units,
    publish_repos,
    transact,
)
from tests.e2e.harness import REPO_ROOT

COUNT_LINES: list[str] = []
module_setup = container_module("host boundary tests", "issue 19: where the manager is left alone", COUNT_LINES)

PACKAGES = ("libvirt-daemon", "libvirt-daemon-log", "libvirt-daemon-driver-qemu")
SERVICES = ("libvirtd.service", "virtlogd.service", "virtqemud.service")
LIVE_VERBS = ("daemon-reload", "show", "restart", "reload-or-restart", "start", "stop", "try-restart",
              "set-property")
LAST = "/var/lib/dnf/libvirt-units/last-transaction.json"
PENDING = "/var/lib/dnf/libvirt-units/pending.json"

ABORT_DIR = "/var/lib/e2e-dnf/abort-plugin"
# A plugin loaded after ours (its directory comes later in pluginpath) that refuses every
# transaction in its own pre_transaction, as a failing versionlock or snapshot plugin would:
# dnf stops before rpm runs, and our transaction hook never runs.
ABORT_PLUGIN = f"""\
import glob

import dnf
import dnf.exceptions


class Abort(dnf.Plugin):
    name = "zz-abort"

    def pre_transaction(self):
        guards = glob.glob("/run/systemd/system/*.d/50-libvirt-units-guard.conf")
        with open("{EVENTS_LOG}", "a") as log:
            log.write(f"abort with {{len(guards)}} guards\\n")
        raise dnf.exceptions.Error("zz-abort: this transaction is refused")
"""


@pytest.fixture(scope="module")
def repos(classic_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return publish_repos(classic_pool, tmp_path_factory.mktemp("boundary-repos"),
                         {"v900": ["9.0.0"], "v910": ["9.0.0", "9.1.0"]})


@contextlib.contextmanager
def running_host(repos: Path) -> Iterator[GuestDnf]:
    with booted_guest(REPO_ROOT, repos) as container:
        guest = GuestDnf(container)
        guest.setup("v900")
        guest.dnf("install", *PACKAGES, repo="v900", plugin=False)
        guest.install_systemctl_wrapper()
        guest.start(*SERVICES)
        yield guest


def manager_counters(guest: GuestDnf) -> dict[str, str]:
    """Jobs ever queued by the manager, and when it last (re)loaded its units."""
    out = guest.systemctl("show", "-p", "NInstalledJobs,UnitsLoadStartTimestampMonotonic").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_a_refused_transaction_leaves_no_guard_and_restarts_work(repos):
    with running_host(repos) as guest:
        guest.c.write_file(f"{ABORT_DIR}/zz_abort.py", ABORT_PLUGIN)
        pluginpath = f"--setopt=pluginpath={SRC}/dnf-plugins,{ABORT_DIR}"  # ours first, then the abort
        run = transact(guest, pluginpath, "upgrade", *PACKAGES, plugin=True, watch=SERVICES, check=False)
        assert run.returncode != 0 and "zz-abort: this transaction is refused" in run.output, run.output
        placed = [line for line in run.events if line.startswith("abort with ")]
        assert placed and placed[0] != "abort with 0 guards", run.events  # ours ran first, guards were in place
        assert set(SERVICES) <= guarded_units(run.output)
        assert guest.packages()["libvirt-daemon"] == "9.0.0"  # rpm never ran
        # dnf is gone: no guard file, none left in the manager, no journal waiting for a resume
        assert guest.guards() == []
        shown = guest.systemctl("show", "-p", "RefuseManualStop", "--", *SERVICES).stdout.split()
        assert shown == ["RefuseManualStop=no"] * len(SERVICES)
        assert guest.c.run(["test", "-e", PENDING], check=False).returncode == 1
        assert run.starts("libvirtd.service") == 0  # nothing was restarted for a transaction that did not happen
        assert guest.systemctl("restart", "libvirtd.service", check=False).returncode == 0


BUILD_ROOT = "/mnt/build-root"
# A build root as mock or an image builder makes one: another tree (a tmpfs of its own, so its
# / is not PID 1's), with the guest's own trees bound in (so it has dnf, python, the packages; no
# overlay: inside the test stacks the guest's / is an overlay already, and overlayfs nests at most
# twice) and the host's /proc, /dev and /run among them.
MAKE_BUILD_ROOT = f"""
set -e
mkdir -p {BUILD_ROOT}
mount -t tmpfs tmpfs {BUILD_ROOT}
cd {BUILD_ROOT}
for path in /*; do  # every top-level directory (rpm >= 4.20 mounts a private /home, /tmp), not /mnt
    d=${{path#/}}
    if [ -L "$path" ]; then ln -s "$(readlink "$path")" "$d"
    elif [ -d "$path" ] && [ "$d" != mnt ]; then mkdir "$d"; mount --rbind "$path" "$d"; fi
done
"""
CASES = {  # id -> (run dnf chrooted in the build root, environment)
    "offline-env": (False, {"SYSTEMD_OFFLINE": "1"}),
    "chroot": (True, {}),
    "chroot-offline-env": (True, {"SYSTEMD_OFFLINE": "1"}),
}


@pytest.mark.parametrize("case", CASES)
def test_an_image_build_or_a_chroot_never_touches_the_running_manager(repos, case):
    chroot, env = CASES[case]
    with running_host(repos) as guest:
        wrap: Sequence[str] = ()
        root = "/"
        if chroot:
            guest.c.run(["sh", "-c", MAKE_BUILD_ROOT])
            wrap, root = ("chroot", BUILD_ROOT), BUILD_ROOT
        before = manager_counters(guest)
        shown_before = guest.show(*SERVICES)
        run = transact(guest, "upgrade", *PACKAGES, plugin=True, watch=SERVICES, env=env, wrap=wrap)
        line = f"COUNTS boundary {case}: plugin systemctl calls={[c[0] for c in run.calls]}"
        print(line)
        COUNT_LINES.append(line)
        assert guest.packages(root)["libvirt-daemon"] == "9.1.0"
        assert not [c for c in run.calls if any(v in c for v in LIVE_VERBS)], run.calls
        assert manager_counters(guest) == before  # no job queued, no daemon-reload, by anyone
        assert {u: s.invocation_id for u, s in guest.show(*SERVICES).items()} == {
            u: s.invocation_id for u, s in shown_before.items()}
        assert guest.guards() == [] and guarded_units(run.output) == set()
        record = json.loads(guest.c.read_file(root.rstrip("/") + LAST))
        assert record["guards"] == [] and record["outcome"]["restarted"] == [], record
        assert "Traceback" not in run.output
