"""A tiny Python highlighter on the standard library's ``tokenize``, and two ways to paint
its pieces: ANSI colour for a terminal, ``<span>``s for HTML.

Pieces are ``(kind, text)`` pairs. Code yields keyword, number, builtin, gradname (a gradient
variable), name, op, comment; the explanations add value (a forward value: green, as in the
notes' diagrams), grad (a gradient: red), local, gate, heading, dim, ok and bad.
"""

from __future__ import annotations

import html
import io
import keyword
import tokenize

Piece = tuple[str, str]

BUILTINS = {"math", "abs", "max", "min", "len"}
_SKIP = {tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT}


def code_pieces(code: str, gradient_names=()) -> list[Piece]:
    """One line of Python, split into highlighted pieces (whitespace kept as plain text)."""
    pieces: list[Piece] = []
    pos = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in _SKIP or tok.start[0] != 1:
                continue
            start, end = tok.start[1], tok.end[1]
            if start > pos:
                pieces.append(("text", code[pos:start]))
            pieces.append((_kind(tok, gradient_names), tok.string))
            pos = end
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [("text", code)]
    if pos < len(code):
        pieces.append(("text", code[pos:]))
    return pieces


def _kind(tok: tokenize.TokenInfo, gradient_names) -> str:
    if tok.type == tokenize.NUMBER:
        return "number"
    if tok.type == tokenize.COMMENT:
        return "comment"
    if tok.type == tokenize.STRING:
        return "string"
    if tok.type == tokenize.NAME:
        if keyword.iskeyword(tok.string):
            return "keyword"
        if tok.string in BUILTINS:
            return "builtin"
        if tok.string in gradient_names:
            return "gradname"
        return "name"
    return "op" if tok.type == tokenize.OP else "text"


# ---------------------------------------------------------------------------- painting

_ANSI = {
    "keyword": "35",
    "number": "36",
    "builtin": "34",
    "gradname": "31",
    "comment": "2",
    "dim": "2",
    "value": "32",
    "grad": "31",
    "local": "1",
    "gate": "33",
    "heading": "1",
    "ok": "32",
    "bad": "1;31",
}


def ansi(pieces: list[Piece], on: bool = True) -> str:
    if not on:
        return "".join(text for _, text in pieces)
    out = []
    for kind, text in pieces:
        code = _ANSI.get(kind)
        out.append(f"\033[{code}m{text}\033[0m" if code and text else text)
    return "".join(out)


_CSS_CLASS = {
    "keyword": "k",
    "number": "m",
    "builtin": "b",
    "gradname": "gn",
    "comment": "c",
    "dim": "c",
    "value": "v",
    "grad": "g",
    "local": "l",
    "gate": "gate",
    "heading": "h",
    "ok": "ok",
    "bad": "bad",
    "string": "s",
}


def spans(pieces: list[Piece]) -> str:
    out = []
    for kind, text in pieces:
        escaped = html.escape(text, quote=False)
        cls = _CSS_CLASS.get(kind)
        out.append(f'<span class="{cls}">{escaped}</span>' if cls and text else escaped)
    return "".join(out)
