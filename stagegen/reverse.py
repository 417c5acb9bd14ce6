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
from dataclasses import dataclass, field, replace

from typing import Callable

from .arrays.ir import BroadcastTo, Transpose, transform_array
from .domain import may_raise
from .expr import (
    Elem,
    Expr,
    Invoke,
    Item,
    Leaf,
    Neg,
    Num,
    Several,
    Var,
    add,
    leaves,
    number_value,
    walk,
)
from .gates import gate_of, local_gradients
from .names import as_python_reads, usable
from .program import Branch, Exit, Loop, Program, Stage, has_control_flow, walk_nodes
from .structural import NotNamed, Scatter, Zeroed, lift, structural_rule
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
    continued: bool = False  # the rest of the stage's statements, after a restore
    # A stage that reads the name it binds again (`h = tanh(wh * h)`), as swept: its input
    # renamed apart from its output, as the statements' local gradients read them.
    swept: Stage | None = None


@dataclass
class Restore:
    """``name = stack.pop()``: the value ``name`` had in the forward at this point of the
    backward (saved by the replay, see Save)."""

    name: str
    stack: str
    stage: int


@dataclass
class Save:
    """``stack.append(name)`` in the forward replay, before or after a binding of ``name``."""

    name: str
    stack: str
    stage: int
    count: bool = False  # a loop's step count, saved after it (a loop inside a loop)


@dataclass
class BranchBlock:
    """The reverse of an ``if``: the same test, each arm's gradient statements."""

    branch: Branch
    then: list  # Block | BranchBlock | LoopBlock | Restore, in backward order
    orelse: list


@dataclass
class LoopBlock:
    """The reverse of a loop: the gradients it accumulates set to zero first, then the body's
    gradient statements once per step, last step first."""

    loop: Loop
    before: list[GradStatement]
    body: list


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
    # With loops or branches: the backward's tree (Block, BranchBlock, LoopBlock, Restore) and
    # the forward replay's (Stage, Branch, Loop, Exit, Save); straight-line code has neither.
    body: list | None = None
    replay_body: list | None = None
    # With several outputs, every upstream gradient's name in order (the first is `upstream`).
    upstreams: list[str] = field(default_factory=list)

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
) -> tuple[_GradientNames, list[str]]:
    """The gradient names: the upstreams' first (they are part of the signature), then the
    requested parameters'; stages get theirs as the sweep reaches them."""
    stages = program.stages
    taken = set(program.user_names) | {p.name for p in program.params} | {s.target for s in stages}
    shown = {st.target: f"`{st.user_name or st.target}`" for st in stages}
    if not program.returned_name:
        shown[program.output.name] = "the returned value"
    names = _GradientNames(program.name, taken | set(also_taken), shown)
    upstreams = [
        names.assign(
            value.name,
            f"d{returned or 'out'}",
            returned or "out",
            what="the upstream gradient",
        )
        for value, returned in program.outputs
    ]
    for p in program.params:
        if p.name in wrt_names:
            names.assign(p.name)
    return names, upstreams


def resolve_wrt(program: Program, wrt) -> list[str]:
    """The differentiated parameters, in parameter order: all of them but integer labels when
    ``wrt`` is None."""
    names = [p.name for p in program.params]
    labels = [p.name for p in program.params if p.labels or p.integer]
    if wrt is None:
        return program.differentiable_params()
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

    def name(self, g: Expr, note: str = "", stem: str | None = None) -> Var:
        """A gradient computed once and read by several inputs below: ``d<stage>_in`` (or
        ``d<stem>_in``: the gradients at a callee's inputs are named after the callee)."""
        k = self.hoisted
        self.hoisted += 1
        target = self.stage.target
        suffix = "_in" if k == 0 else f"_in{k + 1}"
        base = f"{stem or target}{suffix}"
        name = self.sweep.names.assign(f"{target} input {k}", base=base, noted=False)
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
        if _costly(g) and _active_reads(node, self.sweep.active) > 1 and not isinstance(g, Several):
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
            calls = [g for c, g in parts if isinstance(g, Item) and self.carries(c)]
            if len(calls) > 1:  # a backward returning several gradients is called once
                call = calls[0].operand  # the callee's backward: d<callee>_in[k]
                held = self.name(call, stem=call.function.removesuffix("_backward"))
                parts = [(c, Item(held, g.index) if isinstance(g, Item) else g) for c, g in parts]
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
        # A write's zeroed gradient last: in a loop or branch the array before and after the
        # write share one gradient, which the value's statements read before the zeros go in.
        ordered = sorted(
            self.contributions.items(),
            key=lambda item: any(isinstance(p.value, Zeroed) for p in item[1]),
        )
        for leaf, parts in ordered:
            name = sweep.names.assign(leaf.name)
            gradient: Leaf = Var(name) if isinstance(leaf, Var) else Elem(name, leaf.index)
            plain = [p for p in parts if not isinstance(p.value, (Scatter, Zeroed))]
            # (a write's zeroed gradient first: the parts after it add to it)
            written: list[_Contribution] = [p for p in parts if isinstance(p.value, Zeroed)]
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
                if part.value == gradient and gradient not in sweep.written:
                    sweep.written.add(gradient)  # `ds = ds`: the gradient passes unchanged
                    continue
                self.statements.append(
                    GradStatement(
                        gradient=gradient,
                        accumulate=gradient in sweep.written
                        or (isinstance(gradient, Elem) and sweep.loops),
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
        self.has_gradient: set[str] = {value.name for value, _ in program.outputs}
        self.names: _GradientNames | None = None
        # A call returning several values (`a, b = g(x)`): the stage holding them, and the
        # stages reading each of them by position.
        self.parts: dict[str, dict[int, list[str]]] = {}
        for stage in program.stages:
            if isinstance(stage.expr, Item) and isinstance(stage.expr.operand, Var):
                held = self.parts.setdefault(stage.expr.operand.name, {})
                held.setdefault(stage.expr.index, []).append(stage.target)
        # With loops, dw[0] and dw[i] may be one element: every write to a list's gradient
        # adds (the list starts at zero).
        self.loops = any(isinstance(n, Loop) for n in walk_nodes(program.body))

    def call_upstream(self, stage: Stage, has_gradient: Callable[[str], bool]) -> Expr | None:
        """The gradients of the values a call returns, for its backward (0.0 for one with
        none); None when none of them has a gradient."""
        invoke = stage.expr
        parts = self.parts.get(stage.target, {})
        upstream: list[Expr] = []
        for k in range(invoke.returns):
            if k in invoke.saved:
                continue  # saved values have no gradient
            named = [t for t in parts.get(k, ()) if has_gradient(t)]
            upstream.append(Var(self.names.assign(named[0])) if named else Num(0.0))
        if all(isinstance(u, Num) for u in upstream):
            return None
        return Several(tuple(upstream)) if len(upstream) > 1 else upstream[0]

    def paths(self, stage: Stage) -> list[Leaf]:
        """The values a stage reads through a path whose local gradient is not zero."""
        stop = lambda n: structural_rule(n) is not None or isinstance(n, Item)  # noqa: E731
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

    # Which values reach the output through a path that is not zero, and which of those
    # depend on a requested input (list elements are added as they are read).
    # A loop carries values from one step to the next: both passes repeat until nothing new
    # is found (once, for straight-line code).
    reaches: set[str] = {value.name for value, _ in program.outputs}
    paths: dict[str, list[Leaf]] = {}
    active = sweep.active
    active.update(Var(name) for name in wrt_names)
    while True:
        known = (len(reaches), len(active))
        for stage in reversed(stages):
            if stage.target in reaches and types.differentiable(Var(stage.target)):
                found = sweep.paths(stage)
                paths[stage.target] = list(dict.fromkeys(paths.get(stage.target, []) + found))
                reaches.update(leaf.name for leaf in paths[stage.target])
        for stage in stages:
            for leaf in paths.get(stage.target, ()):
                if isinstance(leaf, Elem) and leaf.name in wrt_names:
                    active.add(leaf)
            if any(leaf in active for leaf in paths.get(stage.target, ())):
                active.add(Var(stage.target))
        if (len(reaches), len(active)) == known or not has_control_flow(program.body):
            break

    dimensions = set(dimension_names(program))
    names, upstreams = name_gradients(program, wrt_names, dimensions)
    sweep.names = names
    sweep.written.update(Var(u) for u in upstreams)  # a returned value read again adds to it
    if has_control_flow(program.body):
        return _differentiate_tree(sweep, paths, reaches, upstreams)

    blocks: list[Block] = []
    for stage in reversed(stages):
        target = stage.target
        if isinstance(stage.expr, Item) or Var(target) not in active or target not in paths:
            continue  # a part of what a call returns is read by the call's backward
        if isinstance(stage.expr, Invoke) and stage.expr.returns > 1:
            d_stage = sweep.call_upstream(stage, sweep.has_gradient.__contains__)
            if d_stage is None:
                continue
        elif target in sweep.has_gradient:
            d_stage = Var(names.assign(target))
        else:
            continue
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
        upstream=upstreams[0],
        upstreams=upstreams,
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


def _indexed_by_loop(gradient: Leaf) -> bool:
    """``dw[i]``: a list's gradient starts as zeros, and a loop adds into its elements."""
    return isinstance(gradient, Elem) and not isinstance(gradient.index, int)


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


# ---------------------------------------------------------------------------- control flow


def _old(name: str, taken: set[str]) -> str:
    """A stage's own target read as an input (``h = tanh(wh * h + ...)``): the value before
    the binding, told apart from the value after it while the stage's gradient is swept (and
    by the proof's local check). Never printed."""
    candidate = f"{name}_before"
    while candidate in taken:
        candidate += "_"
    return candidate


class _TreeSweep:
    """The sweep over a body with branches and loops. Gradient variables are tracked as a
    state: which hold a value on every path here (``written``). A branch sweeps each arm from
    the same state and sets to zero, at the end of an arm, what only the other arm wrote; a
    loop's reverse starts each step from one state, so what its steps accumulate is set to
    zero before it, and what a step consumes (a name the loop binds again) is set to zero
    again at the end of the step."""

    def __init__(self, sweep: _Sweep, paths: dict, mutable: set[str]):
        self.sweep, self.paths, self.mutable = sweep, paths, mutable
        self.names = sweep.names
        self.blocks: list[Block] = []  # every stage's block, in backward order

    def body(self, nodes: list) -> list:
        items: list = []
        for node in reversed(nodes):
            if isinstance(node, Stage):
                items += self.stage(node)
            elif isinstance(node, Branch):
                items += self.branch(node)
            elif isinstance(node, Loop):
                items += self.loop(node)
        return items

    def stage(self, stage: Stage) -> list:
        sweep, names = self.sweep, self.names
        target = stage.target
        gradient = Var(names.assign(target))
        restore = [Restore(target, "", stage.number)] if target in self.mutable else []
        several = isinstance(stage.expr, Invoke) and stage.expr.returns > 1
        if several and Var(target) in sweep.active and target in self.paths:
            upstream = sweep.call_upstream(stage, lambda t: Var(names.assign(t)) in sweep.written)
            # A name the call binds again (`a, b = pair(a, b)` in a loop): its gradient is read
            # by the call's backward, and from here on is the gradient of the value before.
            for parts in sweep.parts.get(target, {}).values():
                for t in parts:
                    if t in self.mutable:
                        sweep.written.discard(Var(names.assign(t)))
            if upstream is None:
                return restore
            statements = _StageSweep(sweep, stage, upstream).run()
            return ([Block(stage, statements)] if statements else []) + restore
        if isinstance(stage.expr, Item):
            return restore  # read by the call's backward (above)
        if (
            Var(target) not in sweep.active
            or gradient not in sweep.written
            or target not in self.paths
        ):
            if target in self.mutable:
                sweep.written.discard(gradient)  # bound again: the value before gets none
            return restore
        if target not in self.mutable:
            statements = _StageSweep(sweep, stage, gradient).run()
            return [Block(stage, statements)] if statements else []
        # A binding of a name the code binds again: after its gradient is read, the name's
        # gradient is that of the value before (its own input's, when the stage reads it).
        old = _old(target, sweep.program.user_names)
        reads_old = Var(target) in leaves(stage.expr)
        swept = stage
        if reads_old:
            swept = Stage(
                stage.number,
                stage.target,
                stage.user_name,
                _renamed(stage.expr, Var(target), Var(old)),
                stage.line,
                stage.col,
                stage.comment,
            )
            names.names[old] = gradient.name
            if sweep.program.types:
                sweep.program.types[old] = sweep.program.types[target]
                _retype(stage.expr, swept.expr, sweep.types.expressions)
            sweep.active.add(Var(old))
        sweep.written.discard(gradient)
        statements = _StageSweep(sweep, swept, gradient).run()
        if reads_old:
            sweep.active.discard(Var(old))
        # The gradient of the value before is written last: its right side reads the one after.
        own = [st for st in statements if st.gradient == gradient]
        others = [st for st in statements if st.gradient != gradient]
        if len(own) > 1:
            raise _located(
                sweep.program,
                stage,
                f"`{stage.user_name}` is read more than once by the line that binds it again",
                f"bind the new value to a new name, e.g. `{stage.user_name}_new = ...`",
            )
        statements = others + own
        # Statements reading the value after come before the restore, those reading the value
        # before after it; one reading both reads the value before from the saved stack.
        first_old = next(
            (k for k, st in enumerate(statements) if Var(old) in leaves(st.value)),
            len(statements),
        )
        late_new = any(Var(target) in leaves(st.value) for st in statements[first_old:])
        # The restore goes right after the last statement reading the value after.
        split = max(
            (k + 1 for k, st in enumerate(statements) if Var(target) in leaves(st.value)),
            default=0,
        )

        # Printed, both values are the name; each statement's local gradient still tells them
        # apart (the proof's local check reads it against the swept stage).
        before = Elem(f"{_STACK_TOP}{target}", -1) if late_new else Var(target)
        for st in statements:
            st.value = _renamed(st.value, Var(old), before)
        if late_new:
            split = len(statements)
        head, rest = statements[:split], statements[split:]
        blocks = [Block(stage, head, swept=swept)] if head else []
        tail = [Block(stage, rest, continued=bool(blocks), swept=swept)] if rest else []
        return blocks + restore + tail

    def branch(self, branch: Branch) -> list:
        sweep = self.sweep
        state = set(sweep.written)
        then = self.body(branch.then)
        after_then = set(sweep.written)
        sweep.written = set(state)
        orelse = self.body(branch.orelse)
        after_else = set(sweep.written)
        merged = after_then | after_else
        # A gradient one arm writes first is set to zero before the `if` (the other arm then
        # leaves it so), as one writes `dx = dlo = dhi = 0.0` above a clamp's branches; one an
        # arm consumes (a name it binds again) is set to zero at the end of the other arm.
        first = (merged - (after_then & after_else)) - state
        # An arm that wrote such a gradient and then consumed it (its value bound again) leaves
        # the new value's gradient behind: it sets it to zero at its end too.
        then_stale = (merged - after_then) & (state | _written_in(then))
        else_stale = (merged - after_else) & (state | _written_in(orelse))
        then = _without_zeros(then, first) + self.zeros(then_stale, branch.number)
        orelse = _without_zeros(orelse, first) + self.zeros(else_stale, branch.number)
        before = self.zeros(first, branch.number)
        sweep.written = merged
        if not _statements(then + orelse):  # zeros count: an arm may end a gradient's life
            restores = any(isinstance(i, Restore) for i in _items(then + orelse))
            return before + ([BranchBlock(branch, then, orelse)] if restores else [])
        return before + [BranchBlock(branch, then, orelse)]

    def loop(self, loop: Loop) -> list:
        sweep = self.sweep
        entry = set(sweep.written)
        top = set(entry)
        while True:  # the state each step starts from: what any step leaves written
            sweep.written = set(top)
            body = self.body(loop.body)
            grown = top | sweep.written
            if grown == top:
                break
            top = grown
        end = set(sweep.written)
        body += self.zeros(top - end, loop.number, again=True)
        before = [z for z in self.zeros(top - entry, loop.number) if isinstance(z, Block)]
        sweep.written = top
        if not _statements(body):
            restores = any(isinstance(i, Restore) for i in _items(body))
            return [LoopBlock(loop, [], body)] if restores else []
        return [LoopBlock(loop, [st for b in before for st in b.statements], body)]

    def zeros(self, gradients: set, number: int, again: bool = False) -> list:
        """``dv = 0.0`` for each gradient (list elements need none: their list starts at
        zero); typed by lowering."""
        owner = {v: k for k, v in self.names.names.items()}
        statements = []
        for g in sorted(gradients, key=lambda l: (l.name, str(getattr(l, "index", "")))):
            if not isinstance(g, Var) or g.name not in owner:
                continue
            statements.append(
                GradStatement(
                    gradient=g,
                    accumulate=False,
                    value=Num(0.0),
                    local=Num(0.0),
                    of=Var(owner[g.name]),
                    stage=number,
                    note="for the step before" if again else "",
                    intermediate=True,
                )
            )
        if not statements:
            return []
        stage = Stage(number, "", "", Num(0.0))
        return [Block(stage, statements)]


def _renamed(e: Expr, name: Var, value: Expr) -> Expr:
    """``e`` with every read of ``name`` replaced (array nodes too)."""
    return transform_array(e, lambda n: value if n == name else None)


def _written_in(items: list) -> set:
    return {st.gradient for st in _statements(items)}


def _without_zeros(items: list, gradients: set) -> list:
    """An arm's items without the zeros it sets first for these gradients (set before the
    `if` instead): an inner `if`'s zeros move out to the outer one."""
    out = []
    leading = True
    for item in items:
        if leading and isinstance(item, Block) and not item.stage.target:
            kept = [st for st in item.statements if st.gradient not in gradients]
            if kept:
                out.append(replace(item, statements=kept))
            continue
        leading = False
        out.append(item)
    return out


def _retype(original: Expr, renamed: Expr, expressions: dict) -> None:
    """The reader's types of an expression, for the same expression with a name replaced."""
    if original in expressions and renamed not in expressions:
        expressions[renamed] = expressions[original]
    for a, b in zip(original.children(), renamed.children()):
        _retype(a, b, expressions)


def _differentiate_tree(
    sweep: _Sweep, paths: dict, reaches: set[str], upstreams: list[str]
) -> Backward:
    program, names = sweep.program, sweep.names
    wrt_names = sweep.wrt_names
    stages = program.stages
    sites: dict[str, int] = {}
    for stage in stages:
        sites[stage.target] = sites.get(stage.target, 0) + 1
    in_compound = {
        st.target
        for node in program.body
        if not isinstance(node, Stage)
        for st in stages_in([node])
    }
    mutable = {t for t, n in sites.items() if n > 1} | in_compound
    sweep.written = {Var(u) for u in upstreams}
    tree = _TreeSweep(sweep, paths, mutable)
    body = tree.body(program.body)
    returned = {names.assign(n) for n in wrt_names}
    body = _tree_without_unread(body, returned)

    gradient_names = set(names.names.values())
    backward_reads = _reads_of(body, gradient_names)
    saved = _read_where_rebound(program, body, mutable & backward_reads, gradient_names)
    stacks = _stack_names(
        saved | _counted_in_loops(program.body), program.user_names | gradient_names
    )
    params = {p.name for p in program.params}
    plan = _plan_saves(program.body, saved, stacks, params)
    if plan.unreplayable:
        stage = plan.unreplayable[0]
        raise _located(
            program,
            stage,
            f"`{stage.user_name}` is bound in more than one place inside a loop, but not before "
            "it, and the backward reads it",
            f"assign `{stage.user_name}` before the loop too (e.g. `{stage.user_name} = 0.0`), so "
            "every step starts from a known value",
        )
    body = _without_empty(_with_restores(body, stacks, plan))

    stage_targets = {s.target for s in stages}
    read = _with_inputs(stages, (_reads_of(body, gradient_names) | saved) & stage_targets)
    domain_checks = _with_inputs(stages, may_raise(program) & reaches) - read
    loops = {i.loop.number for i in _items(body) if isinstance(i, LoopBlock)}
    replay_body, read = _replay_tree(plan.replay, read | domain_checks, stages, loops)
    domain_checks -= read - domain_checks
    used = {n.stack for n in walk_nodes(replay_body) if isinstance(n, Save)}
    stacks = {n: s for n, s in stacks.items() if s in used}

    blocks = [b for b in _flat_blocks(body) if b.stage.target]
    params = {p.name: p for p in program.params}
    # A parameter's gradient is what is left when the sweep is done: a parameter bound again
    # in a branch leaves the gradient of its new value behind, which is not its own.
    zero = [
        n
        for n in wrt_names
        if not program.param(n).is_list and Var(names.assign(n)) not in sweep.written
    ]
    return Backward(
        program=program,
        wrt=wrt_names,
        upstream=upstreams[0],
        upstreams=upstreams,
        replay=[s for s in stages_in(replay_body)],
        blocks=blocks,
        gradient_names=names.names,
        zero=zero,
        renamed=names.renamed,
        domain_checks=domain_checks & {s.target for s in stages_in(replay_body)},
        body=body,
        replay_body=replay_body,
    )


def stages_in(body: list) -> list[Stage]:
    return [n for n in walk_nodes(body) if isinstance(n, Stage)]


def _items(body: list):
    """Every item of a backward tree, compound ones before their insides."""
    for item in body:
        yield item
        if isinstance(item, BranchBlock):
            yield from _items(item.then)
            yield from _items(item.orelse)
        elif isinstance(item, LoopBlock):
            yield from _items(item.body)


def _flat_blocks(body: list) -> list[Block]:
    return [i for i in _items(body) if isinstance(i, Block)]


def _statements(body: list) -> list[GradStatement]:
    found = [st for b in _flat_blocks(body) for st in b.statements]
    found += [st for i in _items(body) if isinstance(i, LoopBlock) for st in i.before]
    return found


def _reads_of(body: list, gradient_names: set[str]) -> set[str]:
    """The forward names the backward reads: in gradient statements, branch tests, and loop
    bounds (a `while` is not tested again: its steps are counted)."""
    exprs = [st.value for st in _statements(body)]
    for item in _items(body):
        if isinstance(item, BranchBlock):
            exprs.append(item.branch.test)
        elif isinstance(item, LoopBlock) and item.loop.index is not None:
            exprs += [item.loop.start, item.loop.stop]
    reads = set()
    for e in exprs:
        for n in walk(e):
            if isinstance(n, Var) and n.name not in gradient_names:
                reads.add(n.name)
            elif isinstance(n, Elem) and not isinstance(n.index, int):
                reads.update(v.name for v in walk(n.index) if isinstance(v, Var))
    return reads


def _read_where_rebound(
    program: Program, body: list, candidates: set[str], gradient_names: set[str]
) -> set[str]:
    """The names the backward reads at a point where the forward's value differs from the
    last one bound: a read before a later binding, or inside a loop that binds the name."""
    spans: dict[str, list[tuple[int, int]]] = {}  # name -> (first, last) numbers to guard
    for node in walk_nodes(program.body):
        if isinstance(node, Loop):
            inside = [n.number for n in walk_nodes(node.body)] or [node.number]
            for st in stages_in(node.body):
                spans.setdefault(st.target, []).append((node.number, max(inside)))
    for st in program.stages:
        spans.setdefault(st.target, []).append((0, st.number))
    reads: list[tuple[int, Expr]] = []
    for item in _items(body):
        if isinstance(item, Block) and item.stage.target:
            reads += [(item.stage.number, st.value) for st in item.statements]
        elif isinstance(item, BranchBlock):
            reads.append((item.branch.number, item.branch.test))
        elif isinstance(item, LoopBlock) and item.loop.index is not None:
            reads += [(item.loop.number, item.loop.start), (item.loop.number, item.loop.stop)]
    saved = set()
    for number, e in reads:
        for name in _names(e) & candidates:
            if any(lo <= number <= hi for lo, hi in spans.get(name, ())):
                saved.add(name)
    return saved


def _tree_without_unread(body: list, returned: set[str]) -> list:
    """Drop gradient statements nothing reads (as _without_unread, over the tree)."""
    while True:
        statements = _statements(body)
        read = {l.name for st in statements for l in leaves(st.value) if isinstance(l, Var)}
        keep = read | returned
        before = len(statements)
        body = _prune(body, keep)
        if len(_statements(body)) == before:
            return body


def _prune(body: list, keep: set[str]) -> list:
    out = []
    for item in body:
        if isinstance(item, Block):
            kept = [st for st in item.statements if st.gradient.name in keep]
            if kept:
                out.append(replace(item, statements=kept))
        elif isinstance(item, BranchBlock):
            then, orelse = _prune(item.then, keep), _prune(item.orelse, keep)
            if then or orelse:
                out.append(BranchBlock(item.branch, then, orelse))
        elif isinstance(item, LoopBlock):
            inner = _prune(item.body, keep)
            if _has_work(inner):
                before = [st for st in item.before if st.gradient.name in keep]
                out.append(LoopBlock(item.loop, before, inner))
        else:
            out.append(item)
    return out


def _replay_tree(
    body: list, wanted: set[str], stages: list[Stage], loops: set[int]
) -> tuple[list, set[str]]:
    """The forward replay: the stages the backward reads (and what they are computed from),
    inside the loops and branches that run them, with what decides how those run: a loop's
    bounds and test, the tests of the branches that hold a stage or a `break`."""
    read = set(wanted)
    while True:
        replay = _replay_nodes(body, read, loops)
        needed = set(read)
        for node in replay:
            needed |= _read_by(node)
        needed = _with_inputs(stages, needed & {s.target for s in stages}) | read
        if needed == read:
            return replay, read
        read = needed


def _names(e: Expr) -> set[str]:
    return {n.name for n in walk(e) if isinstance(n, Var)}


def _replay_nodes(body: list, read: set[str], loops: set[int]) -> list:
    out = []
    for node in body:
        if isinstance(node, Stage):
            if node.target in read:
                out.append(node)
        elif isinstance(node, Save):
            if node.name in read or node.count:
                out.append(node)
        elif isinstance(node, Exit):
            out.append(node)
        elif isinstance(node, Branch):
            then, orelse = _replay_nodes(node.then, read, loops), _replay_nodes(
                node.orelse, read, loops
            )
            if _runs_something(then + orelse) or _exits(then + orelse):
                out.append(replace(node, then=then, orelse=orelse))
        elif isinstance(node, Loop):
            inner = _replay_nodes(node.body, read, loops)
            if _runs_something(inner) or (node.number in loops and node.steps):
                out.append(replace(node, body=inner))
    # a counted loop's saved count goes with the loop
    counted = {n.steps for n in out if isinstance(n, Loop)}
    return [
        n
        for n in out
        if not (isinstance(n, Save) and n.count) or (n.name in counted and n.stage in loops)
    ]


def _exits(body: list) -> bool:
    """Whether a `break` or `continue` is in the body (not of a loop inside it)."""
    for node in body:
        if isinstance(node, Exit):
            return True
        if isinstance(node, Branch) and _exits(node.then + node.orelse):
            return True
    return False


def _runs_something(body: list) -> bool:
    """Stages, or a loop kept for its step count."""
    return any(isinstance(n, (Stage, Loop)) for n in walk_nodes(body))


def _stack_names(saved: set[str], taken: set[str]) -> dict[str, str]:
    stacks = {}
    for name in sorted(saved):
        candidate, k = f"{name}_saved", 1
        while candidate in taken:
            candidate, k = f"{name}_saved_{k}", k + 1
        taken = taken | {candidate}
        stacks[name] = candidate
    return stacks


@dataclass
class _SavePlan:
    """Where the replay saves values and the backward puts them back (see _plan_saves)."""

    replay: list  # the program's tree with Save nodes
    before: set  # (stage number, name): saved before that binding, restored after its gradient
    tops: dict  # forward node number -> names saved after it, restored at the top of its block
    counted: dict  # loop number -> its `steps` counter, saved after it (a loop inside a loop)
    unreplayable: list


def _plan_saves(body: list, saved: set[str], stacks: dict, params: set[str]) -> _SavePlan:
    """The replay with each saved name pushed where the backward needs it back.

    Where a value was there already on every path (a parameter, a value bound before the
    loop or earlier in the step), the value before the binding is pushed, and popped right
    after the binding's gradient statements. A name a loop binds first (not before it) is
    pushed once per step after the last statement of its block that binds it (an `if` binding
    it on every path counts as one statement): the value the step ends with, popped at the
    top of the block's reverse. A first binding outside loops needs nothing: the bindings
    after it restore its value. A loop inside a loop saves its step count (`steps`) after it,
    popped before its reverse."""
    plan = _SavePlan([], set(), {}, {}, [])

    def walk_body(nodes: list, bound: set, in_loop: bool, handled: set) -> tuple[list, set]:
        out: list = []
        firsts: dict[str, int] = {}  # a loop's own names first bound in this block
        for k, node in enumerate(nodes):
            new = (_binds_on_every_path(node) & saved) - bound - handled if in_loop else set()
            if in_loop and isinstance(node, Loop):
                # a name an inner loop binds first, read after it: saved per outer step too
                later = {n for after in nodes[k + 1 :] for n in _read_by(after)}
                new = (_binds_anywhere(node) & saved & later) - bound - handled
            if isinstance(node, Stage):
                name = node.target
                if name in saved and name in bound:
                    out += [Save(name, stacks[name], node.number), node]
                    plan.before.add((node.number, name))
                else:
                    out.append(node)
            elif isinstance(node, Branch):
                then, then_bound = walk_body(node.then, bound, in_loop, handled | new)
                orelse, else_bound = walk_body(node.orelse, bound, in_loop, handled | new)
                out.append(replace(node, then=then, orelse=orelse))
            elif isinstance(node, Loop):
                inner, _ = walk_body(node.body, bound, True, set())
                out.append(replace(node, body=inner))
                if in_loop and node.steps:
                    out.append(Save(node.steps, stacks[node.steps], node.number, count=True))
                    plan.counted[node.number] = node.steps
            else:
                out.append(node)
            for name in new:
                if name in firsts:
                    plan.unreplayable.append(_first_stage(node, name))
                firsts.setdefault(name, node.number)
            if isinstance(node, Stage) and node.target in saved and in_loop:
                if node.target not in bound and node.target not in handled | new:
                    plan.unreplayable.append(node)  # first bound on some paths only
            bound = bound | _binds_on_every_path(node)
            if isinstance(node, Branch):
                bound = bound | (then_bound & else_bound)
        for name, number in firsts.items():
            last = max(k for k, n in enumerate(out) if name in _binds_anywhere(n))
            save = Save(name, stacks[name], number)
            if isinstance(out[last], Branch) and _exits([out[last]]):
                out[last] = _saved_at_ends(out[last], save)  # a path may leave the step there
            else:
                out.insert(last + 1, save)
            plan.tops.setdefault(number, []).append(name)
        return out, bound

    plan.replay = walk_body(body, set(params), False, set())[0]
    return plan


def _saved_at_ends(branch: Branch, save: Save) -> Branch:
    """The branch with ``save`` at the end of every path through it: before a `break` or
    `continue` that leaves the step, at the end of an arm that goes on."""

    def at_end(nodes: list) -> list:
        if nodes and isinstance(nodes[-1], Exit):
            return nodes[:-1] + [save, nodes[-1]]
        if nodes and isinstance(nodes[-1], Branch) and _exits([nodes[-1]]):
            return nodes[:-1] + [_saved_at_ends(nodes[-1], save)]
        return nodes + [save]

    return replace(branch, then=at_end(branch.then), orelse=at_end(branch.orelse))


def _binds_on_every_path(node) -> set[str]:
    if isinstance(node, Stage):
        return {node.target}
    if isinstance(node, Branch):
        return _binds_all(node.then) & _binds_all(node.orelse)
    return set()  # a loop may run no step


def _binds_all(body: list) -> set[str]:
    found: set[str] = set()
    for node in body:
        found |= _binds_on_every_path(node)
    return found


def _binds_anywhere(node) -> set[str]:
    if isinstance(node, Save):
        return set()
    return {n.target for n in walk_nodes([node]) if isinstance(n, Stage)}


def _read_by(node) -> set[str]:
    """The names a forward node reads (its stages, tests and bounds)."""
    found: set[str] = set()
    for n in walk_nodes([node]):
        if isinstance(n, Stage):
            found |= _names(n.expr)
        elif isinstance(n, Branch):
            found |= _names(n.test)
        elif isinstance(n, Loop):
            for e in (n.start, n.stop, n.test):
                if e is not None:
                    found |= _names(e)
    return found


def _first_stage(node, name: str) -> Stage:
    return next(n for n in walk_nodes([node]) if isinstance(n, Stage) and n.target == name)


def _counted_in_loops(body: list) -> set[str]:
    """The step counters of loops inside loops (each outer step has its own count)."""
    found = set()
    for node in walk_nodes(body):
        if isinstance(node, Loop):
            found |= {n.steps for n in walk_nodes(node.body) if isinstance(n, Loop) and n.steps}
    return found


def _with_restores(body: list, stacks: dict, plan: _SavePlan) -> list:
    """The backward with each saved value popped back where the plan says: after the
    gradient statements of a binding whose value before was saved, at the top of a block for
    a name saved after its binding, before a nested counted loop for its step count."""

    def walk_body(items: list) -> list:
        out: list = []
        tops: list = []
        for item in items:
            number = _number_of(item)
            for name in plan.tops.get(number, ()):
                restore = Restore(name, stacks[name], number)
                if restore not in tops:
                    tops.append(restore)
            if isinstance(item, Restore):
                if (item.stage, item.name) in plan.before:
                    out.append(Restore(item.name, stacks[item.name], item.stage))
            elif isinstance(item, BranchBlock):
                out.append(BranchBlock(item.branch, walk_body(item.then), walk_body(item.orelse)))
            elif isinstance(item, LoopBlock):
                inner = _without_empty(walk_body(item.body))
                steps = plan.counted.get(item.loop.number)
                if steps and _has_work(inner):
                    out.append(Restore(steps, stacks[steps], item.loop.number))
                out.append(LoopBlock(item.loop, item.before, inner))
            else:
                if isinstance(item, Block):
                    for st in item.statements:
                        st.value = _stack_tops(st.value, stacks)
                out.append(item)
        return tops + out

    return walk_body(body)


def _number_of(item) -> int | None:
    if isinstance(item, Block):
        return item.stage.number if item.stage.target else None
    if isinstance(item, BranchBlock):
        return item.branch.number
    if isinstance(item, LoopBlock):
        return item.loop.number
    if isinstance(item, Restore):
        return item.stage
    return None


def _without_empty(body: list) -> list:
    """Loops and branches left with neither a gradient statement nor a restore are dropped."""
    out = []
    for item in body:
        if isinstance(item, BranchBlock):
            then, orelse = _without_empty(item.then), _without_empty(item.orelse)
            if _has_work(then) or _has_work(orelse):
                out.append(BranchBlock(item.branch, then, orelse))
        elif isinstance(item, LoopBlock):
            inner = _without_empty(item.body)
            if _has_work(inner):
                out.append(LoopBlock(item.loop, item.before, inner))
            elif item.before:
                out.append(Block(Stage(item.loop.number, "", "", Num(0.0)), item.before))
        else:
            out.append(item)
    return out


def _has_work(items: list) -> bool:
    return bool(_statements(items)) or any(isinstance(i, Restore) for i in _items(items))


def _stack_tops(e: Expr, stacks: dict) -> Expr:
    """The value before a binding, read from the top of its stack (``h_saved[-1]``)."""

    def top(n: Expr):
        if isinstance(n, Elem) and n.name.startswith(_STACK_TOP):
            return Elem(stacks[n.name[len(_STACK_TOP) :]], -1)
        return None

    return transform_array(e, top)


_STACK_TOP = "\u2032stack:"
