"""The checks of an array function: the generated backward against the forward as written.

Three checks, all run by ``verify``. The sizes: on the *small* sizes every dimension name gets
a distinct size (2, 3, 4, ... in the order the parameters name them, so a transposed gradient
cannot hide behind a square shape); the *other* sizes are distinct random ones. A dimension
whose size would give a parameter more than ``ARRAY_ELEMENT_LIMIT`` elements is set to 1
(the last-named first), and the report's notes say which.

1. **The verdict: 50 digits, from the source, on the small sizes.** The user's ``def``, taken
   from the source text, runs on NumPy object arrays of mpmath numbers (stagegen.oracle: real
   NumPy for dot, @, sums, indexing, broadcasting and in-place updates; mpmath for the
   elementwise functions). The reference for every input element is the central difference of
   ``L = sum(out * u)`` with a step of 1e-20, at ``INDEPENDENT_POINTS`` points (past
   ``INDEPENDENT_ELEMENT_LIMIT`` elements, a random subset, and the notes say so); the
   generated backward must agree to 1e-7, measured as in check 2. Nothing here reads
   stagegen's stages or its printed code. A forward that branches on a value (``if
   np.sum(x) > 0``) is also run in float64 as an instrumented copy (stagegen.sites): a point
   where a branch is decided too close to its boundary is skipped; once the usual points are
   checked, up to ``BRANCH_TRIES`` further draws (every other one from a wider range) look
   for branch outcomes not seen yet, each checked where it adds one; the summary says how many
   outcomes the points covered, and the notes which were never reached. (Loops over ``range(T)`` reading ``x[:, t, :]``
   need nothing more: the source runs as written.)

2. **Symbolic, element by element, on the small sizes** (stagegen's stages, run by SymPy: a
   check of the sweep against the stage model, and of the stage model's forward against the
   source's). The forward is evaluated by a small interpreter over the array IR on NumPy
   object arrays whose elements are SymPy symbols (literals as exact rationals), giving every
   output element as a SymPy expression. With upstream symbols ``u``
   of the output's shape, ``L = sum(out * u)``, and SymPy's ``diff(L, x[i, j])`` is the
   reference for every element of every gradient. The references are compiled once into
   straight-line mpmath code (50 digits) and evaluated at random points; the generated
   backward, run in float64 at the same point, must agree to a relative error of 1e-7 (relative
   to the element, or to a thousandth of the gradient's largest element or of the upstream
   gradient's, whichever is larger, when it is near zero: the scalar proof's measure). When
   ``sum(out * u)`` would be large (a softmax over a layer's scores), the reference goes
   stage by stage instead, as the scalar proof's does:
   SymPy's local partial derivatives of every element of every stage, composed by the chain
   rule element by element in 50 digits; past ``STAGEWISE_PARTIAL_LIMIT`` partials, the
   symbolic check is skipped and the report's notes say so.

3. **Numerical, float64, on the other sizes.** Central differences of the forward as the user
   wrote it (its source, run by real NumPy): ``(L(x + h e_i) - L(x - h e_i)) / (2h)`` with
   stagegen.numeric's float64 step, ``h = 1e-6 * max(1, |x_i|)``, for every element of every
   differentiated input.
   The measure is the course's relative error ``|a - b| / (|a| + |b|)``, which must be below
   1e-7, with a floor under the denominator so that it does not blow up when both numbers are
   (close to) zero:

       rel = |a - b| / max(|a| + |b|, 1e-3 * max(g_max, u_max), noise / 1e-7)

   where ``g_max`` is the largest element of either gradient, ``u_max`` the largest of the
   upstream gradient (for a gradient that is zero but for rounding, as when the outputs sum
   to a constant, as in the symbolic check), and ``noise`` bounds the rounding
   error of the difference quotient itself (a few float64 ulps of the outputs it moved, over
   2h); an element below that floor is compared in absolute terms. A kink (a ReLU or a max)
   within h of the point can spoil one difference quotient, so an element that fails is tried
   again with h ten times larger and smaller; a wrong gradient fails at every step.

Integer labels (parameters used as indices) are drawn at random inside the axis they index.
"""

from __future__ import annotations

from ..errors import VerificationError
from ..numeric import central_difference, copies
from ..program import Program, backward_name, has_control_flow
from .common import BUG, Outcome, agree, index_text, oracle_failure, returned_gradients
from .sampling import (
    ARRAY_ELEMENT_LIMIT,
    Inputs,
    array_seed,
    feasible_sizes,
    jsonable,
    numeric_sizes,
    show_point,
    show_sizes,
    symbolic_sizes,
)
from .reference import Reference

NUMERIC_RTOL = 1e-7  # the course's relative error, for central differences
RETRY_STEPS = (1e-5, 1e-7)  # tried on an element that fails at the usual step (a kink within h)
ULPS = 16  # rounding error assumed per output element moved by a perturbation
FORWARD_RTOL = 1e-9  # SymPy's forward value against NumPy's: a check of the interpreter itself
MAX_TRIES = 60
BRANCH_TRIES = 60  # further draws to reach branch outcomes the usual points did not
INDEPENDENT_POINTS = 3  # points of the 50-digit check (each moves every input element twice)
INDEPENDENT_ELEMENT_LIMIT = 200  # input elements past which that check draws a subset


# ---------------------------------------------------------------------------- the checks


class _Check:
    """What the three checks share: the function under proof, the sizes it is checked at and
    the inputs drawn at them, the forward as written, and how to call and read the backward."""

    def __init__(self, trial, sizes: dict[str, int], oracle):
        self.program, self.backward, self.backward_fn = (
            trial.program,
            trial.backward,
            trial.backward_fn,
        )
        self.report, self.rng = trial.report, trial.rng
        self.sizes = sizes
        self.oracle = oracle  # the forward as written (oracle.ArrayOracle)
        self.inputs = Inputs(self.program, sizes, self.rng)
        self.shapes_of = {  # the differentiated parameters' concrete shapes
            n: self.inputs.shape(n) if self.program.param(n).shape is not None else ()
            for n in self.backward.wrt
        }
        # Several outputs: the forward is checked as the sum of each output's elements times
        # random weights (changed in place here: the oracle reads this list), one number; the
        # backward gets each output's weights, times the upstream, as its upstream gradients.
        weights = trial.user.weights
        if weights is not None:
            weights[:] = [
                self.rng.uniform(-2.0, 2.0, size=self.inputs.shape(value.name))
                for value, _ in self.program.outputs
            ]

    def fail(self, message: str, hint: str = BUG):
        return self.program.error(message, hint, VerificationError)

    def checked(self, kind: str, values: dict) -> None:
        """Record a point where the check passed, with its kind and sizes."""
        self.report.points.append({"check": kind, "sizes": dict(self.sizes), **jsonable(values)})

    def finish(self, outcome: Outcome, label: str, done: int, points: int, tries: int) -> Outcome:
        """The outcome of a check that passed at ``done`` points; the notes say so when that
        is fewer than ``points``."""
        if done < points:
            self.report.notes.append(
                f"{label}: {done} of {points} points found where {self.program.name} is "
                f"defined in {tries} random tries"
            )
        outcome.done = done
        return outcome

    def arguments(self, values: dict) -> list:
        return [values[p.name] for p in self.program.params]

    def differentiable(self, shapes_of: dict) -> dict[int, tuple]:
        """{argument position: shape} of the parameters the backward differentiates."""
        return {
            k: shapes_of[p.name]
            for k, p in enumerate(self.program.params)
            if p.name in self.backward.wrt
        }

    def run_forward(self, values: dict):
        """The float forward's output (the user's source, real NumPy), or None where it raises
        or is not finite (outside the domain). The arguments are copies: a forward may update
        its arrays in place."""
        return self.oracle.float_output(copies(self.arguments(values)))

    def upstream(self, k: int, out_shape):
        """The default 1.0 first (None: the backward is called without it), then random arrays."""
        if k == 0:
            return None
        return (
            self.rng.uniform(-2.0, 2.0, size=out_shape)
            if out_shape
            else float(self.rng.uniform(-2.0, 2.0))
        )

    def gradients(self, values: dict, upstream, shapes_of: dict) -> dict | None:
        """The generated backward's gradients, by parameter name, checked for shape."""
        import numpy as np

        kwargs = {} if upstream is None else {self.backward.upstream: upstream}
        positional = []
        weights = self.oracle.user.weights
        if weights is not None:
            scale = 1.0 if upstream is None else upstream
            kwargs = {u: w * scale for u, w in zip(self.backward.upstreams, weights)}
        if self.program.handwritten is not None:  # it may name its upstreams otherwise
            out_shape = self.inputs.shape(self.program.output.name)
            positional = list(kwargs.values()) or [np.ones(out_shape) if out_shape else 1.0]
            kwargs = {}
        name = backward_name(self.program.name)
        try:
            with np.errstate(all="ignore"):
                result = self.backward_fn(*copies(self.arguments(values)), *positional, **kwargs)
        except (ZeroDivisionError, OverflowError, FloatingPointError):
            return None
        except Exception as exc:  # NumPy never raises for a value: a shape bug, say
            shown = ", ".join(f"{k}: {np.shape(v)}" for k, v in values.items())
            raise self.fail(
                f"{name} raises {type(exc).__name__}: {exc} (arguments of shapes {shown})"
            ) from exc
        out = {}
        for param, g in zip(
            self.backward.wrt, returned_gradients(self.program, self.backward, result)
        ):
            g = np.asarray(g, dtype=float)
            want = shapes_of[param]
            if g.shape != want:
                raise self.fail(
                    f"{name} returns {self.backward.gradient_of(param)} of shape {g.shape}, "
                    f"but `{param}` has shape {want}"
                )
            out[param] = g
        return out


def check_symbolic(trial, points: int, sizes: dict[str, int], oracle) -> Outcome:
    """Check 1 (see the module docstring). Appends points to the report; raises on a mismatch."""
    import numpy as np

    check = _Check(trial, sizes, oracle)
    program, backward, report, inputs = check.program, check.backward, check.report, check.inputs
    labels = {
        p.name: v for p, v in zip(program.params, check.arguments(inputs.sample(0))) if p.labels
    }
    if program.returns > 1:
        report.notes.append(
            "symbolic check skipped: the stage model reads one output (several are checked "
            "numerically and independently, as the weighted sum of the outputs)"
        )
        return Outcome("")
    try:
        reference = Reference(program, backward, sizes, labels)
    except (TypeError, ValueError, NotImplementedError, AttributeError) as exc:
        report.notes.append(f"symbolic check skipped: SymPy could not build the reference ({exc})")
        return Outcome("")
    outcome = Outcome(reference.method)
    if reference.skipped:
        report.notes.append(reference.skipped)
        return outcome
    shapes_of = check.shapes_of
    done, tries = 0, 0
    while done < points and tries < MAX_TRIES:
        tries += 1
        values = {**inputs.sample(tries), **labels}
        out = check.run_forward(values)
        if out is None:
            continue
        upstream = check.upstream(done, reference.out_shape)
        ones = np.ones(reference.out_shape) if upstream is None else upstream
        try:
            want_out, want = reference.at(values, ones)
        except (ValueError, TypeError, ZeroDivisionError):
            continue  # outside the domain, in SymPy's view (a complex or infinite value)
        ref_out = np.asarray(want_out, dtype=float)
        scale = max(1.0, float(np.max(np.abs(ref_out), initial=0.0)))
        if np.any(np.abs(out - ref_out) > FORWARD_RTOL * scale):
            raise check.fail(
                f"stagegen's reading of {program.name} (its stages, run by SymPy) computes "
                f"{ref_out}, but the forward as written computes {out} (on "
                f"{show_sizes(sizes)}, at {show_point(values)})",
                "this is a bug in stagegen (its model of the function): "
                "please report it with this function",
            )
        got = check.gradients(values, upstream, shapes_of)
        if got is None:
            continue
        want_f = {n: np.asarray(w, dtype=float) for n, w in want.items()}
        # Relative to the element, or to a thousandth of the largest element (or of the
        # upstream gradient, when the gradient is all but zero, as for a function that sums to
        # a constant), as in the scalar proof: a 50-digit reference is never the float 0.0.
        largest = max((float(np.max(np.abs(w), initial=0.0)) for w in want_f.values()), default=0.0)
        floor = 1e-3 * max(largest, float(np.max(np.abs(ones), initial=0.0)), 1e-300)
        shown_upstream = "the default 1.0" if upstream is None else "a random upstream gradient"
        for name in backward.wrt:
            g, w = got[name], want_f[name]
            gname = backward.gradient_of(name)

            def failure(k, g=g, w=w, gname=gname):
                index = tuple(int(i) for i in np.unravel_index(k, g.shape))
                return check.fail(
                    f"{backward_name(program.name)} gives {index_text(gname, index)} = "
                    f"{float(g[index])!r}, "
                    f"but SymPy's derivative is {float(w[index])!r} (element by element on "
                    f"{show_sizes(sizes)}, with {shown_upstream}, at {show_point(values)})"
                )

            agree(outcome, g, w, floor, failure)
        check.checked("symbolic", values)
        done += 1
    return check.finish(outcome, "symbolic check", done, points, tries)


class _Differences:
    """Central differences (stagegen.numeric) of sum(out * weights), one input element at a
    time, of the forward as written at one point."""

    def __init__(self, check: _Check, values: dict, weights):
        self.weights = weights
        self.args = check.arguments(values)
        self.position = {p.name: k for k, p in enumerate(check.program.params)}
        self.forward = lambda *args: check.oracle.float_output(list(args))

    def quotient(self, name: str, index: tuple, step: float):
        """(difference quotient, bound on its rounding error), or (None, None) when a moved
        point leaves the domain."""
        d = central_difference(self.forward, self.args, self.position[name], index, step)
        if d is None:
            return None, None
        return d.slope(self.weights), d.rounding(self.weights, ULPS)

    def gradient(self, name: str, shape: tuple):
        """(quotients, noise bounds) for every element of one input, or None."""
        import numpy as np

        quotients, noises = np.zeros(shape), np.zeros(shape)
        for index in np.ndindex(*shape):
            q, noise = self.quotient(name, index, None)
            if q is None:
                return None
            quotients[index], noises[index] = q, noise
        return quotients, noises


def check_numeric(trial, points: int, sizes: dict[str, int], oracle) -> Outcome:
    """Check 3 (see the module docstring). Appends points to the report; raises on a mismatch."""
    import numpy as np

    check = _Check(trial, sizes, oracle)
    program, backward, report, inputs = check.program, check.backward, check.report, check.inputs
    out_shape = () if program.returns > 1 else inputs.shape(program.output.name)
    shapes_of = check.shapes_of
    outcome = Outcome("central differences")
    done, tries = 0, 0
    within_spread, worst_spread = 0, 0.0
    while done < points and tries < MAX_TRIES:
        tries += 1
        values = inputs.sample(tries)
        if check.run_forward(values) is None:
            continue  # outside the domain
        upstream = check.upstream(done, out_shape)
        weights = np.ones(out_shape) if upstream is None else np.asarray(upstream, dtype=float)
        got = check.gradients(values, upstream, shapes_of)
        if got is None:
            continue
        for name, g in got.items():
            if not np.all(np.isfinite(g)):
                raise check.fail(
                    f"{backward_name(program.name)} gives a non-finite {backward.gradient_of(name)} "
                    "where "
                    f"{program.name} is finite (on {show_sizes(sizes)}, at {show_point(values)})"
                )
        differences = _Differences(check, values, weights)
        numeric = {name: differences.gradient(name, shapes_of[name]) for name in backward.wrt}
        if any(n is None for n in numeric.values()):
            continue  # a moved point left the domain
        g_max = max(
            float(np.max(np.abs(a), initial=0.0))
            for a in [*got.values(), *(q for q, _ in numeric.values())]
        )
        scale = max(g_max, float(np.max(np.abs(weights), initial=0.0)))

        def rel_error(a: float, b: float, noise: float) -> float:
            return abs(a - b) / max(abs(a) + abs(b), 1e-3 * scale, noise / NUMERIC_RTOL, 1e-300)

        shown_upstream = "the default 1.0" if upstream is None else "a random upstream gradient"
        for name in backward.wrt:
            quotients, noises = numeric[name]
            for index in np.ndindex(*shapes_of[name]):
                a, b = float(got[name][index]), float(quotients[index])
                rel = rel_error(a, b, float(noises[index]))
                if rel > NUMERIC_RTOL:
                    # A kink (ReLU, max) within h of the point spoils one quotient: try other
                    # steps. Near a singularity (a variance close to zero) rounding and
                    # truncation spread the quotients apart: the gradient then passes when it
                    # is within that spread of the quotient at h.
                    tried = [b]
                    for step in RETRY_STEPS:
                        b2, noise2 = differences.quotient(name, index, step)
                        if b2 is not None:
                            tried.append(b2)
                            rel2 = rel_error(a, b2, noise2)
                            if rel2 < rel:
                                rel, b = rel2, b2
                    if rel > NUMERIC_RTOL and abs(a - tried[0]) <= max(tried) - min(tried):
                        within_spread += 1
                        worst_spread = max(worst_spread, rel)
                        continue
                if rel > NUMERIC_RTOL:
                    raise check.fail(
                        f"{backward_name(program.name)} gives "
                        f"{index_text(backward.gradient_of(name), index)} = {a!r}, "
                        "but the central "
                        f"difference is {b!r} (relative error {rel:.1e} > {NUMERIC_RTOL:g}, on "
                        f"{show_sizes(sizes)}, with {shown_upstream}, at {show_point(values)})"
                    )
                outcome.max_abs = max(outcome.max_abs, abs(a - b))
                outcome.max_rel = max(outcome.max_rel, rel)
        check.checked("numeric", values)
        done += 1
    check.finish(outcome, "central differences", done, points, tries)
    if within_spread:
        report.notes.append(
            f"central differences: {within_spread} element(s) where the difference quotients at "
            f"three steps spread wider than 1e-7 (a point near a singularity) agreed within that "
            f"spread (relative error up to {worst_spread:.1e})"
        )
    return outcome


def check_independent(trial, points: int, sizes: dict[str, int], oracle) -> Outcome:
    """Check 2 (see the module docstring): the generated backward against 50-digit central
    differences of the forward as written, run on object arrays of mpmath numbers."""
    import numpy as np

    from ..oracle import OracleFailure

    from ..sites import Coverage

    check = _Check(trial, sizes, oracle)
    program, backward, report, rng, inputs = (
        check.program,
        check.backward,
        check.report,
        check.rng,
        check.inputs,
    )
    shapes_of = check.shapes_of
    differentiable = check.differentiable(shapes_of)
    everything = [(k, index) for k, shape in differentiable.items() for index in np.ndindex(*shape)]
    outcome = Outcome("50-digit central differences of the forward as written")
    coverage = Coverage(trial.user.sites)
    boundary = 0
    done, tries, extra = 0, 0, 0
    while True:
        if done >= points:  # then further draws, to reach branch outcomes not seen yet
            if coverage.complete() or extra >= BRANCH_TRIES:
                break
            extra += 1
        elif tries >= MAX_TRIES:
            break
        tries += 1
        values = inputs.sample(tries, wide=extra % 2 == 1)
        out = check.run_forward(values)
        if out is None:
            continue
        decided = oracle.decisions(check.arguments(values)) if coverage.sites else None
        if decided is not None and decided.near:
            boundary += 1
            continue  # a branch too close to its boundary: no derivative to compare with
        if extra and not (decided is not None and coverage.adds(decided.decisions)):
            continue  # nothing new: the usual points are checked already
        upstream = check.upstream(done, out.shape)
        ones = np.ones(out.shape) if upstream is None else upstream
        elements = None
        if len(everything) > INDEPENDENT_ELEMENT_LIMIT:
            picked = rng.choice(len(everything), size=INDEPENDENT_ELEMENT_LIMIT, replace=False)
            elements = {}
            for i in sorted(int(i) for i in picked):
                k, index = everything[i]
                elements.setdefault(k, []).append(index)
        try:
            want = oracle.mpmath_gradient(check.arguments(values), differentiable, ones, elements)
        except OracleFailure as exc:
            raise oracle_failure(program, exc) from None
        if want is None:
            continue  # outside the domain in 50 digits (a moved point left it, or overflow)
        got = check.gradients(values, upstream, shapes_of)
        if got is None:
            continue
        checked = {}  # param -> (generated, reference) over the elements checked
        for k, shape in differentiable.items():
            name = program.params[k].name
            w = want[k]
            if not shape:
                checked[name] = ([()], np.asarray([float(got[name])]), np.asarray([float(w)]))
                continue
            indices = list(np.ndindex(*shape)) if elements is None else elements.get(k, [])
            g_vals = np.asarray([float(got[name][i]) for i in indices])
            w_vals = np.asarray([float(w[i]) for i in indices])
            checked[name] = (indices, g_vals, w_vals)
        largest = max(
            (float(np.max(np.abs(w), initial=0.0)) for _, _, w in checked.values()), default=0.0
        )
        floor = 1e-3 * max(largest, float(np.max(np.abs(ones), initial=0.0)), 1e-300)
        shown_upstream = "the default 1.0" if upstream is None else "a random upstream gradient"
        for name, (indices, g, w) in checked.items():
            gname = backward.gradient_of(name)
            agree(
                outcome, g, w, floor,
                lambda k: check.fail(
                    f"{backward_name(program.name)} gives "
                    f"{index_text(gname, indices[k])} = {float(g[k])!r}, "
                    f"but the 50-digit central difference of the forward as written is "
                    f"{float(w[k])!r} (on {show_sizes(sizes)}, with {shown_upstream}, "
                    f"at {show_point(values)})"
                ),
            )  # fmt: skip
        check.checked("independent", values)
        if decided is not None:
            coverage.add(decided.decisions)
        done += 1
    check.finish(outcome, "50-digit central differences", done, points, tries)
    outcome.branches = coverage.text()
    unseen = coverage.unseen()
    if unseen and done:
        report.notes.append("branch outcomes not reached: " + "; ".join(unseen))
    if boundary:
        report.notes.append(
            f"50-digit central differences: {boundary} point(s) skipped too close to a "
            "branch's boundary"
        )
    if len(everything) > INDEPENDENT_ELEMENT_LIMIT and done:
        report.notes.append(
            f"50-digit central differences: {INDEPENDENT_ELEMENT_LIMIT} of the "
            f"{len(everything)} gradient elements, drawn at random at each point"
        )
    return outcome


def _summarise(outcome: Outcome, method: str, sizes: dict) -> Outcome:
    """The check's part of the report's ``reference``, where it checked any point."""
    if outcome.done:
        branches = f", {outcome.branches}" if outcome.branches else ""
        outcome.summary = (
            f"{method} on {show_sizes(sizes)} ({outcome.done} points, "
            f"max rel. error {outcome.max_rel:.1e}{branches})"
        )
    return outcome


def random_numbers(program: Program):
    """The random numbers of one array function's proof (NumPy's, seeded by the function)."""
    import numpy as np

    return np.random.default_rng(array_seed(program))


def checks(trial) -> list[Outcome]:
    """Every check of an array function (see the module docstring), sharing one stream of
    random numbers: the sizes, then the 50-digit check (the verdict's, first: a failure names
    the reference that shares nothing with stagegen's model of the function), the symbolic
    check, and float64 central differences."""
    from ..oracle import ArrayOracle

    program, points, report, rng = trial.program, trial.points, trial.report, trial.rng
    oracle = ArrayOracle(trial.user)
    small, shrunk = feasible_sizes(program, symbolic_sizes(program))
    other, shrunk_other = feasible_sizes(program, numeric_sizes(program, rng, small))
    if shrunk or shrunk_other:
        names = [n for n in small if small[n] == 1 and other[n] == 1]
        report.notes.append(
            f"{len(names)} dimension(s) checked at size 1 only ({', '.join(names)}): at the "
            f"usual sizes a parameter would have more than {ARRAY_ELEMENT_LIMIT} elements"
        )
    independent = check_independent(trial, min(points, INDEPENDENT_POINTS), small, oracle)
    numeric = check_numeric(trial, points, other, oracle)
    outcomes = [_summarise(independent, f"{independent.method} (mpmath)", small)]
    if has_control_flow(program.body):
        # SymPy's reading of the stages is straight-line; a loop's or branch's path is the
        # forward's own (the two checks that run the source as written).
        report.notes.append("loops and branches: checked against the forward as written only")
    else:
        symbolic = check_symbolic(trial, points, small, oracle)
        outcomes.append(_summarise(symbolic, symbolic.method, small))
    outcomes.append(
        _summarise(numeric, "float64 central differences of the forward as written", other)
    )
    if not report.points:  # a proof that checked nothing proves nothing: say so, write nothing
        raise program.error(
            f"stagegen found no point where `{program.name}` is defined to check its backward "
            f"({'; '.join(report.notes) or 'every random point failed'})",
            "check that the forward runs on random inputs of the shapes it declares (its "
            "domain, e.g. np.sqrt(x - 5.0) needs x >= 5), or pass --no-verify to write it "
            "unproven",
        )
    return outcomes


__all__ = [
    "checks",
    "random_numbers",
    "check_independent",
    "check_numeric",
    "check_symbolic",
]
