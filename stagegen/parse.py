"""Frontend: Python source -> Program. Reads the source; never imports or runs it.

Everything outside the forward language is refused here, up front, with an error that points
at the construct and says what to write instead, so that later passes can trust their input.
"""

from __future__ import annotations

import ast
import io
import math
import tokenize
from dataclasses import dataclass, field

from .errors import Source, StagegenError
from .expr import (
    And,
    Bin,
    Call,
    Compare,
    Cond,
    Const,
    Elem,
    Expr,
    Invoke,
    Item,
    Neg,
    Saved,
    Not,
    Num,
    Or,
    Var,
)
from .gates import FUNCTIONS, MATH_CONSTANTS
from .control import ControlFlowReader, always_leaves
from .program import Param, Program, Stage

BUILTINS = ("abs", "max", "min")
MATH_FUNCTIONS = sorted(set(FUNCTIONS) - set(BUILTINS))
SUPPORTED_FUNCTIONS = ", ".join(f"math.{n}" for n in MATH_FUNCTIONS) + ", abs, max, min"

# Python's arithmetic operators as the expression IR spells them (the array reader reads the
# same ones).
BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
AUGMENTED = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_OP_SPELLING = {
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
}

# The comparisons a condition may make, as the expression IR spells them.
COMPARISONS = {
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
_NOT_COMPARISONS = {ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}

# Conditional expressions nested in one expression, at most: black writes each level of the
# backward's selection in parentheses, and Python reads at most 200 of them.
MAX_CONDITIONAL_NESTING = 100

# Statements outside the language: (message, what to do instead).
# A list looped over has no constant length to read: the proof samples lists this long.
LOOPED_LIST_LENGTH = 4

_STATEMENTS = {
    ast.AsyncFor: ("`async for` is not supported", "write straight-line code in a plain def"),
    ast.Try: (
        "`try` statements are not supported",
        "keep error handling outside the function you differentiate",
    ),
    ast.With: (
        "`with` statements are not supported",
        "keep the context manager outside the function you differentiate",
    ),
    ast.AsyncWith: ("`async with` is not supported", "write straight-line code in a plain def"),
    ast.FunctionDef: (
        "nested functions are not supported",
        "define the helper at module level and inline its body here",
    ),
    ast.AsyncFunctionDef: (
        "nested functions are not supported",
        "define the helper at module level and inline its body here",
    ),
    ast.ClassDef: (
        "class definitions inside the function are not supported",
        "define classes at module level, and pass numbers in",
    ),
    ast.Delete: ("`del` is not supported", "stop using the name instead of deleting it"),
    ast.Global: ("`global` is not supported", "pass the value in as a parameter"),
    ast.Nonlocal: ("`nonlocal` is not supported", "pass the value in as a parameter"),
    ast.Raise: (
        "`raise` is not supported",
        "check inputs before calling the function you differentiate",
    ),
    ast.Assert: (
        "`assert` is not supported",
        "check inputs before calling the function you differentiate",
    ),
    ast.Import: (
        "imports inside the function are not supported",
        "import at the top of the module",
    ),
    ast.ImportFrom: (
        "imports inside the function are not supported",
        "import at the top of the module",
    ),
}
if hasattr(ast, "Match"):
    _STATEMENTS[ast.Match] = (
        "`match` statements are not supported",
        "choose between values with max(), min() or abs()",
    )
if hasattr(ast, "TryStar"):
    _STATEMENTS[ast.TryStar] = _STATEMENTS[ast.Try]

# Expressions outside the language.
_EXPRESSIONS = {
    ast.Compare: (
        "comparisons are not values here",
        "choose between values with a conditional expression, `a if x > 0 else b`",
    ),
    ast.BoolOp: (
        "`and`/`or` are not values here",
        "use them in a condition: `a if x > 0 and y > 0 else b`",
    ),
    ast.NamedExpr: (
        "the walrus operator := is not supported",
        "assign the value in a statement of its own",
    ),
    ast.Lambda: ("lambda is not supported", "write the expression inline"),
    ast.ListComp: ("comprehensions are not supported", "write one stage per element"),
    ast.SetComp: ("comprehensions are not supported", "write one stage per element"),
    ast.DictComp: ("comprehensions are not supported", "write one stage per element"),
    ast.GeneratorExp: ("generator expressions are not supported", "write the terms out: a + b + c"),
    ast.JoinedStr: ("f-strings are not numbers", "compute with numbers only"),
    ast.List: (
        "list values are not supported",
        "read list parameters element by element, w[0], and return one number",
    ),
    ast.Tuple: (
        "tuple values are not supported",
        "return one number; unpack as `a, b = e1, e2` if you need two names",
    ),
    ast.Set: ("set values are not supported", "compute with numbers only"),
    ast.Dict: ("dict values are not supported", "compute with numbers only"),
    ast.Yield: ("`yield` is not supported", "return one value"),
    ast.YieldFrom: ("`yield from` is not supported", "return one value"),
    ast.Await: ("`await` is not supported", "write a plain def"),
    ast.Starred: ("starred expressions are not supported", "list the values one by one"),
    ast.Slice: (
        "slices are not supported",
        "read one element at a time with a constant index, w[0]",
    ),
}


def decode_source(data: bytes, filename: str) -> str:
    """The text of a source file, or a located error when it is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = data.decode("utf-8", errors="replace")  # for the source line under the message
        before = data[: exc.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise Source(shown, filename).error_at(
            line,
            col,
            f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
            "save the file as UTF-8",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    check_no_nul(Source(text, filename))
    return text


def check_no_nul(source: Source) -> None:
    if "\x00" in source.text:
        before = source.text[: source.text.index("\x00")]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise source.error_at(
            line, col, "file contains a NUL byte: it is not Python source", "pass a .py file"
        )


def parse_source(source: Source) -> ast.Module:
    check_no_nul(source)
    try:
        return ast.parse(source.text, filename=source.filename)
    except SyntaxError as exc:
        line = exc.lineno or 1
        col = exc.offset or 1
        message = exc.msg if exc.msg.startswith("invalid syntax") else f"invalid syntax: {exc.msg}"
        raise source.error_at(
            line, col, message, "fix the syntax; the file must be valid Python"
        ) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise source.error_at(
            1, 1, f"cannot parse this file: {exc}", "pass a valid Python module"
        ) from None


@dataclass
class MathNames:
    """What the module's imports make of a name: the math module, a math function or constant."""

    modules: set[str] = field(default_factory=lambda: set())
    functions: dict[str, str] = field(default_factory=dict)  # local name -> math function
    constants: dict[str, str] = field(default_factory=dict)  # local name -> "pi" / "e" / "tau"
    other_imports: set[str] = field(default_factory=set)  # names bound by any other import
    module_names: set[str] = field(default_factory=set)  # other names bound at module level
    numpy: set[str] = field(default_factory=set)  # names bound to the numpy module

    @classmethod
    def from_module(cls, module: ast.Module) -> "MathNames":
        names = cls()
        for node in module.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    if alias.name == "math":
                        names.modules.add(bound)
                    elif alias.name == "numpy":
                        names.numpy.add(bound)
                    else:
                        names.other_imports.add(bound)
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    bound = alias.asname or alias.name
                    if (
                        node.module == "math"
                        and alias.name in FUNCTIONS
                        and alias.name not in BUILTINS
                    ):
                        names.functions[bound] = alias.name
                    elif node.module == "math" and alias.name in MATH_CONSTANTS:
                        names.constants[bound] = alias.name
                    else:
                        names.other_imports.add(bound)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            names.module_names.add(n.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.module_names.add(node.name)
        return names

    @classmethod
    def from_globals(cls, namespace: dict) -> "MathNames":
        """For the decorator: what the function's globals bind (imports may be anywhere)."""
        import math

        names = cls()
        for name, value in namespace.items():
            if value is math:
                names.modules.add(name)
            elif getattr(value, "__name__", None) == "numpy" and hasattr(value, "ndarray"):
                names.numpy.add(name)
            elif (
                callable(value)
                and getattr(value, "__module__", None) == "math"
                and value.__name__ in FUNCTIONS
            ):
                names.functions[name] = value.__name__
            elif (
                isinstance(value, float)
                and name in ("pi", "e", "tau")
                and value == getattr(math, name)
            ):
                names.constants[name] = name
            elif not name.startswith("__"):
                names.module_names.add(name)
        return names


def comments_by_line(text: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return comments


class _Versions:
    """Names in the generated code: the first binding keeps the user's name, later ones are
    numbered (y, y_1, y_2), skipping any name the user already has."""

    def __init__(self, taken: set[str]):
        self.taken = set(taken)
        self.count: dict[str, int] = {}

    def fresh(self, user_name: str, first: bool) -> str:
        if first and user_name not in self.count:
            self.count[user_name] = 0
            return user_name
        k = self.count.get(user_name, 0)
        while True:
            k += 1
            candidate = f"{user_name}_{k}"
            if candidate not in self.taken:
                break
        self.count[user_name] = k
        self.taken.add(candidate)
        return candidate


class FunctionReader(ControlFlowReader):
    """Turns one ``def`` into a Program, refusing whatever falls outside the language."""

    def __init__(
        self, source: Source, names: MathNames, module_functions: set[str], comments: dict[int, str]
    ):
        self.src = source
        self.names = names
        self.module_functions = module_functions
        self.comments = comments
        # The module's functions already read, which this one may call (read_programs reads
        # callees before their callers).
        self.callees: dict[str, Program] = {}

    # -- entry point -------------------------------------------------------------------

    def read(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Program:
        if isinstance(fn, ast.AsyncFunctionDef):
            raise self.src.error(fn, "async functions are not supported", "write a plain `def`")
        for decorator in fn.decorator_list:
            if not _is_staged_decorator(decorator):
                raise self.src.error(
                    decorator,
                    "a decorator may change what the function computes, and stagegen "
                    "differentiates the body as written",
                    "remove the decorator (only stagegen's own @staged is allowed)",
                )
        self.fn = fn
        self.user_names = self._all_names(fn)
        self.versions = _Versions(self.user_names)
        params = self._params(fn)
        self.params = {p.name: p for p in params}
        self.env: dict[str, Expr] = {p.name: Var(p.name) for p in params}
        self.list_params: set[str] = set()  # decided by use: a parameter read as w[0] is a list
        self.scalar_params: set[str] = set()  # parameters read as plain numbers
        self.stages: list[Stage] = []
        self.assigned_later = {
            n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        self._start_blocks()
        self.integers: set[str] = set()  # loop indices
        self.ended_indices: set[str] = set()  # loop indices (the user's names) after their loop
        self.integer_values: set[str] = set()  # names bound to counts (k = 0; k = k + 1)
        self.trip_counts: set[str] = set()  # parameters compared with counts
        self.placeholders: set[str] = set()  # `out = None` until `out` is bound
        self.held_calls: dict[str, Invoke] = {}  # the stage holding a call's several values
        self.reading_saved = False  # a name read into a tuple of saved values
        self.saved_positions: list[int] = []  # returned values that are saved values
        self.element_names: set[str] = set()  # `x` of `for x in xs`: read as xs[i]
        self.looped_lists: set[str] = set()

        body = list(fn.body)
        docstring = ""
        if body and _is_string_statement(body[0]):
            docstring = body[0].value.value
            body = body[1:]
        self.final: tuple[Var, str | None] | None = None
        self.several: list[tuple[Var, str | None]] = []
        if any(isinstance(stmt, (ast.If, ast.For, ast.While)) for stmt in body):
            self._sequence(body)
            self._decide_branches(self.block)
            self._mark_trip_counts()
            if not always_leaves(body):
                raise self.src.error(
                    fn,
                    f"some paths through `{fn.name}` end without a `return`",
                    "return a value on every path",
                )
        else:
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.Return):
                    if i != len(body) - 1:
                        raise self.src.error(
                            body[i + 1],
                            "code after `return` never runs",
                            "remove it, or move the return to the end",
                        )
                    self.final = self._return(stmt)
                else:
                    self._statement(stmt)
        if self.output_name is not None:
            output, returned_name = Var(self.output_name), None
        elif self.final is not None:
            output, returned_name = self.final
        else:
            raise self.src.error(
                fn,
                f"function `{fn.name}` has no return statement",
                "end it with `return <the value to differentiate>`",
            )
        for name in self.looped_lists:
            self.params[name].length = max(self.params[name].length, LOOPED_LIST_LENGTH)
        for p in params:
            p.is_list = p.name in self.list_params
        return Program(
            name=fn.name,
            params=params,
            body=self.block,
            output=output,
            returned_name=returned_name,
            filename=self.src.filename,
            line=fn.lineno + self.src.line_offset,
            docstring=docstring,
            user_names=self.user_names | set(self.versions.taken),
            several=self.several,
            returns=getattr(self, "returned_count", 1),
            saved=list(self.saved_positions),
            def_line=(
                (" " * self.src.col_offset + self.src.lines[fn.lineno - 1])
                if fn.lineno <= len(self.src.lines)
                else ""
            ),
        )

    # -- parameters --------------------------------------------------------------------

    def _params(self, fn) -> list[Param]:
        a = fn.args
        if a.vararg:
            raise self.src.error(
                a.vararg, f"*{a.vararg.arg} is not supported", "list the parameters one by one"
            )
        if a.kwarg:
            raise self.src.error(
                a.kwarg, f"**{a.kwarg.arg} is not supported", "list the parameters one by one"
            )
        if a.kwonlyargs:
            raise self.src.error(
                a.kwonlyargs[0],
                "keyword-only parameters are not supported",
                "make them positional (drop the `*`)",
            )
        positional = list(a.posonlyargs) + list(a.args)
        if not positional:
            raise self.src.error(
                fn,
                f"function `{fn.name}` takes no parameters: there is nothing to differentiate",
                "add the inputs as parameters",
            )
        defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(
            a.defaults
        )
        params = []
        seen: dict[str, ast.arg] = {}
        for arg, default in zip(positional, defaults):
            if arg.arg in seen:
                raise self._duplicate_parameter(seen[arg.arg], arg)
            seen[arg.arg] = arg
            text = None
            if default is not None:
                try:
                    value = ast.literal_eval(default)
                except ValueError:
                    value = None
                if not _is_numeric_literal(value):
                    raise self.src.error(
                        default,
                        "a default value must be a number or a list of numbers",
                        "write the value as a literal, e.g. `y=2.0`",
                    )
                text = self.src.segment(default) or repr(value)
            params.append(Param(arg.arg, default=text))
        return params

    def _duplicate_parameter(self, first: ast.arg, again: ast.arg) -> StagegenError:
        """Python refuses a repeated parameter; it reads names in NFKC form, so `ﬁ` repeats
        `fi` (the syntax tree holds both as `fi`: the spelling is taken from the source)."""
        spelled, before = self.src.segment(again) or again.arg, self.src.segment(first) or first.arg
        spelled, before = spelled.split(":")[0].strip(), before.split(":")[0].strip()
        if spelled == before:
            message = f"the parameter `{spelled}` is given twice"
        else:
            message = (
                f"the parameter `{spelled}` repeats `{before}`: Python reads both as `{again.arg}` "
                "(it compares names in NFKC form)"
            )
        return self.src.error(again, message, "give each parameter its own name")

    # -- statements --------------------------------------------------------------------

    def _statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1:
                raise self.src.error(
                    stmt,
                    "chained assignment `a = b = ...` is not supported",
                    "assign one name per statement",
                )
            self._assign(stmt.targets[0], stmt.value, stmt)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self._assign(stmt.target, stmt.value, stmt)
            elif not isinstance(stmt.target, ast.Name):
                raise self._mutation(stmt.target)
        elif isinstance(stmt, ast.AugAssign):
            self._augassign(stmt)
        elif isinstance(stmt, ast.Pass):
            pass
        elif _is_string_statement(stmt):
            pass  # a string used as a comment
        elif isinstance(stmt, ast.Expr) and self._appends_to_saved(stmt.value):
            self._saved(stmt.value.args[0])  # a cache kept to be returned: nothing to compute
        elif isinstance(stmt, ast.Expr):
            inner = stmt.value
            if isinstance(inner, (ast.Yield, ast.YieldFrom, ast.Await)):
                raise self.src.error(inner, *_EXPRESSIONS[type(inner)])
            raise self.src.error(
                stmt,
                "this expression's value is thrown away",
                "assign it to a name, or remove it (printing is not supported)",
            )
        elif type(stmt) in _STATEMENTS:
            raise self.src.error(stmt, *_STATEMENTS[type(stmt)])
        else:
            raise self.src.error(
                stmt,
                f"`{type(stmt).__name__}` statements are not supported",
                "write straight-line assignments and one return",
            )

    def _assign(self, target: ast.expr, value: ast.expr, stmt: ast.stmt) -> None:
        if _is_none(value) or (
            isinstance(target, (ast.Tuple, ast.List))
            and isinstance(value, (ast.Tuple, ast.List))
            and all(_is_none(v) for v in value.elts)
        ):
            self._placeholders(target)
            return
        if isinstance(target, ast.Name) and isinstance(value, ast.Tuple):
            self._save(target, value)  # a cache, as the course keeps one
            return
        if isinstance(target, ast.Name) and isinstance(value, ast.List) and not value.elts:
            self._save(target, ast.Tuple(elts=[], ctx=ast.Load()))  # caches appended to it
            return
        if isinstance(target, ast.Name):
            self._bind(target, self._right_side(value, 1), stmt)
            return
        if isinstance(target, (ast.Tuple, ast.List)) and self._unpacks_shape(target, value, stmt):
            return
        if isinstance(target, (ast.Tuple, ast.List)) and self._invoked(value) is not None:
            self._unpack_call(target, value, stmt)
            return
        if isinstance(target, (ast.Tuple, ast.List)):
            if any(not isinstance(t, ast.Name) for t in target.elts):
                bad = next(t for t in target.elts if not isinstance(t, ast.Name))
                if isinstance(bad, ast.Starred):
                    raise self.src.error(
                        bad, "starred unpacking is not supported", "unpack a fixed number of names"
                    )
                raise self._mutation(bad)
            if not isinstance(value, (ast.Tuple, ast.List)):
                raise self.src.error(
                    value, "only a tuple written out can be unpacked", "write `a, b = e1, e2`"
                )
            if len(value.elts) != len(target.elts):
                raise self.src.error(
                    value,
                    f"{len(target.elts)} names but {len(value.elts)} values",
                    "give one value per name",
                )
            # All values are read before any name is bound: `a, b = b, a` swaps.
            values = [self.expr(v) for v in value.elts]
            if self.depth:  # names keep one name in a loop: a swap would read a new value
                for k, t in enumerate(target.elts):
                    later = [n for v in value.elts[k + 1 :] for n in ast.walk(v)]
                    if any(isinstance(n, ast.Name) and n.id == t.id for n in later):
                        raise self.src.error(
                            stmt,
                            f"inside a loop or branch, `{ast.unparse(stmt)[:40]}` reads `{t.id}` "
                            "after binding it",
                            "swap through a new name: `tmp = a`, `a = b`, `b = tmp`",
                        )
            for t, v in zip(target.elts, values):
                self._bind(t, v, stmt)
            return
        raise self._mutation(target)

    # -- calls to the module's own functions --------------------------------------------

    def _invoked(self, node: ast.expr) -> Program | None:
        """The callee's Program when ``node`` calls one of the module's functions."""
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            return None
        name = node.func.id
        if name in self.env or name in self.assigned_later or name == self.fn.name:
            return None  # a local shadows it, or recursion (refused where the call is read)
        return self.callees.get(name)

    def _right_side(self, node: ast.expr, wanted: int) -> Expr:
        """The value of an assignment's right side or a return: a call to one of the module's
        functions may stand there (and only there: the staged style names each call)."""
        callee = self._invoked(node)
        if callee is None:
            return self.expr(node)
        invoke = self._invoke(node, callee)
        if invoke.returns != wanted:
            raise self.src.error(
                node,
                f"`{callee.name}` returns {invoke.returns} values",
                (
                    f"unpack them: `{', '.join(_output_names(callee))} = {callee.name}(...)`"
                    if wanted == 1
                    else f"give one name per value ({invoke.returns})"
                ),
            )
        return invoke

    def _invoke(self, node: ast.Call, callee: Program) -> Invoke:
        self._positional_only(node)
        params = callee.params
        required = sum(1 for p in params if p.default is None)
        if not required <= len(node.args) <= len(params):
            want = f"{required}" if required == len(params) else f"{required} to {len(params)}"
            raise self.src.error(
                node,
                f"`{callee.name}` takes {want} arguments, not {len(node.args)}",
                f"call it as `{callee.name}({', '.join(p.name for p in params)})`",
            )
        for p in params:
            if p.is_list:
                raise self.src.error(
                    node,
                    f"`{callee.name}` reads `{p.name}` as a list, which calls cannot pass yet",
                    "pass numbers (or arrays), or inline the callee",
                )
        # A callee's trip count is an integer here too: a constant, a count, or a parameter
        # that becomes one (never differentiated).
        args = tuple(
            self._integer(a) if params[k].integer else self.expr(a) for k, a in enumerate(node.args)
        )
        # The parameters left out take their defaults; the backward is passed them, since
        # the upstream gradients follow the parameters.
        defaults = tuple(Num(ast.literal_eval(p.default), p.default) for p in params[len(args) :])
        differentiated = callee.differentiable_params()  # its backward returns these
        gradients = tuple(k for k, p in enumerate(params) if p.name in differentiated)
        return Invoke(callee.name, args, callee.returns, gradients, defaults, tuple(callee.saved))

    def _unpack_call(self, target: ast.Tuple | ast.List, value: ast.Call, stmt: ast.stmt) -> None:
        """``a, b = g(x)``: one stage holds what the call returns, one per name reads its part
        (all under the line's one number)."""
        invoke = self._right_side(value, len(target.elts))
        for t in target.elts:
            if not isinstance(t, ast.Name):
                raise self._mutation(t)
        held = self.versions.fresh(f"{invoke.function}_out", first=False)
        number = self._next_number()
        shown = ", ".join(t.id for t in target.elts)  # how explanations name the stage
        self._add_stage(held, shown, invoke, value, stmt, number=number)
        self.held_calls[held] = invoke
        for k, t in enumerate(target.elts):
            if k in invoke.saved:  # the callee's saved values: kept, to be returned
                self.env[t.id] = Saved((Item(Var(held), k),))
                self.placeholders.discard(t.id)
                continue
            self._bind(t, Item(Var(held), k), stmt, number=number)

    def _save(self, target: ast.Name, value: ast.Tuple) -> None:
        """``cache = (x, w, b)``: names kept together to be returned (no stage: nothing is
        computed, and saved values have no gradient)."""
        if target.id in self.params or self.depth:
            raise self.src.error(
                target,
                f"`{target.id} = (...)` here would keep a tuple in a name the code computes with",
                "keep saved values in a name of their own, bound once, outside loops and branches",
            )
        self.env[target.id] = self._saved(value)
        self.placeholders.discard(target.id)

    def _appends_to_saved(self, node: ast.expr) -> bool:
        """``caches.append(cache)`` to a list of saved values (``caches = []``)."""
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "append"
            and isinstance(node.func.value, ast.Name)
            and isinstance(self.env.get(node.func.value.id), Saved)
            and len(node.args) == 1
            and not node.keywords
        )

    def _saved(self, node: ast.expr) -> Expr:
        if isinstance(node, ast.Tuple):
            return Saved(tuple(self._saved(e) for e in node.elts))
        if not isinstance(node, ast.Name):
            raise self.src.error(
                node,
                "a tuple of saved values holds names only",
                "bind the value to a name first, then save the name",
            )
        self.reading_saved = True
        try:
            return self._load(node)
        finally:
            self.reading_saved = False

    def _placeholders(self, target: ast.expr) -> None:
        """`out = None` (`out, cache = None, None`), as course code writes before computing:
        the names are placeholders, and reading one before it is bound again is refused."""
        names = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        for t in names:
            if not isinstance(t, ast.Name):
                raise self._mutation(t)
            if t.id in self.params or self.depth:
                raise self.src.error(
                    t,
                    f"`{t.id} = None` here would change a value, not mark a placeholder",
                    "bind a value (a number or an array), or drop the line",
                )
            self.env.pop(t.id, None)
            self.placeholders.add(t.id)

    def _unpacks_shape(self, target, value, stmt) -> bool:
        return False  # array code unpacks `N, D = x.shape` (arrays/parse.py)

    def _augassign(self, stmt: ast.AugAssign) -> None:
        op = AUGMENTED.get(type(stmt.op))
        if op is None:
            spelled = _OP_SPELLING.get(type(stmt.op), "?")
            raise self.src.error(stmt, f"`{spelled}=` is not supported", "use += -= *= /= or **=")
        if not isinstance(stmt.target, ast.Name):
            raise self._mutation(stmt.target)
        current = self._load(
            ast.Name(
                id=stmt.target.id, ctx=ast.Load(), lineno=stmt.lineno, col_offset=stmt.col_offset
            )
        )
        self._bind(stmt.target, Bin(op, current, self.expr(stmt.value)), stmt)

    def _bind(self, target: ast.Name, value: Expr, stmt: ast.stmt, number: int | None = None):
        name = target.id
        if name in self.element_names or name in self.integers_by_user():
            raise self._refuse_rebinding(name, "a loop variable")
        self.placeholders.discard(name)
        generated = self._generated_name(name)
        if self._is_integer(value):  # a count: k = 0, k = k + 1
            self.integer_values.add(generated)
        else:
            self.integer_values.discard(generated)
        self.env[name] = Var(generated)
        self.partly_bound.discard(name)
        self._add_stage(generated, name, value, target, stmt, number=number)

    def integers_by_user(self) -> set[str]:
        return {u for u, v in self.env.items() if isinstance(v, Var) and v.name in self.integers}

    def _add_stage(
        self,
        target: str,
        user_name: str,
        value: Expr,
        at: ast.AST,
        stmt: ast.stmt,
        number: int | None = None,
    ):
        stage = Stage(
            number=number if number is not None else self._next_number(),
            target=target,
            user_name=user_name,
            expr=value,
            line=at.lineno + self.src.line_offset,
            col=at.col_offset + 1 + self.src.col_offset,
            comment=self.comments.get(getattr(stmt, "end_lineno", stmt.lineno) or stmt.lineno, ""),
        )
        self.stages.append(stage)
        self.block.append(stage)

    def _bind_output(self, name: str, value: Expr, stmt: ast.Return) -> None:
        self.env["<out>"] = Var(name)
        self._add_stage(name, name, value, stmt, stmt)

    def _returned_value(self, stmt: ast.Return) -> Expr:
        """The value a `return` gives back (several only from the one `return` at the end)."""
        if stmt.value is None:
            raise self.src.error(
                stmt, "`return` without a value", "return the value to differentiate"
            )
        if isinstance(stmt.value, (ast.Tuple, ast.List)):
            raise self.src.error(
                stmt.value,
                "returning several values is supported only from one `return` at the end",
                "bind each value in every branch, and return them together at the end",
            )
        return self._right_side(stmt.value, 1)

    def _return(self, stmt: ast.Return) -> tuple[Var, str | None]:
        if isinstance(stmt.value, (ast.Tuple, ast.List)) and not self.depth:
            return self._return_several(stmt)
        value = self._returned_value(stmt)
        if (
            isinstance(stmt.value, ast.Name)
            and isinstance(value, Var)
            and stmt.value.id not in self.params
        ):
            return value, stmt.value.id
        # An expression, or a parameter returned as it is: the output becomes a stage of its own.
        name = self.versions.fresh("out", "out" not in self.user_names and "out" not in self.env)
        self._bind_output(name, value, stmt)
        return Var(name), None

    def _return_several(self, stmt: ast.Return) -> tuple[Var, str | None]:
        """`return loss, scores`: each value an output with an upstream gradient of its own."""
        elements = stmt.value.elts
        if any(isinstance(e, ast.Starred) for e in elements):
            raise self.src.error(
                stmt.value,
                "a starred value cannot be returned",
                "return a fixed number of values: `return a, b`",
            )
        if len(elements) < 2:
            raise self.src.error(
                stmt.value,
                f"a {'tuple of one value' if elements else 'empty tuple'} is returned",
                "return the value itself: `return a`",
            )
        outputs: list[tuple[Var, str | None]] = []
        for k, element in enumerate(elements):
            if isinstance(element, ast.Tuple) or (
                isinstance(element, ast.Name)
                and (isinstance(self.env.get(element.id), Saved) or _names_a_cache(element.id))
            ):
                self._saved(element)  # checked, and returned as it is: it has no gradient
                self.saved_positions.append(k)
                continue
            value = self._right_side(element, 1)
            if (
                isinstance(element, ast.Name)
                and isinstance(value, Var)
                and element.id not in self.params
            ):
                outputs.append((value, element.id))
                continue
            stem = f"out{k}"
            name = self.versions.fresh(stem, stem not in self.user_names and stem not in self.env)
            self._add_stage(name, name, value, element, stmt)
            outputs.append((Var(name), None))
        seen = [v for v, _ in outputs]
        if len(set(seen)) != len(seen):
            twice = next(v for v in seen if seen.count(v) > 1)
            raise self.src.error(
                stmt.value,
                f"`{twice.name}` is returned twice",
                "return each value once (its two gradients would add)",
            )
        if not outputs:
            raise self.src.error(
                stmt.value,
                "every returned value is a tuple of saved values, which has no gradient",
                "return the value to differentiate too",
            )
        self.several = outputs
        self.returned_count = len(elements)
        return outputs[0]

    def _mutation(self, target: ast.expr) -> StagegenError:
        if isinstance(target, ast.Subscript):
            base = target.value.id if isinstance(target.value, ast.Name) else "a value"
            return self.src.error(
                target,
                f"assigning into `{base}[...]` mutates it, which is not supported",
                f"bind a new name instead, e.g. `{base}0 = ...`",
            )
        if isinstance(target, ast.Attribute):
            return self.src.error(
                target,
                "assigning to an attribute mutates an object, which is not supported",
                "bind a new name instead",
            )
        return self.src.error(
            target, "this assignment target is not supported", "assign to a plain name"
        )

    # -- expressions -------------------------------------------------------------------

    def expr(self, node: ast.expr) -> Expr:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._load(node)
        if isinstance(node, ast.BinOp):
            op = BINOPS.get(type(node.op))
            if op is None:
                return self._bad_operator(node)
            return Bin(op, self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                inner = self.expr(node.operand)
                return Neg(inner)
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand)
            if isinstance(node.op, ast.Not):
                raise self.src.error(
                    node,
                    "`not` gives a boolean, not a number",
                    "use it in a condition: `a if not x > 0 else b`",
                )
            raise self.src.error(
                node,
                "the bitwise operator `~` is not supported on real numbers",
                "use arithmetic: + - * / **",
            )
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        if isinstance(node, ast.IfExp):
            return self._conditional(node)
        if type(node) in _EXPRESSIONS:
            raise self.src.error(node, *_EXPRESSIONS[type(node)])
        raise self.src.error(
            node,
            f"`{type(node).__name__}` expressions are not supported",
            "use numbers, names, + - * / ** and math functions",
        )

    def _conditional(self, node: ast.IfExp) -> Expr:
        """``a if c else b``: the test is read first, as Python evaluates it."""
        depth = getattr(self, "_conditional_depth", 0)
        if depth >= MAX_CONDITIONAL_NESTING:
            raise self.src.error(
                node,
                f"more than {MAX_CONDITIONAL_NESTING} conditional expressions nested in one "
                "expression (the backward's line would nest too deeply for Python to read)",
                "bind an inner choice to a name in a statement of its own",
            )
        self._conditional_depth = depth + 1
        try:
            test = self.condition(node.test)
            return Cond(test, self.expr(node.body), self.expr(node.orelse))
        finally:
            self._conditional_depth = depth

    def condition(self, node: ast.expr) -> Expr:
        """A test, as a conditional expression (and an ``if`` or ``while``) reads it:
        comparisons of values (``<`` ``<=`` ``>`` ``>=`` ``==`` ``!=``, chained ``a < b < c``),
        joined by ``and``, ``or``, ``not``. A chain is the ``And`` of its links (each operand
        is read once; the printer writes the chain back). Anything else is refused, located."""
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in COMPARISONS:
                    spelled = _NOT_COMPARISONS.get(type(op), "this comparison")
                    raise self.src.error(
                        node,
                        f"`{spelled}` does not compare numbers",
                        "compare values with < <= > >= == !=",
                    )
            operands = [self._condition_operand(n, node) for n in [node.left, *node.comparators]]
            links = tuple(
                Compare(COMPARISONS[type(op)], a, b)
                for op, a, b in zip(node.ops, operands, operands[1:])
            )
            for a, b in zip(operands, operands[1:]):
                self._note_trip_count(a, b)
            return links[0] if len(links) == 1 else And(links)
        if isinstance(node, ast.BoolOp):
            items = tuple(self.condition(v) for v in node.values)
            return And(items) if isinstance(node.op, ast.And) else Or(items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return Not(self.condition(node.operand))
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            raise self.src.error(
                node,
                f"the condition is always {node.value}",
                "write the side that is taken, without the condition",
            )
        shown = self.src.segment(node) or ast.unparse(node)
        self.expr(node)  # anything that is not a value at all is refused as such
        raise self.src.error(
            node,
            f"`{shown}` is a number, not a condition",
            f"compare it: `{shown} != 0`, `{shown} > 0`, ...",
        )

    def _condition_operand(self, node: ast.expr, test: ast.Compare) -> Expr:
        """One side of a comparison in a condition (array code requires a number)."""
        return self.expr(node)

    def _constant(self, node: ast.Constant) -> Expr:
        v = node.value
        if isinstance(v, bool):
            raise self.src.error(node, f"`{v}` is a boolean, not a number", "write 1.0 or 0.0")
        if isinstance(v, (int, float)):
            if not _float_holds(v):  # 1e309 reads as inf; a 400-digit int is no float at all
                raise self.src.error(
                    node,
                    "this number is too large for a float (the largest is about 1.8e308)",
                    "use a smaller number",
                )
            return Num(v, self.src.segment(node) or repr(v))
        if isinstance(v, complex):
            raise self.src.error(node, "complex numbers are not supported", "use real numbers")
        if isinstance(v, (str, bytes)):
            raise self.src.error(node, "strings are not numbers", "compute with numbers only")
        if v is None:
            raise self.src.error(node, "`None` is not a number", "compute with numbers only")
        raise self.src.error(node, f"`{v!r}` is not a number", "compute with numbers only")

    def _load(self, node: ast.Name) -> Expr:
        name = node.id
        if name in self.env:
            if name in self.params and self.env[name] == Var(name) and name in self.list_params:
                raise self.src.error(
                    node,
                    f"`{name}` is a list here",
                    f"read one element with a constant index, e.g. `{name}[0]`",
                )
            if name in self.params and self.env[name] == Var(name):
                self.scalar_params.add(name)
            if name in self.ended_indices:
                raise self.src.error(
                    node,
                    f"`{name}` is a loop's index, read after the loop (Python keeps its last "
                    "value, which the backward would have to keep too)",
                    "use the value it ends at (e.g. `T - 1`), or read it inside the loop",
                )
            if isinstance(self.env[name], Saved) and not self.reading_saved:
                raise self.src.error(
                    node,
                    f"`{name}` holds saved values (a tuple), which nothing computes with",
                    f"return `{name}`, or compute with the values it holds by their own names",
                )
            return self.env[name]
        if name in self.names.constants:
            return Const(self.names.constants[name])
        if name in self.names.functions or name in BUILTINS:
            raise self.src.error(
                node, f"`{name}` is a function, used here as a value", f"call it: `{name}(...)`"
            )
        if name in self.placeholders:
            raise self.src.error(
                node,
                f"`{name}` is still the placeholder None here",
                f"bind `{name}` to its value before reading it",
            )
        if name in self.partly_bound:
            raise self.src.error(
                node,
                f"`{name}` is assigned on only some paths through the `if` before this line",
                f"assign `{name}` on every path (or before the `if`)",
            )
        if name in self.assigned_later:
            raise self.src.error(
                node, f"`{name}` is used before it is assigned", f"assign `{name}` before this line"
            )
        if name in self.names.modules:
            raise self.src.error(
                node,
                f"the module `{name}` is used as a value",
                f"call one of its functions, e.g. `{name}.exp(...)`",
            )
        if name in self.names.module_names or name in self.names.other_imports:
            raise self.src.error(
                node,
                f"`{name}` is a module-level name; stagegen reads only parameters and local names",
                f"pass `{name}` in as a parameter, or write its value",
            )
        raise self.src.error(
            node, f"name `{name}` is not defined", "assign it first, or add it as a parameter"
        )

    def _positional_only(self, node: ast.Call) -> None:
        """Calls pass arguments by position, one by one."""
        if node.keywords:
            raise self.src.error(
                node.keywords[0],
                "keyword arguments are not supported",
                "pass arguments by position",
            )
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.src.error(
                    a, "starred arguments are not supported", "list the arguments one by one"
                )

    def _call(self, node: ast.Call) -> Expr:
        fn = self._function_name(node.func)
        self._positional_only(node)
        gate = FUNCTIONS[fn]
        low, high = gate.arity
        n = len(node.args)
        if n < low or (high is not None and n > high):
            shown = "math." + fn if fn not in BUILTINS else fn
            if fn in ("max", "min") and n == 1:
                raise self.src.error(
                    node,
                    f"`{fn}` of a single argument (an iterable) is not supported",
                    f"list the values: `{fn}(a, b)`",
                )
            want = f"{low}" if low == high else (f"{low} or {high}" if high else f"at least {low}")
            raise self.src.error(
                node,
                f"`{shown}` takes {want} argument{'s' if want != '1' else ''}, not {n}",
                "pass the right number of arguments",
            )
        return Call(fn, tuple(self.expr(a) for a in node.args))

    def _function_name(self, func: ast.expr) -> str:
        """The gate-table name of a call's function, or a located error."""
        if self._is_math_attribute(func):
            name = func.attr
            if name in FUNCTIONS and name not in BUILTINS:
                return name
            raise self.src.error(
                func, f"`math.{name}` is not supported", f"use one of: {SUPPORTED_FUNCTIONS}"
            )
        if isinstance(func, ast.Name):
            name = func.id
            if name in self.env:
                raise self.src.error(
                    func,
                    f"`{name}` is a number here, not a function",
                    "call a math function, abs, max or min",
                )
            if name in self.assigned_later and (name in self.names.functions or name in BUILTINS):
                raise self.src.error(
                    func,
                    f"`{name}` is assigned in this function, so here it is not the function `{name}`",
                    f"rename the local `{name}`",
                )
            if name in self.names.functions:
                return self.names.functions[name]
            if name in BUILTINS:
                return name
            if name == self.fn.name:
                raise self.src.error(
                    func,
                    f"recursion (`{name}` calls itself) is not supported",
                    "write the computation as straight-line stages",
                )
            if name in self.callees:
                raise self.src.error(
                    func,
                    f"a call to `{name}` inside an expression is not supported",
                    f"bind its result to a name first: `{name}_value = {name}(...)`",
                )
            if name in self.module_functions:
                raise self.src.error(
                    func,
                    f"`{name}` calls back into `{self.fn.name}` (recursion is not supported)",
                    "write the computation as a loop, or without the cycle",
                )
            if name in FUNCTIONS:
                raise self.src.error(
                    func,
                    f"`{name}` is not imported",
                    f"write `math.{name}(...)` with `import math`, or `from math import {name}`",
                )
            raise self.src.error(
                func, f"unknown function `{name}`", f"use one of: {SUPPORTED_FUNCTIONS}"
            )
        if isinstance(func, ast.Attribute):
            owner = ast.unparse(func.value)
            if isinstance(func.value, ast.Name) and func.value.id in self.names.modules:
                raise self.src.error(
                    func.value,
                    f"`{owner}` is a local name here, so `{owner}.{func.attr}` does not reach the math module",
                    f"rename the local `{owner}`",
                )
            self._check_math_imported(func)
            if isinstance(func.value, ast.Name) and func.value.id in self.names.numpy:
                raise self._array_code(func, f"`{owner}.{func.attr}`", node=func)
            if isinstance(func.value, ast.Name) and func.value.id in self.names.other_imports:
                raise self.src.error(
                    func,
                    f"`{owner}.{func.attr}` is not supported (only the math module is)",
                    f"use one of: {SUPPORTED_FUNCTIONS}",
                )
            if func.attr in ARRAY_ATTRIBUTES:
                raise self._array_code(func, f"`{ast.unparse(func)}(...)`", node=func.value)
            raise self.src.error(
                func,
                f"method calls (`{owner}.{func.attr}(...)`) are not supported",
                "call a math function on numbers instead",
            )
        raise self.src.error(
            func, "this kind of call is not supported", f"call one of: {SUPPORTED_FUNCTIONS}"
        )

    def _is_math_attribute(self, node: ast.expr) -> bool:
        """Whether ``node`` is ``<math module>.<name>`` (and the module is not shadowed)."""
        return (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in self.names.modules
            and node.value.id not in self.env
        )

    def _check_math_imported(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            raise self.src.error(
                node, "`math` is not imported", "add `import math` at the top of the module"
            )

    def _attribute(self, node: ast.Attribute) -> Expr:
        if self._is_math_attribute(node):
            if node.attr in MATH_CONSTANTS:
                return Const(node.attr)
            if node.attr in FUNCTIONS:
                raise self.src.error(
                    node,
                    f"`math.{node.attr}` is a function, used here as a value",
                    f"call it: `math.{node.attr}(...)`",
                )
            raise self.src.error(
                node,
                f"`math.{node.attr}` is not supported",
                "use math.pi, math.e or math.tau, or a supported function",
            )
        self._check_math_imported(node)
        if node.attr in ARRAY_ATTRIBUTES:
            raise self._array_code(node, f"`{ast.unparse(node)}`", node=node.value)
        raise self.src.error(
            node,
            f"attribute access (`{ast.unparse(node)}`) is not supported",
            "pass the number in as a parameter",
        )

    def _array_code(self, at: ast.AST, what: str, node: ast.AST) -> StagegenError:
        """Array code in a function without shape annotations: say how to make it array code."""
        names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in self.params]
        example = names[0] if names else next(iter(self.params), "x")
        return self.src.error(
            at,
            f"{what} is array code, but no parameter of `{self.fn.name}` has a shape annotation",
            f'annotate each array parameter with its shape, e.g. `{example}: "N, D"` '
            "(numbers need none)",
        )

    def _subscript(self, node: ast.Subscript) -> Expr:
        if isinstance(node.value, ast.Attribute) and node.value.attr in ARRAY_ATTRIBUTES:
            raise self._array_code(node, f"`{ast.unparse(node)}`", node=node.value)
        if not isinstance(node.value, ast.Name):
            raise self.src.error(
                node, "only list parameters can be indexed", "index a parameter: `w[0]`"
            )
        name = node.value.id
        if name not in self.params or self.env.get(name) != Var(name):
            if name in self.env:
                raise self.src.error(
                    node,
                    f"`{name}` is a number here; only list parameters can be indexed",
                    "index a list parameter, e.g. `w[0]`",
                )
            self._load(node.value)  # raises the right "not defined" error
        index_node = node.slice
        if isinstance(index_node, ast.Slice):
            raise self.src.error(index_node, *_EXPRESSIONS[ast.Slice])
        index = None
        if isinstance(index_node, ast.Constant) and type(index_node.value) is int:
            index = index_node.value
        elif self._reads_loop_index(index_node):
            index = self._loop_index(index_node)
        elif (
            isinstance(index_node, ast.UnaryOp)
            and isinstance(index_node.op, ast.USub)
            and isinstance(index_node.operand, ast.Constant)
        ):
            raise self.src.error(
                index_node,
                "negative indices are not supported",
                "count from the front: `w[0]`, `w[1]`, ...",
            )
        if index is None:
            raise self.src.error(
                index_node,
                "a list index must be a constant integer",
                "write the index as a number, e.g. `w[0]`",
            )
        if isinstance(index, int) and index < 0:
            raise self.src.error(
                index_node,
                "negative indices are not supported",
                "count from the front: `w[0]`, `w[1]`, ...",
            )
        if name in self.scalar_params:
            raise self.src.error(
                node, f"`{name}` is used both as a number and as a list", "use it one way only"
            )
        self.list_params.add(name)
        p = self.params[name]
        if isinstance(index, int):
            p.length = max(p.length, index + 1)
        else:
            self.looped_lists.add(name)
        return Elem(name, index)

    def _reads_loop_index(self, node: ast.expr) -> bool:
        loop_names = self.integers_by_user()
        return any(isinstance(n, ast.Name) and n.id in loop_names for n in ast.walk(node))

    def _loop_index(self, node: ast.expr) -> Expr:
        """``i``, ``i + 1``, ``i - 1``, ``n - 1 - i``: an index a loop variable computes."""
        if isinstance(node, ast.Name) and node.id in self.integers_by_user():
            return self.env[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            op = "+" if isinstance(node.op, ast.Add) else "-"
            return Bin(op, self._loop_index(node.left), self._loop_index(node.right))
        return self._integer(node)

    def _bad_operator(self, node: ast.BinOp) -> Expr:
        spelled = _OP_SPELLING.get(type(node.op), "?")
        if spelled == "//":
            raise self.src.error(
                node, "floor division `//` is not differentiable", "use true division `/`"
            )
        if spelled == "%":
            raise self.src.error(
                node,
                "the modulo operator `%` is not supported",
                "use + - * / ** and math functions",
            )
        if spelled == "@":
            raise self._array_code(node, "matrix multiplication `@`", node=node)
        raise self.src.error(
            node,
            f"the bitwise operator `{spelled}` is not supported on real numbers",
            "use + - * / ** and math functions",
        )

    # -- helpers -----------------------------------------------------------------------

    def _all_names(self, fn) -> set[str]:
        """Every name the function binds or reads, except the math module it calls through."""
        names = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
        stored = {
            n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        loaded = {
            n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
        }
        return names | stored | (loaded - self.names.modules)


# Attributes and methods only arrays have: in a function without annotations they mean the
# user wrote array code, and the advice is to annotate it.
ARRAY_ATTRIBUTES = frozenset(
    "T shape ndim size dot sum mean max min prod var std reshape transpose ravel flatten "
    "squeeze copy astype clip argmax argmin cumsum".split()
)


def _names_a_cache(name: str) -> bool:
    """``cache``, ``fc_cache``: what the course's forward passes return for their backward
    passes, saved values rather than outputs (``cache = x`` included)."""
    return name == "cache" or name.endswith("_cache")


def _output_names(program: Program) -> list[str]:
    return [name or f"out{k}" for k, (_, name) in enumerate(program.outputs)]


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _is_string_statement(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_numeric_literal(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return False


def _is_staged_decorator(node: ast.expr) -> bool:
    """@staged, @staged(...), @stagegen.staged and @stagegen.staged(...)."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr == "staged" and isinstance(node.value, ast.Name)
    return isinstance(node, ast.Name) and node.id == "staged"


def function_defs(module: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _float_holds(v: int | float) -> bool:
    """Whether a literal is a finite float (or an int that converts to one)."""
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False
