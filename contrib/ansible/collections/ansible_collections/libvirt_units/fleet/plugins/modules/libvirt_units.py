#!/usr/bin/python
# Copyright: the libvirt-units authors
# GNU Lesser General Public License v2.1+ (see the libvirt-units repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: libvirt_units
short_description: Plan, inspect, check and complete libvirt-units transactions on a host
version_added: "0.1.0"
description:
  - Runs C(dnf libvirt-units) (the dnf 4 plugin's command) on the managed host and returns its
    JSON output (the schema of C(doc/libvirt-units.schema.json) in the libvirt-units
    repository) as structured return values.
  - I(state=plan) resolves an upgrade, install or remove without running it and returns, per
    managed systemd unit, the planned actions (C(preset:enable), C(preset:disable), C(keep),
    C(guard), C(restart), C(reload), C(start), C(stop), C(none)) with their reasons.
  - I(state=status) returns the managed units with owner, enablement, preset and drift.
  - I(state=check) returns the problems C(libvirt-units check) finds (for instance
    C(libvirtd.socket) and C(virtproxyd.socket) both enabled on the same socket path) and fails
    when there is one, unless I(fail_on_problems=false).
  - I(state=resume) completes a transaction that a killed dnf left unfinished; it is the only
    state that changes the host.
  - Where there is no dnf 4 (dnf5 hosts), the standalone C(libvirt-units) command is used
    instead (C(libvirt-units plan) for I(state=plan)).
  - Every state also returns the record of the last transaction, C(last_transaction).
author:
  - libvirt-units maintainers (!UNKNOWN)
requirements:
  - the libvirt-units dnf 4 plugin, or the C(libvirt-units) command, on the managed host
options:
  state:
    description:
      - What to do. Only C(resume) changes anything.
    type: str
    required: true
    choices: [plan, status, check, resume]
  operation:
    description:
      - With I(state=plan), the transaction to plan.
    type: str
    default: upgrade
    choices: [upgrade, install, remove]
  packages:
    description:
      - With I(state=plan), the package specs to upgrade, install or remove.
      - Empty (or C(*) alone) with I(operation=upgrade) plans an upgrade of everything.
    type: list
    elements: str
    default: []
  root:
    description:
      - The installroot to act on (dnf C(--installroot), C(libvirt-units --root)).
    type: path
    default: /
  fail_on_problems:
    description:
      - With I(state=check), fail when C(check) finds a problem. The problems are returned either way.
    type: bool
    default: true
  backend:
    description:
      - Which front end to run. C(auto) runs the dnf 4 command when dnf 4 with the plugin is
        there, else the standalone C(libvirt-units) command.
    type: str
    default: auto
    choices: [auto, dnf, libvirt-units]
  dnf_command:
    description:
      - The dnf 4 executable (name on C(PATH) or absolute path).
    type: str
    default: dnf
  libvirt_units_command:
    description:
      - The standalone command (name on C(PATH) or absolute path).
    type: str
    default: libvirt-units
  dnf_args:
    description:
      - Advanced (and for tests) extra options for dnf, placed before the C(libvirt-units)
        command, e.g. C(--config=FILE), C(--releasever=N), C(--setopt=pluginpath=DIR).
      - Not used by the standalone command.
    type: list
    elements: str
    default: []
  extra_environment:
    description:
      - Advanced (and for tests) environment variables for the command, e.g. C(PYTHONPATH) for
        a plugin run from a source checkout, or C(HOME) for rpm's C(~/.rpmmacros).
    type: dict
    default: {}
notes:
  - Supports check mode. I(state=plan), C(status) and C(check) never change the host and run
    in check mode as usual; I(state=resume) in check mode only reports whether a transaction
    is unfinished.
  - Runs the commands as the connecting user; planning as non-root reads dnf's metadata cache only.
"""

EXAMPLES = r"""
- name: Plan an upgrade of everything
  libvirt_units.fleet.libvirt_units:
    state: plan
  register: plan

- name: Plan an upgrade of libvirt alone
  libvirt_units.fleet.libvirt_units:
    state: plan
    operation: upgrade
    packages: [libvirt*]

- name: Hold back a host with conflicting sockets (the module fails with the reasons)
  libvirt_units.fleet.libvirt_units:
    state: check

- name: Collect the problems without failing
  libvirt_units.fleet.libvirt_units:
    state: check
    fail_on_problems: false
  register: check

- name: Complete a transaction a killed dnf left unfinished
  libvirt_units.fleet.libvirt_units:
    state: resume

- name: Plugin from a source checkout (test set-up)
  libvirt_units.fleet.libvirt_units:
    state: status
    dnf_args: ["--setopt=pluginpath=/srv/src/dnf-plugins", "--setopt=pluginconfpath=/srv/src/etc/dnf/plugins"]
    extra_environment:
      PYTHONPATH: /srv/src
"""

RETURN = r"""
command:
  description: What produced the output (C(dry-run), C(status), C(check)); C(resume) for I(state=resume).
  returned: always
  type: str
  sample: dry-run
root:
  description: The installroot the output speaks of.
  returned: always
  type: str
  sample: /
transaction:
  description: I(state=plan) the package changes of the resolved transaction.
  returned: always
  type: list
  elements: dict
  sample: [{"package": "libvirt-daemon-9.1.0-1.noarch", "action": "upgrade"}]
units:
  description:
    - One item per managed unit, with C(unit), C(scope), C(package_before), C(package_after),
      C(actions) and C(reasons); I(state=plan) adds C(enablement), I(state=status) adds
      C(enablement), C(preset), C(preset_reason), C(drift) and C(active).
  returned: always
  type: list
  elements: dict
  sample: [{"unit": "libvirtd.service", "scope": "system", "actions": ["guard", "restart"], "reasons": ["...", "..."]}]
problems:
  description: I(state=check) the problems found, each with C(kind), C(units) and C(message).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "socket-conflict", "units": ["libvirtd.socket", "virtproxyd.socket"], "message": "..."}]
guards:
  description: I(state=plan) the units that would be guarded against stops and restarts while rpm runs.
  returned: always
  type: list
  elements: str
  sample: [libvirtd.service, libvirtd.socket]
actions:
  description: I(state=plan) the planned actions as a map unit -> list of actions (C(none) left out).
  returned: always
  type: dict
  sample: {"libvirtd.service": ["guard", "restart"], "virtproxyd-tls.socket": ["keep"]}
last_transaction:
  description:
    - The record of the last transaction (C(/var/lib/dnf/libvirt-units/last-transaction.json)
      under I(root)) with C(units), C(guards) and C(outcome) (C(preset), C(restored_links),
      C(restarted), C(reloaded), C(started), C(stopped), C(warnings)); null when there is none.
  returned: always
  type: dict
  sample: {"command": "transaction", "outcome": {"restarted": ["libvirtd.service"]}}
pending:
  description: Whether an unfinished transaction (a journal) was there when the module started.
  returned: always
  type: bool
  sample: false
backend:
  description: The front end that ran (C(dnf) or C(libvirt-units)); null when nothing ran.
  returned: always
  type: str
  sample: dnf
cmd:
  description: The command line that ran.
  returned: when a command ran
  type: list
  elements: str
  sample: [dnf, --installroot=/, libvirt-units, --dry-run, --json, upgrade]
rc:
  description: Its exit status.
  returned: when a command ran, except I(state=check) with I(fail_on_problems=false) finding problems
  type: int
  sample: 0
problems_found_rc:
  description:
    - The exit status of C(check) (1) when it found problems and I(fail_on_problems=false).
      Not returned as C(rc), which Ansible would take for a failure.
  returned: I(state=check) with I(fail_on_problems=false) finding problems
  type: int
  sample: 1
stdout:
  description: Its standard output (the text of the JSON document, or the messages of C(resume)).
  returned: when a command ran
  type: str
stderr:
  description: Its standard error (dnf's and the plugin's messages).
  returned: when a command ran
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

STATE_DIR = "var/lib/dnf/libvirt-units"
LAST_TRANSACTION = "last-transaction.json"
PENDING = "pending.json"

# The dnf 4 front end says so when the plugin is not loaded; dnf5 has no such command at all.
NO_COMMAND_MARKERS = ("No such command", "Unknown argument", "unknown argument")

MSG_NO_FRONT_END = ("neither dnf 4 with the libvirt-units plugin ({dnf}) nor the libvirt-units command "
                    "({cmd}) can run '{what}' on this host: {why}")
MSG_NOT_JSON = "{cmd} printed no JSON object (rc={rc}): {detail}"
MSG_FAILED = "{cmd} failed (rc={rc}): {detail}"
MSG_PROBLEMS = "libvirt-units check: {count} problem(s): {details}"
MSG_NEEDS_PACKAGES = "operation={operation} needs packages"
MSG_BAD_RECORD = "cannot read the last-transaction record {path}: {error}"


def state_path(root, name):
    return os.path.join(root, STATE_DIR, name)


def read_record(module, root):
    """The last transaction's record, or None when there is none."""
    path = state_path(root, LAST_TRANSACTION)
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (IOError, OSError) as exc:
        if not os.path.lexists(path):
            return None
        module.fail_json(msg=MSG_BAD_RECORD.format(path=path, error=exc))
    except ValueError as exc:
        module.fail_json(msg=MSG_BAD_RECORD.format(path=path, error=exc))


def parse_json_document(text):
    """The JSON object in a command's stdout: dnf may print other lines before it."""
    decoder = json.JSONDecoder()
    offset = 0
    for line in text.splitlines(True):
        if line.startswith("{"):
            try:
                data = decoder.raw_decode(text, offset)[0]
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
        offset += len(line)
    return None


def one_line(text, limit=400):
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def subcommand(params, front_end):
    """The arguments after the front end's own options, for one state."""
    state = params["state"]
    packages = [p for p in params["packages"] if p != "*"] if params["operation"] == "upgrade" \
        else list(params["packages"])
    if state == "plan":
        if front_end == "dnf":
            return ["--dry-run", "--json", params["operation"]] + packages
        return ["plan", params["operation"]] + packages + ["--json"]
    if state in ("status", "check"):
        return [state, "--json"]
    return ["resume"]


class Runner(object):
    """Finds the front end once and runs the state's command with it."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.environ = dict((str(k), str(v)) for k, v in self.params["extra_environment"].items())

    def dnf_argv(self, args):
        dnf = self.module.get_bin_path(self.params["dnf_command"]) if not os.path.isabs(
            self.params["dnf_command"]) else self.params["dnf_command"]
        if not dnf or not os.access(dnf, os.X_OK):
            return None, "{0}: not found".format(self.params["dnf_command"])
        if "dnf5" in os.path.basename(os.path.realpath(dnf)):
            return None, "{0} is dnf5, which does not load dnf 4 plugins".format(dnf)
        return [dnf, "--installroot={0}".format(self.params["root"])] + list(self.params["dnf_args"]) + \
            ["libvirt-units"] + args, None

    def standalone_argv(self, args):
        cmd = self.params["libvirt_units_command"]
        found = cmd if os.path.isabs(cmd) else self.module.get_bin_path(cmd)
        if not found or not os.access(found, os.X_OK):
            return None, "{0}: not found".format(cmd)
        return [found] + args + ["--root", self.params["root"]], None

    def run(self):
        """(backend, argv, rc, stdout, stderr) of the first front end that has the command, or
        (None, reasons) when none has it."""
        backend = self.params["backend"]
        order = ["dnf", "libvirt-units"] if backend == "auto" else [backend]
        why = []
        for front_end in order:
            make = self.dnf_argv if front_end == "dnf" else self.standalone_argv
            argv, missing = make(subcommand(self.params, front_end))
            if argv is None:
                why.append(missing)
                continue
            rc, out, err = self.module.run_command(argv, environ_update=self.environ)
            if rc != 0 and self.lacks_command(front_end, out, err):
                why.append("{0}: {1}".format(" ".join(argv), one_line(err or out, 200)))
                continue
            return front_end, argv, rc, out, err
        return None, why

    def lacks_command(self, front_end, out, err):
        """The front end is there but does not know this subcommand (no plugin, no `plan` yet)."""
        text = (out or "") + (err or "")
        if front_end == "dnf":
            return any(marker in text for marker in NO_COMMAND_MARKERS)
        return "invalid choice" in text


def planned_actions(units):
    """unit -> its actions, for the units with an action other than `none`."""
    actions = {}
    for row in units:
        kept = [a for a in row.get("actions") or [] if a != "none"]
        if kept:
            actions[row["unit"]] = kept
    return actions


def result_from(data, command):
    units = data.get("units") or []
    return {
        "command": data.get("command", command),
        "root": data.get("root"),
        "transaction": data.get("transaction") or [],
        "units": units,
        "problems": data.get("problems") or [],
        "guards": data.get("guards") or [],
        "actions": planned_actions(units),
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["plan", "status", "check", "resume"]),
            operation=dict(type="str", default="upgrade", choices=["upgrade", "install", "remove"]),
            packages=dict(type="list", elements="str", default=[]),
            root=dict(type="path", default="/"),
            fail_on_problems=dict(type="bool", default=True),
            backend=dict(type="str", default="auto", choices=["auto", "dnf", "libvirt-units"]),
            dnf_command=dict(type="str", default="dnf"),
            libvirt_units_command=dict(type="str", default="libvirt-units"),
            dnf_args=dict(type="list", elements="str", default=[]),
            extra_environment=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    params = module.params
    root = params["root"]
    if params["state"] == "plan" and params["operation"] != "upgrade" and not params["packages"]:
        module.fail_json(msg=MSG_NEEDS_PACKAGES.format(operation=params["operation"]))
    pending = os.path.lexists(state_path(root, PENDING))
    result = dict(changed=False, pending=pending, backend=None, command=params["state"], root=root,
                  transaction=[], units=[], problems=[], guards=[], actions={})

    if params["state"] == "resume" and (not pending or module.check_mode):
        # Nothing to complete, or check mode: say whether there is something, touch nothing.
        result.update(changed=pending, command="resume", last_transaction=read_record(module, root),
                      msg="an unfinished transaction would be completed" if pending
                      else "no unfinished transaction to complete")
        module.exit_json(**result)

    ran = Runner(module).run()
    if ran[0] is None:
        module.fail_json(msg=MSG_NO_FRONT_END.format(
            dnf=params["dnf_command"], cmd=params["libvirt_units_command"], what=params["state"],
            why="; ".join(ran[1])), **result)
    backend, argv, rc, out, err = ran
    result.update(backend=backend, cmd=argv, rc=rc, stdout=out, stderr=err)
    if params["state"] == "resume":
        if rc != 0:
            module.fail_json(msg=MSG_FAILED.format(cmd=" ".join(argv), rc=rc, detail=one_line(err or out)),
                             **result)
        result.update(changed=True, command="resume", last_transaction=read_record(module, root),
                      msg=one_line(out + err) or "the unfinished transaction was completed")
        module.exit_json(**result)

    data = parse_json_document(out)
    if data is None:
        module.fail_json(msg=MSG_NOT_JSON.format(cmd=" ".join(argv), rc=rc, detail=one_line(err or out)),
                         **result)
    # `check` exits 1 when it found problems and still prints its JSON; anything else is a failure.
    if rc != 0 and not (params["state"] == "check" and rc == 1 and data.get("problems")):
        module.fail_json(msg=MSG_FAILED.format(cmd=" ".join(argv), rc=rc, detail=one_line(err or out)),
                         **result)
    result.update(result_from(data, params["state"]))
    result["last_transaction"] = read_record(module, root)
    if params["state"] == "check" and result["problems"]:
        details = "; ".join(p.get("message", p.get("kind", "")) for p in result["problems"])
        result["msg"] = MSG_PROBLEMS.format(count=len(result["problems"]), details=details)
        if params["fail_on_problems"]:
            module.fail_json(**result)
        # Ansible takes any non-zero rc for a failure: `check` says "problems found" with 1.
        result["problems_found_rc"] = result.pop("rc")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
