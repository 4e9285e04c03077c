"""glibc's fnmatch(3) with FNM_NOESCAPE in the C locale, ported to Python: how systemd
matches the patterns of preset files (presets.py).

Follows glibc 2.36's posix/fnmatch_loop.c, quirks included; tests/unit/test_presets_eval.py
checks it against the real fnmatch(3).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

# wctype(3) names valid in the C locale, with the ASCII members of each class.
_CHAR_CLASSES = {
    "alnum": str.isalnum, "alpha": str.isalpha, "blank": " \t".__contains__,
    "cntrl": lambda c: ord(c) < 32 or ord(c) == 127, "digit": str.isdigit,
    "graph": lambda c: 33 <= ord(c) <= 126, "lower": str.islower,
    "print": lambda c: 32 <= ord(c) <= 126,
    "punct": lambda c: 33 <= ord(c) <= 126 and not c.isalnum(),
    "space": " \t\n\r\v\f".__contains__, "upper": str.isupper,
    "xdigit": "0123456789abcdefABCDEF".__contains__,
}
_CHAR_CLASS_NAME_MAX = 2048  # glibc's CHARCLASS_NAME_MAX


def glob_match(pattern: str, name: str) -> bool:
    """glibc `fnmatch(pattern, name, FNM_NOESCAPE) == 0` in the C locale.

    Python's fnmatch differs: it has no `[^...]`, no `[[:alpha:]]`, and reads unterminated or
    odd brackets differently. Ranges compare code points.
    """
    pat = pattern.split("\0", 1)[0] + "\0"  # C strings end at the first NUL
    text = name.split("\0", 1)[0]
    memo: dict[tuple[int, int], bool] = {}

    def match_from(pi: int, ni: int) -> bool:
        key = (pi, ni)
        if key not in memo:
            memo[key] = _match_from(pat, text, pi, ni, match_from)
        return memo[key]

    return match_from(0, 0)


# The pattern ends in a "\0" sentinel so that reading past the end behaves like C.
# A bracket expression either says where the pattern goes on (an index) or one of these:
_NO_MATCH = -1  # the name's character does not match here
_LITERAL = -2  # unterminated: the `[` is an ordinary character after all


def _match_from(pat: str, text: str, pi: int, ni: int, again: Callable[[int, int], bool]) -> bool:
    end = len(text)
    while pat[pi] != "\0":
        c = pat[pi]
        pi += 1
        if c == "?":
            if ni == end:
                return False
            ni += 1
        elif c == "*":
            while pat[pi] in ("?", "*"):
                if pat[pi] == "?":
                    if ni == end:
                        return False
                    ni += 1
                pi += 1
            if pat[pi] == "\0":
                return True
            first = pat[pi]
            return any((first == "[" or text[k] == first) and again(pi, k) for k in range(ni, end))
        elif c == "[":
            if ni == end:
                return False
            result = _bracket(pat, pi, text[ni])
            if result == _NO_MATCH:
                return False
            if result == _LITERAL:
                if text[ni] != "[":
                    return False
            else:
                pi = result
            ni += 1
        else:
            if ni == end or text[ni] != c:
                return False
            ni += 1
    return ni == end


def _bracket(pat: str, p: int, ch: str) -> int:
    """Match `ch` against the bracket expression after the `[` at p-1.

    Returns where the pattern goes on, _NO_MATCH or _LITERAL, as glibc 2.36's fnmatch_loop.c
    decides it (C locale: no collating names, code-point ranges).
    """
    negated = pat[p] in ("!", "^")  # `^` too, unless POSIXLY_CORRECT is set
    if negated:
        p += 1
    c = pat[p]
    p += 1
    while True:
        if c == "[" and pat[p] == ":":
            name_end = _class_name_end(pat, p)
            if name_end == -2:
                return _NO_MATCH
            if name_end >= 0:
                test = _CHAR_CLASSES.get(pat[p + 1:name_end])
                if test is None:
                    return _NO_MATCH
                p = name_end + 2
                if ord(ch) < 128 and test(ch):
                    return _skip_rest(pat, p, negated)
                c = pat[p]
                p += 1
                if c == "]":
                    break
                continue
            # not a class name: the `[` is an ordinary member
        elif c == "[" and pat[p] == "=":
            if pat[p + 1] != "\0" and pat[p + 2] == "=" and pat[p + 3] == "]":
                if ch == pat[p + 1]:
                    return _skip_rest(pat, p + 4, negated)
                p += 4
                c = pat[p]
                p += 1
                if c == "]":
                    break
                continue
        elif c == "\0":
            return _LITERAL
        if c == "[" and pat[p] == ".":
            close = _symbol_end(pat, p)
            if close < 0 or close != p + 2:
                return _NO_MATCH  # unterminated, or not exactly one character
            low = pat[p + 1]
            p = close + 2
            ranged = pat[p] == "-" and pat[p + 1] != "\0"
        else:
            low = c
            ranged = pat[p] == "-" and pat[p + 1] not in ("\0", "]")
        if not ranged and ch == low:
            return _skip_rest(pat, p, negated)
        c = pat[p]
        p += 1
        if c == "-" and pat[p] != "]":
            high = pat[p]
            p += 1
            if high == "[" and pat[p] == ".":
                close = _symbol_end(pat, p)
                if close < 0 or close != p + 2:
                    return _NO_MATCH
                high = pat[p + 1]
                p = close + 2
            elif high == "\0":
                return _NO_MATCH
            if low <= ch <= high:
                return _skip_rest(pat, p, negated)
            c = pat[p]
            p += 1
        if c == "]":
            break
    return p if negated else _NO_MATCH


def _class_name_end(pat: str, p: int) -> int:
    """For `[:` at p-1: index of the closing `:]`, -1 if this is no class name, -2 if too long."""
    q = p
    while True:
        if q - p == _CHAR_CLASS_NAME_MAX:
            return -2
        q += 1
        if pat[q] == ":" and pat[q + 1] == "]":
            return q
        if not "a" <= pat[q] < "z":
            return -1


def _symbol_end(pat: str, p: int) -> int:
    """For `[.` at p-1: index of the closing `.]`, or -1 if the pattern ends first."""
    q = p
    while True:
        q += 1
        if pat[q] == "\0":
            return -1
        if pat[q] == "." and pat[q + 1] == "]":
            return q


def _skip_rest(pat: str, p: int, negated: bool) -> int:
    """After a member matched: find the closing `]` the way glibc skips (it is stricter)."""
    while True:
        c = pat[p]
        p += 1
        if c == "]":
            break
        if c == "\0":
            return _LITERAL
        if c == "[" and pat[p] == ":":
            q = p
            count = 0
            while True:
                q += 1
                count += 1
                if count == _CHAR_CLASS_NAME_MAX:
                    return _NO_MATCH
                if pat[q] == ":" and pat[q + 1] == "]":
                    p = q + 2
                    break
                if not "a" <= pat[q] < "z":
                    break
        elif c == "[" and pat[p] == "=":
            if pat[p + 1] == "\0" or pat[p + 2] != "=" or pat[p + 3] != "]":
                return _NO_MATCH
            p += 4
        elif c == "[" and pat[p] == ".":
            close = _symbol_end(pat, p)
            if close < 0:
                return _NO_MATCH
            p = close + 2
    return _NO_MATCH if negated else p
