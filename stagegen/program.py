"""The forward function as the rest of the pipeline sees it: parameters, a body of numbered
stages (a tree of blocks), output.

Every stage binds a fresh name (re-assignments are versioned: ``y``, ``y_1``, ...), so an
expression means the same thing wherever it is read: that is what makes pruning, reordering
and substitution safe downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import StagegenError
from .expr import Expr, Var


@dataclass
class Param:
    name: str
    is_list: bool = False
    length: int = 0  # for a list: highest constant index read, plus one
    default: str | None = None  # the default's source text, kept in the backward signature
    # Array functions only: the annotated shape (None for a plain number), and whether the
    # parameter is read as indices (integer labels, which have no gradient).
    shape: tuple | None = None
    labels: bool = False


@dataclass
class Stage:
    number: int  # the #(n) of the forward line
    target: str  # its name in the generated code
    user_name: str  # the name the user wrote (differs from target after a re-assignment)
    expr: Expr
    line: int = 0  # where the user wrote it
    col: int = 0
    comment: str = ""  # the user's trailing comment, kept on the forward replay


# The program's body is a tree of blocks. Today every node is a stage (one forward line); loops,
# branches and call sites become nodes that hold bodies of their own (issues 14 and 15), and
# `Program.stages` lists the stages of the whole tree in program order.
Node = Stage


def stages_of(body: list[Node]) -> list[Stage]:
    """Every stage of a block tree, in program order."""
    return [node for node in body if isinstance(node, Stage)]


@dataclass
class Program:
    name: str
    params: list[Param]
    body: list[Node]  # the block tree
    output: Var  # the returned value
    returned_name: str | None  # the user's name for it; None when an expression is returned
    filename: str = "<string>"
    line: int = 0
    docstring: str = ""
    user_names: set[str] = field(default_factory=set)  # every name the function reads or binds
    def_line: str = ""  # the source text of the `def` line, for errors about the whole function
    # Array functions only: the name NumPy is imported as, and every value's type, keyed by
    # stage target or parameter name: arrays.parse.Type (shape, kind).
    numpy: str | None = None
    types: dict = field(default_factory=dict)

    def error(self, message: str, hint: str = "", error_class=StagegenError) -> StagegenError:
        """An error about the function as a whole, located at its `def` line."""
        col = len(self.def_line) - len(self.def_line.lstrip()) + 1
        return error_class(
            message,
            hint,
            filename=self.filename,
            line=self.line,
            col=col,
            source_line=self.def_line,
        )

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    @property
    def stages(self) -> list[Stage]:
        return stages_of(self.body)

    @property
    def stage_of(self) -> dict[str, Stage]:
        return {s.target: s for s in self.stages}
