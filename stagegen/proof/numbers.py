"""The checks of a function of numbers: the local checks (proof.local), then the end-to-end
check, the verdict.

The end-to-end check: the generated ``*_backward`` is run in floats at random points of the
domain and compared with the gradient of the forward *as the user wrote it*: the ``def`` from
the source text, run by Python on 50-digit mpmath numbers (stagegen.oracle), differentiated by
central differences with a step of 1e-20; and SymPy's derivative of the path the forward took
at the point (stagegen.path_oracle: the forward run on values that carry a 50-digit number and
a SymPy expression, deciding every branch by the number). Neither reads stagegen's stages or
its printed code. Points where the float forward raises or overflows are skipped, and so are
points where a decision (a comparison, a test, abs, min, max) is too close to its boundary
(stagegen.sites): the function is not differentiable there, or a difference quotient would
straddle the kink. A backward that raises where the forward is defined and its derivative
finite is a failure.

Branches: after the usual points, up to ``BRANCH_TRIES`` further points (points checked
already with signs flipped or scaled, wider draws) look for the outcomes of the forward's
comparisons and tests that no point took yet; a point is kept only if it adds one. The report
says how many outcomes the points covered (``branches: 5 of 6 outcomes seen``) and its notes
which were never reached.
"""

from __future__ import annotations

from ..errors import VerificationError
from ..program import Program, backward_name
from ..reverse import Backward
from .common import BUG, Outcome, agree, oracle_failure, returned_gradients
from .sampling import (
    arguments,
    input_names,
    list_length,
    number_rng,
    sample,
    variant,
    within_float_range,
)

MAX_TRIES = 200  # random draws for the usual points
BRANCH_TRIES = 60  # further draws to reach branch outcomes the usual points did not


def _flatten(results: list, backward: Backward, program: Program) -> list[float]:
    """The gradients, one per parameter, as one flat list in the order of input_names."""
    flat = []
    for name, value in zip(backward.wrt, results):
        p = program.param(name)
        flat += list(value)[: list_length(p)] if p.is_list else [value]
    return flat


def _input_indices(program: Program, names: list[str]) -> list[tuple]:
    """Each input name (``x``, ``w[2]``) as (argument position,) or (position, element)."""
    position = {p.name: k for k, p in enumerate(program.params)}
    out = []
    for name in names:
        base, _, rest = name.partition("[")
        out.append((position[base], int(rest[:-1])) if rest else (position[base],))
    return out


def random_numbers(program: Program):
    """The random numbers of one function's proof (Python's, seeded by the function)."""
    return number_rng(program)


def checks(trial) -> list[Outcome]:
    """Every check of a function of numbers: the local checks (their results go to the
    report's ``local_checks``), then the end-to-end check, sharing one stream of random
    numbers."""
    from .local import ToSymPy, check_locals

    if trial.program.handwritten is None:  # a hand-written backward is checked end to end
        trial.report.local_checks = check_locals(
            trial.program, trial.backward, ToSymPy(), trial.rng
        )
    return [check_end_to_end(trial)]


def check_end_to_end(trial) -> Outcome:
    """The verdict (see the module docstring); appends points to the report, raises on a
    mismatch."""
    from ..oracle import OracleFailure, ScalarOracle
    from ..path_oracle import PathOracle
    from ..sites import Coverage

    program, backward, report, rng = trial.program, trial.backward, trial.report, trial.rng
    outcome = Outcome("50-digit central differences of the forward as written (mpmath)")
    oracle, paths = ScalarOracle(trial.user), PathOracle(trial.user)
    coverage = Coverage(trial.user.sites)
    names = input_names(program)
    wrt_inputs = [n for n in names if n.split("[")[0] in backward.wrt]
    indices = _input_indices(program, wrt_inputs)
    tries, extra, sympy_points = 0, 0, 0
    boundary: dict[int, int] = {}  # site -> points skipped there (too close to its boundary)
    while tries < MAX_TRIES:
        if len(report.points) >= trial.points:
            if coverage.complete() or extra >= BRANCH_TRIES:
                break
            extra += 1  # a point meant to reach a branch outcome not seen yet
            point = variant(rng, names, report.points, extra)
        else:
            tries += 1
            point = sample(rng, names, tries)
        args = arguments(program, point)
        if trial.user.weights is not None:
            trial.user.weights[:] = output_weights(len(trial.user.weights), len(report.points))
        if oracle.value(args) is None:
            continue  # the float forward raises or overflows here
        path = paths.trace(args)
        if path.near:
            for site in path.near:
                boundary[site] = boundary.get(site, 0) + 1
            continue  # a decision too close to its boundary: no derivative to compare with
        if extra and not (path.followed and coverage.adds(path.decisions)):
            continue  # nothing new: the usual points are checked already
        try:
            reference = oracle.mpmath_gradient(args, indices)
        except OracleFailure as exc:
            raise oracle_failure(program, exc) from None
        if reference is None:
            continue  # outside the function's domain (or float range) in 50 digits
        output_value, want = reference
        if not within_float_range([output_value, *want]):
            continue  # the float forward or gradient would overflow here
        exact = paths.gradient(path, args, indices)
        upstream = 1.0 if len(report.points) % 2 == 0 else 2.5
        try:
            result = backward_fn_call(trial, point, upstream)
        except OverflowError:
            continue  # a float-only failure (overflow in the forward replay): not a wrong gradient
        except (ValueError, ZeroDivisionError, TypeError) as exc:
            # (TypeError: a complex intermediate, as in abs(math.sin(x) ** y), which the
            # forward as written gets through)
            raise program.error(
                f"{backward_name(program.name)} raises {type(exc).__name__} ({exc}) at {point}, where "
                "the forward as written is defined and its 50-digit derivative is finite",
                BUG,
                VerificationError,
            ) from None
        got = _flatten(returned_gradients(program, backward, result), backward, program)
        if len(got) != len(want):
            raise program.error(
                f"{backward_name(program.name)} returned {len(got)} gradient elements, "
                f"expected {len(want)}",
                BUG,
                VerificationError,
            )
        references = [("the 50-digit central difference of the forward as written", want)]
        if exact is not None:
            references.append(
                ("SymPy's derivative of the forward as written, along the path it took", exact[1])
            )
            sympy_points += 1
        taken = _taken(trial.user.sites, path)
        for method, values in references:
            scale = max([1.0] + [abs(float(w)) for w in values])
            scaled = [float(w) * upstream for w in values]
            agree(
                outcome,
                got,
                scaled,
                1e-3 * scale * upstream,
                lambda k: program.error(
                    f"{backward_name(program.name)} gives d{wrt_inputs[k]} = {got[k]!r} at {point}"
                    f"{taken}, but {method} is {scaled[k]!r}",
                    BUG,
                    VerificationError,
                ),
            )
        if path.followed:
            coverage.add(path.decisions)
        report.points.append(dict(point))
    outcome.done = len(report.points)
    outcome.summary = outcome.method
    if sympy_points:
        outcome.summary += f" and SymPy's derivative of it (at {sympy_points} points)"
    elif paths.note and report.points:
        outcome.summary += f"; {paths.note}"
    outcome.branches = coverage.text()
    if outcome.branches:
        outcome.summary += f"; {outcome.branches}"
        unseen = coverage.unseen()
        if unseen and report.points:
            report.notes.append("branch outcomes not reached: " + "; ".join(unseen))
    if boundary:
        sites = trial.user.sites
        shown = ", ".join(f"{sites[k].where()} ({n})" for k, n in boundary.items())
        report.notes.append(
            f"points skipped too close to a decision's boundary, where the forward is not "
            f"differentiable or a difference quotient would straddle it: {shown}"
        )
    if not report.points:
        report.notes.append(
            f"no point where {program.name} is defined was found in {tries} random tries"
        )
    return outcome


def backward_fn_call(trial, point: dict, upstream: float):
    """The generated backward at a point, with an upstream gradient (with several outputs,
    each output's weight times it)."""
    args = arguments(trial.program, point)
    weights = trial.user.weights or [1.0]
    names = trial.backward.upstreams or [trial.backward.upstream]
    upstreams = [w * upstream for _, w in zip(names, weights)]
    if trial.program.handwritten is not None:  # the user's may name them otherwise
        return trial.backward_fn(*args, *upstreams)
    return trial.backward_fn(*args, **dict(zip(names, upstreams)))


def output_weights(outputs: int, k: int) -> list[float]:
    """The weights of a function's several outputs at its k-th point: each output alone
    first (the others' upstream gradients zero), then all of them at once."""
    if k < outputs:
        return [1.0 if j == k else 0.0 for j in range(outputs)]
    mixed = [1.0, -0.75, 2.5, 0.5, -1.25]
    return [mixed[(j + k) % len(mixed)] for j in range(outputs)]


def _taken(sites, path) -> str:
    """`` (where the forward takes line 5: `x < 0` False, ...)`` for a failure's message: the
    outcomes each branch site took at the point (in a loop, each that it took)."""
    if not path.followed:
        return ""
    taken: dict[int, list] = {}
    for site, outcome in path.decisions:
        if site >= 0 and sites[site].branch and outcome not in taken.setdefault(site, []):
            taken[site].append(outcome)
    if not taken:
        return ""
    shown = ", ".join(
        f"{sites[k].where()} {' and '.join(str(o) for o in v)}" for k, v in taken.items()
    )
    return f" (where the forward takes {shown})"
