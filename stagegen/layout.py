"""Black's formatting of a generated module, calling black only for the lines that need it.

The printer and the templates already write black's style: one statement per line, black's
spacing and power-operator hugging, black's blank lines. What they cannot do is wrap a line
that is too long, or normalise text copied from the user (a numeric literal such as ``1E5``,
characters of any width). Those lines, and only those, go through black, one statement at a
time inside a stand-in function so that black sees the same indentation. Every other line is
already what black would write, so a large module costs a pass over its lines instead of a
full black parse (which made black most of the time of generating 1,000 stages).

The tests hold this to account: for every example and for random programs, the result must
equal ``black.format_str`` of the whole module, byte for byte.
"""

from __future__ import annotations

import re

LINE_LENGTH = 88  # black's default, which the generated files use
_STAND_IN = "def _stagegen_stand_in():"
_LITERAL_WITH_CAPITALS = re.compile(r"(?<![\w.])\.?\d[\w.]*[A-Z]")


def needs_black(line: str) -> bool:
    """Whether black could write this line differently from how it stands."""
    return (
        len(line) > LINE_LENGTH
        or not line.isascii()
        or line != line.rstrip()
        or "\t" in line
        or "\\" in line
        or ";" in line
        or bool(_LITERAL_WITH_CAPITALS.search(line.split("#", 1)[0]))
    )


def format_code(text: str) -> str:
    """``black.format_str(text)`` for the modules the templates write."""
    lines = text.split("\n")
    if not any(needs_black(line) for line in lines):
        return text
    if any(line.count('"""') % 2 or line.count("'''") % 2 for line in lines):
        return format_with_black(text)  # a string over several lines: not one line at a time
    out: list[str] = []
    for line in lines:
        if not needs_black(line) or line.lstrip().startswith("#"):
            out.append(line.rstrip() if line.lstrip().startswith("#") else line)
        elif line.startswith("    "):
            out.extend(_black_statement(line))
        elif line.startswith("def "):
            out.extend(_black_signature(line))
        else:
            return format_with_black(text)  # not a shape this module knows: all of it
    return "\n".join(out)


def format_with_black(text: str, line_length: int = LINE_LENGTH) -> str:
    import black

    return black.format_str(text, mode=black.Mode(line_length=line_length))


_OPENING = re.compile(r"(if|elif|while|for|else)\b")


def _black_statement(line: str) -> list[str]:
    """One statement of a function body, formatted at its indentation: inside a loop or a
    branch, at the body's with the line length shortened by the extra indentation (which is
    what black's width budget is), then indented back. A loop's or branch's opening line is
    formatted with a stand-in body."""
    stripped = line.lstrip(" ")
    extra = " " * (len(line) - len(stripped) - 4)
    opening = _OPENING.match(stripped)
    elif_ = opening is not None and opening.group(1) == "elif"
    statement = "    " + (stripped.replace("elif", "if", 1) if elif_ else stripped)
    if opening is not None:
        statement += "\n        pass"
    formatted = format_with_black(f"{_STAND_IN}\n{statement}\n", LINE_LENGTH - len(extra))
    lines = formatted.rstrip("\n").split("\n")
    assert lines[0] == _STAND_IN, lines
    lines = [l for l in lines[1:] if l]
    if opening is not None:
        assert lines[-1] == "        pass", lines
        lines = lines[:-1]
    if elif_:
        lines[0] = lines[0].replace("if", "elif", 1)
    return [extra + l for l in lines]


def _black_signature(line: str) -> list[str]:
    """A def line too long for one line: black splits its parameters."""
    formatted = format_with_black(f"{line}\n    pass\n").rstrip("\n").split("\n")
    assert formatted[-1] == "    pass", formatted
    return formatted[:-1]
