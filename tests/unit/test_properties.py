"""Properties of every parser the project owns, and of the planner (hypothesis).

The preset-file parser and evaluator have theirs in test_presets_eval.py (parse_preset_text and
load_presets never raise, every decision has a known action, glob_match agrees with glibc).
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from libvirt_presets import journal, state
from libvirt_presets.config import POLICIES, Config, load_config, parse_config
from libvirt_presets.facts import ERASE, INBOUND, LiveFacts, PackageChange, TransactionFacts
from libvirt_presets.planner import LinkRestore, files_that_matter, link_restores, plan_transaction
from libvirt_presets.presets import PresetSet
from libvirt_presets.snapshot import Snapshot, link_units
from libvirt_presets.units import (
    ENABLEMENT_DIRS,
    SYSTEM,
    UNIT_NAME_MAX,
    UNIT_TYPES,
    USER,
    VENDOR_DIRS,
    Scope,
    UnitKey,
    is_glob_valid,
    is_valid_unit_name,
    template_of,
)

TMP = [HealthCheck.function_scoped_fixture]  # each example cleans up what it writes in tmp_path
NO_DEADLINE = settings(deadline=None)  # a busy shared test machine is no reason to fail

# --- configuration ----------------------------------------------------------------------------------

KEYS = ["enabled", "presets", "restarts", "guard", "units", "extra_units", "colour", "",
        "virtqemud.service", "virt*.service", "libvirt-daemon", "/usr/share/x/*", "$(id)", "a b", "-x"]
VALUES = ["yes", "no", "maybe", "", "restart", "reload", "never", "virtqemud.service libvirtd.service",
          "virt*.socket, libvirtd.service", "a;b.service", "$(reboot)", "x y z"]
CONFIG_LINES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["[main]", "[policy]", "[triggers]", "[other]", "[main", "# c", "; c", "", "  "]),
    st.builds(lambda k, sep, v: f"{k}{sep}{v}", st.sampled_from(KEYS), st.sampled_from(["=", " = ", "=="]),
              st.sampled_from(VALUES) | st.text(max_size=12)),
)
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r", "\x0b", "\u2028"])


def numbered_problem(problem: str, path: str, lines: int) -> bool:
    if not problem.startswith(path + ":"):
        return False
    number = problem[len(path) + 1:].split(":", 1)[0]
    return number.isdigit() and 1 <= int(number) <= lines


@NO_DEADLINE
@given(st.lists(st.tuples(CONFIG_LINES, LINE_ENDS), max_size=12))
def test_parse_config_never_raises_and_every_problem_is_one_numbered_line(pieces):
    text = "".join(line + end for line, end in pieces)
    cfg = parse_config(text, "/etc/x.conf")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
    for problem in cfg.problems:
        assert problem.isprintable() and len(problem.splitlines()) == 1, problem
        assert numbered_problem(problem, "/etc/x.conf", lines), problem
    assert all(policy in POLICIES for policy in cfg.policies.values())
    assert all(is_glob_valid(g) for g in cfg.scope.globs)
    assert all(is_valid_unit_name(s) for services in cfg.triggers.values() for s in services)


@NO_DEADLINE
@given(st.text())
def test_parse_config_of_arbitrary_text_never_raises(text):
    cfg = parse_config(text, "t")
    assert all(p.startswith("t:") and len(p.splitlines()) == 1 for p in cfg.problems)


@NO_DEADLINE
@given(st.sampled_from(["virtqemud.service", "virt*.socket", "x@.service"]),
       st.lists(st.sampled_from(POLICIES), min_size=2, max_size=4), st.integers(0, 3))
def test_contradicting_policy_lines_are_one_problem_each_and_the_last_wins(key, policies, padding):
    lines = ["[policy]"]
    for policy in policies:
        lines += ["# filler"] * padding + [f"{key} = {policy}"]
    cfg = parse_config("\n".join(lines), "t")
    changes = sum(1 for a, b in zip(policies, policies[1:]) if a != b)
    assert len(cfg.problems) == changes
    assert all(key in p and "contradicts line" in p for p in cfg.problems)
    assert cfg.policies[key] == policies[-1]


@settings(NO_DEADLINE, max_examples=50, suppress_health_check=TMP)
@given(st.binary(max_size=300))
def test_load_config_of_arbitrary_bytes_never_raises(tmp_path: Path, data: bytes):
    path = tmp_path / "libvirt-units.conf"
    path.write_bytes(data)
    cfg = load_config([path])
    assert isinstance(cfg, Config)
    assert all(p.isprintable() and p.startswith(f"{path}:") for p in cfg.problems)


# --- unit names -------------------------------------------------------------------------------------

NAME_CHARS = string.ascii_letters + string.digits + ":_.\\-@ \t\n$;/'\"`|&*?[]!()é\0"
NAMES = st.one_of(st.text(), st.text(alphabet=NAME_CHARS, max_size=20).map(lambda s: s + ".service"),
                  st.from_regex(r"\A[a-z:_.\\-]{1,10}(@[a-z0-9.\\-]{0,5})?\.(service|socket|timer)\n?\Z"))


@NO_DEADLINE
@given(NAMES)
def test_unit_name_grammar_never_raises_and_keeps_shell_and_path_characters_out(name):
    valid = is_valid_unit_name(name)
    template = template_of(name)
    if valid:
        assert not any(c in name for c in " \t\n\r\x0b\x0c'\"`$/;|&*?[]()\0")
        assert not name.startswith("-") and not name.startswith("@") and len(name) <= 255
        assert name.isascii() and name.isprintable()
    if template is not None:
        assert "@." in template
        if valid:
            assert is_valid_unit_name(template)


# Most of NAMES is arbitrary text the grammar refuses: filtering that much is the point here.
@settings(deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(NAMES)
def test_every_name_the_grammar_accepts_can_be_asked_of_the_preset_evaluator(name):
    """The planner asks presets.decide() about every new unit: it must never refuse one."""
    assume(is_valid_unit_name(name))
    assert PresetSet((), ()).decide(name).action == "enable"


@NO_DEADLINE
@given(st.lists(st.text(alphabet="abv*?[]!-@.", min_size=1, max_size=8), min_size=1, max_size=4), NAMES)
def test_scope_membership_never_raises_for_any_glob_the_config_accepts(globs, name):
    assume(all(is_glob_valid(g) for g in globs))
    assert (name in Scope(tuple(globs))) in (True, False)
    assert UnitKey(SYSTEM, "x.service") in Scope(("*",))



@NO_DEADLINE
@given(st.lists(st.sampled_from(["virtqemud.service", "virtqemud@.service", "virt*.socket", "*-tls.socket",
                                 "virt?emud.service", "[vx]irtlogd.service", "x.service"]),
                max_size=5),
       st.sampled_from(["virtqemud.service", "virtqemud@a.service", "virtlogd.service", "xirtlogd.service",
                        "virtproxyd-tls.socket", "virtqemud.socket", "x.service", "virtsemud.service"]))
def test_scope_membership_is_fnmatch_of_the_name_or_its_template(globs, name):
    """Plain names take a set lookup and globs a regex: together they must mean fnmatch."""
    import fnmatch

    candidates = [name] + ([template_of(name)] if template_of(name) else [])
    expected = any(fnmatch.fnmatchcase(c, g) for g in globs for c in candidates)
    assert (name in Scope(tuple(globs))) is expected

# The regex units.py matched names with until the grammar was written with str methods (compiling it
# cost 2.3 M instructions at every import): the reference the string grammar must agree with.
REFERENCE_UNIT_RE = re.compile(
    r"^(?P<prefix>[A-Za-z0-9:_.\\-]+?)(?:@(?P<instance>[A-Za-z0-9:_.\\-]*))?"
    r"\.(?P<type>" + "|".join(UNIT_TYPES) + r")\Z"
)


def reference_is_valid_unit_name(name: str) -> bool:
    if not name or len(name) > UNIT_NAME_MAX or name.startswith("-"):
        return False
    m = REFERENCE_UNIT_RE.match(name)
    return m is not None and not m.group("prefix").startswith("@")


def reference_template_of(name: str) -> str | None:
    m = REFERENCE_UNIT_RE.match(name)
    if not m or not m.group("instance"):
        return None
    return f"{m.group('prefix')}@.{m.group('type')}"


def reference_is_glob_valid(pattern: str) -> bool:
    if not pattern or pattern.startswith("-"):
        return False
    if pattern.count("[") != pattern.count("]"):
        return False
    return re.fullmatch(r"[A-Za-z0-9:_.\\@*?\[\]!-]+", pattern) is not None


# names built from the pieces the grammar cares about, so that most are near-misses of valid ones
NAME_PIECES = st.sampled_from([
    *"aZ09:_.\\-@ $/\n\0é*?[]!", "virtqemud", "@", "@@", ".", "..",
    *(f".{t}" for t in UNIT_TYPES), ".Service", ".services", ".servic", "service", ".automount.",
    "\u212a", "\u0660", "\uff41",  # Kelvin sign, Arabic-Indic zero, fullwidth a: isalnum(), not ASCII
])
GRAMMAR_NAMES = st.one_of(
    NAMES,
    st.lists(NAME_PIECES, max_size=8).map("".join),
    st.tuples(st.integers(min_value=240, max_value=270), st.sampled_from(UNIT_TYPES))
      .map(lambda n_t: "a" * (n_t[0] - len(n_t[1]) - 1) + "." + n_t[1]),
)


@NO_DEADLINE
@given(GRAMMAR_NAMES)
def test_unit_name_grammar_is_the_regex_it_replaced(name):
    assert is_valid_unit_name(name) is reference_is_valid_unit_name(name)
    assert template_of(name) == reference_template_of(name)


@NO_DEADLINE
@given(st.one_of(st.text(), st.lists(NAME_PIECES, max_size=8).map("".join)))
def test_glob_grammar_is_the_regex_it_replaced(pattern):
    assert is_glob_valid(pattern) is reference_is_glob_valid(pattern)


def test_unit_name_grammar_examples():
    valid = ["a.service", "virtqemud.socket", "a@.service", "a@b.timer", "a.b.c.mount", "-x@y.service"[1:],
             "a\\x2d.service", "a@b.c.service", "x.automount", "a-b:c_d.slice", "a@-.service"]
    invalid = ["", ".service", "@a.service", "-a.service", "a@b@c.service", "a.Service", "a.service\n",
               "a b.service", "a.service.", "a", "a.unknown", "\u212a.service", "a/b.service",
               "a" * 248 + ".service"]
    assert [n for n in valid if not is_valid_unit_name(n)] == []
    assert [n for n in invalid if is_valid_unit_name(n)] == []
    assert template_of("a@b.c.service") == "a@.service" and template_of("a@.service") is None
    assert template_of("-x@y.socket") == "-x@.socket"  # no validity check: the grammar's split only


# --- journal ----------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
FIELDS = ("live", "rpmdb_cookie", "invocations_before", "units_before", "links_before", "owners_before",
          "changes", "done", "guards")


def good_record() -> dict:
    before = Snapshot(units={UnitKey(SYSTEM, "virtqemud.service"): "usr/lib/systemd/system/virtqemud.service"},
                      links={"etc/systemd/system/multi-user.target.wants/virtqemud.service":
                             "/usr/lib/systemd/system/virtqemud.service"})
    tx = TransactionFacts((PackageChange("libvirt-daemon", "libvirt-daemon-9.1.0-1.noarch", "upgrade",
                                         frozenset({"/usr/lib/systemd/system/virtqemud.service"})),))
    return json.loads(json.dumps(journal.encode(before, tx, live=False, invocations={}, rpmdb_cookie="c",
                                                done=["presets"])))


@NO_DEADLINE
@given(JSON)
def test_journal_decode_of_arbitrary_json_returns_or_raises_journal_error(data):
    try:
        journal.decode(data)
    except journal.JournalError:
        pass


@NO_DEADLINE
@given(st.sampled_from(FIELDS), JSON)
def test_journal_decode_of_a_record_with_one_field_replaced_returns_or_raises_journal_error(name, value):
    record = good_record()
    record[name] = value
    try:
        before, _, meta = journal.decode(record)
    except journal.JournalError:
        return
    assert all(is_valid_unit_name(u.name) for u in before.units)
    assert all(".." not in link.split("/") for link in before.links)
    assert isinstance(meta.live, bool)


@settings(NO_DEADLINE, max_examples=40, suppress_health_check=TMP)
@given(st.one_of(st.binary(max_size=200), JSON.map(lambda d: json.dumps(d).encode()),
                 st.just(b'{"version": 1}'), st.just(b"\xef\xbb\xbf{}"), st.just(b"[" * 5000)))
def test_journal_load_of_arbitrary_bytes_raises_only_its_error_and_moves_bad_ones_aside(tmp_path: Path,
                                                                                          data: bytes):
    root = tmp_path / "r"
    path = Path(state.state_dir(root), journal.PENDING)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.iterdir():
        old.unlink()
    path.write_bytes(data)
    try:
        loaded = journal.load(root)
    except journal.JournalError:  # unusable: moved aside, never left for the next run to trip over
        assert not path.exists() and len(list(path.parent.glob("pending.json.corrupt-*"))) == 1
    else:
        assert loaded.get("version") == state.FORMAT_VERSION and path.exists()


# --- planner ----------------------------------------------------------------------------------------

UNIT_POOL = ("virtqemud.service", "virtqemud.socket", "virtqemud-tcp.socket", "libvirtd.service",
             "libvirtd.socket", "virtproxyd-tls.socket", "sshd.service", "getty@tty1.service",
             "getty@.service", "libvirt-guests.service", "virtlogd.service", "foo@bar.socket")
SCOPES = (SYSTEM, USER)
UNIT_KEYS = st.builds(UnitKey, st.sampled_from(SCOPES), st.sampled_from(UNIT_POOL))
CONFIGS = st.sampled_from([
    "", "[main]\nunits = *\n", "[main]\nunits = virtq*\n", "[main]\nextra_units = sshd.service getty@.service\n",
    "[main]\npresets = no\n", "[main]\nkeep = no\n", "[main]\npresets = no\nkeep = yes\n",
    "[policy]\nvirt*.service = reload\n[triggers]\nlibvirt-daemon = libvirtd.service\n",
    "[triggers]\n/usr/lib64/libvirt/*.so = virtqemud.service libvirtd.service\n",
]).map(lambda text: parse_config(text, "t"))


def link_of(scope: str, where: str, name: str) -> str:
    return f"{ENABLEMENT_DIRS[scope]}/{where}{name}"


LINKS = st.dictionaries(
    st.builds(link_of, st.sampled_from(SCOPES),
              st.sampled_from(["", "multi-user.target.wants/", "sockets.target.wants/", "default.target.wants/"]),
              st.sampled_from((*UNIT_POOL, "dbus-org.x.service", "not-a-unit"))),
    st.one_of(st.just("/dev/null"), st.sampled_from(UNIT_POOL).map(lambda n: f"/usr/lib/systemd/system/{n}")),
    max_size=8,
)


def unit_file(key: UnitKey) -> str:
    return f"/{VENDOR_DIRS[key.scope][0]}/{key.name}"


CHANGES = st.lists(st.builds(
    lambda name, version, action, units, done: PackageChange(
        name, f"{name}-{version}-1.noarch", action, frozenset(map(unit_file, units)), done),
    st.sampled_from(["libvirt-daemon", "libvirt-daemon-proxy", "openssh-server", "libvirt-daemon-config-network"]),
    st.sampled_from(["9.0.0", "9.1.0"]), st.sampled_from((*INBOUND, ERASE)),
    st.sets(UNIT_KEYS, max_size=3), st.booleans(),
), max_size=6)


@st.composite
def transactions(draw):
    before_units = draw(st.sets(UNIT_KEYS, max_size=8))
    after = draw(st.sets(UNIT_KEYS, max_size=8))
    before = Snapshot(units={u: unit_file(u)[1:] for u in before_units}, links=draw(LINKS))
    owners = {u: "libvirt-daemon-9.0.0-1.noarch" for u in before_units if draw(st.booleans())}
    return before, after, TransactionFacts(tuple(draw(CHANGES)), owners), draw(CONFIGS), draw(st.booleans())


def live_facts(live: bool) -> LiveFacts | None:
    """A live host (nothing running) or an installroot."""
    return LiveFacts() if live else None


@NO_DEADLINE
@given(transactions())
def test_a_unit_present_before_is_never_preset(tx):
    before, after, facts, config, live = tx
    plan = plan_transaction(before, after, facts, config, live=live_facts(live))
    assert not set(plan.presets) & set(before.units)
    assert set(plan.presets) <= after and set(plan.keep) <= after & set(before.units)


@NO_DEADLINE
@given(transactions())
def test_units_outside_the_scope_are_never_preset_nor_kept(tx):
    before, after, facts, config, live = tx
    plan = plan_transaction(before, after, facts, config, live=live_facts(live))
    assert all(u in config.scope for u in plan.presets + plan.keep)
    assert all(link_units(link, target) & set(plan.keep) for link, target in plan.keep_links.items())


@NO_DEADLINE
@given(transactions(), st.randoms(use_true_random=False))
def test_the_plan_is_deterministic_whatever_the_order_of_the_facts(tx, rng):
    before, after, facts, config, live = tx
    plan = plan_transaction(before, after, facts, config, live=live_facts(live))
    units, links = list(before.units.items()), list(before.links.items())
    rng.shuffle(units)
    rng.shuffle(links)
    shuffled = Snapshot(units=dict(units), links=dict(links))
    assert plan_transaction(shuffled, set(sorted(after, reverse=True)), facts, config,  # noqa: C414 - another insertion order
                            live=live_facts(live)) == plan
    assert plan_transaction(before, after, facts, config, live=live_facts(live)) == plan



OTHER_FILES = st.sets(st.sampled_from([
    "/usr/lib64/libvirt/qemu.so", "/usr/lib64/libvirt/x.conf", "/usr/bin/virsh", "/etc/libvirt/qemu.conf",
    "/usr/lib/systemd/system/virtqemud.service.d/10-x.conf", "/usr/lib/systemd/system-preset/80-x.preset",
    "/usr/lib/systemd/user/virtqemud.socket", "/lib/systemd/system/libvirtd.service",
]), max_size=4)


@NO_DEADLINE
@given(transactions(), st.lists(OTHER_FILES, min_size=6, max_size=6))
def test_the_journal_keeps_every_file_a_plan_depends_on(tx, extra):
    """begin() journals only unit files and trigger-named files: a plan from the journal's
    facts (what resume() sees) must equal the plan from the full facts (what finish() sees)."""
    before, after, facts, config, live = tx
    full = TransactionFacts(tuple(c.replace(files=c.files | extra[i]) for i, c in enumerate(facts.changes)),
                            facts.owners_before)
    record = json.loads(json.dumps(journal.encode(before, full, live=live, invocations={}, rpmdb_cookie=None,
                                                  done=[], keep_file=files_that_matter(config))))
    _, journaled, _ = journal.decode(record)
    # resume() learns `done` from the rpmdb, not from the journal: carry it over
    journaled = TransactionFacts(tuple(j.replace(done=f.done) for j, f in zip(journaled.changes, full.changes)),
                                 journaled.owners_before)
    assert plan_transaction(before, after, journaled, config, live=live_facts(live)) == \
        plan_transaction(before, after, full, config, live=live_facts(live))
    assert "/usr/bin/virsh" not in set().union(*(c.files for c in journaled.changes))

def apply_repairs(links: dict[str, str], repairs: list[LinkRestore]) -> dict[str, str]:
    """What executor.apply_link does to the links, modelled on a dict."""
    result = dict(links)
    for repair in repairs:
        if repair.target is None:
            result.pop(repair.link, None)
        else:
            result[repair.link] = repair.target
    return result


@NO_DEADLINE
@given(transactions(), LINKS)
def test_link_restores_bring_back_exactly_the_keep_links_and_are_idempotent(tx, now):
    before, after, facts, config, live = tx
    plan = plan_transaction(before, after, facts, config, live=live_facts(live))
    units = set(plan.keep)
    repairs = link_restores(plan.keep_links, now, units)
    fixed = apply_repairs(now, repairs)
    concerning = {link: target for link, target in fixed.items() if link_units(link, target) & units}
    assert concerning == plan.keep_links
    # links of other units (and not wanted back for a kept one) are left exactly as they were
    others = {link: target for link, target in now.items()
              if not link_units(link, target) & units and link not in plan.keep_links}
    assert {link: fixed.get(link) for link in others} == others
    assert link_restores(plan.keep_links, fixed, units) == []
    assert apply_repairs(fixed, link_restores(plan.keep_links, fixed, units)) == fixed
