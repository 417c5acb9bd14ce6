"""The path a function with branches and loops takes at one point, unrolled into straight-line
code: the teaching aid explains that (every value and gradient it shows is then right by
construction, as for straight-line code).

The block tree (stagegen.program: Stage, Branch, Loop, Exit) is run at the point by a small
interpreter of our own expressions (the user's module is never imported, nor the generated
backward run). Each stage it executes becomes a stage of a straight-line Program with a name
of its own (``h``, ``h_1``, ``h_2``: the value after each step), its loop indices written in
as numbers (``xs[2]``) and each conditional expression replaced by the arm taken. Beside it,
the path itself: which branch each ``if`` took (and the values its test read), each loop's
steps with their index, and why it ended; a renderer folds long loops from this tree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Union

from .errors import StagegenError
from .expr import (
    And,
    Compare,
    Cond,
    Elem,
    Expr,
    Length,
    Not,
    Num,
    Or,
    Printer,
    Var,
    leaves,
    transform,
)
from .program import Branch, Exit, Loop, Program, Stage

PRINT = Printer("math")
NAMESPACE = {"__builtins__": {}, "math": math, "abs": abs, "max": max, "min": min, "len": len}
MAX_STAGES = 2000  # stages on one path past which the teaching aid refuses (it is for small runs)


@dataclass
class PathStage:
    """One stage the forward ran: the stage of the block tree and its name on the path."""

    stage: Stage
    target: str  # its name in the straight-line program
    straight: Stage  # the straight-line stage (loop indices written in)
    index: dict[str, int] = field(default_factory=dict)  # the enclosing loops' indices


@dataclass
class PathBranch:
    """An ``if`` the forward reached: which arm it ran, and the values its test read."""

    branch: Branch
    taken: bool
    reads: list[tuple[str, float]]  # (name as written, value)
    body: list["PathNode"]


@dataclass
class PathStep:
    """One step of a loop: its index (None for a ``while``) and what it ran."""

    number: int  # 1, 2, ...
    index: int | None
    body: list["PathNode"]


@dataclass
class PathLoop:
    loop: Loop
    steps: list[PathStep]
    ended: str  # why it stopped, in words


@dataclass
class PathExit:
    exit: Exit


PathNode = Union[PathStage, PathBranch, PathLoop, PathExit]


@dataclass
class Unrolled:
    """A program's path at a point, and that path as a straight-line program."""

    program: Program  # as read (the block tree)
    straight: Program  # the stages run, in order, each with a name of its own
    body: list[PathNode]
    origin: dict[str, PathStage]  # straight target -> the stage it ran
    point: dict  # the point, as bound (lists as lists, trip counts as ints)
    value: float = 0.0  # the output's value


def path_stages(body: list[PathNode]):
    """Every stage run on a path, in order."""
    for node in body:
        if isinstance(node, PathStage):
            yield node
        elif isinstance(node, PathBranch):
            yield from path_stages(node.body)
        elif isinstance(node, PathLoop):
            for step in node.steps:
                yield from path_stages(step.body)


# ---------------------------------------------------------------------------- the run


@lru_cache(maxsize=4096)
def _compiled(code: str):
    return compile(code, "<stagegen explain>", "eval")


def evaluate(e: Expr, env: dict):
    """An expression of ours at the values ``env`` (names as the expression reads them)."""
    return eval(_compiled(PRINT(e)), NAMESPACE, env)


class _Stop(Exception):
    """A ``break`` or ``continue`` leaving the body of a loop."""

    def __init__(self, kind: str):
        self.kind = kind


class _Runner:
    def __init__(self, program: Program, point: dict, source_line):
        self.program = program
        self.env = dict(point)  # block-tree names -> values (the current ones)
        self.current: dict[str, str] = {}  # block-tree name -> its straight-line name now
        self.indices: dict[str, int] = {}  # loop index -> value
        self.taken = set(program.user_names) | {p.name for p in program.params}
        self.taken |= {s.target for s in program.stages}
        # a parameter bound again is numbered from its first binding (``a_1``): ``a`` stays
        # the input
        self.counts: dict[str, int] = {p.name: 0 for p in program.params}
        self.straight: list[Stage] = []
        self.decisions: dict[str, list] = {}  # a saved decision -> what its test read
        self.origin: dict[str, PathStage] = {}
        self.source_line = source_line

    # names ------------------------------------------------------------------------------

    def fresh(self, name: str) -> str:
        """``h`` the first time, then ``h_1``, ``h_2``: the value after each binding."""
        if name not in self.counts:
            self.counts[name] = 0
            return name
        k = self.counts[name]
        while True:
            k += 1
            candidate = f"{name}_{k}"
            if candidate not in self.taken:
                break
        self.counts[name] = k
        self.taken.add(candidate)
        return candidate

    def scope(self) -> dict:
        return {**self.env, **self.indices}

    def written_in(self, e: Expr, where) -> Expr:
        """``e`` on the path: names as bound now, indices and lengths as numbers, each
        conditional expression as the arm taken."""
        scope = self.scope()

        def at(node: Expr):
            if isinstance(node, Var):
                if node.name in self.indices:
                    return Num(self.indices[node.name])
                if node.name in self.current:
                    return Var(self.current[node.name])
                return None
            if isinstance(node, Elem):
                index = node.index
                if not isinstance(index, int):
                    index = int(self.value(index, scope, where))
                length = len(scope[node.name])
                if not -length <= index < length:
                    raise self.error(
                        where,
                        f"`{node.name}[{index}]` is read, but {node.name} has {length} "
                        f"element{'s' if length != 1 else ''} at this point",
                        f"give {node.name} at least {index + 1} numbers",
                    )
                return Elem(node.name, index)
            if isinstance(node, Length):
                return Num(int(self.value(node, scope, where)))
            if isinstance(node, Cond):
                arm = node.body if self.value(node.test, scope, where) else node.orelse
                return self.written_in(arm, where)
            return None

        return transform(e, at)

    def value(self, e: Expr, scope: dict, where):
        try:
            value = evaluate(e, scope)
        except (ValueError, ZeroDivisionError, OverflowError, TypeError, IndexError) as exc:
            raise self.undefined(where, e, exc) from None
        if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
            raise self.undefined(where, e, ValueError("the result is not a finite real number"))
        return value

    # errors -----------------------------------------------------------------------------

    def error(self, where, message: str, hint: str) -> StagegenError:
        return StagegenError(
            message,
            hint,
            filename=self.program.filename,
            line=where.line,
            col=where.col,
            source_line=self.source_line(where.line),
        )

    def undefined(self, where, e: Expr, exc: Exception) -> StagegenError:
        number = getattr(where, "number", "?")
        reason = str(exc) or type(exc).__name__
        step = ", ".join(f"{name} = {value}" for name, value in self.indices.items())
        return self.error(
            where,
            f"`{PRINT(e)}` of ({number}) is undefined at this point"
            + (f", in the step where {step}" if step else "")
            + f" ({reason})",
            "choose a point inside the function's domain",
        )

    # the tree ---------------------------------------------------------------------------

    def run(self, body: list) -> list[PathNode]:
        out: list[PathNode] = []
        for node in body:
            if isinstance(node, Stage) and isinstance(node.expr, (Compare, And, Or, Not)):
                self.decide(node)
            elif isinstance(node, Stage):
                out.append(self.stage(node))
            elif isinstance(node, Branch):
                taken = bool(self.value(node.test, self.scope(), node))
                reads = []
                for leaf in leaves(node.test):
                    if isinstance(leaf, Var) and leaf.name in self.decisions:
                        found = self.decisions[leaf.name]  # what the saved decision read
                    else:
                        found = self.reads([leaf], node)
                    reads += [r for r in found if r not in reads]
                record = PathBranch(node, taken, reads, [])
                out.append(record)
                try:
                    record.body = self.run(node.then if taken else node.orelse)
                except _Stop as stop:
                    record.body = stop.ran
                    stop.ran = out
                    raise
            elif isinstance(node, Loop):
                out.append(self.loop(node))
            elif isinstance(node, Exit):
                out.append(PathExit(node))
                stop = _Stop(node.kind)
                stop.ran = out
                raise stop
        return out

    def reads(self, found: list, where) -> list[tuple[str, float]]:
        """(name as read on the path, value) of each leaf."""
        scope = self.scope()
        return [
            (PRINT(self.written_in(leaf, where)), self.value(leaf, scope, where)) for leaf in found
        ]

    def decide(self, node: Stage) -> None:
        """A branch's decision, saved before its arms bind what its test reads (``cond3 =
        x > y``): not a value of the path; the branch names what it read."""
        self.decisions[node.target] = self.reads(leaves(node.expr), node)
        self.env[node.target] = bool(self.value(node.expr, self.scope(), node))

    def stage(self, node: Stage) -> PathStage:
        expr = self.written_in(node.expr, node)
        value = self.value(node.expr, self.scope(), node)
        if isinstance(value, float) or not isinstance(value, int):
            value = float(value)
        target = self.fresh(node.target)
        straight = replace(node, target=target, expr=expr)
        self.env[node.target] = value
        self.current[node.target] = target
        self.straight.append(straight)
        if len(self.straight) > MAX_STAGES:
            raise self.error(
                node,
                f"the path at this point runs more than {MAX_STAGES} stages: `explain` unrolls "
                "every step it shows",
                "choose a point with fewer steps (a shorter list, a smaller trip count)",
            )
        record = PathStage(node, target, straight, dict(self.indices))
        self.origin[target] = record
        return record

    def loop(self, node: Loop) -> PathLoop:
        record = PathLoop(node, [], "")
        if node.index is None:  # while (`while True` has no test: a break ends it)
            count = 0
            while True:
                if node.test is not None and not self.value(node.test, self.scope(), node):
                    record.ended = "then its test is false"
                    break
                count += 1
                if not self.iterate(node, record, count, None):
                    break
            return record
        scope = self.scope()
        start = int(self.value(node.start, scope, node))
        stop = int(self.value(node.stop, scope, node))
        indices = range(start, stop, node.step)
        if node.backwards:
            indices = reversed(indices)
        record.ended = "the range is exhausted"
        for count, index in enumerate(indices, 1):
            self.indices[node.index] = index
            try:
                if not self.iterate(node, record, count, index):
                    break
            finally:
                del self.indices[node.index]
        return record

    def iterate(self, node: Loop, record: PathLoop, count: int, index) -> bool:
        """One step; False when a ``break`` ends the loop."""
        step = PathStep(count, index, [])
        record.steps.append(step)
        try:
            step.body = self.run(node.body)
        except _Stop as stop:
            step.body = stop.ran
            if stop.kind == "break":
                record.ended = f"a break ends it at step {count}"
                return False
        return True


def unroll(program: Program, point: dict, source_line=lambda line: "") -> Unrolled:
    """Run the block tree at ``point`` (parameter -> number, list or trip count)."""
    runner = _Runner(program, point, source_line)
    body = runner.run(program.body)
    out = runner.current.get(program.output.name, program.output.name)
    params = []
    for p in program.params:
        value = point[p.name]
        params.append(replace(p, length=len(value)) if p.is_list else replace(p))
    straight = replace(
        program,
        params=params,
        body=list(runner.straight),
        output=Var(out),
        user_names=set(program.user_names) | set(runner.origin),
    )
    value = runner.env.get(program.output.name, point.get(program.output.name))
    return Unrolled(program, straight, body, runner.origin, point, value)


__all__ = [
    "MAX_STAGES",
    "PathBranch",
    "PathExit",
    "PathLoop",
    "PathNode",
    "PathStage",
    "PathStep",
    "Unrolled",
    "evaluate",
    "path_stages",
    "unroll",
]
