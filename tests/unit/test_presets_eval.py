"""The preset evaluator on its own: parsing, precedence, globs and templates as systemd 252 has them,
and the rules that changed in 254 (`ignore`) and 255 (no /lib/systemd/system-preset). Tests whose
outcome depends on the version name it; the others hold for every version.

The glob matcher is checked against the C library's own fnmatch(3) when that is glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libvirt_presets import presets as presets_module
from libvirt_presets.glibc_fnmatch import glob_match
from libvirt_presets.presets import (
    BARE_ENABLE,
    LONG_LINE_MAX,
    NEWEST_KNOWN_SYSTEMD,
    NO_RULE_REASON,
    PresetDecision,
    PresetRule,
    PresetSet,
    load_presets,
    parse_preset_text,
    systemd_version_of_root,
)
from libvirt_presets.units import SYSTEM, USER

VENDOR = "/usr/lib/systemd/system-preset"
ETC = "/etc/systemd/system-preset"


def rules_of(text: str, path: str = f"{VENDOR}/50-test.preset", version: int = 252) -> PresetSet:
    rules, problems = parse_preset_text(text, path, systemd_version=version)
    return PresetSet(tuple(rules), tuple(problems), version=version)


def write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


# --- decisions -----------------------------------------------------------------------------


def test_no_preset_files_means_enable(tmp_path: Path) -> None:
    decision = load_presets(tmp_path, SYSTEM).decide("virtproxyd.socket")
    assert (decision.action, decision.rule, decision.reason) == ("enable", None, NO_RULE_REASON)


def test_no_matching_rule_means_enable() -> None:
    decision = rules_of("disable foo.service\n").decide("virtproxyd.socket")
    assert decision.action == "enable" and decision.reason == NO_RULE_REASON


def test_first_matching_line_wins() -> None:
    presets = rules_of("enable virtproxyd.socket\ndisable virt*\nenable *\n")
    assert presets.decide("virtproxyd.socket").action == "enable"
    assert presets.decide("virtqemud.socket").action == "disable"
    assert presets.decide("libvirtd.service").action == "enable"


def test_reason_names_the_line() -> None:
    path = f"{VENDOR}/80-libvirt.preset"
    decision = rules_of("# libvirt\n\nenable virtproxyd.socket\n", path).decide("virtproxyd.socket")
    assert decision.reason == f"`enable virtproxyd.socket` in {path}:3"
    assert decision.rule == PresetRule(("enable", "virtproxyd.socket", (), path, 3))


def test_star_and_question_mark_cross_at_and_dot() -> None:
    presets = rules_of("disable *-tls.socket\ndisable virt?roxyd*\nenable foo*\n")
    assert presets.decide("virtqemud-tls.socket").action == "disable"
    assert presets.decide("virtproxyd@x.socket").rule.line == 2
    assert presets.decide("foo@bar.baz.service").rule.line == 3


def test_brackets_follow_glibc() -> None:
    presets = rules_of("disable [ab].service\ndisable [^c]x.service\ndisable [[:digit:]]*.socket\n")
    assert presets.decide("a.service").action == "disable"
    assert presets.decide("c.service").action == "enable"
    assert presets.decide("dx.service").action == "disable"  # `^` negates, as in glibc
    assert presets.decide("cx.service").action == "enable"
    assert presets.decide("9p.socket").action == "disable"


def test_backslash_is_a_literal_character() -> None:
    presets = rules_of("disable a\\x2db.service\n")
    assert presets.decide("a\\x2db.service").action == "disable"
    assert presets.decide("ax2db.service").action == "enable"


def test_template_rule_with_instances_enables_those_instances() -> None:
    presets = rules_of("enable foo@.service a b\ndisable foo@*\n")
    template = presets.decide("foo@.service")
    assert template.action == "enable"
    assert template.instances == ("foo@a.service", "foo@b.service")
    assert presets.decide("foo@a.service").action == "enable"
    assert presets.decide("foo@a.service").instances == ()
    assert presets.decide("foo@c.service").rule.line == 2


def test_template_rule_without_instances_covers_only_the_template() -> None:
    presets = rules_of("enable foo@.service\ndisable *\n")
    assert presets.decide("foo@.service").action == "enable"
    assert presets.decide("foo@.service").instances == ()
    assert presets.decide("foo@a.service").action == "disable"


def test_invalid_instance_name_drops_the_list() -> None:
    presets = rules_of("enable foo@.service a b,c\ndisable *\n")
    template = presets.decide("foo@.service")
    assert (template.action, template.instances) == ("enable", ())
    assert presets.decide("foo@a.service").action == "enable"


def test_instances_after_a_plain_unit_skip_the_line() -> None:
    presets = rules_of("enable foo.service bar\ndisable *\n")
    assert presets.decide("foo.service").action == "disable"
    assert presets.problems == (f"{VENDOR}/50-test.preset:1: instance names after 'foo.service', which is "
                                "not a template; systemd ignores this line",)


def test_disable_pattern_keeps_the_rest_of_the_line() -> None:
    presets = rules_of("disable foo.service bar\n")
    assert presets.rules[0].pattern == "foo.service bar"
    assert presets.decide("foo.service").action == "enable"


def test_ignore_verb_is_a_bad_line_in_systemd_252() -> None:
    presets = rules_of("ignore foo.service\ndisable foo.service\n")
    assert presets.decide("foo.service").action == "disable"
    assert "`ignore` needs systemd 254; systemd 252 cannot parse" in presets.problems[0]


@pytest.mark.parametrize("version", [254, 257, 262])
def test_ignore_verb_leaves_the_unit_alone_since_systemd_254(version: int) -> None:
    presets = rules_of("ignore foo.service\ndisable foo.service\nignore b*\tx\nignore\n", version=version)
    decision = presets.decide("foo.service")
    assert (decision.action, decision.rule.line, decision.problem) == ("ignore", 1, "")
    assert decision.reason == f"`ignore foo.service` in {VENDOR}/50-test.preset:1"
    # the rest of the line is the pattern, as for `disable`; a bare `ignore` matches nothing
    assert presets.decide("bar.service").action == "enable"
    assert presets.problems == ()


def test_ignore_verb_in_systemd_253_is_still_a_bad_line() -> None:
    assert rules_of("ignore foo.service\n", version=253).decide("foo.service").action == "enable"


def test_bad_lines_are_skipped_one_by_one() -> None:
    presets = rules_of("enable\tfoo.service\nEnable bar.service\nenablebar.service\nbogus\ndisable bar.service\n")
    assert presets.decide("foo.service").action == "enable"
    assert presets.decide("bar.service").rule.line == 5
    assert [p.split(": ", 1)[0] for p in presets.problems] == [f"{VENDOR}/50-test.preset:{n}" for n in (2, 3, 4)]


def test_bare_enable_line_changes_nothing() -> None:
    presets = rules_of("disable a.service\nenable\n")
    assert presets.decide("a.service").action == "disable"
    crashed = presets.decide("b.service")
    assert crashed.action == "ignore" and "crashes" in crashed.reason
    assert crashed.rule is not None and crashed.rule.line == 2


def test_comments_blank_lines_and_surrounding_whitespace() -> None:
    presets = rules_of("  # comment\n; also a comment\n\t\n \tdisable a.service \t\n")
    assert presets.decide("a.service").rule.line == 4
    assert presets.problems == ()


@pytest.mark.parametrize("text, line", [
    ("\n\ndisable a.service", 3),
    ("\r\n\r\ndisable a.service", 3),
    ("\r\rdisable a.service", 3),
    ("\n\r\n\rdisable a.service", 3),
    ("\n\r\0\ndisable a.service", 3),
    ("x\0disable a.service", 2),
])
def test_line_endings_count_like_systemd(text: str, line: int) -> None:
    assert rules_of(text).decide("a.service").rule.line == line


def test_invalid_unit_name_is_refused() -> None:
    with pytest.raises(ValueError):
        rules_of("").decide("foo bar.service")


def test_systemd_accepts_names_units_py_refuses() -> None:
    assert rules_of("disable -.slice\n").decide("-.slice").action == "disable"
    assert rules_of("disable a@b@c.service\n").decide("a@b@c.service").action == "disable"


# --- files ---------------------------------------------------------------------------------


def test_files_are_read_in_name_order_across_directories(tmp_path: Path) -> None:
    write(tmp_path, f"{VENDOR}/90-default.preset", "disable *\n")
    write(tmp_path, "/run/systemd/system-preset/10-run.preset", "enable a.service\n")
    write(tmp_path, f"{ETC}/50-admin.preset", "enable b.service\n")
    presets = load_presets(tmp_path, SYSTEM)
    assert presets.decide("a.service").rule.path == "/run/systemd/system-preset/10-run.preset"
    assert presets.decide("b.service").rule.path == f"{ETC}/50-admin.preset"
    assert presets.decide("c.service").action == "disable"


def test_higher_directory_masks_same_name(tmp_path: Path) -> None:
    write(tmp_path, f"{VENDOR}/50-x.preset", "disable a.service\ndisable b.service\n")
    write(tmp_path, "/usr/local/lib/systemd/system-preset/50-x.preset", "disable b.service\n")
    presets = load_presets(tmp_path, SYSTEM)
    assert presets.decide("a.service").action == "enable"
    assert presets.decide("b.service").rule.path == "/usr/local/lib/systemd/system-preset/50-x.preset"


@pytest.mark.parametrize("target", ["/dev/null", "/does/not/exist"])
def test_symlink_to_nothing_masks(tmp_path: Path, target: str) -> None:
    write(tmp_path, f"{VENDOR}/50-x.preset", "disable a.service\n")
    (tmp_path / ETC.lstrip("/")).mkdir(parents=True)
    os.symlink(target, tmp_path / ETC.lstrip("/") / "50-x.preset")
    assert load_presets(tmp_path, SYSTEM).decide("a.service").action == "enable"


def test_absolute_symlinks_stay_inside_the_root(tmp_path: Path) -> None:
    write(tmp_path, "/srv/shared.preset", "disable a.service\n")
    (tmp_path / ETC.lstrip("/")).mkdir(parents=True)
    os.symlink("/srv/shared.preset", tmp_path / ETC.lstrip("/") / "50-x.preset")
    assert load_presets(tmp_path, SYSTEM).decide("a.service").action == "disable"


def test_only_visible_preset_files_count(tmp_path: Path) -> None:
    write(tmp_path, f"{VENDOR}/.50-hidden.preset", "disable a.service\n")
    write(tmp_path, f"{VENDOR}/50-x.preset.rpmnew", "disable a.service\n")
    write(tmp_path, f"{VENDOR}/50-x.presets", "disable a.service\n")
    assert load_presets(tmp_path, SYSTEM).decide("a.service").action == "enable"


def test_lib_is_read_last_on_split_usr_roots_before_systemd_255(tmp_path: Path) -> None:
    write(tmp_path, "/lib/systemd/system-preset/10-lib.preset", "disable a.service\n")
    write(tmp_path, f"{VENDOR}/50-x.preset", "enable a.service\n")
    for version in (252, 254):
        assert load_presets(tmp_path, SYSTEM, systemd_version=version).decide("a.service").action == "disable"
    assert load_presets(tmp_path, SYSTEM, systemd_version=252,
                        split_usr=False).decide("a.service").action == "enable"


@pytest.mark.parametrize("version", [255, 257, 262])
def test_lib_is_not_read_since_systemd_255(tmp_path: Path, version: int) -> None:
    write(tmp_path, "/lib/systemd/system-preset/10-lib.preset", "enable a.service\n")
    write(tmp_path, f"{VENDOR}/50-x.preset", "disable *\n")
    presets = load_presets(tmp_path, SYSTEM, systemd_version=version)
    assert presets.decide("a.service").action == "disable"
    assert presets.systemd_version == version


def fake_systemctl(root: Path, content: bytes, path: str = "usr/bin/systemctl") -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\x7fELF...." + content + b"\0....")


@pytest.mark.parametrize("content, version", [
    (b"libsystemd-shared-257.so", 257),  # Debian >= 253
    (b"libsystemd-shared-256.11-1.fc41.so", 256),  # Fedora
    (b"systemd 252 (252.39-1~deb12u2)", 252),  # Debian 12: the banner, statically linked
])
def test_version_is_read_from_the_roots_systemctl(tmp_path: Path, content: bytes, version: int) -> None:
    fake_systemctl(tmp_path, content)
    assert systemd_version_of_root(tmp_path) == version
    write(tmp_path, "/lib/systemd/system-preset/10-lib.preset", "disable a.service\n")
    assert load_presets(tmp_path, SYSTEM).systemd_version == version


def test_version_follows_the_roots_bin_symlink(tmp_path: Path) -> None:
    fake_systemctl(tmp_path, b"libsystemd-shared-262.so", "usr/bin/systemctl.real")
    os.symlink("/usr/bin/systemctl.real", tmp_path / "systemctl")  # absolute: inside the root
    (tmp_path / "usr/bin/systemctl").symlink_to("/systemctl")
    assert systemd_version_of_root(tmp_path) == 262


def test_root_without_systemctl_takes_the_version_of_the_one_we_run(tmp_path: Path, monkeypatch) -> None:
    fake_systemctl(tmp_path / "host", b"libsystemd-shared-255.so")
    monkeypatch.setenv("LIBVIRT_UNITS_SYSTEMCTL", str(tmp_path / "host/usr/bin/systemctl"))
    assert systemd_version_of_root(tmp_path / "root") == 255
    monkeypatch.setenv("LIBVIRT_UNITS_SYSTEMCTL", str(tmp_path / "missing"))
    assert systemd_version_of_root(tmp_path / "root") == NEWEST_KNOWN_SYSTEMD


def test_merged_usr_lib_is_not_read_twice(tmp_path: Path) -> None:
    write(tmp_path, f"{VENDOR}/50-x.preset", "disable a.service\n")
    os.symlink("usr/lib", tmp_path / "lib")
    assert len(load_presets(tmp_path, SYSTEM, systemd_version=252).rules) == 1  # 252 reads /lib too


def test_user_scope_reads_user_preset_dirs(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/systemd/user-preset/50-x.preset", "disable a.service\n")
    write(tmp_path, f"{VENDOR}/50-y.preset", "disable b.service\n")
    write(tmp_path, "/lib/systemd/user-preset/50-z.preset", "disable c.service\n")
    presets = load_presets(tmp_path, USER)
    assert [r.pattern for r in presets.rules] == ["a.service"]


def test_directory_named_preset_makes_systemctl_refuse(tmp_path: Path) -> None:
    write(tmp_path, f"{VENDOR}/10-x.preset", "disable a.service\n")
    (tmp_path / VENDOR.lstrip("/") / "20-dir.preset").mkdir()
    presets = load_presets(tmp_path, SYSTEM)
    assert presets.fatal and "Is a directory" in presets.fatal
    assert presets.decide("a.service").action == "ignore"


def test_overlong_line_makes_systemctl_refuse(tmp_path: Path) -> None:
    write(tmp_path, f"{VENDOR}/10-x.preset", "disable a.service\n#" + "x" * LONG_LINE_MAX + "\n")
    presets = load_presets(tmp_path, SYSTEM)
    assert "longer than 1 MiB" in presets.fatal
    assert presets.decide("a.service").action == "ignore"


def test_undecodable_bytes_are_kept(tmp_path: Path) -> None:
    target = tmp_path / VENDOR.lstrip("/") / "10-x.preset"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"disable \xff*\ndisable a.service\n")
    assert load_presets(tmp_path, SYSTEM).decide("a.service").rule.line == 2


# --- properties ----------------------------------------------------------------------------

UNIT_NAMES = st.from_regex(r"\A[a-z][a-z0-9-]{0,8}(@[a-z0-9]{0,4})?\.(service|socket|timer)\Z")
LINES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda verb, pattern: f"{verb} {pattern}", st.sampled_from(["enable", "disable", "ignore"]),
              st.text(alphabet="abc@.*?[]!^-:=\\ \t", max_size=12)),
)


@given(st.text())
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    rules, problems = parse_preset_text(text, "/x.preset")
    assert all(p.startswith("/x.preset:") for p in problems)
    assert all(r.action in ("enable", "disable") for r in rules)


@given(st.lists(LINES, max_size=8), st.lists(UNIT_NAMES, min_size=1, max_size=4))
def test_every_decision_has_a_known_action(lines: list[str], units: list[str]) -> None:
    presets = rules_of("\n".join(lines))
    for unit in units:
        decision = presets.decide(unit)
        assert decision.action in ("enable", "disable", "ignore")
        assert decision.reason


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_loader_never_raises_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    target = tmp_path / VENDOR.lstrip("/") / "10-x.preset"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    load_presets(tmp_path, SYSTEM).decide("a.service")


def _glibc_fnmatch() -> Callable[[str, str], bool] | None:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "gnu_get_libc_version"):
        return None
    fnmatch_noescape = 2  # FNM_NOESCAPE, the only flag systemd passes
    return lambda pattern, name: libc.fnmatch(pattern.encode(), name.encode(), fnmatch_noescape) == 0


GLIBC_FNMATCH = _glibc_fnmatch()
PATTERN_PIECES = st.sampled_from(
    [*"[]!^-*?:=.\\ab@z", "[:alpha:]", "[:digit:]", "[:foo:]", "[=a=]", "[.a.]", "[.", "[=", "[:"])
NAME_CHARS = "[]!^-*?:=.\\abz@AZ09"


@pytest.mark.skipif(GLIBC_FNMATCH is None, reason="needs glibc's fnmatch as the oracle")
@settings(max_examples=1000)
@given(st.lists(PATTERN_PIECES, max_size=12).map("".join), st.text(alphabet=NAME_CHARS, max_size=8))
def test_glob_match_agrees_with_glibc(pattern: str, name: str) -> None:
    assert glob_match(pattern, name) == GLIBC_FNMATCH(pattern, name)


@pytest.mark.skipif(GLIBC_FNMATCH is None, reason="needs glibc's fnmatch as the oracle")
@pytest.mark.parametrize("pattern, name", [
    ("[ab", "[ab"), ("[ab", "a"), ("[[ab", "[[ab"), ("[a-", "[a-"), ("[[.a.]-]", "a"), ("[a[=]", "a"),
    ("[!]]", "a"), ("[]]", "]"), ("[z-a]", "m"), ("*[ab", "x[ab"), ("[[:" + "a" * 2100 + ":]]", "a"),
])
def test_glob_match_odd_brackets(pattern: str, name: str) -> None:
    assert glob_match(pattern, name) == GLIBC_FNMATCH(pattern, name)


# --- fast paths against the straightforward code -------------------------------------------

MATCHER_PIECES = st.sampled_from([*"*?[]!^-.@\\abz", "[:alpha:]", "a.service", "-tls.socket", "virt"])
MATCHER_NAMES = st.one_of(UNIT_NAMES, st.text(alphabet="[]!^-*?.\\abz@", max_size=10))


@settings(max_examples=1000)
@given(st.lists(MATCHER_PIECES, max_size=6).map("".join), MATCHER_NAMES)
def test_pattern_matcher_agrees_with_glob_match(pattern: str, name: str) -> None:
    assert presets_module._matcher(pattern)(name) == glob_match(pattern, name)


def _first_word(line: str, word: str) -> str | None:
    """systemd's first_word() for one verb: what follows `word` and whitespace, or None."""
    if not line.startswith(word):
        return None
    rest = line[len(word):]
    if rest and rest[0] not in " \t\n\r":
        return None
    return rest.lstrip(" \t\n\r")


def parse_line_verb_by_verb(line: str, version: int) -> tuple[PresetRule | None, str]:
    """How the parser read a stripped line before it split off the verb with one partition."""
    argument = _first_word(line, "enable")
    if argument is not None:
        if not argument:
            return PresetRule(("enable", "", (), "/p", 1)), BARE_ENABLE
        name, *instances = [word for word in argument.replace("\t", " ").split(" ") if word]
        if instances and not presets_module._is_unit_name(name, template=True):
            return None, f"instance names after {name!r}, which is not a template; systemd ignores this line"
        return PresetRule(("enable", name, tuple(instances), "/p", 1)), ""
    for verb in ("disable", "ignore"):
        argument = _first_word(line, verb)
        if argument is None:
            continue
        if verb == "ignore" and version < 254:
            return None, presets_module.IGNORE_VERB.format(version=version, line=presets_module._shown(line))
        return PresetRule((verb, argument, (), "/p", 1)), ""
    return None, presets_module.BAD_LINE.format(line=presets_module._shown(line))


VERB_LINE = st.lists(st.sampled_from(["enable", "disable", "ignore", "enablex", " ", "\t", "  \t ", "\x0b",
                                      "\xa0", "a.service", "b@.socket", "b@", "x", "*", "\\"]),
                     min_size=1, max_size=7).map("".join)


@given(VERB_LINE, st.sampled_from([252, 262]))
def test_line_parser_agrees_with_trying_each_verb(line: str, version: int) -> None:
    line = line.strip(" \t\n\r")
    assert presets_module._parse_line(line, "/p", 1, lambda: version) == parse_line_verb_by_verb(line, version)


LINE_TEXT = st.lists(st.sampled_from([*"ab \t#\n\r\0", "enable ", "disable "]), max_size=20).map("".join)


@given(LINE_TEXT)
def test_line_split_agrees_with_read_line(text: str) -> None:
    """systemd's read_line() as a regular expression (how the parser read every file before)."""
    line_end = re.compile(r"([^\n\r\0]*)(\n\r?\0?|\r\n?\0?|\0)?")
    want, pos = [], 0
    while pos < len(text):
        m = line_end.match(text, pos)
        assert m is not None
        pos = m.end()
        want.append(m.group(1))
    assert presets_module._lines(text) == want


def first_match_trying_every_rule(presets: PresetSet, unit: str) -> PresetDecision:
    """systemd's query_presets(): every rule in order, each with glob_match."""
    for rule in presets.rules:
        if rule.action == "enable" and not rule.pattern:
            return PresetDecision(unit, "ignore", rule, problem=f"{rule}: {BARE_ENABLE}")
        instances = presets_module._instances_matched(rule, unit)
        if instances is not None or glob_match(rule.pattern, unit):
            return PresetDecision(unit, rule.action, rule, (instances or ()) if rule.action == "enable" else ())
    return PresetDecision(unit, "enable", None)


@given(st.lists(LINES, max_size=8), st.lists(MATCHER_NAMES.filter(presets_module._is_unit_name), min_size=1,
                                             max_size=4))
def test_decisions_agree_with_trying_every_rule_with_glob_match(lines: list[str], units: list[str]) -> None:
    presets = rules_of("\n".join(lines), version=262)
    for rule in presets.rules:
        if rule.action == "enable" and rule.pattern:
            words = re.split(r"[ \t]+", rule.pattern + "".join(" " + i for i in rule.instances))
            assert [rule.pattern, *rule.instances] == words
    for unit in units:
        assert presets.decide(unit) == first_match_trying_every_rule(presets, unit)


# Lines as real preset files have them, over few names, so that names repeat, globs and
# templates with instances cover some of them, and the unit asked about is often named.
FEW_UNITS = st.sampled_from(["a.service", "b.socket", "a-tcp.socket", "t@.service", "t@x.service", "t@y.service",
                             "u@.socket", "u@x.socket"])
PRESET_LINE = st.one_of(
    st.builds("{} {}".format, st.sampled_from(["enable", "disable", "ignore"]), FEW_UNITS),
    st.builds("{} {}".format, st.sampled_from(["enable", "disable", "ignore"]),
              st.sampled_from(["*", "*-tcp.socket", "a.*", "t@*.service", "?.socket", "[ab].service", "*@x.*"])),
    st.sampled_from(["enable t@.service x", "enable t@.service y z", "enable u@.socket x", "enable", "disable",
                     "enable a.service b", "# a comment"]),
)


@settings(max_examples=500)
@given(st.lists(PRESET_LINE, max_size=12), st.lists(FEW_UNITS, min_size=1, max_size=4), st.booleans())
def test_indexed_decisions_agree_with_trying_every_rule(lines: list[str], units: list[str], again: bool) -> None:
    """decide() looks up the first rule naming the unit and tries only the rules that can match
    other names: the same decision as trying every rule, also on a set's later decisions."""
    presets = rules_of("\n".join(lines), version=262)
    if again:
        presets.decide("b.socket")  # the index made before the decisions compared
    for unit in units:
        assert presets.decide(unit) == first_match_trying_every_rule(presets, unit)


def test_version_is_read_only_when_a_rule_depends_on_it(tmp_path: Path) -> None:
    fake_systemctl(tmp_path, b"libsystemd-shared-253.so")
    write(tmp_path, f"{VENDOR}/50-x.preset", "disable a.service\n")
    os.symlink("usr/lib", tmp_path / "lib")
    presets = load_presets(tmp_path, SYSTEM)
    assert presets.version.known is None and presets.systemd_version == 253  # read when asked
    write(tmp_path, f"{VENDOR}/60-y.preset", "ignore b.service\n")
    assert load_presets(tmp_path, SYSTEM).version.known == 253
