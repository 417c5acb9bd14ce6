"""Reverse sweep: Program -> Backward, the gradient statements in the staged style.

Stages are visited from last to first. Each active stage (one that reads a requested input and
reaches the output) gets a block: for every input it reads, ``d<input> = local * d<stage>`` the
first time that gradient is written and ``+=`` after, since gradients add where a value forks.
The forward replay keeps only the stages whose values those statements read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .domain import may_raise
from .expr import Elem, Expr, Leaf, Neg, Num, Var, leaves, mul
from .gates import gate_of, local_gradients
from .names import as_python_reads, usable
from .program import Program, Stage


@dataclass
class GradStatement:
    gradient: Leaf  # what is written: Var("dx") or Elem("dw", 0)
    accumulate: bool  # += rather than =
    value: Expr  # the right-hand side: local gradient times the stage's gradient
    local: Expr  # the local gradient alone (for explanations)
    of: Leaf  # the forward value whose gradient this is
    stage: int  # the #(n) it comes from
    # A compound stage whose inputs all meet in one inner node, tanh(w * x + b) say, first
    # writes that node's gradient (an "intermediate" statement, for no forward value); the
    # statements for the inputs then read it: value = factor * d<node>, and local is still
    # the whole local gradient, factor times the intermediate's local.
    via: "GradStatement | None" = None
    factor: Expr | None = None
    intermediate: bool = False
    note: str = ""  # said after the #(n) comment


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
    # (name, gradient name, why): gradients not called d<name>, for the header's notes
    renamed: list[tuple[str, str, str]] = field(default_factory=list)
    # replayed stages whose values nothing reads: kept so the backward raises where f does
    domain_checks: set[str] = field(default_factory=set)

    def gradient_of(self, param: str) -> str:
        return self.gradient_names[param]


class _GradientNames:
    """d<name> for every value, or a deterministic alternative when that name is taken: by one of
    the user's names, or by the gradient of another value. Each such renaming is recorded with
    the true reason, in the user's own names (versions such as x_2 are shown as x)."""

    def __init__(self, function: str, user_names: set[str], shown: dict[str, str]):
        self.function = function
        self.user_names = set(user_names)
        self.taken = set(user_names)
        self.shown = shown  # internal value name -> the name the user wrote
        self.names: dict[str, str] = {}
        self.owner: dict[str, str] = {}  # gradient name -> what it is the gradient of
        # (the value as the user wrote it, its gradient's name, why d<value> was not used)
        self.renamed: list[tuple[str, str, str]] = []

    def _shown(self, value: str) -> str:
        return self.shown.get(value) or f"`{value}`"

    def assign(
        self,
        value: str,
        preferred: str | None = None,
        base: str | None = None,
        *,
        what: str | None = None,
        noted: bool = True,
    ) -> str:
        """The gradient name of ``value``; ``base`` replaces it in the fallback names, ``what``
        describes it in notes ("the upstream gradient"), and ``noted=False`` keeps a renaming
        out of the notes (for names the user never wrote)."""
        if value in self.names:
            return self.names[value]
        stem = base or value
        first = preferred or f"d{stem}"
        candidates = [first, f"d_{stem}", f"grad_{stem}"] + [f"d{stem}_{k}" for k in range(1, 1000)]
        chosen = next(c for c in candidates if usable(c, self.taken))
        self.taken.add(chosen)
        self.names[value] = chosen
        self.owner[chosen] = what or f"the gradient of {self._shown(value)}"
        if chosen != first and noted:
            if first in self.user_names:
                why = f"is already a name in {self.function}"
            elif first in self.owner:
                why = f"is taken by {self.owner[first]}"
            else:
                why = "is reserved"  # a keyword, or a builtin the generated code calls
            self.renamed.append((self._shown(value), chosen, f"`{first}` {why}"))
        return chosen


def _is_zero(e: Expr) -> bool:
    return isinstance(e, Num) and e.value == 0


def _shared_input(stage: Stage, active: set[Leaf]) -> tuple[str, Expr, dict] | None:
    """(gate name, adjoint, factors) when the stage is one gate on a compound input that
    carries two or more active inputs, and the gate's local gradient is worth computing once:
    ``h = tanh(wh * h0 + wx * x + b)`` writes ``dh_in = (1 - h**2) * dh`` and then
    ``dwh = h0 * dh_in``, ``dx = wx * dh_in``, ... as one would by hand."""
    found = gate_of(stage.expr)
    if found is None:
        return None
    gate, inputs = found
    carrying = [i for i, child in enumerate(inputs) if any(l in active for l in leaves(child))]
    if len(carrying) != 1:
        return None
    inner = inputs[carrying[0]]
    if isinstance(inner, (Var, Elem)):
        return None
    factors = {l: g for l, g in local_gradients(inner).items() if l in active and not _is_zero(g)}
    if len(factors) < 2:
        return None
    adjoint = gate.rule(Var(stage.target), *inputs)[carrying[0]]
    if isinstance(adjoint, Num) or (isinstance(adjoint, Neg) and isinstance(adjoint.operand, Num)):
        return None  # a number is as cheap to repeat as to name
    return gate.name, adjoint, factors


def name_gradients(
    program: Program, wrt_names: list[str], also_taken: set[str] = frozenset()
) -> tuple[_GradientNames, str]:
    """The gradient names: the upstream's first (it is part of the signature), then the
    requested parameters'; stages get theirs as the sweep reaches them."""
    stages = program.stages
    taken = set(program.user_names) | {p.name for p in program.params} | {s.target for s in stages}
    shown = {st.target: f"`{st.user_name or st.target}`" for st in stages}
    if not program.returned_name:
        shown[program.output.name] = "the returned value"
    names = _GradientNames(program.name, taken | set(also_taken), shown)
    upstream = names.assign(
        program.output.name,
        f"d{program.returned_name or 'out'}",
        program.returned_name or "out",
        what="the upstream gradient",
    )
    for p in program.params:
        if p.name in wrt_names:
            names.assign(p.name)
    return names, upstream


def resolve_wrt(program: Program, wrt) -> list[str]:
    names = [p.name for p in program.params]
    if wrt is None:
        return names
    if isinstance(wrt, str):
        wrt = [w.strip() for w in wrt.split(",") if w.strip()]
    wrt = [as_python_reads(w) if isinstance(w, str) else w for w in wrt]
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
    if program.numpy:
        from .arrays.reverse import differentiate_arrays

        return differentiate_arrays(program, wrt)
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

    names, upstream = name_gradients(program, wrt_names)

    blocks: list[Block] = []
    written: set[Leaf] = set()
    has_gradient: set[str] = {output}
    for stage in reversed(stages):
        if Var(stage.target) not in active or stage.target not in has_gradient:
            continue
        d_stage = Var(names.assign(stage.target))
        statements = []
        shared = _shared_input(stage, {l for l in locals_of[stage.target] if l in active})
        if shared is not None:
            gate_name, adjoint, factors = shared
            # A key no forward name can have, so the intermediate never shares a user's gradient.
            d_inner = Var(
                names.assign(f"{stage.target} input", base=f"{stage.target}_in", noted=False)
            )
            via = GradStatement(
                gradient=d_inner,
                accumulate=False,
                value=mul(adjoint, d_stage),
                local=adjoint,
                of=Var(f"{stage.target}_in"),
                stage=stage.number,
                intermediate=True,
                note=f"at the {gate_name}'s input",
            )
            statements.append(via)
        for leaf, local in locals_of[stage.target].items():
            if leaf not in active:
                continue
            grad_name = names.assign(leaf.name)
            gradient: Leaf = (
                Var(grad_name) if isinstance(leaf, Var) else Elem(grad_name, leaf.index)
            )
            statement = GradStatement(
                gradient=gradient,
                accumulate=gradient in written,
                value=mul(local, d_stage),
                local=local,
                of=leaf,
                stage=stage.number,
            )
            if shared is not None:
                statement.via, statement.factor = via, factors[leaf]
                statement.value = mul(factors[leaf], via.gradient)
            statements.append(statement)
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
