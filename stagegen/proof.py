"""Proof: the generated backward against references it shares nothing with, beside the pipeline.

For every function:

1. **Local, exact** (where a bug is: which line). Every gradient statement's local factor is
   compared with SymPy's ``diff`` of that stage's right-hand side: equal when the difference
   simplifies to zero (gates with branches, such as max and abs, are compared at sampled
   points instead, with 50-digit arithmetic, and the report says so). This check reads
   stagegen's own stages, so it cannot see a stage that misreads the source.
2. **End to end, at random points of the domain: the verdict.** The generated ``*_backward``
   is run in floats and compared with the gradient of the forward *as the user wrote it*: the
   ``def`` from the source text, run by Python on 50-digit mpmath numbers (stagegen.oracle),
   differentiated by central differences with a step of 1e-20; and, while the expression it
   builds on SymPy symbols stays small, SymPy's exact derivative of that expression. Neither
   reads stagegen's stages or its printed code. Points where the float forward raises or
   overflows are skipped; a backward that raises where the forward is defined and its
   derivative finite is a failure.
"""

from __future__ import annotations

import hashlib
import math
import random

from .errors import VerificationError
from .report import FunctionReport, LocalCheck, VerificationReport
from .expr import (
    And,
    Bin,
    Call,
    Compare,
    Cond,
    Const,
    Elem,
    Expr,
    Neg,
    Num,
    Var,
    leaves,
    mul,
    size,
)
from .program import Program
from .proof_common import (
    DIGITS,
    FLOAT_LIMIT,
    RANGES,
    RTOL,
    MpmathCode,
    oracle_failure,
    user_function_of,
)
from .reverse import Backward

SYMBOLIC_TREE_LIMIT = 400  # composed-expression size past which the reference goes stage by stage


# ---------------------------------------------------------------------------- to SymPy


class _SymPy:
    """Our expressions as SymPy expressions, with exact rationals for the literals."""

    def __init__(self):
        import sympy

        self.sp = sympy
        self.symbols: dict[str, object] = {}

    def symbol(self, leaf: Var | Elem):
        key = leaf.name if isinstance(leaf, Var) else f"{leaf.name}[{leaf.index}]"
        if key not in self.symbols:
            self.symbols[key] = self.sp.Symbol(key, real=True)
        return self.symbols[key]

    def convert(self, e: Expr, values: dict) -> object:
        sp = self.sp
        c = lambda x: self.convert(x, values)  # noqa: E731
        if isinstance(e, Num):
            return (
                sp.Integer(e.value)
                if isinstance(e.value, int)
                else sp.Rational(repr(float(e.value)))
            )
        if isinstance(e, Const):
            return {"pi": sp.pi, "e": sp.E, "tau": 2 * sp.pi}[e.name]
        if isinstance(e, (Var, Elem)):
            key = e.name if isinstance(e, Var) else f"{e.name}[{e.index}]"
            return values[key] if key in values else self.symbol(e)
        if isinstance(e, Neg):
            return -c(e.operand)
        if isinstance(e, Bin):
            a, b = c(e.left), c(e.right)
            return {
                "+": lambda: a + b,
                "-": lambda: a - b,
                "*": lambda: a * b,
                "/": lambda: a / b,
                "**": lambda: a**b,
            }[e.op]()
        if isinstance(e, Call):
            args = [c(a) for a in e.args]
            return self.function(e.fn, args)
        if isinstance(e, Compare):
            a, b = c(e.left), c(e.right)
            return {">": sp.Gt, ">=": sp.Ge, "<": sp.Lt, "<=": sp.Le}[e.op](a, b)
        if isinstance(e, And):
            return sp.And(*[c(i) for i in e.items])
        if isinstance(e, Cond):
            return sp.Piecewise((c(e.body), c(e.test)), (c(e.orelse), True))
        raise TypeError(f"cannot convert {e!r}")

    def function(self, fn: str, args: list):
        sp = self.sp
        simple = {
            "exp": sp.exp, "sqrt": sp.sqrt, "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
            "asin": sp.asin, "acos": sp.acos, "atan": sp.atan, "sinh": sp.sinh, "cosh": sp.cosh,
            "tanh": sp.tanh, "erf": sp.erf, "abs": sp.Abs,
        }  # fmt: skip
        if fn in simple:
            return simple[fn](*args)
        if fn == "log":
            return sp.log(args[0]) if len(args) == 1 else sp.log(args[0]) / sp.log(args[1])
        if fn == "log2":
            return sp.log(args[0]) / sp.log(2)
        if fn == "log10":
            return sp.log(args[0]) / sp.log(10)
        if fn == "log1p":
            return sp.log(1 + args[0])
        if fn == "expm1":
            return sp.exp(args[0]) - 1
        if fn == "atan2":  # Python's atan2(0, 0) is 0; SymPy's is nan
            return sp.Integer(0) if args[0] == 0 and args[1] == 0 else sp.atan2(*args)
        if fn == "hypot":
            return sp.sqrt(sum(a**2 for a in args))
        if fn == "pow":
            return args[0] ** args[1]
        if fn == "max":
            return sp.Max(*args)
        if fn == "min":
            return sp.Min(*args)
        raise TypeError(f"no SymPy counterpart for {fn}")


# ---------------------------------------------------------------------------- sampling


def _rng(program: Program) -> random.Random:
    seed = hashlib.sha256(f"{program.name}:{program.stages!r}".encode()).hexdigest()
    return random.Random(int(seed[:16], 16))


def _input_names(program: Program) -> list[str]:
    names = []
    for p in program.params:
        if p.is_list:
            names += [f"{p.name}[{i}]" for i in range(p.length)]
        else:
            names.append(p.name)
    return names


def _arguments(program: Program, point: dict[str, float]) -> list:
    args = []
    for p in program.params:
        if p.is_list:
            args.append([point[f"{p.name}[{i}]"] for i in range(p.length)])
        else:
            args.append(point[p.name])
    return args


def _sample(rng: random.Random, names: list[str], attempt: int) -> dict[str, float]:
    low, high = RANGES[attempt % len(RANGES)]
    return {n: rng.uniform(low, high) for n in names}


def _float_range(values) -> bool:
    return all(math.isfinite(float(v)) and abs(float(v)) < FLOAT_LIMIT for v in values)


# ---------------------------------------------------------------------------- the checks


SIMPLIFY_LIMIT = 14  # stage size (nodes) up to which SymPy's simplify() is affordable
EXPAND_LIMIT = 60  # stage size up to which expanding the difference is affordable


def _is_zero(sp, d, stage_size: int) -> str | None:
    """'symbolic' when SymPy shows d == 0 within a bounded effort, None otherwise.

    SymPy has no time limits, and cancel() or simplify() can run for minutes on a compound
    stage; so only cheap steps are tried on larger stages, and the caller samples instead."""
    if d == 0:
        return "symbolic"
    if d.has(sp.Piecewise, sp.Heaviside, sp.sign, sp.Max, sp.Min, sp.Abs, sp.DiracDelta):
        return None
    if stage_size > EXPAND_LIMIT or any(
        p.exp.is_Integer and abs(p.exp) > 8 for p in d.atoms(sp.Pow)
    ):
        return None
    steps = [sp.expand, lambda e: sp.expand(sp.fraction(sp.together(e))[0])]
    if stage_size <= SIMPLIFY_LIMIT:
        steps.append(sp.simplify)
    for step in steps:
        try:
            if step(d) == 0:
                return "symbolic"
        except Exception:  # SymPy may give up on some forms; then we sample
            return None
    return None


def _check_locals(
    program: Program, backward: Backward, conv: _SymPy, rng: random.Random
) -> list[LocalCheck]:
    sp = conv.sp
    checks = []
    for block in backward.blocks:
        stage = block.stage
        rhs = conv.convert(stage.expr, {})
        for st in block.statements:
            if st.intermediate:
                continue  # checked through the statements that read it
            # What is printed: the factor times the intermediate's local gradient, if any.
            local = mul(st.factor, st.via.local) if st.via is not None else st.local
            ours = conv.convert(local, {stage.target: rhs})
            theirs = sp.diff(rhs, conv.symbol(st.of))
            method = _is_zero(sp, ours - theirs, size(stage.expr))
            if method is None:
                method = _sampled_equal(program, stage, ours, theirs, conv, rng, st.of)
            checks.append(LocalCheck(stage.number, _leaf_text(st.of), method))
    return checks


def _sampled_equal(program, stage, ours, theirs, conv, rng, of) -> str:
    """Compare two local gradients at random points of the stage's own inputs, in 50 digits."""
    inputs = sorted({conv.symbol(l) for l in leaves(stage.expr)}, key=str)
    both = _MpmathFunction(f"local gradient of stage ({stage.number})", inputs, [ours, theirs])
    agreed = 0
    for attempt in range(60):
        subs = {s: rng.uniform(-2, 2) if attempt % 2 else rng.uniform(0.2, 2) for s in inputs}
        try:
            a, b = both.at(subs)
        except (ValueError, TypeError, ZeroDivisionError):
            continue
        if abs(a - b) > 10.0 ** (-DIGITS + 10) * (1 + abs(b)):
            raise VerificationError(
                f"local gradient of stage ({stage.number}) `{stage.target}` with respect to `{_leaf_text(of)}` "
                f"is {ours}, but SymPy's derivative is {theirs} (they differ at "
                + ", ".join(f"{k}={float(v):.6g}" for k, v in subs.items())
                + ")",
                "this is a bug in stagegen: please report it with this function",
                filename=program.filename,
                line=stage.line,
                col=stage.col,
            )
        agreed += 1
        if agreed >= 5:
            return "sampled"
    raise VerificationError(
        f"could not check the local gradient of stage ({stage.number}) `{stage.target}` with respect to `{_leaf_text(of)}`: "
        "SymPy could not simplify the difference, and no sample point was in the domain",
        "this is a limitation of the checker; run with --no-verify to skip it",
        filename=program.filename,
        line=stage.line,
        col=stage.col,
    )


def _leaf_text(leaf) -> str:
    return leaf.name if isinstance(leaf, Var) else f"{leaf.name}[{leaf.index}]"


def _tree_sizes(program: Program) -> int:
    """Size of the whole function written as one expression, without building it."""
    sizes: dict[str, int] = {}
    total = 1
    for s in program.stages:
        total = 0
        stack = [s.expr]
        while stack:
            node = stack.pop()
            total += sizes.get(node.name, 1) if isinstance(node, Var) else 1
            stack.extend(node.children())
        sizes[s.target] = total
    return sizes.get(program.output.name, total)


class _Reference:
    """The reference gradient of one program at a point, in 50-digit arithmetic."""

    def __init__(self, program: Program, backward: Backward, conv: _SymPy):
        self.program, self.backward, self.conv = program, backward, conv
        sp = conv.sp
        self.wrt_inputs = [n for n in _input_names(program) if n.split("[")[0] in backward.wrt]
        self.chain = self.whole = None
        if _tree_sizes(program) <= SYMBOLIC_TREE_LIMIT:
            try:
                composed: dict = {}
                for s in program.stages:
                    composed[s.target] = conv.convert(s.expr, composed)
                output = composed[program.output.name]
                inputs = [
                    conv.symbols.get(n) or sp.Symbol(n, real=True) for n in _input_names(program)
                ]
                gradient = [
                    sp.diff(output, inputs[_input_names(program).index(n)]) for n in self.wrt_inputs
                ]
                self.whole = _MpmathFunction(f"{program.name}", inputs, [output, *gradient])
                self.method = "SymPy's symbolic derivative of the whole function"
            except (ValueError, TypeError):
                # SymPy refuses some compositions (Max of a nan, from atan2(0, 0)); the stage
                # by stage route below never composes them.
                self.whole = None
        if self.whole is None:
            self.method = "the chain rule stage by stage with SymPy's local derivatives (50 digits)"
            self.chain = _ChainRule(program, conv, self.wrt_inputs)

    def at(self, point: dict[str, float]):
        """The gradient at a point (50-digit numbers); ValueError outside the domain."""
        if self.chain is not None:
            self.output_value, gradient = self.chain.at(point)
            return gradient
        self.output_value, *gradient = self.whole.at(point)  # outside the domain raises
        return gradient


class _MpmathFunction:
    """Several SymPy expressions of the same inputs, evaluated together at a point."""

    def __init__(self, title: str, inputs: list, exprs: list):
        code = MpmathCode()
        self.inputs = inputs
        results = ", ".join(f"real({code.text(e)})" for e in exprs)
        self.run = code.compile(title, inputs, [], f"[{results}]")

    def at(self, point: dict) -> list:
        """Values in the order of the expressions; ``point`` maps each input (symbol or
        name) to a float, in the order of the inputs."""
        return self.run(*point.values())


class _ChainRule:
    """The chain rule applied stage by stage, in forward mode, with SymPy's local derivatives.

    SymPy differentiates each stage on its own (so the work is linear in the program), and
    every stage and local derivative becomes one straight-line mpmath function. Forward-mode
    tangents, one input at a time, are a different route from the reverse sweep being checked."""

    def __init__(self, program: Program, conv: _SymPy, wrt_inputs: list[str]):
        sp = conv.sp
        code = MpmathCode()
        name_of = code.name_of
        inputs = [conv.symbols.get(n) or sp.Symbol(n, real=True) for n in _input_names(program)]
        for symbol in inputs:
            name_of(symbol)
        body = []
        partials = []  # per stage: (target identifier, [(input identifier, partial identifier)])
        for number, stage in enumerate(program.stages):
            rhs = conv.convert(stage.expr, {})
            target = name_of(sp.Symbol(stage.target, real=True))
            body.append(f"{target} = real({code.text(rhs)})")
            terms = []
            for k, symbol in enumerate(sorted(rhs.free_symbols, key=str)):
                local = f"p{number}_{k}"
                body.append(f"{local} = real({code.text(sp.diff(rhs, symbol))})")
                terms.append((name_of(symbol), local))
            partials.append((target, terms))
        output = name_of(sp.Symbol(program.output.name, real=True))
        body.append("gradient = []")
        for name in wrt_inputs:
            seed = name_of(conv.symbols.get(name) or sp.Symbol(name, real=True))
            body.append(f"t = {{{seed!r}: one}}")
            for target, terms in partials:
                used = " + ".join(f"t.get({i!r}, zero) * {p}" for i, p in terms) or "zero"
                body.append(f"t[{target!r}] = {used}")
            body.append(f"gradient.append(t.get({output!r}, zero))")
        self.run = code.compile(
            f"reference chain rule for {program.name}", inputs, body, f"{output}, gradient"
        )

    def at(self, point: dict[str, float]):
        return self.run(*point.values())


def reference_gradient(program: Program, backward: Backward, point: dict[str, float]) -> dict:
    """SymPy's gradient at a point, in 50 digits: {input name (``w[0]`` for list elements): value}.
    Raises ValueError (or ZeroDivisionError) where the function is not defined."""
    reference = _Reference(program, backward, _SymPy())
    return dict(zip(reference.wrt_inputs, reference.at(point)))


def _flatten(result, backward: Backward, program: Program) -> list[float]:
    """The backward's return value as one flat list in the order of _input_names."""
    results = [result] if len(backward.wrt) == 1 else list(result)
    flat = []
    for name, value in zip(backward.wrt, results):
        p = program.param(name)
        flat += list(value)[: p.length] if p.is_list else [value]
    return flat


def _input_indices(program: Program, names: list[str]) -> list[tuple]:
    """Each input name (``x``, ``w[2]``) as (argument position,) or (position, element)."""
    position = {p.name: k for k, p in enumerate(program.params)}
    out = []
    for name in names:
        base, _, rest = name.partition("[")
        out.append((position[base], int(rest[:-1])) if rest else (position[base],))
    return out


def check_program(
    program: Program, backward: Backward, backward_fn, points: int = 5, source: str | None = None
) -> FunctionReport:
    from .oracle import OracleFailure, ScalarOracle

    conv = _SymPy()
    rng = _rng(program)
    report = FunctionReport(program.name, len(program.stages))
    report.local_checks = _check_locals(program, backward, conv, rng)

    oracle = ScalarOracle(user_function_of(program, source))
    names = _input_names(program)
    wrt_inputs = [n for n in names if n.split("[")[0] in backward.wrt]
    indices = _input_indices(program, wrt_inputs)
    tries, sympy_points = 0, 0
    while len(report.points) < points and tries < 200:
        tries += 1
        point = _sample(rng, names, tries)
        args = _arguments(program, point)
        if oracle.value(args) is None:
            continue  # the float forward raises or overflows here
        try:
            reference = oracle.mpmath_gradient(args, indices)
        except OracleFailure as exc:
            raise oracle_failure(program, exc) from None
        if reference is None:
            continue  # outside the function's domain (or float range) in 50 digits
        output_value, want = reference
        if not _float_range([output_value, *want]):
            continue  # the float forward or gradient would overflow here
        exact = oracle.sympy_gradient(args, indices)
        upstream = 1.0 if len(report.points) % 2 == 0 else 2.5
        try:
            got = _flatten(
                backward_fn(*_arguments(program, point), **{backward.upstream: upstream}),
                backward,
                program,
            )
        except OverflowError:
            continue  # a float-only failure (overflow in the forward replay): not a wrong gradient
        except (ValueError, ZeroDivisionError, TypeError) as exc:
            # (TypeError: a complex intermediate, as in abs(math.sin(x) ** y), which the
            # forward as written gets through)
            raise program.error(
                f"{program.name}_backward raises {type(exc).__name__} ({exc}) at {point}, where "
                "the forward as written is defined and its 50-digit derivative is finite",
                "this is a bug in stagegen: please report it with this function",
                VerificationError,
            ) from None
        if len(got) != len(want):
            raise program.error(
                f"{program.name}_backward returned {len(got)} gradients, expected {len(want)}",
                "this is a bug in stagegen: please report it with this function",
                VerificationError,
            )
        references = [("the 50-digit central difference of the forward as written", want)]
        if exact is not None:
            references.append(("SymPy's derivative of the forward as written", exact[1]))
            sympy_points += 1
        for method, values in references:
            scale = max([1.0] + [abs(float(w)) for w in values])
            for name, g, w in zip(wrt_inputs, got, values):
                w = float(w) * upstream
                err = abs(g - w)
                # Relative to the gradient, or to a thousandth of the largest component when
                # the gradient is near zero (a 50-digit reference is never exactly 0.0).
                rel = err / max(abs(w), 1e-3 * scale * upstream)
                if not math.isfinite(g) or rel > RTOL:
                    raise program.error(
                        f"{program.name}_backward gives d{name} = {g!r} at {point}, "
                        f"but {method} is {w!r}",
                        "this is a bug in stagegen: please report it with this function",
                        VerificationError,
                    )
                report.max_abs_error = max(report.max_abs_error, err)
                report.max_rel_error = max(report.max_rel_error, rel)
        report.points.append(dict(point))
    report.reference = "50-digit central differences of the forward as written (mpmath)"
    if sympy_points:
        report.reference += f" and SymPy's derivative of it (at {sympy_points} points)"
    elif oracle.sympy_note and report.points:
        report.reference += f"; {oracle.sympy_note}"
    if not report.points:
        report.notes.append(
            f"no point where {program.name} is defined was found in {tries} random tries"
        )
    return report


# ---------------------------------------------------------------------------- entry points


def check_build(build, points: int = 5) -> VerificationReport:
    """Prove every function of a generated module (see the module docstring). The references
    run the functions from ``build.source``, the text they were read from."""
    from .api import load_backward_module, working_on

    namespace = load_backward_module(build.text, build.filename)
    reports = []
    with working_on(build.filename):
        for b in build.backwards:
            check = check_program
            if b.program.numpy:  # array code: SymPy element by element, and central differences
                from .arrays.proof import check_array_program as check
            backward_fn = namespace[f"{b.program.name}_backward"]
            reports.append(check(b.program, b, backward_fn, points, source=build.source))
    return VerificationReport(reports)


def verify(
    source_or_function, function=None, *, wrt=None, split=False, points=5, filename="<string>"
) -> VerificationReport:
    """Generate the backward of a source text (or of a function object) and prove it.

    Returns a VerificationReport; raises VerificationError on any disagreement and
    StagegenError (located) for input outside the language."""
    from .api import build, build_programs
    from .introspect import programs_of_function

    if callable(source_or_function):
        programs = programs_of_function(source_or_function)
        result = build_programs(
            programs, programs[0].filename, [programs[0].name], wrt=wrt, split=split
        )
    else:
        result = build(source_or_function, function, wrt=wrt, split=split, filename=filename)
    return check_build(result, points)
