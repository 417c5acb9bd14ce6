"""The reverse sweep: Program -> Backward, the gradient statements in the staged style, for
numbers and arrays alike (a number is the 0-d case).

Stages are visited from last to first. Each active stage (one that reads a requested input and
reaches the output) gets a block: for every input it reads, ``d<input> = local * d<stage>`` the
first time that gradient is written and ``+=`` after, since gradients add where a value forks.
The sweep never names an operation: elementwise ones give their local partials (gates.py),
structural ones their vector-Jacobian products (structural.py). The forward replay keeps only
the stages whose values those statements read, and the domain checks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from typing import Callable

from .arrays.ir import BroadcastTo, Transpose
from .domain import may_raise
from .expr import Elem, Expr, Leaf, Neg, Num, Var, add, leaves, number_value, walk
from .gates import gate_of, local_gradients
from .names import as_python_reads, usable
from .program import Program, Stage
from .structural import NotNamed, Scatter, lift, structural_rule
from .types import Types, dimension_names


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
        candidates = itertools.chain(
            (first, f"d_{stem}", f"grad_{stem}"), (f"d{stem}_{k}" for k in itertools.count(1))
        )
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
    """The differentiated parameters, in parameter order: all of them but integer labels when
    ``wrt`` is None."""
    names = [p.name for p in program.params]
    labels = [p.name for p in program.params if p.labels]
    if wrt is None:
        return [n for n in names if n not in labels]
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
        if w in labels:
            raise program.error(
                f"`{w}` is used as an index (integer labels), which has no gradient",
                "leave it out of wrt",
            )
    return [n for n in names if n in wrt]


# ---------------------------------------------------------------------------- the sweep


@dataclass
class _Contribution:
    """One path's gradient on a value, and what the notes would call its local gradient."""

    value: Expr
    local: Expr | None = None  # None: the value is the whole story (a structural rule's output)
    via: GradStatement | None = None
    factor: Expr | None = None


class _StageSweep:
    """The gradient statements of one stage: its gradient sent down its expression tree.

    Elementwise nodes of one shape are one region: their local gradients are multiplied out
    first, as the notes do (``dx = (1 - s) * s * ds``), and the stage's gradient is applied at
    the region's inputs, summed back over broadcast axes where an input is smaller. A
    structural node (a product, a reduction, ...) passes the gradient on by its own rule."""

    def __init__(self, sweep: "_Sweep", stage: Stage, d_stage: Var):
        self.sweep, self.stage, self.d_stage = sweep, stage, d_stage
        self.types = sweep.types
        self.statements: list[GradStatement] = []
        self.contributions: dict[Leaf, list[_Contribution]] = {}
        self.hoisted = 0

    # -- what is active, and where regions end

    def carries(self, node: Expr) -> bool:
        """Whether a gradient sent into ``node`` can reach a requested input."""
        return self.types.differentiable(node) and any(l in self.sweep.active for l in leaves(node))

    def stop_at(self, root: Expr) -> Callable[[Expr], bool]:
        root_shape = self.types.shape(root)

        def stop(node: Expr) -> bool:
            return structural_rule(node) is not None or self.types.shape(node) != root_shape

        return stop

    def region(self, root: Expr, out: Expr | None) -> dict[Expr, Expr]:
        """Local gradients of an elementwise region on its inputs (zero ones are no path)."""
        found = local_gradients(root, out, self.stop_at(root))
        return {n: g for n, g in found.items() if not _is_zero(g) and self.carries(n)}

    # -- sending gradients

    def sink(self, leaf: Leaf, contribution: _Contribution) -> None:
        self.contributions.setdefault(leaf, []).append(contribution)

    def name(self, g: Expr, note: str = "") -> Var:
        """A gradient computed once and read by several inputs below: ``d<stage>_in``."""
        k = self.hoisted
        self.hoisted += 1
        target = self.stage.target
        suffix = "_in" if k == 0 else f"_in{k + 1}"
        name = self.sweep.names.assign(f"{target} input {k}", base=f"{target}{suffix}", noted=False)
        self.statements.append(
            GradStatement(
                gradient=Var(name),
                accumulate=False,
                value=g,
                local=g,
                of=Var(f"{target}{suffix}"),
                stage=self.stage.number,
                intermediate=True,
                note=note,
            )
        )
        return Var(name)

    def send(self, node: Expr, g: Expr, out: Expr | None = None) -> None:
        """Send ``g``, the gradient of the value of ``node``, down to the requested inputs;
        ``out`` is the stage's own output when ``node`` is its root (a rule may read it)."""
        if not self.carries(node) or number_value(g) == 0:
            return  # an identically zero gradient (0.0 * x, x ** 0) is no path at all
        if isinstance(node, (Var, Elem)):
            self.sink(node, _Contribution(g))
            return
        if _costly(g) and _active_reads(node, self.sweep.active) > 1:
            g = self.name(g)  # computed once, read by every input below
        rule = structural_rule(node)
        if rule is not None:
            try:
                parts = rule(node, g, out if out is not None else node, self.types)
            except NotNamed:
                raise _located(
                    self.sweep.program,
                    self.stage,
                    "an index array reads an expression, not a named value",
                    "bind the expression to a name first, then index the name",
                ) from None
            for child, child_g in parts:
                self.send(child, child_g)
            return
        shape = self.types.shape(node)
        for child, local in self.region(node, None).items():
            child_shape = self.types.shape(child)
            self.send(child, lift(local, g, self.types, shape, child_shape, _rule_input(child)))

    def run(self) -> list[GradStatement]:
        stage, expr, d_stage = self.stage, self.stage.expr, self.d_stage
        out = Var(stage.target)
        if structural_rule(expr) is not None:
            self.send(expr, d_stage, out)  # a product, reduction, ... at the top: its own rule
            return self.finish()
        shape = self.types.shape(expr)
        locals_ = self.region(expr, out)
        shared = self.shared_input(expr, locals_)
        if shared is not None:
            self.send_shared(expr, locals_, *shared)
            return self.finish()
        # Where one costly gradient goes to several structural inputs (0.5 * reg * (np.sum(W1 *
        # W1) + np.sum(W2 * W2))), it is named once; number code has no such inputs.
        named: dict[Expr, Var] = {}
        lifted = {
            n: lift(local, d_stage, self.types, shape, self.types.shape(n), _rule_input(n))
            for n, local in locals_.items()
        }
        into_rules = [g for n, g in lifted.items() if _rule_input(n) and _costly(g)]
        for n, local in locals_.items():
            g = lifted[n]
            if isinstance(n, (Var, Elem)):
                self.sink(n, _Contribution(g, local))
                continue
            if g in into_rules and into_rules.count(g) > 1:
                if g not in named:
                    named[g] = self.name(g)
                g = named[g]
            self.send(n, g)
        return self.finish()

    def shared_input(self, expr: Expr, locals_: dict) -> tuple | None:
        """(gate name, inner input, its adjoint) when the stage is one gate on a compound input
        that carries two or more active inputs, and the gate's local gradient is worth
        computing once: ``h = tanh(wh * h0 + wx * x + b)`` writes ``dh_in = (1 - h**2) * dh``
        and then ``dwh = h0 * dh_in``, ``dx = wx * dh_in``, ... as one would by hand."""
        found = gate_of(expr)
        if found is None:
            return None
        gate, inputs = found
        carrying = [i for i, child in enumerate(inputs) if self.carries(child)]
        if len(carrying) != 1:
            return None
        inner = inputs[carrying[0]]
        if isinstance(inner, (Var, Elem)) or structural_rule(inner) is not None:
            return None
        if self.types.shape(inner) != self.types.shape(expr):
            return None
        if len(self.region(inner, None)) < 2:
            return None
        adjoint = gate.rule(Var(self.stage.target), *inputs)[carrying[0]]
        if number_value(adjoint) is not None:
            return None  # a number is as cheap to repeat as to name
        return gate.name, inner, adjoint

    def send_shared(self, expr: Expr, locals_: dict, gate_name: str, inner: Expr, adjoint: Expr):
        shape = self.types.shape(expr)
        via_value = lift(adjoint, self.d_stage, self.types, shape, shape)
        d_inner = self.name(via_value, note=f"at the {gate_name}'s input")
        via = self.statements[-1]
        via.local = adjoint
        for n, factor in self.region(inner, None).items():
            g = lift(factor, d_inner, self.types, shape, self.types.shape(n), _rule_input(n))
            if isinstance(n, (Var, Elem)):
                self.sink(n, _Contribution(g, locals_.get(n, g), via, factor))
            else:
                self.send(n, g)

    # -- the statements

    def finish(self) -> list[GradStatement]:
        sweep = self.sweep
        for leaf, parts in self.contributions.items():
            name = sweep.names.assign(leaf.name)
            gradient: Leaf = Var(name) if isinstance(leaf, Var) else Elem(name, leaf.index)
            plain = [p for p in parts if not isinstance(p.value, Scatter)]
            written: list[_Contribution] = []
            if len(plain) == 1:
                written.append(plain[0])
            elif plain:
                total = plain[0].value
                for p in plain[1:]:
                    total = add(total, p.value)
                if number_value(total) != 0:  # x - x: the parts cancel, no path
                    written.append(_Contribution(total))
            written += [p for p in parts if isinstance(p.value, Scatter)]
            for part in written:
                self.statements.append(
                    GradStatement(
                        gradient=gradient,
                        accumulate=gradient in sweep.written,
                        value=part.value,
                        local=part.local if part.local is not None else part.value,
                        of=leaf,
                        stage=self.stage.number,
                        via=part.via,
                        factor=part.factor,
                    )
                )
                sweep.written.add(gradient)
            if written and isinstance(leaf, Var):
                sweep.has_gradient.add(leaf.name)
        return self.statements


class _Sweep:
    def __init__(self, program: Program, wrt_names: list[str]):
        self.program = program
        self.types = Types(program)
        self.wrt_names = wrt_names
        self.active: set[Leaf] = set()
        self.written: set[Leaf] = set()
        self.has_gradient: set[str] = {program.output.name}
        self.names: _GradientNames | None = None

    def paths(self, stage: Stage) -> list[Leaf]:
        """The values a stage reads through a path whose local gradient is not zero."""
        stop = lambda n: structural_rule(n) is not None  # noqa: E731
        if stop(stage.expr):
            return [l for l in leaves(stage.expr) if self.types.differentiable(l)]
        found: list[Leaf] = []
        for node, g in local_gradients(stage.expr, Var(stage.target), stop).items():
            if not _is_zero(g):
                found += [node] if isinstance(node, (Var, Elem)) else leaves(node)
        return [l for l in found if self.types.differentiable(l)]


def differentiate(program: Program, wrt=None) -> Backward:
    """The backward of a program: one sweep for numbers and arrays alike."""
    wrt_names = resolve_wrt(program, wrt)
    sweep = _Sweep(program, wrt_names)
    types = sweep.types
    stages = program.stages
    output = program.output.name

    # Which values reach the output through a path that is not zero, and which of those
    # depend on a requested input (list elements are added as they are read).
    reaches: set[str] = {output}
    paths: dict[str, list[Leaf]] = {}
    for stage in reversed(stages):
        if stage.target in reaches and types.differentiable(Var(stage.target)):
            paths[stage.target] = sweep.paths(stage)
            reaches.update(leaf.name for leaf in paths[stage.target])
    active = sweep.active
    active.update(Var(name) for name in wrt_names)
    for stage in stages:
        for leaf in paths.get(stage.target, ()):
            if isinstance(leaf, Elem) and leaf.name in wrt_names:
                active.add(leaf)
        if any(leaf in active for leaf in paths.get(stage.target, ())):
            active.add(Var(stage.target))

    dimensions = set(dimension_names(program))
    names, upstream = name_gradients(program, wrt_names, dimensions)
    sweep.names = names

    blocks: list[Block] = []
    for stage in reversed(stages):
        target = stage.target
        if Var(target) not in active or target not in sweep.has_gradient or target not in paths:
            continue
        d_stage = Var(names.assign(target))
        statements = _StageSweep(sweep, stage, d_stage).run()
        if statements:
            blocks.append(Block(stage, statements))
    blocks = _without_unread(blocks, {names.assign(n) for n in wrt_names})

    # Forward replay: the stages whose values the gradient statements read, and what those
    # read in turn. Stages on a path to the output whose math calls may raise outside their
    # domain are replayed too, so that the backward raises (or, for arrays, warns) where the
    # forward does.
    gradient_names = set(names.names.values())
    read: set[str] = set()
    for block in blocks:
        for st in block.statements:
            read.update(
                l.name
                for l in leaves(st.value)
                if isinstance(l, Var) and l.name not in gradient_names
            )
    read = _with_inputs(stages, read & {s.target for s in stages})
    domain_checks = _with_inputs(stages, may_raise(program) & reaches) - read
    replay = [s for s in stages if s.target in read or s.target in domain_checks]

    params = {p.name: p for p in program.params}
    zero = [
        n for n in wrt_names if not params[n].is_list and Var(names.assign(n)) not in sweep.written
    ]
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


def _without_unread(blocks: list[Block], returned: set[str]) -> list[Block]:
    """Drop gradient statements nothing reads: a gradient whose only paths turned out to be
    zero (``t = x - x``) is computed for nothing otherwise."""
    while True:
        read = {
            l.name
            for b in blocks
            for st in b.statements
            for l in leaves(st.value)
            if isinstance(l, Var)
        }
        keep = read | returned
        kept = [
            Block(b.stage, [st for st in b.statements if st.gradient.name in keep]) for b in blocks
        ]
        kept = [b for b in kept if b.statements]
        if sum(len(b.statements) for b in kept) == sum(len(b.statements) for b in blocks):
            return kept
        blocks = kept


def _rule_input(node: Expr) -> bool:
    return structural_rule(node) is not None


def _is_zero(e: Expr) -> bool:
    return number_value(e) == 0


def _costly(g: Expr) -> bool:
    """Whether a gradient is worth naming rather than repeating (more than a name or a view)."""
    while isinstance(g, (Neg, BroadcastTo, Transpose)):
        g = g.operand
    return not isinstance(g, (Var, Num))


def _active_reads(node: Expr, active) -> int:
    return sum(1 for n in walk(node) if isinstance(n, Var) and n in active)


def _with_inputs(stages: list[Stage], targets: set[str]) -> set[str]:
    """The targets and every stage value they are computed from."""
    needed = set(targets)
    for stage in reversed(stages):
        if stage.target in needed:
            needed.update(l.name for l in leaves(stage.expr) if isinstance(l, Var))
    return needed


def _located(program: Program, stage: Stage, message: str, hint: str):
    from .errors import StagegenError

    return StagegenError(message, hint, filename=program.filename, line=stage.line, col=stage.col)
