"""Every bad-input error: where it points, what it says, and how the CLI reports it.

The contract: bad input raises ``stagegen.StagegenError`` with ``.filename``, ``.line`` and
``.col`` (1-based, in characters), ``.message`` and a non-empty ``.hint``; ``str(exc)`` reads

    FILE:LINE:COL: error: <message> — <hint>
        <the source line>
        ^

and the CLI prints exactly that to stderr, exits 2, shows no traceback and writes no file.

Each row of ``CASES`` is one bad program: the line and column the error must point at, and a
piece of the message that names the problem. Rows marked xfail are stagegen bugs: the row
states the correct behaviour.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import stagegen
from stagegen import StagegenError


def case(name, source, line, col, says, *, bug=None):
    """One bad program. ``source`` is dedented; a leading backslash-newline keeps line 1 real."""
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    return pytest.param(textwrap.dedent(source), line, col, says, id=name, marks=marks)


CASES = [
    # -- statements outside the language ---------------------------------------------------
    case(
        "if",
        """\
        def f(x, y):
            if x:
                x = y
            return x
        """,
        2,
        8,
        "is a number, not a condition",
    ),
    case(
        "for",
        """\
        def f(x, y):
            for i in {1: 2}:
                x = x * y
            return x
        """,
        2,
        14,
        "this loop's iterable is not supported",
    ),
    case(
        "while",
        """\
        def f(x, y):
            while x < y:
                x = x * 2
            else:
                x = y
            return x
        """,
        5,
        9,
        "a loop's `else` block is not supported",
    ),
    case(
        "try",
        """\
        def f(x, y):
            try:
                z = x / y
            except ZeroDivisionError:
                z = x
            return z
        """,
        2,
        5,
        "`try`",
    ),
    case(
        "with",
        """\
        def f(x, y):
            with open("log") as fh:
                z = x * y
            return z
        """,
        2,
        5,
        "`with`",
    ),
    case(
        "match",
        """\
        def f(x, y):
            match x:
                case 1:
                    pass
            return x
        """,
        2,
        5,
        "`match`",
    ),
    case(
        "nested-def",
        """\
        def f(x, y):
            def g(t):
                return t * 2
            return g(x)
        """,
        2,
        5,
        "nested functions",
    ),
    case(
        "nested-class",
        """\
        def f(x, y):
            class Box:
                pass
            return x
        """,
        2,
        5,
        "class definitions",
    ),
    case(
        "del",
        """\
        def f(x, y):
            z = x * y
            del z
            return x
        """,
        3,
        5,
        "`del`",
    ),
    case(
        "global",
        """\
        G = 2.0
        def f(x, y):
            global G
            return x * G
        """,
        3,
        5,
        "`global`",
    ),
    case(
        "nonlocal",
        """\
        def f(x, y):
            nonlocal z
            return x
        """,
        2,
        5,
        "`nonlocal`",
    ),
    case(
        "yield",
        """\
        def f(x, y):
            yield x
            return x
        """,
        2,
        5,
        "`yield`",
    ),
    case(
        "yield-as-value",
        """\
        def f(x, y):
            z = yield x
            return z
        """,
        2,
        9,
        "`yield`",
    ),
    case(
        "async-def",
        """\
        import math
        async def f(x, y):
            return x * y
        """,
        2,
        1,
        "async",
    ),
    case(
        "await",
        """\
        def f(x, y):
            z = await x
            return z
        """,
        2,
        9,
        "`await`",
    ),
    case(
        "assert",
        """\
        def f(x, y):
            assert x > 0
            return x
        """,
        2,
        5,
        "`assert`",
    ),
    case(
        "raise",
        """\
        def f(x, y):
            raise ValueError("no")
            return x
        """,
        2,
        5,
        "`raise`",
    ),
    case(
        "import-inside",
        """\
        def f(x, y):
            import math
            return math.exp(x)
        """,
        2,
        5,
        "imports inside the function",
    ),
    case(
        "expression-statement",
        """\
        def f(x, y):
            print(x)
            return x
        """,
        2,
        5,
        "thrown away",
    ),
    # -- names and calls ---------------------------------------------------------------------
    case(
        "attribute-access",
        """\
        def f(a, y):
            return a.x * y
        """,
        2,
        12,
        "attribute access (`a.x`)",
    ),
    case(
        "method-call",
        """\
        def f(x, y):
            return x.conjugate() * y
        """,
        2,
        12,
        "method calls (`x.conjugate(...)`)",
    ),
    case(
        "unknown-function",
        """\
        def f(x, y):
            return foo(x) * y
        """,
        2,
        12,
        "unknown function `foo`",
    ),
    case(
        "unsupported-math-function",
        """\
        import math
        def f(x, y):
            return math.floor(x) * y
        """,
        3,
        12,
        "`math.floor` is not supported",
    ),
    case(
        "numpy-call",
        """\
        import numpy as np
        def f(x, y):
            return np.exp(x).dot(y)
        """,
        3,
        12,
        "`np.exp(x).dot(y)` needs to know how many dimensions `x` has, and neither the code nor "
        "the docstring says",
    ),
    case(
        "math-not-imported",
        """\
        def f(x, y):
            return math.exp(x)
        """,
        2,
        12,
        "`math` is not imported",
    ),
    case(
        "math-function-not-imported",
        """\
        def f(x, y):
            return exp(x)
        """,
        2,
        12,
        "`exp` is not imported",
    ),
    case(
        "math-function-as-value",
        """\
        import math
        def f(x, y):
            return math.exp
        """,
        3,
        12,
        "`math.exp` is a function",
    ),
    case(
        "unsupported-math-constant",
        """\
        import math
        def f(x, y):
            return math.inf * x
        """,
        3,
        12,
        "`math.inf` is not supported",
    ),
    case(
        "builtin-as-value",
        """\
        def f(x, y):
            return abs
        """,
        2,
        12,
        "`abs` is a function",
    ),
    case(
        "calling-a-number",
        """\
        def f(x, y):
            z = x(3)
            return z
        """,
        2,
        9,
        "`x` is a number here",
    ),
    case(
        "starred-argument",
        """\
        def f(x, y):
            return max(*[x, y])
        """,
        2,
        16,
        "starred arguments",
    ),
    case(
        "keyword-argument",
        """\
        import math
        def f(x, y):
            return math.log(x, base=2)
        """,
        3,
        24,
        "keyword arguments are not supported",
    ),
    case(
        "arity-exp",
        """\
        import math
        def f(x, y):
            return math.exp(x, y)
        """,
        3,
        12,
        "`math.exp` takes 1 argument, not 2",
    ),
    case(
        "arity-atan2",
        """\
        import math
        def f(x, y):
            return math.atan2(x)
        """,
        3,
        12,
        "`math.atan2` takes 2 arguments, not 1",
    ),
    case(
        "max-single-argument",
        """\
        def f(x, y):
            return max(x)
        """,
        2,
        12,
        "`max` of a single argument",
    ),
    case(
        "used-before-assignment",
        """\
        def f(x, y):
            z = w * x
            w = y
            return z
        """,
        2,
        9,
        "`w` is used before it is assigned",
    ),
    case(
        "undefined-name",
        """\
        def f(x, y):
            return x * q
        """,
        2,
        16,
        "name `q` is not defined",
    ),
    case(
        "module-level-constant",
        """\
        SCALE = 2.0
        def f(x, y):
            return x * SCALE
        """,
        3,
        16,
        "`SCALE` is a module-level name",
    ),
    case(
        "recursion",
        """\
        def f(x, y):
            return f(y, x)
        """,
        2,
        12,
        "recursion",
    ),
    case(
        "calls-another-function",
        """\
        def g(t):
            return t * 2
        def f(x, y):
            return g(x) * y
        """,
        4,
        12,
        "a call to `g` inside an expression",
    ),
    # -- literals and operators --------------------------------------------------------------
    case(
        "string",
        """\
        def f(x, y):
            z = "abc"
            return x
        """,
        2,
        9,
        "strings are not numbers",
    ),
    case(
        "none",
        """\
        def f(x, y):
            z = x * None
            return z
        """,
        2,
        13,
        "`None` is not a number",
    ),
    case(
        "true",
        """\
        def f(x, y):
            return x * True
        """,
        2,
        16,
        "`True` is a boolean",
    ),
    case(
        "complex",
        """\
        def f(x, y):
            return x * 2j
        """,
        2,
        16,
        "complex numbers",
    ),
    *[
        case(
            f"operator {op}",
            f"""\
            def f(x, y):
                return x {op} y
            """,
            2,
            12,
            says,
        )
        for op, says in [
            ("//", "floor division `//`"),
            ("%", "modulo operator `%`"),
            ("&", "bitwise operator `&`"),
            ("|", "bitwise operator `|`"),
            ("^", "bitwise operator `^`"),
            ("<<", "bitwise operator `<<`"),
            (">>", "bitwise operator `>>`"),
            ("@", "matrix multiplication `@`"),
        ]
    ],
    case(
        "invert",
        """\
        def f(x, y):
            return ~x
        """,
        2,
        12,
        "`~`",
    ),
    case(
        "not",
        """\
        def f(x, y):
            return not x
        """,
        2,
        12,
        "`not` gives a boolean",
    ),
    case(
        "comparison",
        """\
        def f(x, y):
            z = x < y
            return z
        """,
        2,
        9,
        "comparisons are not values",
    ),
    case(
        "and",
        """\
        def f(x, y):
            return x and y
        """,
        2,
        12,
        "`and`/`or` are not values",
    ),
    case(
        "or",
        """\
        def f(x, y):
            return x or y
        """,
        2,
        12,
        "`and`/`or` are not values",
    ),
    case(
        "conditional-expression-on-a-number",
        """\
        def f(x, y):
            return x if y else -x
        """,
        2,
        17,
        "`y` is a number, not a condition",
    ),
    case(
        "conditional-expression-with-in",
        """\
        def f(x, y):
            return x if x in y else -x
        """,
        2,
        17,
        "`in` does not compare numbers",
    ),
    case(
        "walrus",
        """\
        def f(x, y):
            z = (w := x) * y
            return z
        """,
        2,
        10,
        "walrus",
    ),
    case(
        "lambda",
        """\
        def f(x, y):
            g = lambda t: t * 2
            return g(x)
        """,
        2,
        9,
        "lambda",
    ),
    case(
        "list-comprehension",
        """\
        def f(x, y):
            z = [t * 2 for t in (x, y)]
            return x
        """,
        2,
        9,
        "comprehensions",
    ),
    case(
        "set-comprehension",
        """\
        def f(x, y):
            z = {t * 2 for t in (x, y)}
            return x
        """,
        2,
        9,
        "comprehensions",
    ),
    case(
        "dict-comprehension",
        """\
        def f(x, y):
            z = {t: t * 2 for t in (x, y)}
            return x
        """,
        2,
        9,
        "comprehensions",
    ),
    case(
        "generator-expression",
        """\
        def f(x, y):
            z = (t * 2 for t in (x, y))
            return x
        """,
        2,
        9,
        "generator expressions",
    ),
    case(
        "f-string",
        """\
        def f(x, y):
            z = f"{x}"
            return x
        """,
        2,
        9,
        "f-strings",
    ),
    case(
        "list-literal",
        """\
        def f(x, y):
            z = [x, y]
            return x
        """,
        2,
        9,
        "list values",
    ),
    case(
        "set-literal",
        """\
        def f(x, y):
            return {x}
        """,
        2,
        12,
        "set values",
    ),
    case(
        "dict-literal",
        """\
        def f(x, y):
            return {x: y}
        """,
        2,
        12,
        "dict values",
    ),
    case(
        "tuple-return-in-a-branch",
        """\
        def f(x, y):
            if x > 0:
                return x, y
            return y, x
        """,
        3,
        16,
        "returning several values is supported only from one `return` at the end",
    ),
    # -- assignments ---------------------------------------------------------------------------
    case(
        "subscript-assignment",
        """\
        def f(v, y):
            v[0] = y
            return y
        """,
        2,
        5,
        "assigning into `v[...]` mutates it",
    ),
    case(
        "attribute-assignment",
        """\
        def f(a, y):
            a.x = y
            return y
        """,
        2,
        5,
        "assigning to an attribute",
    ),
    case(
        "augmented-subscript-assignment",
        """\
        def f(v, y):
            v[0] += y
            return y
        """,
        2,
        5,
        "assigning into `v[...]` mutates it",
    ),
    case(
        "floordiv-assignment",
        """\
        def f(x, y):
            x //= y
            return x
        """,
        2,
        5,
        "`//=` is not supported",
    ),
    case(
        "chained-assignment",
        """\
        def f(x, y):
            a = b = x
            return a * y
        """,
        2,
        5,
        "chained assignment",
    ),
    case(
        "unpack-non-tuple",
        """\
        def f(x, y):
            a, b = x
            return a * b
        """,
        2,
        12,
        "only a tuple written out can be unpacked",
    ),
    case(
        "unpack-length-mismatch",
        """\
        def f(x, y):
            a, b = x, y, x
            return a * b
        """,
        2,
        12,
        "2 names but 3 values",
    ),
    case(
        "starred-unpacking",
        """\
        def f(x, y):
            a, *b = x, y
            return a
        """,
        2,
        8,
        "starred unpacking",
    ),
    # -- the shape of the function -------------------------------------------------------------
    case(
        "no-return",
        """\
        def f(x, y):
            z = x * y
        """,
        1,
        1,
        "no return statement",
    ),
    case(
        "bare-return",
        """\
        def f(x, y):
            z = x * y
            return
        """,
        3,
        5,
        "`return` without a value",
    ),
    case(
        "code-after-return",
        """\
        def f(x, y):
            return x * y
            z = x
        """,
        3,
        5,
        "code after `return`",
    ),
    case(
        "star-args",
        """\
        def f(x, *rest):
            return x
        """,
        1,
        11,
        "*rest is not supported",
    ),
    case(
        "star-star-kwargs",
        """\
        def f(x, **opts):
            return x
        """,
        1,
        12,
        "**opts is not supported",
    ),
    case(
        "keyword-only-parameter",
        """\
        def f(x, *, y):
            return x * y
        """,
        1,
        13,
        "keyword-only parameters",
    ),
    case(
        "non-literal-default",
        """\
        import math
        def f(x, y=math.pi):
            return x * y
        """,
        2,
        12,
        "a default value must be a number",
    ),
    case(
        "no-parameters",
        """\
        def f():
            return 1.0
        """,
        1,
        1,
        "takes no parameters",
    ),
    # -- list parameters -----------------------------------------------------------------------
    case(
        "negative-index",
        """\
        def f(w, y):
            return w[-1] * y
        """,
        2,
        14,
        "negative indices",
    ),
    case(
        "non-constant-index",
        """\
        def f(w, i):
            return w[i]
        """,
        2,
        14,
        "a list index must be a constant integer",
    ),
    case(
        "slice",
        """\
        def f(w, y):
            return w[0:2]
        """,
        2,
        14,
        "slices are not supported",
    ),
    case(
        "indexing-a-local-number",
        """\
        def f(w, y):
            z = y
            return z[0]
        """,
        3,
        12,
        "`z` is a number here",
    ),
    case(
        "list-parameter-then-scalar",
        """\
        def f(w, y):
            z = w[0] * y
            return z + w
        """,
        3,
        16,
        "`w` is a list here",
    ),
    case(
        "scalar-parameter-then-list",
        """\
        def f(w, y):
            z = w * y
            return z + w[0]
        """,
        3,
        16,
        "`w` is used both as a number and as a list",
    ),
    # -- the text itself -----------------------------------------------------------------------
    case(
        "syntax-error",
        """\
        def f(x, y)
            return x
        """,
        1,
        12,
        "invalid syntax: expected ':'",
    ),
    case(
        "non-ascii-column",
        """\
        def f(x, y):
            # café: the comment above says naïve things
            zé = x % y  # über
            return zé
        """,
        3,
        10,
        "modulo operator `%`",
    ),
    case("nul-in-api-source", "def f(x, y):\n    return x\x00\n", 2, 13, "NUL"),
]


def error_of(source: str, **kwargs) -> StagegenError:
    with pytest.raises(StagegenError) as info:
        stagegen.generate(source, **kwargs)
    return info.value


def assert_caret(shown: str, caret: str, source_line: str, col: int) -> None:
    """The rendered source line is the real one, and the caret sits under column ``col``."""
    assert shown.strip() == source_line.strip()
    assert caret.strip() == "^"
    assert shown[caret.index("^") :] == source_line[col - 1 :]


@pytest.mark.parametrize("source, line, col, says", CASES)
def test_api_error(source, line, col, says):
    exc = error_of(source, filename="forward.py")
    assert (exc.filename, exc.line, exc.col) == ("forward.py", line, col)
    assert says in exc.message
    assert exc.hint.strip()
    first, shown, caret = str(exc).split("\n")
    assert first == f"forward.py:{line}:{col}: error: {exc.message} — {exc.hint}"
    assert_caret(shown, caret, source.splitlines()[line - 1], col)


def test_syntax_error_message_does_not_stutter():
    exc = error_of("def f(x, y):\n    return x +* y\n")
    assert (exc.line, exc.col) == (2, 15)
    assert "invalid syntax: invalid syntax" not in exc.message


def test_wrt_naming_a_non_parameter():
    exc = error_of("def f(x, y):\n    return x * y\n", wrt="z")
    assert "`z`" in exc.message and "not a parameter" in exc.message
    assert "x, y" in exc.hint


def test_empty_wrt():
    exc = error_of("def f(x, y):\n    return x * y\n", wrt="")
    assert "wrt is empty" in exc.message
    assert "x, y" in exc.hint


def test_wrt_error_shows_the_def_line():
    exc = error_of("def f(x, y):\n    return x * y\n", wrt="z")
    assert str(exc).split("\n")[1:] == ["    def f(x, y):", "    ^"]


def test_api_function_that_does_not_exist():
    exc = error_of("def f(x, y):\n    return x * y\n\ndef g(x):\n    return x\n", function="h")
    assert "`h`" in exc.message
    assert "f, g" in exc.hint


def test_module_without_functions():
    exc = error_of("import math\nX = 1.0\n")
    assert "no function definitions" in exc.message and exc.hint


def test_top_level_code_is_ignored():
    source = textwrap.dedent("""\
        import math
        import numpy as np
        from collections import OrderedDict

        SCALE = 2.0
        NAMES = [n for n in "abc"]
        if SCALE > 1:
            SCALE = 1.0


        class Box:
            def area(self):
                return self.w * self.h


        def f(x, y):
            return math.exp(x) * y
        """)
    assert "def f_backward(" in stagegen.generate(source)


# -- the command line ----------------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stagegen", *args], capture_output=True, text=True, cwd=tmp_path
    )


def assert_refused(result: subprocess.CompletedProcess, tmp_path: Path) -> None:
    """Exit status 2, an error and no traceback on stderr, and no file written."""
    assert result.returncode == 2, result.stderr
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.glob("*_backward.py")) == []


CLI_CASES = [
    p
    for p in CASES
    if p.id in {"if", "unknown-function", "undefined-name", "syntax-error", "non-ascii-column"}
]


@pytest.mark.parametrize("source, line, col, says", CLI_CASES)
def test_cli_error(tmp_path, source, line, col, says):
    path = tmp_path / "forward.py"
    path.write_text(source, encoding="utf-8")
    result = run_cli(tmp_path, str(path))
    assert_refused(result, tmp_path)
    first, shown, caret = result.stderr.rstrip("\n").split("\n")
    assert first.startswith(f"{path}:{line}:{col}: error: ")
    assert says in first
    assert_caret(shown, caret, source.splitlines()[line - 1], col)


def test_console_script(tmp_path):
    script = Path(sys.executable).with_name("stagegen")
    if not script.exists():
        pytest.skip("the stagegen console script is not installed beside this interpreter")
    path = tmp_path / "forward.py"
    path.write_text("def f(x, y):\n    return x // y\n", encoding="utf-8")
    result = subprocess.run([str(script), str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert_refused(result, tmp_path)
    assert result.stderr.startswith(f"{path}:2:12: error: floor division")


def byte_case(name, data, line, col, says, bug=None):
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    return pytest.param(data, line, col, says, id=name, marks=marks)


BYTE_CASES = [
    byte_case(
        "non-utf8",
        b"def f(x, y):\n    # caf\xe9\n    return x\n",
        2,
        10,
        "not valid UTF-8 (byte 0xe9)",
    ),
    byte_case(
        "non-utf8-after-non-ascii",
        "def f(x, y):\n    # é ".encode() + b"\xff\n    return x\n",
        2,
        9,
        "not valid UTF-8 (byte 0xff)",
    ),
    byte_case("nul", b"def f(x, y):\n\x00    return x\n", 2, 1, "NUL byte"),
    byte_case("nul-mid-line", b"def f(x, y):\n    return x\x00\n", 2, 13, "NUL byte"),
]


@pytest.mark.parametrize("data, line, col, says", BYTE_CASES)
def test_cli_bad_bytes(tmp_path, data, line, col, says):
    path = tmp_path / "forward.py"
    path.write_bytes(data)
    result = run_cli(tmp_path, str(path))
    assert_refused(result, tmp_path)
    assert result.stderr.startswith(f"{path}:{line}:{col}: error: ")
    assert says in result.stderr


def test_cli_bad_bytes_show_the_line(tmp_path):
    path = tmp_path / "forward.py"
    path.write_bytes(b"def f(x, y):\n    # caf\xe9\n    return x\n")
    result = run_cli(tmp_path, str(path))
    assert result.stderr.split("\n")[1:3] == ["    # caf\ufffd", "         ^"]


def test_cli_function_that_does_not_exist(tmp_path):
    path = tmp_path / "forward.py"
    path.write_text("def f(x, y):\n    return x * y\n\ndef g(x):\n    return x\n", encoding="utf-8")
    result = run_cli(tmp_path, str(path), "--function", "h")
    assert_refused(result, tmp_path)
    assert result.stderr.startswith(f"{path}: error: no top-level function named `h`")
    assert "f, g" in result.stderr


def test_cli_missing_file(tmp_path):
    result = run_cli(tmp_path, str(tmp_path / "nowhere.py"))
    assert_refused(result, tmp_path)
    assert "no such file" in result.stderr
