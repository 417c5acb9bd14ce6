"""Hostile input to the command line: each bad file gets its exact located message.

Every row of ``ROWS`` is one file (text or raw bytes) given to ``stagegen FILE`` (in-process,
through ``stagegen.cli.main``, with the working directory set to a fresh temporary directory).
For each, the test pins the **whole first line** the tool prints, and checks:

* exit status 2 (bad input), nothing on stdout, no ``Traceback`` anywhere;
* for a located error, the second line is the offending source line and the third a caret;
* the directory holds exactly what it held before (no ``*_backward.py``, not even a partial or
  temporary file) and the input file is untouched.

``test_errors.py`` checks the location and wording of each construct through the API; this file
is about whole files and the CLI: encodings, bytes, sizes, syntax errors, paths, and constructs in
forms that table does not have. Rows whose text is CPython's own syntax-error message
(``cpython=True``) take the expected message from ``compile()`` on other Python versions.
Rows marked ``bug=`` are stagegen bugs; the row states the correct behaviour (xfail, strict).
A few rows run through a real ``python -m stagegen`` process as well.
"""

from __future__ import annotations

import ast
import hashlib
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from stagegen import cli

FILE = "forward.py"
SUPPORTED = (
    "math.acos, math.asin, math.atan, math.atan2, math.cos, math.cosh, math.erf, math.exp, "
    "math.expm1, math.hypot, math.log, math.log10, math.log1p, math.log2, math.pow, math.sin, "
    "math.sinh, math.sqrt, math.tan, math.tanh, abs, max, min"
)
SYNTAX_HINT = "fix the syntax; the file must be valid Python"
PADDING = ("# padding comment line " + "x" * 40 + "\n") * 80_000  # 5.1 MB of comments


@dataclass(frozen=True)
class Row:
    id: str
    data: object  # str (written as UTF-8), bytes, or a callable returning either
    first: str  # the exact first line printed
    args: tuple = ()
    cpython: bool = False  # the message is CPython's SyntaxError text
    bug: str | None = None

    def content(self) -> bytes:
        data = self.data() if callable(self.data) else self.data
        return data.encode("utf-8") if isinstance(data, str) else data


def row(id, data, first, *, args=(), cpython=False, bug=None):
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(Row(id, data, first, tuple(args), cpython, bug), id=id, marks=marks)


def syntax(line, col, message):
    return f"{FILE}:{line}:{col}: error: invalid syntax: {message} — {SYNTAX_HINT}"


def unknown(name, line, col):
    return f"{FILE}:{line}:{col}: error: unknown function `{name}` — use one of: {SUPPORTED}"


GARBAGE = hashlib.sha256(b"stagegen").digest() * 128  # 4 KB of fixed pseudo-random bytes
NO_FUNCTIONS = (
    f"{FILE}: error: no function definitions found — define the forward function with `def`"
)
FLOORDIV = "floor division `//` is not differentiable — use true division `/`"
OWN_NAME = "give each parameter its own name"
NUMPY = "import numpy as np\n\n\n"
BETWEEN_COMMAS = 'name each dimension once between commas, as in `x: "N, D"`'
TOO_LARGE = (
    "this number is too large for a float (the largest is about 1.8e308) — use a smaller number"
)
DEFAULT_MUST_BE = (
    "a default value must be a number or a list of numbers — write the value as a literal, "
    "e.g. `y=2.0`"
)
NOT_UTF8 = "— save the file as UTF-8"
NUL = "error: file contains a NUL byte: it is not Python source — pass a .py file"

ROWS = [
    # -- files with nothing to differentiate ----------------------------------------------------
    row("empty-file", "", NO_FUNCTIONS),
    row("only-comments", "# just a comment\n# another\n", NO_FUNCTIONS),
    row("only-docstring", '"""Just a docstring."""\n', NO_FUNCTIONS),
    row("only-imports-and-constants", "import math\nfrom math import exp\nX = 2.0\n", NO_FUNCTIONS),
    row("only-a-class", "class Model:\n    def f(self, x):\n        return x * x\n", NO_FUNCTIONS),
    row("only-a-lambda", "f = lambda x: x * x\n", NO_FUNCTIONS),
    row("huge-comments-only", lambda: PADDING, NO_FUNCTIONS),
    # -- bytes that are not Python source ---------------------------------------------------------
    row(
        "binary-garbage",
        GARBAGE,
        f"{FILE}:1:4: error: file is not valid UTF-8 (byte 0xce) {NOT_UTF8}",
    ),
    row(
        "png-header",
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        f"{FILE}:1:1: error: file is not valid UTF-8 (byte 0x89) {NOT_UTF8}",
    ),
    row("all-nul-bytes", b"\x00" * 100, f"{FILE}:1:1: {NUL}"),
    row("nul-after-def", b"def f(x):\x00\n    return x\n", f"{FILE}:1:10: {NUL}"),
    row(
        "utf16-with-bom",
        "def f(x):\n    return x\n".encode("utf-16"),
        f"{FILE}:1:1: error: file is not valid UTF-8 (byte 0xff) {NOT_UTF8}",
    ),
    row(
        "utf16-le-without-bom",
        "def f(x):\n    return x\n".encode("utf-16-le"),
        f"{FILE}:1:2: {NUL}",
    ),
    row(
        "latin1-with-coding-cookie",
        "# -*- coding: latin-1 -*-\ndef f(x):\n    # caf\xe9\n    return x * 2\n".encode("latin-1"),
        f"{FILE}:3:10: error: file is not valid UTF-8 (byte 0xe9) {NOT_UTF8}",
    ),
    row(
        "utf8-bom-then-error",
        b"\xef\xbb\xbfdef f(x):\n    return x // 2\n",
        f"{FILE}:2:12: error: {FLOORDIV}",
    ),
    row(
        "two-boms",
        b"\xef\xbb\xbf\xef\xbb\xbfdef f(x):\n    return x * 2\n",
        syntax(1, 1, "invalid non-printable character U+FEFF"),
        cpython=True,
    ),
    # -- sizes and line endings -----------------------------------------------------------------
    row(
        "huge-comments-then-error",
        lambda: PADDING + "def f(x):\n    return x // 2\n",
        f"{FILE}:80002:12: error: {FLOORDIV}",
    ),
    row(
        "2000-functions-last-one-bad",
        "".join(f"def f{i}(x):\n    return x * {i}.5\n\n" for i in range(2000))
        + "def g(x):\n    return x % 2\n",
        f"{FILE}:6002:12: error: the modulo operator `%` is not supported — use + - * / ** and "
        "math functions",
    ),
    row(
        "cr-line-endings",
        b"def f(x):\r    y = x * 2\r    return y // 2\r",
        f"{FILE}:3:12: error: {FLOORDIV}",
    ),
    row(
        "crlf-line-endings",
        b"def f(x):\r\n    y = x * 2\r\n    return y // 2\r\n",
        f"{FILE}:3:12: error: {FLOORDIV}",
    ),
    row(
        "very-long-line",
        "def f(x):\n    return " + " + ".join(["x * 1.0"] * 20) + " // 2\n",
        f"{FILE}:2:202: error: {FLOORDIV}",
    ),
    row(
        "deeply-nested-sum",
        "def f(x):\n    return " + " + ".join(["x"] * 5000) + "\n",
        f"{FILE}: error: an expression is nested too deeply to differentiate "
        "— split it into several assignments",
    ),
    row(
        "too-many-parentheses",
        "def f(x):\n    return " + "(" * 250 + "x" + ")" * 250 + "\n",
        syntax(2, 212, "too many nested parentheses"),
        cpython=True,
    ),
    # -- syntax errors --------------------------------------------------------------------------
    row(
        "unterminated-string",
        'def f(x):\n    s = "abc\n    return x\n',
        syntax(2, 9, "unterminated string literal (detected at line 2)"),
        cpython=True,
    ),
    row(
        "unterminated-triple-quoted-string",
        'def f(x):\n    """docstring\n    return x\n',
        syntax(2, 5, "unterminated triple-quoted string literal (detected at line 3)"),
        cpython=True,
    ),
    row(
        "unexpected-indent",
        "def f(x):\n    y = x * 2\n        return y\n",
        syntax(3, 8, "unexpected indent"),
        cpython=True,
    ),
    row(
        "unindent-does-not-match",
        "def f(x):\n        y = x * 2\n    return y\n",
        syntax(3, 13, "unindent does not match any outer indentation level"),
        cpython=True,
    ),
    row(
        "missing-indented-block",
        "def f(x):\nreturn x\n",
        syntax(2, 1, "expected an indented block after function definition on line 1"),
        cpython=True,
    ),
    row(
        "tab-space-mix",
        "def f(x):\n    y = x * 2\n\treturn y\n",
        syntax(3, 1, "inconsistent use of tabs and spaces in indentation"),
        cpython=True,
    ),
    row(
        "form-feed-resets-indentation",
        "\x0cdef f(x):\n    \x0cy = x // 2\n    return y\n",
        syntax(2, 6, "expected an indented block after function definition on line 1"),
        cpython=True,
    ),
    row("missing-colon", "def f(x)\n    return x\n", syntax(1, 9, "expected ':'"), cpython=True),
    row(
        "paren-never-closed",
        "def f(x):\n    y = (x * 2\n    return y\n",
        syntax(2, 9, "'(' was never closed"),
        cpython=True,
    ),
    row(
        "unmatched-paren",
        "def f(x):\n    return x)\n",
        syntax(2, 13, "unmatched ')'"),
        cpython=True,
    ),
    row(
        "python2-print",
        "def f(x):\n    print x\n    return x\n",
        syntax(2, 5, "Missing parentheses in call to 'print'. Did you mean print(...)?"),
        cpython=True,
    ),
    row(
        "keyword-as-parameter",
        "def f(class):\n    return 1\n",
        f"{FILE}:1:7: error: invalid syntax — {SYNTAX_HINT}",
        cpython=True,
    ),
    row(
        "invalid-character",
        "def f(x):\n    return x \u2192 2\n",
        syntax(2, 14, "invalid character '\u2192' (U+2192)"),
        cpython=True,
    ),
    # -- the function asked for -----------------------------------------------------------------
    row(
        "function-not-there",
        "def f(x):\n    return x * x\n",
        f"{FILE}: error: no top-level function named `nope` — functions defined here: f",
        args=("--function", "nope"),
    ),
    row(
        "wrt-not-a-parameter",
        "def f(x):\n    return x * x\n",
        f"{FILE}:1:1: error: wrt names `y`, which is not a parameter of `f` — parameters: x",
        args=("--wrt", "y"),
    ),
    row(
        "wrt-only-commas",
        "def f(x):\n    return x * x\n",
        f"{FILE}:1:1: error: wrt is empty for `f` — name at least one parameter: x",
        args=("--wrt", ","),
    ),
    # -- statements and expressions, in forms test_errors.py does not have -----------------------
    row(
        "recursion-in-a-sum",
        "def f(x):\n    y = x * 2\n    return f(y) + y\n",
        f"{FILE}:3:12: error: recursion (`f` calls itself) is not supported — write the "
        "computation as straight-line stages",
    ),
    row(
        "mutate-list-parameter",
        "def f(w, x):\n    w[0] = x * 2\n    return w[0] * x\n",
        f"{FILE}:2:5: error: assigning into `w[...]` mutates it, which is not supported — bind a "
        "new name instead, e.g. `w0 = ...`",
    ),
    row(
        "append-to-list-parameter",
        "def f(w, x):\n    w.append(x)\n    return w[0] * x\n",
        f"{FILE}:2:5: error: this expression's value is thrown away — assign it to a name, or "
        "remove it (printing is not supported)",
    ),
    row(
        "global-then-assign",
        "SCALE = 2.0\n\ndef f(x):\n    global SCALE\n    SCALE = x\n    return x * SCALE\n",
        f"{FILE}:4:5: error: `global` is not supported — pass the value in as a parameter",
    ),
    row(
        "for-over-range",
        "def f(x, n):\n    for _ in range(3):\n        x = x * n\n    return\n",
        f"{FILE}:4:5: error: `return` without a value — return the value to differentiate",
    ),
    row(
        "while-true",
        "def f(x):\n    while True:\n        return x\n    return x\n",
        f"{FILE}:3:9: error: `return` inside a loop is not supported — `break` out of the loop, "
        "then return after it",
    ),
    row(
        "try-finally",
        "def f(x):\n    try:\n        y = x\n    finally:\n        y = 0.0\n    return y\n",
        f"{FILE}:2:5: error: `try` statements are not supported — keep error handling outside the "
        "function you differentiate",
    ),
    row(
        "with-open",
        "def f(x):\n    with open('log.txt') as fh:\n        fh.write('x')\n    return x\n",
        f"{FILE}:2:5: error: `with` statements are not supported — keep the context manager "
        "outside the function you differentiate",
    ),
    row(
        "lambda-bound-and-called",
        "def f(x):\n    g = lambda t: t * t\n    return g(x)\n",
        f"{FILE}:2:9: error: lambda is not supported — write the expression inline",
    ),
    row("sum-of-generator", "def f(w):\n    return sum(v * v for v in w)\n", unknown("sum", 2, 12)),
    row(
        "walrus-inside-a-call",
        "import math\n\ndef f(x):\n    return math.exp(y := x * 2) + y\n",
        f"{FILE}:4:21: error: the walrus operator := is not supported — assign the value in a "
        "statement of its own",
    ),
    row(
        "starred-tuple-argument",
        "import math\n\ndef f(x, y):\n    return math.hypot(*(x, y))\n",
        f"{FILE}:4:23: error: starred arguments are not supported — list the arguments one by one",
    ),
    row(
        "keyword-argument-to-log",
        "import math\n\ndef f(x):\n    return math.log(x, base=2)\n",
        f"{FILE}:4:24: error: keyword arguments are not supported — pass arguments by position",
    ),
    row(
        "default-string",
        "def f(x, mode='fast'):\n    return x\n",
        f"{FILE}:1:15: error: {DEFAULT_MUST_BE}",
    ),
    row(
        "default-none",
        "def f(x, y=None):\n    return x\n",
        f"{FILE}:1:12: error: {DEFAULT_MUST_BE}",
    ),
    row(
        "default-math-pi",
        "import math\n\ndef f(x, y=math.pi):\n    return x * y\n",
        f"{FILE}:3:12: error: {DEFAULT_MUST_BE}",
    ),
    row(
        "default-call",
        "def f(x, y=float('1.5')):\n    return x * y\n",
        f"{FILE}:1:12: error: {DEFAULT_MUST_BE}",
    ),
    row(
        "yield-as-value-then-return",
        "def f(x):\n    y = yield x\n    return x\n",
        f"{FILE}:2:9: error: `yield` is not supported — return one value",
    ),
    row(
        "from-import-inside",
        "def f(x):\n    from math import exp\n    return exp(x)\n",
        f"{FILE}:2:5: error: imports inside the function are not supported — import at the top of "
        "the module",
    ),
    row(
        "os-attribute",
        "import os\n\ndef f(x):\n    return x * os.sep\n",
        f"{FILE}:4:16: error: attribute access (`os.sep`) is not supported — pass the number in as "
        "a parameter",
    ),
    row(
        "attribute-of-parameter",
        "def f(x):\n    return x.real * 2\n",
        f"{FILE}:2:12: error: attribute access (`x.real`) is not supported — pass the number in as "
        "a parameter",
    ),
    row("print-call", "def f(x):\n    y = print(x)\n    return x\n", unknown("print", 2, 9)),
    row("eval-call", "def f(x):\n    return eval('x * x')\n", unknown("eval", 2, 12)),
    row("float-call", "def f(x):\n    return float(x) * 2\n", unknown("float", 2, 12)),
    row(
        "getattr-call",
        "import math\n\ndef f(x):\n    return getattr(math, 'exp')(x)\n",
        f"{FILE}:4:12: error: this kind of call is not supported — call one of: {SUPPORTED}",
    ),
    row(
        "dunder-import",
        "def f(x):\n    return __import__('math').exp(x)\n",
        f"{FILE}:2:12: error: method calls (`__import__('math').exp(...)`) are not supported — "
        "call a math function on numbers instead",
    ),
    row(
        "math-floor",
        "import math\n\ndef f(x):\n    return math.floor(x)\n",
        f"{FILE}:4:12: error: `math.floor` is not supported — use one of: {SUPPORTED}",
    ),
    row(
        "bytes-constant",
        "def f(x):\n    return x * b'2'\n",
        f"{FILE}:2:16: error: strings are not numbers — compute with numbers only",
    ),
    row(
        "implicit-string-concatenation",
        "def f(x):\n    return x + 'a' 'b'\n",
        f"{FILE}:2:16: error: strings are not numbers — compute with numbers only",
    ),
    row("complex-call", "def f(x):\n    return complex(x, 1.0)\n", unknown("complex", 2, 12)),
    row(
        "bitwise-and",
        "def f(x, y):\n    return x & y\n",
        f"{FILE}:2:12: error: the bitwise operator `&` is not supported on real numbers — use + - "
        "* / ** and math functions",
    ),
    row(
        "left-shift",
        "def f(x):\n    return x << 2\n",
        f"{FILE}:2:12: error: the bitwise operator `<<` is not supported on real numbers — use + "
        "- * / ** and math functions",
    ),
    row(
        "xor-assign",
        "def f(x, y):\n    x ^= y\n    return x\n",
        f"{FILE}:2:5: error: `^=` is not supported — use += -= *= /= or **=",
    ),
    row(
        "modulo",
        "def f(x):\n    return x % 2.0\n",
        f"{FILE}:2:12: error: the modulo operator `%` is not supported — use + - * / ** and math "
        "functions",
    ),
    row(
        "modulo-assign",
        "def f(x):\n    x %= 2.0\n    return x\n",
        f"{FILE}:2:5: error: `%=` is not supported — use += -= *= /= or **=",
    ),
    row(
        "matmul",
        "def f(x, y):\n    return x @ y\n",
        f"{FILE}:2:12: error: matrix multiplication `@` is array code, but no parameter of `f` "
        'has a shape annotation — annotate each array parameter with its shape, e.g. `x: "N, D"` '
        "(numbers need none)",
    ),
    row(
        "chained-comparison",
        "def f(x, y):\n    return 0 < x < y\n",
        f"{FILE}:2:12: error: comparisons are not values here — choose between values with a "
        "conditional expression, `a if x > 0 else b`",
    ),
    row(
        "if-else-returns",
        "def f(x):\n    if x > 0:\n        y = x\n    return y\n",
        f"{FILE}:4:12: error: `y` is assigned on only some paths through the `if` before this line "
        "— assign `y` on every path (or before the `if`)",
    ),
    row(
        "ellipsis-statement",
        "def f(x):\n    ...\n    return x\n",
        f"{FILE}:2:5: error: this expression's value is thrown away — assign it to a name, or "
        "remove it (printing is not supported)",
    ),
    row(
        "return-none",
        "def f(x):\n    return None\n",
        f"{FILE}:2:12: error: `None` is not a number — compute with numbers only",
    ),
    row(
        "return-starred-tuple",
        "def f(w):\n    return *w,\n",
        f"{FILE}:2:12: error: a starred value cannot be returned — return a fixed number of "
        "values: `return a, b`",
    ),
    row(
        "await-in-plain-def",
        "def f(x):\n    return await x\n",
        f"{FILE}:2:12: error: `await` is not supported — write a plain def",
    ),
    row(
        "one-line-def-with-semicolons",
        "def f(x): y = x * 2; return y // 2\n",
        f"{FILE}:1:29: error: {FLOORDIV}",
    ),
    row(
        "backslash-continuation",
        "def f(x):\n    y = x * \\\n        2 // 3\n    return y\n",
        f"{FILE}:2:9: error: {FLOORDIV}",
    ),
    row(
        "non-ascii-parameter",
        "def f(größe):\n    return größe // 2\n",
        f"{FILE}:2:12: error: {FLOORDIV}",
    ),
    # -- numbers a float cannot hold (were internal errors) -------------------------------------
    row(
        "float-literal-overflows-to-inf",
        "def f(x):\n    return x - 1e309 * x\n",
        f"{FILE}:2:16: error: {TOO_LARGE}",
    ),
    row(
        "int-literal-beyond-float",
        "def f(x):\n    return x * 1" + "0" * 400 + "\n",
        f"{FILE}:2:16: error: {TOO_LARGE}",
    ),
    row(
        "overflowing-literal-in-array-code",
        'import numpy as np\n\n\ndef f(x: "N"):\n    return np.sum(x * -1e400)\n',
        f"{FILE}:5:24: error: {TOO_LARGE}",
    ),
    # -- names Python reads as one, and shapes with holes --------------------------------------
    row(
        "parameter-given-twice",
        "def f(x, x):\n    return x * x\n",
        f"{FILE}:1:10: error: the parameter `x` is given twice — {OWN_NAME}",
    ),
    row(
        "parameters-one-under-nfkc",
        "def f(\ufb01, fi):\n    return \ufb01 * fi\n",
        f"{FILE}:1:10: error: the parameter `fi` repeats `\ufb01`: Python reads both as `fi` (it "
        f"compares names in NFKC form) — {OWN_NAME}",
    ),
    row(
        "array-parameters-one-under-nfkc",
        f'{NUMPY}def f(fi: "N", \ufb01: "N"):\n    return np.sum(fi * \ufb01)\n',
        f"{FILE}:4:16: error: the parameter `\ufb01` repeats `fi`: Python reads both as `fi` (it "
        f"compares names in NFKC form) — {OWN_NAME}",
    ),
    row(
        "empty-dimension-name",
        f'{NUMPY}def f(x: "N,,D"):\n    return np.sum(x * x)\n',
        f"{FILE}:4:10: error: the shape `N,,D` has an empty dimension name — {BETWEEN_COMMAS}",
    ),
    row(
        "leading-comma-in-shape",
        f'{NUMPY}def f(x: "(, D)"):\n    return np.sum(x * x)\n',
        f"{FILE}:4:10: error: the shape `(, D)` has an empty dimension name — {BETWEEN_COMMAS}",
    ),
    row(
        "keyword-dimension-name",
        f'{NUMPY}def f(x: "if, D"):\n    return np.sum(x, axis=0)\n',
        f"{FILE}:4:10: error: `if` is a Python keyword, so it cannot name a dimension — a "
        "dimension name must be a Python identifier that is not a keyword",
    ),
    row(
        "keyword-dimension-name-under-nfkc",
        f'{NUMPY}def f(x: "N, \uff57\uff48\uff49\uff4c\uff45"):\n' "    return np.sum(x)\n",
        f"{FILE}:4:10: error: `\uff57\uff48\uff49\uff4c\uff45` is the Python keyword `while` "
        "(NFKC), so it cannot name a dimension — a dimension name must be a Python identifier "
        "that is not a keyword",
    ),
    row(
        "superscript-digit-dimension",  # "²".isdigit(), but int("²") raised: an internal error
        f'{NUMPY}def f(x: "N, \u00b2"):\n    return np.sum(x)\n',
        f"{FILE}:4:10: error: `\u00b2` is not a dimension — name each dimension, as in "
        '`x: "N, D"` (names, or literal sizes like 1)',
    ),
    row(
        "emoji-in-comment",
        "def f(x):\n    y = x * 2  # 🙂🙂\n    return y % 3\n",
        f"{FILE}:3:12: error: the modulo operator `%` is not supported — use + - * / ** and math "
        "functions",
    ),
]


def _cpython_message(source: bytes, expected: str) -> str:
    """On another Python version, CPython's own text for a syntax-error row."""
    if sys.version_info[:2] == (3, 11):
        return expected
    text = source.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        ast.parse(text)
    except SyntaxError as exc:
        msg = exc.msg if exc.msg.startswith("invalid syntax") else f"invalid syntax: {exc.msg}"
        return f"{FILE}:{exc.lineno}:{exc.offset}: error: {msg} — {SYNTAX_HINT}"
    except RecursionError as exc:
        return f"{FILE}:1:1: error: cannot parse this file: {exc} — pass a valid Python module"
    pytest.skip("this Python version parses the row")


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def run_main(argv, capsys) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_refused(status, out, err, first):
    assert "Traceback" not in out + err
    assert err.split("\n")[0] == first, err
    assert status == 2, err
    assert out == ""


@pytest.mark.parametrize("case", ROWS)
def test_hostile_file(case: Row, tmp_path, monkeypatch, capsys):
    data = case.content()
    (tmp_path / FILE).write_bytes(data)
    before = _listing(tmp_path)
    monkeypatch.chdir(tmp_path)
    first = _cpython_message(data, case.first) if case.cpython else case.first
    status, out, err = run_main([FILE, *case.args], capsys)
    assert_refused(status, out, err, first)
    assert _listing(tmp_path) == before, "a file was written, or the input was changed"
    lines = err.rstrip("\n").split("\n")
    location = first.split(": error:")[0].split(":")
    if len(location) == 3:  # FILE:LINE:COL, then the source line and a caret
        line = int(location[1])
        text = data.decode("utf-8", errors="replace")
        text = text[1:] if text.startswith("\ufeff") else text  # one BOM is the encoding's
        # Lines as the parser counts them (str.splitlines also breaks at form feeds).
        source = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[line - 1]
        assert len(lines) == 3, err
        assert lines[1] == "    " + source.expandtabs(1).lstrip()
        assert lines[2].strip() == "^" and lines[2].startswith("    ")
    else:
        assert len(lines) == 1, err


def test_long_flat_sum(tmp_path, monkeypatch, capsys):
    """Python compiles a 600-term sum; stagegen must either differentiate it or refuse it with a
    located error (exit 2), never fail inside."""
    (tmp_path / FILE).write_text("def f(x):\n    return " + " + ".join(["x"] * 600) + "\n")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main([FILE], capsys)
    assert "Traceback" not in err and "internal error" not in err, err
    if status == 0:
        namespace: dict = {}
        exec((tmp_path / "forward_backward.py").read_text(), namespace)
        assert namespace["f_backward"](1.5) == 600.0
    else:
        assert status == 2 and err.startswith(f"{FILE}:2:"), err


def test_two_functions_with_one_name(tmp_path, monkeypatch, capsys):
    """Python keeps the second `f`. stagegen must either differentiate that one only (one
    f_backward, 3 x**2) or refuse the file with an error at the second `def` (exit 2)."""
    source = "def f(x):\n    return x * x\n\ndef f(x):\n    return x * x * x\n"
    (tmp_path / FILE).write_text(source)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main([FILE], capsys)
    assert "Traceback" not in err and "internal error" not in err, err
    if status == 0:
        text = (tmp_path / "forward_backward.py").read_text()
        assert text.count("def f_backward(") == 1, text
        namespace: dict = {}
        exec(text, namespace)
        assert namespace["f_backward"](2.0) == 12.0
    else:
        assert status == 2 and err.startswith(f"{FILE}:4:1: error: "), err
        assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]


def test_unknown_decorator_is_refused(tmp_path, monkeypatch, capsys):
    source = "def negate(g):\n    return g\n\n\n@negate\ndef f(x):\n    return x * x\n"
    (tmp_path / FILE).write_text(source)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main([FILE], capsys)
    assert status == 2, err
    assert err.startswith(f"{FILE}:5:2: error: ") and "decorator" in err.split("\n")[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]


def test_stagegens_own_decorator_is_accepted(tmp_path, monkeypatch, capsys):
    source = "from stagegen import staged\n\n\n@staged\ndef f(x):\n    return x * x * x\n"
    (tmp_path / FILE).write_text(source)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main([FILE], capsys)
    assert status == 0, err
    namespace: dict = {}
    exec((tmp_path / "forward_backward.py").read_text(), namespace)
    assert namespace["f_backward"](2.0) == 12.0


def test_atan2_of_zero_and_zero_inside_max(tmp_path, monkeypatch, capsys):
    """atan2(0.0, 0.0) is 0.0 in Python, so this forward is defined everywhere (it is max(0, a))."""
    source = "import math\n\n\ndef f(a):\n    t = a - a\n    return max(math.atan2(t, t), a)\n"
    (tmp_path / FILE).write_text(source)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main([FILE], capsys)
    assert "Traceback" not in err and "internal error" not in err, err
    if status == 0:
        namespace: dict = {}
        exec((tmp_path / "forward_backward.py").read_text(), namespace)
        assert namespace["f_backward"](1.5) == 1.0
    else:
        assert status == 2 and err.startswith(f"{FILE}:"), err


def test_table_is_large_enough():
    assert len(ROWS) >= 40
    ids = [p.values[0].id for p in ROWS]
    assert len(set(ids)) == len(ids)


# -- paths that are not readable files ------------------------------------------------------------


def test_missing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(["missing.py"], capsys)
    assert_refused(status, out, err, "missing.py: error: no such file — check the path")
    assert list(tmp_path.iterdir()) == []


def test_dangling_symlink(tmp_path, monkeypatch, capsys):
    (tmp_path / "link.py").symlink_to(tmp_path / "nowhere.py")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(["link.py"], capsys)
    assert_refused(status, out, err, "link.py: error: no such file — check the path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.py"]


def test_directory_given_as_the_file(tmp_path, monkeypatch, capsys):
    """A folder is searched for Python files, as black does (even one named like a file); an
    empty one says so and writes nothing."""
    (tmp_path / "model.py").mkdir()
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(["model.py"], capsys)
    assert status == 0 and "Traceback" not in err and out == ""
    assert err.startswith("model.py: no Python files with functions")
    assert "no such file" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py"]


def _assert_unreadable_refused(tmp_path, status, out, err):
    assert "Traceback" not in out + err
    assert status == 2, err
    assert err.startswith("model.py: error: ") and "internal error" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read a chmod 000 file"
)
def test_unreadable_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "model.py"
    path.write_text("def f(x):\n    return x * x\n")
    path.chmod(0)
    monkeypatch.chdir(tmp_path)
    try:
        status, out, err = run_main(["model.py"], capsys)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    _assert_unreadable_refused(tmp_path, status, out, err)


def test_unreadable_file_simulated(tmp_path, monkeypatch, capsys):
    """The same as test_unreadable_file, where running as root makes chmod 000 ineffective:
    reading the file raises what the OS raises for a file without read permission."""
    path = tmp_path / "model.py"
    path.write_text("def f(x):\n    return x * x\n")
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        if self.name == "model.py":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(["model.py"], capsys)
    _assert_unreadable_refused(tmp_path, status, out, err)


def test_output_path_is_a_directory_with_force(tmp_path, monkeypatch, capsys):
    (tmp_path / "model.py").write_text("def f(x):\n    return x * x\n")
    (tmp_path / "model_backward.py").mkdir()
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(["--force", "model.py"], capsys)
    assert "Traceback" not in err and "internal error" not in err, err
    assert status == 2 and err.startswith("model_backward.py: error: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py", "model_backward.py"]
    assert list((tmp_path / "model_backward.py").iterdir()) == []


def test_output_path_is_a_directory_without_force(tmp_path, monkeypatch, capsys):
    (tmp_path / "model.py").write_text("def f(x):\n    return x * x\n")
    (tmp_path / "model_backward.py").mkdir()
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(["model.py"], capsys)
    assert status == 2 and "Traceback" not in err
    assert err.startswith("model_backward.py: error: the output path is a directory"), err
    assert list((tmp_path / "model_backward.py").iterdir()) == []


# -- unusual file names ---------------------------------------------------------------------------

NAMES = ["my model.py", "modèle ü.py", "模型.py", "-dash.py", "two.dots.py"]


@pytest.mark.parametrize("name", NAMES)
def test_unusual_file_name_with_an_error(name, tmp_path, monkeypatch, capsys):
    (tmp_path / name).write_text("def f(x):\n    return x // x\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    argv = ["--", name] if name.startswith("-") else [name]
    status, out, err = run_main(argv, capsys)
    assert_refused(status, out, err, f"{name}:2:12: error: {FLOORDIV}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", NAMES)
def test_unusual_file_name_is_written_beside(name, tmp_path, monkeypatch, capsys):
    (tmp_path / name).write_text("def f(x):\n    return x * x * x\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    argv = ["--", name] if name.startswith("-") else [name]
    status, out, err = run_main(argv, capsys)
    assert status == 0, err
    target = name[: -len(".py")] + "_backward.py"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, target])
    assert err.startswith(f"wrote {target} — proven against SymPy"), err
    namespace: dict = {}
    exec((tmp_path / target).read_text(encoding="utf-8"), namespace)
    assert namespace["f_backward"](2.0) == 12.0


# -- accepted oddities ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbfdef f(x):\n    return x * x * x\n",
        b"def f(x):\r\n    return x * x * x\r\n",
        b"def f(x):\r    return x * x * x\r",
        b"def f(x):\n    return x * x * x",  # no final newline
        b"# -*- coding: latin-1 -*-\ndef f(x):\n    return x * x * x\n",
        b"\n\n\n" + b"# note\n" * 1000 + b"def f(x):  return x * x * x\n",
    ],
    ids=["utf8-bom", "crlf", "cr", "no-final-newline", "ascii-with-latin1-cookie", "one-line-def"],
)
def test_odd_but_valid_files_are_accepted(data, tmp_path, monkeypatch, capsys):
    (tmp_path / FILE).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main([FILE], capsys)
    assert status == 0, err
    namespace: dict = {}
    exec((tmp_path / "forward_backward.py").read_text(encoding="utf-8"), namespace)
    assert namespace["f_backward"](2.0) == 12.0
    assert (tmp_path / FILE).read_bytes() == data


def test_repeated_function_option_gives_one_backward(tmp_path, monkeypatch, capsys):
    (tmp_path / FILE).write_text("def f(x):\n    return x * x\n")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(["--stdout", "--no-verify", "-f", "f", "-f", "f", FILE], capsys)
    assert status == 0, err
    assert out.count("def f_backward(") == 1, out


# -- the real process ------------------------------------------------------------------------------

PROCESS_ROWS = {
    "binary-garbage",
    "utf16-with-bom",
    "huge-comments-then-error",
    "unterminated-string",
    "function-not-there",
}


@pytest.mark.parametrize("case", [p for p in ROWS if p.values[0].id in PROCESS_ROWS])
def test_hostile_file_in_a_real_process(case: Row, tmp_path):
    data = case.content()
    (tmp_path / FILE).write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-m", "stagegen", FILE, *case.args],
        capture_output=True,
        cwd=tmp_path,
    )
    err = result.stderr.decode("utf-8")
    first = _cpython_message(data, case.first) if case.cpython else case.first
    assert result.returncode == 2, err
    assert "Traceback" not in err and result.stdout == b""
    assert err.split("\n")[0] == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]


# -- numbers beyond a float ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "at, shown",
    [
        ("x=" + "9" * 400, "x=" + "9" * 36 + " ..."),
        ("x=1e309", "x=1e309"),
        ("x=-1e400", "x=-1e400"),
        ("x=[1, " + "9" * 400 + "]", "x=[1, " + "9" * 32 + " ..."),
    ],
    ids=["400-digit-int", "inf-float", "minus-inf-float", "huge-int-in-list"],
)
def test_explain_at_a_number_beyond_a_float(at, shown, tmp_path, monkeypatch, capsys):
    """`--at` with a value no float holds was an internal error (OverflowError in isfinite)."""
    (tmp_path / FILE).write_text("def f(x):\n    y = x * x\n    return y + 1\n")
    monkeypatch.chdir(tmp_path)
    status = cli.explain_main([f"{FILE}::f", "--at", at])
    out, err = capsys.readouterr()
    assert_refused(
        status,
        out,
        err,
        f"--at: error: `{shown}` is not a finite float (the largest is about 1.8e308) — "
        "give a value a float can hold",
    )


def test_infinite_number_in_a_gradient_imports_math():
    """An infinite number prints as math.inf; the module must import math for it (a literal
    1e309 is refused when read, so the number is put into the program here)."""
    from stagegen.emit import render
    from stagegen.expr import Bin, Num, Var
    from stagegen.reader import read_programs
    from stagegen.reverse import differentiate

    (program,) = read_programs("def f(x):\n    return x * 2.0\n", "<string>")
    program.stages[-1].expr = Bin("*", Var("x"), Num(float("inf")))
    text = render([differentiate(program)], "<string>", "stagegen FILE.py")
    assert "math.inf" in text, text
    namespace: dict = {}
    exec(text, namespace)
    assert namespace["f_backward"](1.0) == float("inf")


# -- output paths that are not regular files, and generated files an editor touched ---------------

SIMPLE = "def f(x):\n    return x * x * x\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize(
    "mode",
    [[], ["--check"], ["--force"], ["--check", "--diff"]],
    ids=["write", "check", "force", "check-diff"],
)
def test_a_fifo_at_the_output_path_is_refused(mode, tmp_path):
    """Opening a FIFO to read waits for a writer: --check and the generated-mark test hung. A
    real process, so that a regression fails on the timeout instead of hanging the suite."""
    (tmp_path / "model.py").write_text(SIMPLE)
    os.mkfifo(tmp_path / "model_backward.py")
    result = subprocess.run(
        [sys.executable, "-m", "stagegen", "--no-verify", *mode, "model.py"],
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
    )
    err = result.stderr.decode("utf-8")
    assert result.returncode == 2, err
    assert result.stdout == b"" and "Traceback" not in err
    assert err.split("\n")[0] == (
        "model_backward.py: error: the output path is a FIFO, not a regular file — move it "
        "away (stagegen writes FILE_backward.py beside FILE.py)"
    )
    assert stat.S_ISFIFO(os.stat(tmp_path / "model_backward.py").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py", "model_backward.py"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("explain", [False, True], ids=["generate", "explain"])
def test_a_fifo_given_as_the_file_is_refused(explain, tmp_path, monkeypatch, capsys):
    os.mkfifo(tmp_path / "model.py")
    monkeypatch.chdir(tmp_path)
    if explain:
        status = cli.explain_main(["model.py::f"])
        out, err = capsys.readouterr()
    else:
        status, out, err = run_main(["model.py"], capsys)
    assert_refused(
        status,
        out,
        err,
        "model.py: error: is a FIFO, not a regular file — give the path of a Python file",
    )


def test_check_with_a_directory_at_the_output_path(tmp_path, monkeypatch, capsys):
    """--check read the directory (IsADirectoryError: an internal error)."""
    (tmp_path / "model.py").write_text(SIMPLE)
    (tmp_path / "model_backward.py").mkdir()
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(["--check", "--no-verify", "model.py"], capsys)
    assert_refused(
        status,
        out,
        err,
        "model_backward.py: error: the output path is a directory — move it away (stagegen "
        "writes FILE_backward.py beside FILE.py)",
    )


def test_a_generated_file_saved_with_a_byte_order_mark_is_still_ours(tmp_path, monkeypatch, capsys):
    (tmp_path / "model.py").write_text(SIMPLE)
    monkeypatch.chdir(tmp_path)
    assert run_main(["--no-verify", "model.py"], capsys)[0] == 0
    generated = (tmp_path / "model_backward.py").read_bytes()
    (tmp_path / "model_backward.py").write_bytes(b"\xef\xbb\xbf" + generated)  # an editor's save
    status, out, err = run_main(["--check", "--no-verify", "model.py"], capsys)
    assert status == 0 and err == "up to date model_backward.py\n", err
    status, out, err = run_main(["--no-verify", "model.py"], capsys)
    assert status == 0 and err.startswith("wrote model_backward.py"), err
    assert (tmp_path / "model_backward.py").read_bytes() == generated
    # and as an input it is still recognised as generated (skipped, not differentiated)
    (tmp_path / "model_backward.py").write_bytes(b"\xef\xbb\xbf" + generated)
    status, out, err = run_main(["model_backward.py"], capsys)
    assert status == 0 and "skipped (generated by stagegen)" in err, err


# -- names Python reads as one ---------------------------------------------------------------------


def test_fullwidth_and_ascii_dimension_names_are_one_dimension(tmp_path, monkeypatch, capsys):
    """Python reads `Ｎ` as `N`: the shapes ("Ｎ", D) and (N, D) broadcast, and the generated code
    binds one N (it wrote `Ｎ, D = x.shape`, which Python reads as N)."""
    np = pytest.importorskip("numpy")
    source = NUMPY + 'def f(x: "\uff2e, D", y: "N, D"):\n    return np.sum(np.sum(x * y, axis=0))\n'
    (tmp_path / FILE).write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main([FILE], capsys)
    assert status == 0, err
    text = (tmp_path / "forward_backward.py").read_text(encoding="utf-8")
    assert "\uff2e" not in text, text
    namespace: dict = {}
    exec(text, namespace)
    x, y = np.arange(6.0).reshape(3, 2), np.arange(6.0, 12.0).reshape(3, 2)
    dx, dy = namespace["f_backward"](x, y)
    assert np.array_equal(dx, y) and np.array_equal(dy, x)


@pytest.mark.parametrize(
    "argv",
    [
        ["--stdout", "--wrt", "\ufb01", FILE],
        ["--stdout", "--function", "\ufb01g", FILE],
        ["explain", f"{FILE}::\ufb01g", "--at", "\ufb01=2,y=3"],
    ],
    ids=["wrt", "function", "explain-at"],
)
def test_names_given_on_the_command_line_are_read_as_python_reads_them(
    argv, tmp_path, monkeypatch, capsys
):
    """`def ﬁg(ﬁ, y)` defines fig(fi, y) to Python; the names the user types as written in the
    source must find them (they were refused as unknown)."""
    (tmp_path / FILE).write_text(
        "def \ufb01g(\ufb01, y):\n    return \ufb01 * y\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    if argv[0] == "explain":
        assert "dfi = 3" in out, out
    else:
        namespace: dict = {}
        exec(out, namespace)
        expected = 3.0 if "--wrt" in argv else (3.0, 2.0)
        assert namespace["fig_backward"](2.0, 3.0) == expected
