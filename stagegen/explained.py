"""What an explanation of scalar code holds: the model the computation (explanation.py) fills in
and the renderers (narrate.py: words, circuit.py: the drawing) read, and how its values are written.

It sits below all three so that none of them imports another in a circle: explanation.py builds
an Explanation (this model plus its rendering conveniences) and reaches the renderers; the
renderers read only what is defined here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .expr import Expr, Printer
from .program import Program, Stage
from .reverse import Backward
from .unroll import Unrolled

PRINT = Printer("math")  # expressions as the generated scalar code prints them

# ---------------------------------------------------------------------------- numbers


def short(value) -> str:
    """A value as people write it: integers without ``.0``, short decimals exactly
    (``0.5``, ``-2.25``), anything longer to 4 significant digits (``0.7311``)."""
    if value is None:
        return "?"
    v = float(value)
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return repr(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    text = repr(v)
    digits = text.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    if len(digits) <= 6 and "e" not in text:
        return text
    return f"{v:.4g}"


def precise(value) -> str:
    """A value to 10 significant digits, for comparisons (integers still without ``.0``)."""
    if value is None:
        return "?"
    v = float(value)
    if v == 0:
        return "0"
    if math.isfinite(v) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.10g}"


def point_text(v) -> str:
    """A point's value as written in titles: ``3``, ``[2, -3, -3]``."""
    return "[" + ", ".join(short(x) for x in v) + "]" if isinstance(v, list) else short(v)


# ---------------------------------------------------------------------------- the model


@dataclass
class GateInfo:
    """What a stage's right-hand side is, in the notes' terms."""

    name: str  # "add", "mul", "max", "sigmoid", ... ; "compound" or "copy"
    behaviour: str  # the gate table's sentence, or a description of a compound stage
    elementary: bool  # one gate whose inputs are names or numbers
    inputs: tuple[Expr, ...] = ()  # the gate's inputs


@dataclass
class ForwardStep:
    stage: Stage
    code: str  # "q = x + y"
    gate: GateInfo
    value: float | None  # None when explaining symbolically


@dataclass
class BackwardStep:
    """One gradient statement: ``gradient (=|+=) local * upstream``."""

    code: str  # "dq = z * df"
    stage: Stage
    gradient: str  # "dq", "dw[0]"
    accumulate: bool
    of: str  # the forward value whose gradient this is: "q", "w[0]"
    local: str  # the local gradient as code: "z"
    upstream: str  # the gradient flowing in: "df"
    reason: (
        str  # why the local gradient is what it is, in the gate's terms ("" if the header says it)
    )
    earlier: list[int]  # for +=: the stages whose contributions it adds to
    local_value: float | None = None
    upstream_value: float | None = None
    contribution: float | None = None  # local * upstream, as the generated code computes it
    before: float | None = None  # for +=: the gradient before this statement
    result: float | None = None  # the gradient after it


@dataclass
class BackwardBlock:
    stage: Stage
    header: str  # "f = q * z"
    gate: GateInfo
    steps: list[BackwardStep]


@dataclass
class InputGradient:
    name: str  # "x", "w[0]"
    gradient: str  # "dx", "dw[0]"
    stages: list[int]  # the stages whose statements write it (empty: no path to the output)
    value: float | None = None
    sympy: float | None = None
    finite_difference: float | None = None

    @property
    def agrees_with_sympy(self) -> bool | None:
        if self.value is None or self.sympy is None:
            return None
        return math.isclose(self.value, self.sympy, rel_tol=1e-9, abs_tol=1e-12)

    generated: float | None = None  # what the generated backward returns (a path's explanation)

    @property
    def agrees_with_generated(self) -> bool | None:
        if self.value is None or self.generated is None:
            return None
        return math.isclose(self.value, self.generated, rel_tol=1e-12, abs_tol=1e-15)

    @property
    def agrees_with_finite_difference(self) -> bool | None:
        if self.value is None or self.finite_difference is None:
            return None
        scale = max(1.0, abs(self.value))
        return abs(self.value - self.finite_difference) <= 1e-5 * scale


@dataclass
class ExplanationData:
    """One function's forward and backward pass, explained at a point or symbolically."""

    program: Program  # the program explained (the split one with --split)
    backward: Backward
    point: dict[str, float | list[float]] | None  # None: symbolic
    forward: list[ForwardStep]
    upstream: str  # "df"
    blocks: list[BackwardBlock]
    inputs: list[InputGradient]
    split: bool = False
    notes: list[str] = field(default_factory=list)  # e.g. why SymPy gave no value

    @property
    def symbolic(self) -> bool:
        return self.point is None

    @property
    def output(self) -> str:
        return self.program.output.name

    @property
    def output_value(self) -> float | None:
        return self.forward[-1].value if self.forward else None

    def value_of(self, name: str) -> float | None:
        """The forward value of a stage, a parameter or a list element ("w[0]") at the point."""
        if self.point is None:
            return None
        for step in self.forward:
            if step.stage.target == name:
                return step.value
        base, _, index = name.partition("[")
        value = self.point.get(base)
        if isinstance(value, list):
            return value[int(index.rstrip("]"))] if index else None
        return value

    def explained_as(self, program: Program) -> "ExplanationData":
        """The same point explained for another version of the program (its split, elementary
        gates, which the circuit draws). Computed by explanation.Explanation: this model only
        holds results."""
        raise NotImplementedError("explanation.Explanation explains programs")

    def __repr__(self) -> str:
        """One line, for a REPL or a notebook without HTML: ``str()`` (print) gives the text."""
        where = (
            "symbolically"
            if self.symbolic
            else "at " + ", ".join(f"{k}={point_text(v)}" for k, v in self.point.items())
        )
        lines = 1 + sum(len(b.steps) for b in self.blocks) + len(self.backward.zero)
        return f"<Explanation of {self.program.name} {where}: {lines} backward lines>"


# ---------------------------------------------------------------------------- a path


def folded(steps: list, first: int = 3, last: int = 2) -> tuple[list, list, list]:
    """A loop's steps as shown: the first few, the ones folded away, the last few (nothing is
    folded unless at least two steps would be)."""
    if len(steps) - first - last < 2:
        return list(steps), [], []
    return list(steps[:first]), list(steps[first:-last]), list(steps[-last:])


@dataclass
class PathExplanationData:
    """A function with branches and loops, explained along the path its forward takes at one
    point: the path (which arm each ``if`` ran, each loop's steps) and the straight-line program
    of the stages run, explained as straight-line code is (``straight``). The generated
    backward (with its loops) is shown as written, and its gradients at the point compared."""

    program: Program  # as read: the block tree
    path: Unrolled
    straight: ExplanationData  # the stages run, explained (its inputs are this one's)
    backward_code: list[str]  # the generated backward function, as `stagegen FILE.py` writes it
    split: bool = False
    notes: list[str] = field(default_factory=list)

    symbolic = False

    @property
    def point(self) -> dict:
        return self.straight.point

    @property
    def inputs(self) -> list[InputGradient]:
        return self.straight.inputs

    @property
    def output(self) -> str:
        return self.straight.output

    def __repr__(self) -> str:
        where = ", ".join(f"{k}={point_text(v)}" for k, v in self.point.items())
        stages = len(self.straight.forward)
        return f"<Explanation of {self.program.name} at {where}: a path of {stages} stages>"
