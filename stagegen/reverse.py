"""Reverse sweep: Program -> Backward, the gradient statements in the staged style.

Stages are visited from last to first. Each active stage (one that reads a requested input and
reaches the output) gets a block: for every input it reads, ``d<input> = local * d<stage>`` the
first time that gradient is written and ``+=`` after, since gradients add where a value forks.
The forward replay keeps only the stages whose values those statements read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .domain import may_raise
from .expr import Elem, Expr, Leaf, Num, Var, leaves, mul
from .gates import local_gradients
from .names import usable
from .program import Program, Stage


@dataclass
class GradStatement:
    gradient: Leaf  # what is written: Var("dx") or Elem("dw", 0)
    accumulate: bool  # += rather than =
    value: Expr  # the right-hand side: local gradient times the stage's gradient
    local: Expr  # the local gradient alone (for explanations)
    of: Leaf  # the forward value whose gradient this is
    stage: int  # the #(n) it comes from


@dataclass
class Block:
    stage: Stage
    statements: list[GradStatement]


@dataclass
class Backward:
    program: Program
    wrt: list[str]  # the differentiated parameters, in parameter order
    upstream: str  # the name of the upstream-gradient parameter (df, dout, ...)
    replay: list[Stage]  # forward stages recomputed because the backward pass reads them
    blocks: list[Block]  # in reverse stage order
    gradient_names: dict[str, str]  # forward name -> its gradient's name
    zero: list[str]  # requested parameters that no path connects to the output
    # (forward name, gradient name) where the gradient is not called d<name>
    renamed: list[tuple[str, str]] = field(default_factory=list)
    # replayed stages whose values nothing reads: kept so the backward raises where f does
    domain_checks: set[str] = field(default_factory=set)

    def gradient_of(self, param: str) -> str:
        return self.gradient_names[param]


class _GradientNames:
    """d<name> for every value, or a deterministic alternative when the user already has that name."""

    def __init__(self, taken: set[str]):
        self.taken = set(taken)
        self.names: dict[str, str] = {}
        self.renamed: list[tuple[str, str]] = []

    def assign(self, value: str, preferred: str | None = None) -> str:
        if value in self.names:
            return self.names[value]
        first = preferred or f"d{value}"
        candidates = [first, f"d_{value}", f"grad_{value}"] + [
            f"d{value}_{k}" for k in range(1, 1000)
        ]
        chosen = next(c for c in candidates if usable(c, self.taken))
        self.taken.add(chosen)
        self.names[value] = chosen
        if chosen != f"d{value}":
            self.renamed.append((value, chosen))
        return chosen


def _is_zero(e: Expr) -> bool:
    return isinstance(e, Num) and e.value == 0


def resolve_wrt(program: Program, wrt) -> list[str]:
    names = [p.name for p in program.params]
    if wrt is None:
        return names
    if isinstance(wrt, str):
        wrt = [w.strip() for w in wrt.split(",") if w.strip()]
    wrt = list(wrt)
    if not wrt:
        raise program.error(
            f"wrt is empty for `{program.name}`", f"name at least one parameter: {', '.join(names)}"
        )
    for w in wrt:
        if w not in names:
            raise program.error(
                f"wrt names `{w}`, which is not a parameter of `{program.name}`",
                f"parameters: {', '.join(names)}",
            )
    return [n for n in names if n in wrt]


def differentiate(program: Program, wrt=None) -> Backward:
    wrt_names = resolve_wrt(program, wrt)
    params = {p.name: p for p in program.params}
    stages = program.stages
    output = program.output.name

    # Which values reach the output; their local gradients (a zero one is no path).
    reaches: set[str] = {output}
    locals_of: dict[str, dict[Leaf, Expr]] = {}
    for stage in reversed(stages):
        if stage.target in reaches:
            grads = local_gradients(stage.expr, Var(stage.target))
            locals_of[stage.target] = {leaf: g for leaf, g in grads.items() if not _is_zero(g)}
            reaches.update(leaf.name for leaf in locals_of[stage.target])
    # Which of those depend on a requested input.
    active: set[Leaf] = {
        Var(name) for name in wrt_names
    }  # list elements are added as they are read
    for stage in stages:
        for leaf in locals_of.get(stage.target, ()):
            if isinstance(leaf, Elem) and leaf.name in wrt_names:
                active.add(leaf)
        if any(leaf in active for leaf in locals_of.get(stage.target, ())):
            active.add(Var(stage.target))

    # Gradient names: the upstream first (it is part of the signature), then every value.
    taken = set(program.user_names) | {p.name for p in program.params} | {s.target for s in stages}
    names = _GradientNames(taken)
    upstream = names.assign(output, f"d{program.returned_name or 'out'}")
    for p in program.params:
        if p.name in wrt_names:
            names.assign(p.name)

    blocks: list[Block] = []
    written: set[Leaf] = set()
    has_gradient: set[str] = {output}
    for stage in reversed(stages):
        if Var(stage.target) not in active or stage.target not in has_gradient:
            continue
        d_stage = Var(names.assign(stage.target))
        statements = []
        for leaf, local in locals_of[stage.target].items():
            if leaf not in active:
                continue
            grad_name = names.assign(leaf.name)
            gradient: Leaf = (
                Var(grad_name) if isinstance(leaf, Var) else Elem(grad_name, leaf.index)
            )
            statements.append(
                GradStatement(
                    gradient=gradient,
                    accumulate=gradient in written,
                    value=mul(local, d_stage),
                    local=local,
                    of=leaf,
                    stage=stage.number,
                )
            )
            written.add(gradient)
            if isinstance(leaf, Var):
                has_gradient.add(leaf.name)
        if statements:
            blocks.append(Block(stage, statements))

    # Forward replay: the stages whose values the gradient statements read, and what those
    # read in turn. Stages on a path to the output whose math calls may raise outside their
    # domain are replayed too, so that the backward raises where the forward does.
    read: set[str] = set()
    for block in blocks:
        for st in block.statements:
            read.update(l.name for l in leaves(st.local) if isinstance(l, Var))
    read = _with_inputs(stages, read)
    domain_checks = _with_inputs(stages, may_raise(program) & reaches) - read
    replay = [s for s in stages if s.target in read or s.target in domain_checks]

    zero = [n for n in wrt_names if not params[n].is_list and Var(names.assign(n)) not in written]
    return Backward(
        program=program,
        wrt=wrt_names,
        upstream=upstream,
        replay=replay,
        blocks=blocks,
        gradient_names=names.names,
        zero=zero,
        renamed=names.renamed,
        domain_checks=domain_checks,
    )


def _with_inputs(stages: list[Stage], targets: set[str]) -> set[str]:
    """The targets and every stage value they are computed from."""
    needed = set(targets)
    for stage in reversed(stages):
        if stage.target in needed:
            needed.update(l.name for l in leaves(stage.expr) if isinstance(l, Var))
    return needed
