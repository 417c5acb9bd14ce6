"""Name hygiene: whatever the user's names, the backward is correct, shadows nothing, reads well.

Each row of ``CASES`` is a forward whose names collide with something the generated code
writes: the gradient names (``d<name>``), the upstream gradient (``df``, ``dout``), the math
module, the versioned names of re-assignments (``x_1``), the return stage (``out``), the names
``--split`` invents (``xpy``, ``sigy``, ``num``...), and the builtins the backward calls
(``len``). For each row:

* **correct**: the backward equals SymPy's derivative of the forward (the forward's source is run
  on SymPy symbols, with ``math`` replaced by SymPy; nothing of stagegen is used), also with a
  non-default upstream gradient;
* **readable**: the gradient names, the upstream name and the header notes are the documented
  ones: ``d<name>``, else ``d_<name>``, ``grad_<name>``, ``d<name>_1``..., and a note
  ``the gradient of `v` is named `g` (`dv` is already a name in f)`` for each rename;
* **shadows nothing**: no local name of a generated function is a name that function calls or
  reads from the module (``len``, ``abs``, ``max``, ``min``, the math module's alias);
* **true notes**: every header note's claim "`dv` is already a name in f" is true of the source.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import sympy as sp

import stagegen
from stagegen.api import load_backward_module


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    point: tuple  # arguments (a list for a list parameter)
    returns: tuple[str, ...]  # the names in the backward's return statement, in order
    upstream: str  # the upstream gradient's parameter name
    notes: tuple[str, ...] = ()  # the header notes, exactly, in order
    split: bool = False
    wrt: tuple[str, ...] | None = None
    math_alias: str | None = None  # how the generated module imports math (None: not at all)
    false_note: str | None = None  # a known bug: a header note that is not true

    @property
    def text(self) -> str:
        return textwrap.dedent(self.source)


def note(value, grad, taken):
    return f"the gradient of `{value}` is named `{grad}` (`{taken}` is already a name in f)"


RETURNED_NOTE = (
    "the gradient of the returned value is named `d_out` (`dout` is already a name in f)"
)


def taken_note(value, grad, taken, by):
    return f"the gradient of `{value}` is named `{grad}` (`{taken}` is taken by {by})"


CASES = [
    Case(
        "variable-dx",
        """\
        import math

        def f(x, y):
            dx = x * y
            return math.sin(dx) + x
        """,
        (0.7, -1.3),
        returns=("d_x", "dy"),
        upstream="dout",
        notes=(note("x", "d_x", "dx"),),
        math_alias="math",
    ),
    Case(
        "variable-df-and-output-f",
        """\
        def f(x, y):
            df = x * y
            f = df + x
            return f
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="d_f",
        notes=(note("f", "d_f", "df"),),
    ),
    Case(
        "variable-dout-and-expression-return",
        """\
        def f(x, y):
            dout = x * y
            return dout * x
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="d_out",
        notes=(RETURNED_NOTE,),
    ),
    Case(
        "parameter-dout",
        """\
        def f(x, dout):
            return x * dout
        """,
        (0.7, -1.3),
        returns=("dx", "ddout"),
        upstream="d_out",
        notes=(RETURNED_NOTE,),
    ),
    Case(
        "variable-d",
        """\
        def f(x, y):
            d = x * y
            return d * d
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="dout",
    ),
    Case(
        "variables-d-and-dd",
        """\
        def f(x, y):
            d = x * y
            dd = d + y
            return dd * d
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="dout",
        notes=(note("d", "d_d", "dd"),),
    ),
    Case(
        "variable-math",
        """\
        import math as m

        def f(x, y):
            math = m.exp(x)
            return math * m.sin(y)
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="dout",
        math_alias="math_",
    ),
    Case(
        "variable-math-and-every-first-alias",
        """\
        import math as m

        def f(x, math_, _math, pymath):
            math = m.exp(x)
            return math * m.sin(math_) + _math * pymath
        """,
        (0.7, -1.3, 0.4, 2.0),
        returns=("dx", "dmath_", "d_math", "dpymath"),
        upstream="dout",
        math_alias="math_1",
    ),
    Case(
        "variable-math-with-from-import",
        """\
        from math import exp, sin

        def f(x, y):
            math = exp(x) * y
            return math * sin(y)
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="dout",
        math_alias="math_",
    ),
    Case(
        "parameter-underscore-reassigned",
        """\
        import math

        def f(x, _):
            _ = _ * x
            return math.exp(_)
        """,
        (0.7, -1.3),
        returns=("dx", "d_"),
        upstream="dout",
        math_alias="math",
    ),
    Case(
        "names-like-versions-and-out",
        """\
        import math

        def f(x, y):
            x_1 = x * 2
            x = x * y
            x = math.sin(x)
            out = x + x_1
            out_1 = out * y
            return out_1 + x
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="dout",
        notes=(taken_note("out", "d_out", "dout", "the upstream gradient"),),
        math_alias="math",
    ),
    Case(
        "parameter-da-beside-a",
        """\
        def f(a, da):
            return a * da + a * a
        """,
        (0.7, -1.3),
        returns=("d_a", "dda"),
        upstream="dout",
        notes=(note("a", "d_a", "da"),),
    ),
    Case(
        "parameter-da-beside-a-wrt-a",
        """\
        def f(a, da):
            return a * da + a * a
        """,
        (0.7, -1.3),
        returns=("d_a",),
        upstream="dout",
        notes=(note("a", "d_a", "da"),),
        wrt=("a",),
    ),
    Case(
        "stage-da-beside-a",
        """\
        def f(a):
            da = a * 2
            return da * a
        """,
        (0.7,),
        returns=("d_a",),
        upstream="dout",
        notes=(note("a", "d_a", "da"),),
    ),
    Case(
        "every-fallback-taken",
        """\
        def f(x, dx, d_x, grad_x):
            return x * dx * d_x * grad_x
        """,
        (0.7, -1.3, 0.4, 2.0),
        returns=("dx_1", "ddx", "dd_x", "dgrad_x"),
        upstream="dout",
        notes=(note("x", "dx_1", "dx"),),
    ),
    Case(
        "output-ddx-beside-dx",
        """\
        def f(x, dx):
            ddx = dx * x
            return ddx
        """,
        (0.7, -1.3),
        returns=("d_x", "d_dx"),
        upstream="dddx",
        notes=(note("x", "d_x", "dx"), note("dx", "d_dx", "ddx")),
    ),
    Case(
        "parameter-named-like-the-function",
        """\
        def f(f, x):
            return f * x
        """,
        (0.7, -1.3),
        returns=("df", "dx"),
        upstream="dout",
    ),
    Case(
        "variable-named-like-the-function",
        """\
        def f(x, y):
            f = x * y
            f = f * x
            return f
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="df",
        notes=(taken_note("f", "d_f", "df", "the upstream gradient"),),
    ),
    Case(
        "parameter-named-like-the-backward",
        """\
        def f(x, f_backward):
            return x * f_backward
        """,
        (0.7, -1.3),
        returns=("dx", "df_backward"),
        upstream="dout",
    ),
    Case(
        "parameter-len-beside-a-list",
        """\
        def f(w, len):
            return w[0] * len + w[1]
        """,
        ([0.7, -1.3, 0.5], 0.4),
        returns=("dw", "dlen"),
        upstream="dout",
    ),
    Case(
        "parameter-len-and-underscore-list",
        """\
        def f(_, len):
            return _[0] * len + _[1]
        """,
        ([0.7, -1.3], 0.4),
        returns=("d_", "dlen"),
        upstream="dout",
    ),
    Case(
        "variable-dw-beside-list-w",
        """\
        def f(w, x):
            dw = w[0] * x
            return dw + w[1]
        """,
        ([0.7, -1.3], 0.4),
        returns=("d_w", "dx"),
        upstream="dout",
        notes=(note("w", "d_w", "dw"),),
    ),
    Case(
        "builtin-names-as-parameters",
        """\
        def f(x, min, sum, float):
            return x * min + sum * float
        """,
        (0.7, -1.3, 0.4, 2.0),
        returns=("dx", "dmin", "dsum", "dfloat"),
        upstream="dout",
    ),
    Case(
        "soft-keywords-as-names",
        """\
        def f(match, case, type):
            _ = match * case
            return _ * type
        """,
        (0.7, -1.3, 0.4),
        returns=("dmatch", "dcase", "dtype"),
        upstream="dout",
    ),
    Case(
        "split-names-taken-by-parameters",
        """\
        import math

        def f(x, y, xpy, xpysqr, sigy, num, den, invden):
            return (x + 1.0 / (1 + math.exp(-y))) / (1.0 / (1 + math.exp(-x)) + (x + y) ** 2) + xpy * xpysqr + sigy * num * den * invden
        """,
        (0.7, -1.3, 0.4, 2.0, 0.3, -0.6, 1.1, 0.9),
        returns=("dx", "dy", "dxpy", "dxpysqr", "dsigy", "dnum", "dden", "dinvden"),
        upstream="dout",
        split=True,
        math_alias="math",
    ),
    Case(
        "split-names-taken-by-variables",
        """\
        import math

        def f(x, y):
            sigx = x * 3
            xpy = y - 1
            prod = sigx * xpy
            return (x + y) ** 2 * prod + 1.0 / (1 + math.exp(-x))
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="dout",
        split=True,
        math_alias="math",
    ),
    Case(
        "split-invents-den-beside-parameter-en",
        """\
        def f(x, en, um):
            return (x + um * 2) / (x * en + 2.0)
        """,
        (0.7, -1.3, 0.4),
        returns=("dx", "den", "dum"),  # --split names the denominator otherwise
        upstream="dout",
        notes=(),
        split=True,
    ),
    Case(
        "split-invents-diff-beside-parameter-iff",
        """\
        def f(x, iff, rod):
            return (x * rod - x * 2.0) * (iff - x) * x
        """,
        (0.7, -1.3, 0.4),
        returns=("dx", "diff", "drod"),  # --split names the difference otherwise
        upstream="dout",
        notes=(),
        split=True,
    ),
    Case(
        "split-with-variable-d-and-dout",
        """\
        import math

        def f(x, y):
            d = math.sin(x * y) + x
            dout = d * d
            return dout + math.exp(x + y)
        """,
        (0.7, -1.3),
        returns=("dx", "dy"),
        upstream="d_out",
        notes=(RETURNED_NOTE,),
        split=True,
        math_alias="math",
    ),
]

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS)


def _params(case: Case) -> list[str]:
    fn = next(n for n in ast.parse(case.text).body if isinstance(n, ast.FunctionDef))
    return [a.arg for a in fn.args.args]


def generated(case: Case) -> str:
    return stagegen.generate(
        case.text, "f", split=case.split, wrt=list(case.wrt) if case.wrt else None
    )


def sympy_gradient(case: Case, point) -> dict[str, object]:
    """{parameter: its derivative (a list for a list parameter)} from SymPy, at ``point``."""
    shim = SimpleNamespace(exp=sp.exp, sin=sp.sin, cos=sp.cos, log=sp.log, tanh=sp.tanh)

    def importer(name, *args, **kwargs):
        assert name == "math"
        return shim

    namespace = {"__builtins__": {**builtins.__dict__, "__import__": importer}}
    exec(compile(case.text, "<forward>", "exec"), namespace)
    symbols, values = [], {}
    for name, value in zip(_params(case), point):
        if isinstance(value, list):
            elems = [sp.Symbol(f"{name}{k}", real=True) for k in range(len(value))]
            symbols.append(elems)
            values.update({s: sp.Rational(v) for s, v in zip(elems, value)})
        else:
            s = sp.Symbol(f"p_{name}", real=True)
            symbols.append(s)
            values[s] = sp.Rational(value)
    out = namespace["f"](*symbols)
    grads = {}
    for name, s in zip(_params(case), symbols):
        if isinstance(s, list):
            grads[name] = [float(sp.diff(out, e).evalf(30, subs=values)) for e in s]
        else:
            grads[name] = float(sp.diff(out, s).evalf(30, subs=values))
    return grads


def _copy(point):
    return [list(v) if isinstance(v, list) else v for v in point]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_is_correct(case: Case):
    backward = load_backward_module(generated(case))["f_backward"]
    want = sympy_gradient(case, case.point)
    wrt = list(case.wrt) if case.wrt else _params(case)
    for upstream in (1.0, -2.5):
        got = backward(*_copy(case.point), **{case.upstream: upstream})
        got = list(got) if len(wrt) > 1 else [got]
        assert len(got) == len(wrt)
        for name, g in zip(wrt, got):
            w = want[name]
            if isinstance(w, list):
                assert isinstance(g, list) and len(g) == len(w), (name, g, w)
                for gk, wk in zip(g, w):
                    assert gk == pytest.approx(upstream * wk, rel=1e-12, abs=1e-14), (name, g, w)
            else:
                assert g == pytest.approx(upstream * w, rel=1e-12, abs=1e-14), (name, g, w)


def _backward_def(text: str) -> ast.FunctionDef:
    return next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef))


def _header_notes(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^#\s+note: (.*)$", text, flags=re.M)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_names_are_the_documented_ones(case: Case):
    text = generated(case)
    fn = _backward_def(text)
    signature = [a.arg for a in fn.args.args]
    assert signature == _params(case) + [case.upstream]
    assert fn.args.defaults[-1].value == 1.0
    returned = fn.body[-1].value
    names = [e.id for e in returned.elts] if isinstance(returned, ast.Tuple) else [returned.id]
    assert tuple(names) == case.returns, text
    assert tuple(_header_notes(text)) == case.notes, text
    user = _user_names(case)
    for param, grad in zip(case.wrt or _params(case), case.returns):
        assert grad not in user, f"the gradient of {param} is named like a user name: {grad}"
        # d<name> when free; the documented fallback d_<name>, ... only when d<name> is taken.
        assert (grad == f"d{param}") == (f"d{param}" not in user) or case.split, (param, grad)


def _user_names(case: Case) -> set[str]:
    fn = next(n for n in ast.parse(case.text).body if isinstance(n, ast.FunctionDef))
    return {a.arg for a in fn.args.args} | {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_nothing_needed_is_shadowed(case: Case):
    text = generated(case)
    module = ast.parse(text)
    imports = [n for n in module.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if case.math_alias is None:
        assert imports == [], text
    else:
        assert len(imports) == 1 and isinstance(imports[0], ast.Import), text
        (alias,) = imports[0].names
        assert alias.name == "math" and (alias.asname or "math") == case.math_alias, text
    module_names = {(a.asname or a.name) for i in imports for a in i.names}
    for fn in (n for n in module.body if isinstance(n, ast.FunctionDef)):
        local = {a.arg for a in fn.args.args}
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                if not any(node in ast.walk(c) for c in _comprehensions(fn)):
                    local.add(node.id)
        needed = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                needed.add(node.func.id)  # len, abs, max, min
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                needed.add(node.value.id)  # the math module
        assert not (local & needed), f"{sorted(local & needed)} shadowed in\n{text}"
        for name in needed:
            assert name in module_names or hasattr(builtins, name), (name, text)
        if case.math_alias:
            assert case.math_alias in needed, text  # the alias is the name the code uses


def _comprehensions(fn):
    return [n for n in ast.walk(fn) if isinstance(n, (ast.ListComp, ast.GeneratorExp))]


def _note_cases():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.false_note)] if case.false_note else []
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", list(_note_cases()))
def test_header_notes_are_true(case: Case):
    """A note says why a gradient is not d<name>: `d<name>` is already one of the user's names.
    That must be true of the source, and name a value the user wrote."""
    text = generated(case)
    user = _user_names(case)
    for line in _header_notes(text):
        m = re.fullmatch(
            r"the gradient of (?:`(\w+)`|the returned value) is named `(\w+)` \(`(\w+)` "
            r"(is already a name in f|is taken by the (upstream gradient|gradient of `\w+`))\)",
            line,
        )
        assert m, line
        value, grad, taken, why = m.group(1, 2, 3, 4)
        assert value is None or value in user, f"{line!r}: the user wrote no `{value}`"
        if why.startswith("is already"):
            assert taken == f"d{value or 'out'}", line
            assert taken in user, f"{line!r}: the user has no name `{taken}` ({sorted(user)})"
        else:  # taken by another gradient: it must be one, in the generated code
            assert re.search(rf"\b{taken}\b = |\b{taken}=1\.0", text), line
        assert grad not in user, line


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_split_and_default_agree(case: Case):
    """The same forward with and without --split: the same signature, the same values."""
    wrt = list(case.wrt) if case.wrt else None
    texts = [stagegen.generate(case.text, "f", split=split, wrt=wrt) for split in (False, True)]
    plain, split = (load_backward_module(t)["f_backward"] for t in texts)
    assert [a.arg for a in _backward_def(texts[0]).args.args] == [
        a.arg for a in _backward_def(texts[1]).args.args
    ]
    got_plain, got_split = plain(*_copy(case.point)), split(*_copy(case.point))
    assert _flat(got_plain) == pytest.approx(_flat(got_split), rel=1e-12, abs=1e-14)


def _flat(value) -> list:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flat(v)]
    return [value]
