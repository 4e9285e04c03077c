"""Issue 18 end to end: the fleet rollout playbook (contrib/ansible/rollout.yml) with the real
``ansible-playbook`` against three booted systemd hosts.

Each host is a booted container (tests/e2e/guest.py) with the libvirt-style fixture packages at
9.0.0 and its own admin state; Ansible reaches it with the ``community.docker.nsenter``
connection by the PID of its systemd, and runs the ``libvirt_units`` module and
``ansible.builtin.dnf`` there with the guest's /usr/bin/python3 and dnf 4:

- ``mono``: the monolithic libvirtd (service and sockets) running, virtproxyd disabled, an idle
  virtsecretd socket whose package 9.1.0 renames;
- ``modular-tls``: the modular daemons, with the admin's ``virtproxyd-tls.socket`` enabled
  (the preset says disable) and virtqemud running;
- ``conflicted``: ``libvirtd.socket`` and ``virtproxyd.socket`` both enabled, which
  ``libvirt-units check`` reports.

The playbook plans the 9.0.0 -> 9.1.0 upgrade everywhere, holds ``conflicted`` back with its
reason, upgrades the other two one per batch and verifies each. The test checks the fleet
summary and the report the playbook writes, and each guest afterwards: packages, enablement of
every unit that existed before, restarts counted from the units' own start log, the record of
the last transaction. Then the module runs alone (``ansible -m``) on the same guests: check mode,
the JSON schema of its results, the fallback to the standalone command and its failure
messages, and ``resume`` after a dnf killed in the plugin's step.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from tests.e2e.container import GUEST_ENV, BootedContainer
from tests.e2e.fixtures import LOCAL_SOCKETS, Pool, catalog
from tests.e2e.guest import (
    HOME,
    HOST_UNITS_TO_MASK,
    REPO_DIR,
    SRC,
    GuestDnf,
    build_rpms,
    our_triggers_spec,
    publish_repos,
    skip_without_nspawn,
    starts,
    wait_for_start_lines,
)
from tests.e2e.harness import REPO_ROOT

PLAYBOOK = REPO_ROOT / "contrib" / "ansible" / "rollout.yml"
COLLECTIONS = REPO_ROOT / "contrib" / "ansible" / "collections"
MODULE_FILE = COLLECTIONS / "ansible_collections/libvirt_units/fleet/plugins/modules/libvirt_units.py"
MODULE = "libvirt_units.fleet.libvirt_units"
FILTERS = ("fleet_summary", "plan_mismatches", "rollout_report")
SCHEMA = json.loads((REPO_ROOT / "doc" / "libvirt-units.schema.json").read_text())
SCHEMA_KEYS = ("command", "root", "transaction", "units", "problems", "guards")
JOURNAL = "/var/lib/dnf/libvirt-units/pending.json"
# The standalone command, as the RPM installs it, run from the bound checkout.
STANDALONE = "/usr/local/bin/libvirt-units"
STANDALONE_TEXT = f"#!/bin/sh\nPYTHONPATH={SRC} exec /usr/bin/python3 -m libvirt_presets \"$@\"\n"
TRIGGERS = "libvirt-units-triggers"
NSENTER_CONNECTION = "community.docker.nsenter"
PLAYBOOK_TIMEOUT = 900

# The fleet's dnf set-up inside each guest: one configuration for the module's dry runs and
# for ansible.builtin.dnf alike (the plugin from the bound checkout, the 9.0.0 + 9.1.0 repo).
FLEET_DIR = "/var/lib/e2e-ansible"
FLEET_DNF_CONF = f"{FLEET_DIR}/dnf.conf"
FLEET_DNF_CONF_TEXT = f"""[main]
gpgcheck=0
install_weak_deps=0
metadata_expire=0
keepcache=0
reposdir={FLEET_DIR}/repos.d
pluginpath={SRC}/dnf-plugins
pluginconfpath={SRC}/etc/dnf/plugins
"""
FLEET_REPO_TEXT = f"[fleet]\nname=fleet\nbaseurl=file://{REPO_DIR}/both\ngpgcheck=0\nenabled=1\n"
RECORD = "/var/lib/dnf/libvirt-units/last-transaction.json"

LIBVIRTD = ("libvirtd.service", *(f"libvirtd{x}.socket" for x in LOCAL_SOCKETS))
PROXY = ("virtproxyd.service", *(f"virtproxyd{x}.socket" for x in LOCAL_SOCKETS))
RELOADED = ("virtlogd.service", "virtlockd.service")
UNITS = tuple(sorted({u for v in ("9.0.0", "9.1.0") for p in catalog(v) for u in p.units}))
SERVICES = tuple(u for u in UNITS if u.endswith(".service"))


def admin_mono(guest: GuestDnf) -> None:
    guest.systemctl("disable", *PROXY)
    guest.systemctl("enable", *LIBVIRTD, "virtsecretd.socket")
    guest.start(*LIBVIRTD[1:], "libvirtd.service", *RELOADED, "virtsecretd.socket")


def admin_modular_tls(guest: GuestDnf) -> None:
    guest.systemctl("enable", "virtproxyd-tls.socket")
    guest.start("virtproxyd.socket", "virtproxyd-tls.socket", "virtqemud.service", "virtlogd.service",
                "virtnetworkd.socket")


def admin_conflicted(guest: GuestDnf) -> None:
    guest.systemctl("enable", "libvirtd.socket")  # virtproxyd.socket: enabled by the preset
    guest.start("virtproxyd.socket", "virtlogd.service")


# name -> (packages at 9.0.0, how the admin set the host up)
HOSTS = {
    "mono": (("libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-daemon-log", "libvirt-daemon-lock",
              "libvirt-daemon-driver-secret"), admin_mono),
    "modular-tls": (("libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-daemon-log", "libvirt-daemon-lock",
                     "libvirt-daemon-driver-network"), admin_modular_tls),
    "conflicted": (("libvirt-daemon", "libvirt-daemon-log", "libvirt-daemon-lock"), admin_conflicted),
}


def ansible_unavailable_reason() -> str | None:
    """Why the real ansible-playbook cannot drive the guests here, or None."""
    if shutil.which("ansible-playbook") is None:
        return "ansible-playbook not found (apt-get install ansible)"
    probe = subprocess.run(["ansible-doc", "-t", "connection", "-j", NSENTER_CONNECTION],
                           capture_output=True, text=True, timeout=120, check=False)
    if probe.returncode != 0 or NSENTER_CONNECTION not in probe.stdout:
        return f"the {NSENTER_CONNECTION} connection is not installed (apt-get install ansible)"
    return None


def skip_without_ansible() -> None:
    reason = ansible_unavailable_reason()
    if reason is not None:
        message = f"the Ansible tests skipped: {reason}"
        print(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def requirements() -> None:
    skip_without_ansible()
    skip_without_nspawn("the Ansible rollout test")


@pytest.fixture(scope="module")
def repos(requirements: None, libvirt_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ours = build_rpms(tmp_path_factory.mktemp("ansible-rpms"), {TRIGGERS: our_triggers_spec()})
    extra = dict.fromkeys(("v900", "both"), (ours[f"{TRIGGERS}-1"],))
    return publish_repos(libvirt_pool, tmp_path_factory.mktemp("ansible-repos"),
                         {"v900": ["9.0.0"], "both": ["9.0.0", "9.1.0"]}, extra=extra)


def enablement(guest: GuestDnf) -> dict[str, str]:
    """`systemctl is-enabled` of every installed fixture unit."""
    files = set(guest.c.run(["ls", "-1", "/usr/lib/systemd/system"]).stdout.split())
    present = [u for u in UNITS if u in files]
    words = guest.systemctl("is-enabled", "--", *present, check=False).stdout.split()
    assert len(words) == len(present), (words, present)
    return dict(zip(present, words))


@contextlib.contextmanager
def fleet(repos: Path) -> Iterator[dict[str, GuestDnf]]:
    """The three hosts, booted one after the other, each in its admin state."""
    with contextlib.ExitStack() as stack:
        guests = {}
        for index, (name, (packages, admin)) in enumerate(HOSTS.items()):
            container = stack.enter_context(BootedContainer(
                binds={REPO_ROOT: SRC, repos: REPO_DIR}, mask=HOST_UNITS_TO_MASK,
                machine=f"e2e-ansible-{os.getpid()}-{index}"))
            guest = GuestDnf(container)
            guest.setup("v900")
            guest.dnf("install", TRIGGERS, *packages, repo="v900")
            admin(guest)
            guest.c.write_file(FLEET_DNF_CONF, FLEET_DNF_CONF_TEXT)
            guest.c.write_file(f"{FLEET_DIR}/repos.d/fleet.repo", FLEET_REPO_TEXT)
            guests[name] = guest
        yield guests


def inventory(guests: dict[str, GuestDnf]) -> dict:
    return {"hypervisors": {
        "hosts": {name: {"ansible_nsenter_pid": guest.c.pid1} for name, guest in guests.items()},
        "vars": {
            "ansible_connection": NSENTER_CONNECTION,
            "ansible_python_interpreter": "/usr/bin/python3",
            # the test set-up: dnf's configuration above, Debian's rpmdb path (HOME/.rpmmacros),
            # the plugin's core from the bound checkout
            "libvirt_units_dnf_args": [f"--config={FLEET_DNF_CONF}", "--releasever=1"],
            "libvirt_units_dnf_conf_file": FLEET_DNF_CONF,
            "libvirt_units_releasever": "1",
            "libvirt_units_environment": {"HOME": HOME, "PYTHONPATH": SRC},
        },
    }}


def ansible_env(workdir: Path) -> dict[str, str]:
    """A clean environment for ansible and ansible-playbook: the nsenter connection hands the
    controller's environment to the guests' processes."""
    (workdir / "ansible.cfg").write_text("[defaults]\n")
    return {**GUEST_ENV, "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-local"),
            "ANSIBLE_REMOTE_TMP": "/var/tmp/ansible-remote"}


def run_ansible(argv: list[str], workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=PLAYBOOK_TIMEOUT, check=False)
    print(f"$ {shlex.join(argv)}  [rc={result.returncode}, {time.monotonic() - started:.1f} s]")
    print(result.stdout)
    print(result.stderr)
    return result


def run_playbook(workdir: Path, guests: dict[str, GuestDnf]) -> subprocess.CompletedProcess[str]:
    inv = workdir / "inventory.yml"
    inv.write_text(json.dumps(inventory(guests), indent=2))  # JSON is YAML
    extra = {"libvirt_units_serial": 1, "libvirt_units_summary_file": str(workdir / "summary.json"),
             "libvirt_units_report_file": str(workdir / "report.json")}
    argv = ["ansible-playbook", "-i", str(inv), "-e", json.dumps(extra), str(PLAYBOOK)]
    return run_ansible(argv, workdir, ansible_env(workdir))


def module(rollout: dict, host: str, args: dict, check_mode: bool = False) -> dict:
    """One ad-hoc run of the libvirt_units module on a guest (the inventory's test set-up added
    to args); its result as the json callback reports it."""
    workdir = rollout["workdir"]
    host_vars = inventory(rollout["guests"])["hypervisors"]["vars"]
    full = {"dnf_args": host_vars["libvirt_units_dnf_args"],
            "extra_environment": host_vars["libvirt_units_environment"], **args}
    env = {**ansible_env(workdir), "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"}
    argv = ["ansible", host, "-i", str(workdir / "inventory.yml"), "-m", MODULE, "-a", json.dumps(full),
            *(["--check"] if check_mode else [])]
    result = run_ansible(argv, workdir, env)
    return json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"][host]


@pytest.fixture(scope="module")
def rollout(repos: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("ansible-rollout")
    with fleet(repos) as guests:
        before, marks = {}, {}
        for name, guest in guests.items():
            wait_for_start_lines(guest, SERVICES)
            before[name] = {"enablement": enablement(guest), "packages": guest.packages()}
            marks[name] = len(guest.events())
        result = run_playbook(workdir, guests)
        after = {}
        for name, guest in guests.items():
            wait_for_start_lines(guest, SERVICES)
            record = guest.c.run(["cat", RECORD], check=False).stdout
            after[name] = {"enablement": enablement(guest), "packages": guest.packages(),
                           "events": guest.events()[marks[name]:],
                           "record": json.loads(record) if record else None, "guards": guest.guards()}
        yield {"result": result, "before": before, "after": after, "guests": guests, "workdir": workdir,
               "summary": json.loads((workdir / "summary.json").read_text()),
               "report": json.loads((workdir / "report.json").read_text())}


def test_playbook_runs_through(rollout):
    result = rollout["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_summary_names_the_units_of_each_host(rollout):
    summary = rollout["summary"]
    units = summary["units"]
    hosts = summary["hosts"]
    print(json.dumps(summary, indent=1))
    # the monolithic daemon restarts on mono only; the log daemons reload where they run
    assert units["libvirtd.service"]["restart"]["hosts"] == ["mono"]
    assert sorted(units["virtlogd.service"]["reload"]["hosts"]) == ["conflicted", "modular-tls", "mono"]
    assert units["virtlockd.service"]["reload"]["hosts"] == ["mono"]
    assert "restart" in hosts["modular-tls"]["actions"]["virtqemud.service"]
    # the admin's TLS socket moves to libvirt-daemon-proxy and is kept (the preset says disable)
    assert "keep" in hosts["modular-tls"]["actions"]["virtproxyd-tls.socket"]
    # units new in 9.1.0 get their preset on the hosts that have libvirt-daemon-driver-qemu
    assert sorted(units["virtqemud-admin.socket"]["preset:enable"]["hosts"]) == ["modular-tls", "mono"]
    assert sorted(units["virtqemud-tcp.socket"]["preset:disable"]["hosts"]) == ["modular-tls", "mono"]
    for unit, by_action in units.items():
        for action, entry in by_action.items():
            assert entry["count"] == len(entry["hosts"]), (unit, action)
            for host in entry["hosts"]:
                assert action in hosts[host]["actions"][unit]
    (line,) = [line for line in summary["lines"] if line.startswith("libvirtd.service ")]
    assert "restart 1 (mono)" in line and "keep 3 (mono, modular-tls, conflicted)" in line, line
    assert line in rollout["result"].stdout  # printed, too


def test_conflicted_host_is_held_back_with_its_reason(rollout):
    summary, result = rollout["summary"], rollout["result"]
    assert summary["ready"] == ["mono", "modular-tls"]
    assert list(summary["held"]) == ["conflicted"]
    (reason,) = summary["held"]["conflicted"]
    assert reason.startswith("socket-conflict: ") and "libvirtd.socket" in reason and "virtproxyd.socket" in reason
    assert "HELD BACK conflicted: socket-conflict" in result.stdout
    assert rollout["report"]["conflicted"] == {"state": "held", "reasons": [reason]}
    # nothing happened there
    after, before = rollout["after"]["conflicted"], rollout["before"]["conflicted"]
    assert after["packages"] == before["packages"] and after["packages"]["libvirt-daemon"] == "9.0.0"
    assert after["enablement"] == before["enablement"]
    assert after["events"] == []
    assert after["record"] is None or after["record"]["command"] == "transaction"


def test_ready_hosts_upgraded_keeping_every_admin_setting(rollout):
    for name in ("mono", "modular-tls"):
        before, after = rollout["before"][name], rollout["after"][name]
        assert after["packages"]["libvirt-daemon"] == "9.1.0", name
        assert after["packages"]["libvirt-daemon-proxy"] == "9.1.0", name
        kept = {u: after["enablement"].get(u) for u in before["enablement"]}
        assert kept == before["enablement"], name
        assert after["guards"] == []
    assert rollout["after"]["modular-tls"]["enablement"]["virtproxyd-tls.socket"] == "enabled"
    assert rollout["after"]["mono"]["enablement"]["libvirtd.service"] == "enabled"
    assert rollout["after"]["mono"]["enablement"]["virtproxyd.socket"] == "disabled"


def test_each_daemon_restarted_at_most_once(rollout):
    for name in ("mono", "modular-tls"):
        events = rollout["after"][name]["events"]
        counts = {s: len(starts(events, s.removesuffix(".service"))) for s in SERVICES}
        print(f"COUNTS ansible {name}: " + ", ".join(f"{s}={n}" for s, n in counts.items() if n))
        assert all(n <= 1 for n in counts.values()), (name, counts, events)
        assert all(counts[s] == 0 for s in RELOADED), (name, events)  # reloaded, never restarted
    assert len(starts(rollout["after"]["mono"]["events"], "libvirtd")) == 1
    assert len(starts(rollout["after"]["modular-tls"]["events"], "virtqemud")) == 1


def test_verification_passes_and_matches_the_guests_records(rollout):
    report, summary, result = rollout["report"], rollout["summary"], rollout["result"]
    assert report["mono"]["state"] == report["modular-tls"]["state"] == "verified", report
    assert result.stdout.count("check clean, the transaction did what was planned") == 2
    for name in ("mono", "modular-tls"):
        record = rollout["after"][name]["record"]
        done = {u["unit"]: [a for a in u["actions"] if a != "none"] for u in record["units"]}
        assert {u: a for u, a in done.items() if a} == summary["hosts"][name]["actions"], name
        assert sorted(record["guards"]) == sorted(summary["hosts"][name]["guards"])


# -- the module alone (ad-hoc `ansible -m`), on the guests the rollout left ------------------------


def schema_part(result: dict) -> dict:
    """The keys of the module's result that follow doc/libvirt-units.schema.json."""
    return {key: result[key] for key in SCHEMA_KEYS}


def test_module_plan_status_check_change_nothing_and_follow_the_schema(rollout):
    plan = module(rollout, "conflicted", {"state": "plan"}, check_mode=True)
    assert (plan["changed"], plan.get("failed", False), plan["backend"]) == (False, False, "dnf")
    jsonschema.validate(schema_part(plan), SCHEMA)
    assert plan["command"] == "dry-run" and plan["transaction"] and plan["guards"]
    assert "reload" in plan["actions"]["virtlogd.service"]

    status = module(rollout, "mono", {"state": "status"})
    assert status["changed"] is False
    jsonschema.validate(schema_part(status), SCHEMA)
    by_unit = {u["unit"]: u for u in status["units"]}
    assert by_unit["libvirtd.service"]["enablement"] == "enabled"
    assert by_unit["libvirtd.service"]["active"] == "active"
    assert status["last_transaction"]["outcome"]["restarted"] == ["libvirtd.service"]

    clean = module(rollout, "mono", {"state": "check"})
    assert (clean["changed"], clean.get("failed", False), clean["problems"], clean["rc"]) == (False, False, [], 0)

    broken = module(rollout, "conflicted", {"state": "check"})
    assert broken["failed"] is True and broken["changed"] is False
    jsonschema.validate(schema_part(broken), SCHEMA)
    assert [p["kind"] for p in broken["problems"]] == ["socket-conflict"]
    assert broken["msg"].startswith("libvirt-units check: 1 problem(s): libvirtd.socket and virtproxyd.socket")


def test_module_falls_back_to_the_standalone_command_or_says_why_it_cannot(rollout):
    guest = rollout["guests"]["mono"]
    no_plugin = [f"--config={FLEET_DNF_CONF}", "--releasever=1", "--noplugins"]
    nothing = module(rollout, "mono", {"state": "status", "dnf_args": no_plugin})
    assert nothing["failed"] is True
    assert nothing["msg"].startswith("neither dnf 4 with the libvirt-units plugin (dnf) nor the libvirt-units "
                                     "command (libvirt-units) can run 'status' on this host: "), nothing["msg"]
    assert "No such command: libvirt-units" in nothing["msg"] and "libvirt-units: not found" in nothing["msg"]

    guest.c.write_file(STANDALONE, STANDALONE_TEXT, mode=0o755)
    try:
        status = module(rollout, "mono", {"state": "status", "dnf_args": no_plugin})
        assert (status.get("failed", False), status["backend"]) == (False, "libvirt-units"), status
        assert status["cmd"] == [STANDALONE, "status", "--json", "--root", "/"]
        jsonschema.validate(schema_part(status), SCHEMA)
        # `libvirt-units plan`, the dry run without dnf 4, through the same fallback
        plan = module(rollout, "mono", {"state": "plan", "dnf_args": no_plugin})
        assert (plan.get("failed", False), plan["backend"]) == (False, "libvirt-units"), plan
        assert plan["cmd"][:3] == [STANDALONE, "plan", "upgrade"]
        jsonschema.validate(schema_part(plan), SCHEMA)
    finally:
        guest.c.run(["rm", "-f", STANDALONE])


def test_module_resume_changes_only_when_a_transaction_is_unfinished(rollout):
    guest = rollout["guests"]["conflicted"]  # held back: still at 9.0.0
    idle = module(rollout, "conflicted", {"state": "resume"})
    assert (idle["changed"], idle["pending"], idle["msg"]) == (False, False, "no unfinished transaction to complete")

    # dnf killed after rpm, in the plugin's step: the journal stays behind
    guest.dnf("upgrade", "libvirt-daemon-log", repo="both", check=False,
              env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:finish"})
    assert guest.c.run(["test", "-e", JOURNAL], check=False).returncode == 0

    dry = module(rollout, "conflicted", {"state": "resume"}, check_mode=True)
    assert (dry["changed"], dry["pending"], dry["backend"]) == (True, True, None)
    assert guest.c.run(["test", "-e", JOURNAL], check=False).returncode == 0  # check mode: untouched

    done = module(rollout, "conflicted", {"state": "resume"})
    assert (done["changed"], done["pending"], done["backend"], done.get("failed", False)) == (True, True, "dnf", False)
    assert guest.c.run(["test", "-e", JOURNAL], check=False).returncode == 1
    assert guest.guards() == []
    assert done["last_transaction"]["command"] == "transaction"
    assert guest.is_enabled("libvirtd.socket") == guest.is_enabled("virtproxyd.socket") == "enabled"  # kept

    again = module(rollout, "conflicted", {"state": "resume"})
    assert (again["changed"], again["pending"]) == (False, False)


# -- static checks of the collection (ansible-test sanity runs them in full, see README) -----------


def test_module_and_filters_are_documented_for_ansible_doc():
    skip_without_ansible()
    yaml = pytest.importorskip("yaml")
    env = {**GUEST_ENV, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS)}
    docs = json.loads(subprocess.run(["ansible-doc", "-j", MODULE], env=env, capture_output=True, text=True,
                                     timeout=120, check=True).stdout)[MODULE]
    options = docs["doc"]["options"]
    assert options["state"]["choices"] == ["plan", "status", "check", "resume"]
    assert set(options) >= {"dnf_args", "extra_environment", "root", "backend", "fail_on_problems"}
    assert {"units", "problems", "last_transaction"} <= set(docs["return"])
    for name in FILTERS:
        out = subprocess.run(["ansible-doc", "-t", "filter", "-j", f"libvirt_units.fleet.{name}"], env=env,
                             capture_output=True, text=True, timeout=120, check=True).stdout
        assert json.loads(out)[f"libvirt_units.fleet.{name}"]["doc"]["name"] == name
    # EXAMPLES parse too (ansible-doc does not read them)
    tree = ast.parse(MODULE_FILE.read_text())
    blocks = {n.targets[0].id: n.value.value for n in tree.body
              if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)}
    assert all(yaml.safe_load(blocks[key]) for key in ("DOCUMENTATION", "EXAMPLES", "RETURN"))


def test_module_runs_on_old_target_pythons():
    """Managed hosts run the module with their system Python (RHEL 8: 3.6); no newer syntax."""
    ast.parse(MODULE_FILE.read_text(), feature_version=(3, 6))


def test_playbook_passes_ansible_syntax_check():
    skip_without_ansible()
    result = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "localhost,", str(PLAYBOOK)],
                            env={**GUEST_ENV}, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
