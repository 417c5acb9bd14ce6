"""Frontend for array functions: a ``def`` whose parameters carry shape annotations -> Program.

The statements (assignments, re-assignments, one return) are read exactly as for scalar code,
by the FunctionReader this extends; what differs is the expression language: NumPy calls,
methods, ``@``, ``.T``, indexing, comparisons as masks, shape reads. Every expression's type
(its symbolic shape and whether it is a float array, integer indices or a mask) is worked
out as it is read, so a shape mismatch is reported at the expression that causes it, and the
reverse pass knows every shape without running anything.
"""

from __future__ import annotations

import ast

from ..expr import And, Bin, Call, Compare, Cond, Expr, Invoke, Item, Neg, Not, Num, Or, Var, walk
from ..parse import AUGMENTED, BINOPS, COMPARISONS, FunctionReader
from ..errors import ShapeUnknown
from ..program import Param, Program
from ..types import Type
from . import annotations, infer, shapes
from ..gates import NUMPY_BINARY, NUMPY_FUNCTIONS
from .ir import (
    Arange,
    Copy,
    Dot,
    Draw,
    Filled,
    FullSlice,
    Index,
    Join,
    Move,
    NewAxis,
    Outer,
    Put,
    Reduce,
    Reshape,
    ShapeOf,
    Span,
    ShapeRead,
    Transpose,
    Where,
    distinct_positions,
)
from .shapes import Shape, ShapeError, show

# The elementwise functions come from the gate table (np.arctan -> "atan", np.maximum -> "max").
UNARY = tuple(NUMPY_FUNCTIONS)
BINARY = tuple(NUMPY_BINARY)
REDUCTIONS = ("sum", "mean", "max", "min", "prod", "var", "std")
SUPPORTED = ", ".join(
    f"np.{n}"
    for n in (
        *UNARY,
        *BINARY,
        *REDUCTIONS,
        "linalg.norm",
        "clip",
        "where",
        "outer",
        "dot",
        "transpose",
        "reshape",
        "arange",
        "expand_dims",
        "squeeze",
        "swapaxes",
        "ravel",
        "copy",
        "zeros",
        "ones",
        "full",
        "zeros_like",
        "ones_like",
        "full_like",
        "stack",
        "concatenate",
        "hstack",
        "vstack",
    )
)
_COMPARE = COMPARISONS  # a mask compares as a condition does
# NumPy's functions that give integers of integers (np.abs(y) is an integer array: a float
# written into it would be cut to an integer)
_KEEP_INTEGERS = ("abs", "absolute", "square", "negative", "sign")


class ArrayReader(FunctionReader):
    """Reads one array function; ``program.types`` gets the type of every parameter and stage."""

    call_shapes: dict | None = None  # @staged: each argument's shape at the first call

    def read(self, fn) -> Program:
        self.types: dict[Expr, Type] = {}  # every expression read, by value
        self.var_types: dict[str, Type] = {}  # parameters and stage targets
        self.call_parts: dict[Invoke, list[Type]] = {}  # the types of what each call returns
        if not self.names.numpy:
            raise self.src.error(
                fn,
                f"`{fn.name}` has shape annotations, so it is array code, but numpy is not imported",
                "add `import numpy as np` at the top of the module",
            )
        self.np_names = self.names.numpy
        # np.random.seed(seed): an integer with no gradient, drawn as labels are
        self.seeds = _seed_names(fn, self.np_names)
        self.seed: Var | None = None
        self.drew = False
        self.labels = _index_names(fn) | self._labels_passed_on(fn) | self.seeds
        # NumPy's `t += x` and `t[i] = v` write into the array `t` names, so every other name
        # for that array (an alias `u = t`, a view `u = t.T` or `u = t[:, :D]`, the caller's
        # argument, what a callee returned) would change too. Which arrays each name may hold:
        # an array is known by the parameter or stage that made it; a name bound in a branch or
        # a loop may hold what any of its bindings gave it.
        self.arrays_of: dict[str, set[str]] = {}  # parameter or stage target -> its arrays
        self.holders: dict[str, set[str]] = {}  # array -> the user's names that may hold it
        self.in_place: ast.AugAssign | None = None
        self.returned_by: dict[str, str] = {}  # an array a call returned -> the function
        self.loop_writes: list[tuple] = []  # the writes read so far, checked again after a loop
        self.rest_sizes: dict[str, str] = {}
        program = super().read(fn)
        program.rest_sizes = dict(self.rest_sizes)
        program.numpy = sorted(self.np_names)[0] if "np" not in self.np_names else "np"
        for p in program.params:
            program.types[p.name] = self.var_types[p.name]
        for stage in program.stages:
            program.types[stage.target] = self.types[stage.expr]
        output = program.types[program.output.name]
        if not output.differentiable:
            raise program.error(
                f"`{fn.name}` returns {'a mask' if output.kind == 'bool' else 'integers'}, "
                "which has no gradient",
                "return a float value computed from the inputs",
            )
        program.types["<expressions>"] = self.types
        return program

    # -- parameters --------------------------------------------------------------------

    def _params(self, fn) -> list[Param]:
        params = super()._params(fn)
        args = list(fn.args.posonlyargs) + list(fn.args.args)
        # No annotation at all: the shapes come from the code and the docstring (infer.py),
        # or, for @staged, from the first call (``call_shapes``).
        self.inferred = (
            infer.infer(fn, [p.name for p in params], self.call_shapes)
            if not any(a.annotation is not None for a in args)
            else {}
        )
        for p, arg in zip(params, args):
            annotation = arg.annotation
            inferred = self.inferred.get(p.name)
            if p.name in self.seeds:  # an integer, no gradient
                p.shape, p.labels = (), True
                self.var_types[p.name] = Type((), "int")
                continue
            if inferred is not None and inferred.shape is not None:
                p.shape = inferred.shape
                p.shape_source = inferred.source
                p.labels = p.name in self.labels or inferred.mask  # no gradient either way
                kind = "bool" if inferred.mask else "int" if p.labels else "float"
                self.var_types[p.name] = Type(p.shape, kind)
                continue
            if annotation is None or annotations.is_number_annotation(annotation):
                p.shape = None
                self.var_types[p.name] = Type((), "float")
                continue
            try:
                read = annotations.read(annotation, p.name)
            except annotations.AnnotationError as e:
                raise self.src.error(e.node, e.message, e.hint) from None
            try:
                p.shape = shapes.parse_annotation(read.text)
            except ShapeError as e:
                raise self.src.error(read.node, e.message, e.hint) from None
            if p.default is not None and p.shape:
                raise self.src.error(
                    arg,
                    f"array parameter `{p.name}` has a default",
                    "pass arrays in; drop the default",
                )
            if read.kind == "float" and p.name in self.labels:
                raise self.src.error(
                    annotation,
                    f"`{p.name}` is used as an index, so it holds integer labels, but its "
                    f"annotation says `{read.dtype}`",
                    f'annotate it as integers, e.g. `{p.name}: Int[np.ndarray, "{read.text}"]`',
                )
            # Labels (no gradient): used as an index, or annotated as integers.
            p.labels = p.name in self.labels or read.kind == "int"
            kind = "int" if p.labels else "float"
            self.var_types[p.name] = Type(p.shape, kind)
        alone = {d for p in params for d in p.shape or () if isinstance(d, str)}
        for p in params:
            for d in p.shape or ():
                lonely = [n for n in shapes.factors(d)[1] if n not in alone and "*" in str(d)]
                if lonely:  # the backward reads each size from an axis that has it alone
                    raise self.src.error(
                        fn,
                        f"the size {d} of `{p.name}` is a product of {lonely[0]}, which no "
                        "parameter has as an axis of its own",
                        f"name that axis with one name (e.g. `M` for {d}), or pass an array "
                        f"with an axis of size {lonely[0]}",
                    )
        self.caller_arrays = {p.name for p in params}
        for p in params:
            self.arrays_of[p.name] = {p.name}
            self.holders[p.name] = {p.name}
        return params

    def _span(self, item: ast.Slice) -> Span:
        """``start:stop`` with sizes for bounds (``H``, ``2 * H``, a number); the length is
        worked out where the axis is known (_sliced)."""
        bounds = []
        for bound in (item.lower, item.upper):
            if bound is None:
                bounds.append(None)
                continue
            e = self.expr(bound)
            bt = self.type_of(e)
            if bt.kind != "int" or bt.shape != () or not _is_size(bt.value):
                raise self.src.error(
                    bound,
                    "a slice's bounds must be sizes: numbers, or sizes read from a shape",
                    "write e.g. `a[:, H : 2 * H]` with `N, H = h.shape`",
                )
            bounds.append(e)
        return Span(*bounds)

    def _sliced(self, node, operand: Expr, t: Type, items: list) -> tuple[Expr, Type]:
        """``a[:, H : 2 * H]``: basic slicing, each bound a multiple of the axis's own size
        (so that the slice is inside it whatever the sizes are)."""
        if any(_is_array(i) and not isinstance(i, Span) for i in items) or any(
            isinstance(i, NewAxis) for i in items
        ):
            raise self.src.error(
                node,
                "a slice `a:b` mixed with index arrays or None is not supported",
                "slice first into a name, then index it",
            )
        if len(items) > len(t.shape) or shapes.has_rest(t.shape[: len(items)]):
            raise self.src.error(node, f"too many indices for shape {show(t.shape)}", "")
        shape = list(t.shape)
        for k, item in enumerate(items):
            if not isinstance(item, Span):
                continue
            dim = t.shape[k]
            start = 0 if item.start is None else self.type_of(item.start).value
            stop = dim if item.stop is None else self.type_of(item.stop).value
            length = _difference(stop, start, dim)
            if length is None:
                shown = self.src.segment(node) or ast.unparse(node)
                raise self.src.error(
                    node,
                    f"`{shown}` slices an axis of size {dim} from {start} to {stop}, which "
                    "stagegen cannot show lies inside it for every size",
                    "slice by multiples of the axis's size, e.g. `a[:, H : 2 * H]` of `4 * H`",
                )
            shape[k] = length
        return Index(operand, tuple(items)), Type(tuple(shape), t.kind)

    def _is_random(self, func: ast.expr, name: str) -> bool:
        """``np.random.<name>`` (NumPy's name not shadowed here)."""
        return _is_numpy_random(func, name, self.np_names) and self._is_numpy(func.value.value)

    def _statement(self, stmt: ast.stmt) -> None:
        """``np.random.seed(seed)``, with a parameter for the seed, is read: the draw that
        follows it can be drawn again in the backward (``_draw``)."""
        value = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(value, ast.Call) and self._is_random(value.func, "seed"):
            (arg,) = value.args if len(value.args) == 1 and not value.keywords else (None,)
            if not (isinstance(arg, ast.Name) and arg.id in self.seeds and self.seed is None):
                raise self.src.error(
                    value,
                    "only one np.random.seed(...) of a parameter, before the draw, is supported",
                    "seed once with a parameter, e.g. `np.random.seed(seed)`, then draw",
                )
            self.seed = Var(arg.id)
            return
        super()._statement(stmt)

    def _draw(self, node: ast.Call) -> tuple[Expr, Type]:
        """``np.random.rand(*x.shape)`` after ``np.random.seed(seed)``: the backward draws the
        same numbers again (the mask of the course's dropout)."""
        args = node.args
        like = args[0].value.value if len(args) == 1 and isinstance(args[0], ast.Starred) else None
        if (
            self.seed is None
            or self.drew
            or node.keywords
            or not (
                isinstance(like, ast.Name)
                and isinstance(args[0].value, ast.Attribute)
                and args[0].value.attr == "shape"
            )
        ):
            raise self.src.error(
                node,
                "a random draw is supported once, as `np.random.rand(*x.shape)` right after "
                "`np.random.seed(seed)` with a parameter `seed`: the backward must draw the same",
                "seed with a parameter first, or pass the mask (or the draws) in as a parameter",
            )
        self.drew = True
        operand = self.expr(like)
        return Draw(self.seed, operand), Type(self.type_of(operand).shape, "float")

    def _labels_passed_on(self, fn) -> set[str]:
        """Names passed where a callee takes integer labels (``softmax_loss(scores, y)``)."""
        found: set[str] = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                callee = self.callees.get(node.func.id)
                for p, arg in zip(callee.params if callee else (), node.args):
                    if p.labels and isinstance(arg, ast.Name):
                        found.add(arg.id)
        return found

    # -- writes into an array ------------------------------------------------------------

    def _assign(self, target, value, stmt) -> None:
        if isinstance(target, ast.Subscript):
            self._write(target, value, stmt)
        else:
            super()._assign(target, value, stmt)

    def _augassign(self, stmt: ast.AugAssign) -> None:
        if isinstance(stmt.target, ast.Subscript) and type(stmt.op) in AUGMENTED:
            if self._mask_index(stmt.target) is not None:
                name, mask = ast.unparse(stmt.target.value), ast.unparse(stmt.target.slice)
                op = AUGMENTED[type(stmt.op)]
                raise self.src.error(
                    stmt.target,
                    "an update at a mask is not supported (only a write of a number is)",
                    f"write `{name} = np.where({mask}, {name} {op} {ast.unparse(stmt.value)}, "
                    f"{name})`",
                )
            # `a[i] += v` is `a[i] = a[i] + v`, as NumPy runs it (once per position)
            read = ast.copy_location(
                ast.Subscript(value=stmt.target.value, slice=stmt.target.slice, ctx=ast.Load()),
                stmt.target,
            )
            value = ast.copy_location(ast.BinOp(left=read, op=stmt.op, right=stmt.value), stmt)
            self._write(stmt.target, value, stmt)
            return
        self.in_place = stmt
        try:
            super()._augassign(stmt)
        finally:
            self.in_place = None

    def _write(self, target: ast.Subscript, value_node: ast.expr, stmt: ast.stmt) -> None:
        """``a[items] = value`` into an array the function made: read as a new value of ``a``,
        the array before with ``value`` at ``items`` (``Put``). Refused where another name, or
        the caller, would see the write, and where the value's gradient is not exact: at an
        index that may repeat a position, NumPy keeps one of the values written there."""
        base = target.value
        name = base.id if isinstance(base, ast.Name) else None
        old = self.env.get(name) if name else None
        if not isinstance(old, Var) or old.name not in self.var_types:
            raise self._mutation(target)
        before = self.var_types[old.name]
        if not before.shape or before.kind != "float":
            what = "a number" if not before.shape else "integers or a mask"
            raise self.src.error(
                target,
                f"`{name}` holds {what}; only a float array can be written into",
                f"bind a new name instead, e.g. `{name}0 = ...`",
            )
        check = (
            target,
            name,
            old,
            f"writing into `{name}[...]`",
            f"copy it first (`{name} = {name}.copy()`), or build a new array",
        )
        self._check_private(*check)
        self.loop_writes.append(check)
        mask = self._mask_index(target)
        if mask is not None:
            if self.type_of(mask).shape != before.shape:
                raise self.src.error(
                    target.slice,
                    f"the mask has shape {show(self.type_of(mask).shape)}, `{name}` "
                    f"{show(before.shape)}",
                    f"index `{name}` with a mask of its own shape",
                )
            items: tuple[Expr, ...] = (mask,)
            selected: Shape = ()  # one value for every position the mask picks
        else:
            read = ast.copy_location(
                ast.Subscript(value=base, slice=target.slice, ctx=ast.Load()), target
            )
            gather = self.expr(read)
            if not isinstance(gather, Index) or gather.operand != old:
                raise self.src.error(
                    target.slice,
                    "this index cannot be written into",
                    "write at `:`, a slice `a:b`, labels (`np.arange(N), y`) or a mask",
                )
            items, selected = gather.items, self.type_of(gather).shape
        value = self.expr(value_node)
        vt = self.type_of(value)
        if vt.kind == "bool":
            raise self.src.error(value_node, "a mask is written into a float array", "write floats")
        try:
            fits = shapes.broadcast(selected, vt.shape) == selected
        except ShapeError:
            fits = False
        if not fits:
            raise self.src.error(
                value_node,
                f"a value of shape {show(vt.shape)} does not fit the "
                f"{'positions the mask picks' if mask is not None else show(selected)} it is "
                "written to",
                "write a number, or an array of the shape the index selects",
            )
        # `a[i] += v`: the array passes its gradient on; with a number c for v, each position
        # named gets c once, however often the index names it
        update = (
            isinstance(value, Bin) and value.op in ("+", "-") and value.left == Index(old, items)
        )
        added = update and not self._carries(value.right)
        distinct = mask is not None or distinct_positions(
            items, before.shape, lambda e: self.type_of(e).shape
        )
        if not distinct and self._carries(value) and not added:
            if isinstance(value, Bin) and value.left == Index(old, items):
                raise self.src.error(
                    target.slice,
                    f"`{value.op}=` at an index that may name one position twice: NumPy updates "
                    "such a position once, which only `+=` and `-=` of a number keep exact",
                    "index rows with `np.arange(N)` beside the labels, or add a number",
                )
            raise self.src.error(
                target.slice,
                "this index may name one position twice, and NumPy keeps one of the values "
                "written there, so the value's gradient is not exact",
                "write a number there, or index rows with `np.arange(N)` beside the labels",
            )
        if self.depth and isinstance(stmt, ast.AugAssign) and not update:
            spelled = {"*": "*=", "/": "/=", "**": "**="}.get(value.op, value.op + "=")
            raise self.src.error(
                target,
                f"inside a loop or branch, `{name}[...] {spelled} ...` is not supported (the "
                "array before and after the write share one name there)",
                f"compute it into a name first (`v = {name}[...] {value.op} ...`), then write "
                f"`{name}[...] = v`",
            )
        if self.depth and old in walk(value.right if update else value):
            # (in a loop or branch the array before and after the write share one name, and
            # so do their gradients: the value's part of the array's gradient would be read
            # after the write's zeros went in)
            raise self.src.error(
                value_node,
                f"inside a loop or branch, a value written into `{name}` that reads `{name}` "
                "itself is not supported",
                f"compute it into a name first (`v = ...`), then write `{name}[...] = v`",
            )
        put = Put(old, items, value, selected)
        self.types[put] = before
        ast_name = ast.copy_location(ast.Name(id=name, ctx=ast.Store()), base)
        self._bind(ast_name, put, stmt)

    def _loop_body(self, loop, stmt) -> None:
        """A loop's body, and then its writes checked again: a name bound later in the body
        (`prev = h[:, t]`) holds the array when the next step writes into it."""
        before = len(self.loop_writes)
        super()._loop_body(loop, stmt)
        for check in self.loop_writes[before:]:
            self._check_private(*check)

    def _check_private(self, node, name: str, old: Var, doing: str, rewrite: str) -> None:
        """Writing into ``name``'s array is exact as a new value only when no other name, nor
        the caller, sees that array change; anything else is refused, never guessed."""
        for array in sorted(self.arrays_of[old.name]):
            if array in self.returned_by:
                raise self.src.error(
                    node,
                    f"{doing} writes into the array `{self.returned_by[array]}` returned, which "
                    "may be one of its arguments (NumPy updates it in place)",
                    rewrite,
                )
            if array in self.caller_arrays:
                raise self.src.error(
                    node,
                    f"{doing} writes into the caller's array `{array}` (NumPy updates it in "
                    "place)",
                    rewrite,
                )
            others = sorted(self.holders.get(array, set()) - {name})
            if others:
                raise self.src.error(
                    node,
                    f"{doing} also changes `{others[0]}` (they share one array, and NumPy "
                    "updates it in place)",
                    f"{rewrite}; or bind `{others[0]}` to a copy (`... .copy()`)",
                )

    def _mask_index(self, target: ast.Subscript) -> Expr | None:
        """The index when it is one boolean mask (``a[a < 0]``, ``a[mask]``), else None."""
        index = target.slice
        if isinstance(index, ast.Compare) or (
            isinstance(index, ast.Name) and isinstance(self.env.get(index.id), Var)
        ):
            e = self.expr(index)
            if self.type_of(e).kind == "bool":
                return e
        return None

    def _carries(self, value: Expr) -> bool:
        """Whether a gradient can flow into ``value`` (it reads a float value)."""
        return any(
            isinstance(n, Var) and self.var_types.get(n.name, Type(())).kind == "float"
            for n in walk(value)
        )

    def _bind(self, target, value, stmt, number=None) -> None:
        if value not in self.types and isinstance(value, Item):
            self.types[value] = self.call_parts[self.held_calls[value.operand.name]][value.index]
        if value not in self.types and isinstance(value, Bin):
            # `s += x`: the scalar reader builds the Bin itself; type it here.
            if isinstance(value.left, Var):
                self.types.setdefault(value.left, self.var_types[value.left.name])
            self.types[value] = self._elementwise(stmt, value.op, value.left, value.right)
        in_place = stmt is self.in_place and bool(self.var_types[value.left.name].shape)
        if in_place:
            self._check_in_place(stmt, value)
            arrays = set(self.arrays_of[value.left.name])  # written into: the same as before
        else:
            shared = _shares_memory(value, self.integers)
            if _is_unary_plus(getattr(stmt, "value", None)):
                shared = []  # `+t` is read as `t`, but NumPy makes a new array of it
            arrays = {a for v in shared for a in self.arrays_of.get(v.name, {v.name})}
            if isinstance(value, (Invoke, Item)):  # a callee may return an argument itself
                invoke = value if isinstance(value, Invoke) else self.held_calls[value.operand.name]
                marker = f"<what {invoke.function} returned>"
                self.returned_by[marker] = invoke.function
                arrays = {marker}
                for arg in invoke.args:
                    for v in _shares_memory(arg, self.integers):
                        arrays |= self.arrays_of.get(v.name, set())
        old = self.env.get(target.id)
        if old is not None and not self.depth:  # (in a loop or branch it may still hold them)
            for array in self.arrays_of.get(old.name, ()):
                self.holders[array].discard(target.id)
        super()._bind(target, value, stmt, number)
        new = self.stages[-1].target
        before, after = self.var_types.get(new), self.types[value]
        if self.depth and before is not None and before.shape != after.shape:
            raise self.src.error(
                stmt,
                f"`{target.id}` changes from {show(before.shape)} to {show(after.shape)} "
                "inside a loop or branch",
                "keep one shape per name, or bind a new name",
            )
        if self.depth and before is not None and before.kind != after.kind:
            kinds = {"float": "floats", "int": "integers", "bool": "a mask"}
            raise self.src.error(
                stmt,
                f"`{target.id}` changes from {kinds[before.kind]} to {kinds[after.kind]} "
                "inside a loop or branch",
                "keep one kind of value per name (write `0.0` for a float), or bind a new name",
            )
        self.var_types[new] = self.types[value]
        arrays = arrays or {new}
        if self.depth:  # bound again in a loop or another branch: it may hold any of them
            arrays |= self.arrays_of.get(new, set())
        self.arrays_of[new] = arrays
        for array in arrays:
            self.holders.setdefault(array, set()).add(target.id)

    # -- calls -------------------------------------------------------------------------

    def _invoke(self, node: ast.Call, callee: Program) -> Invoke:
        """A call types as its callee's outputs, with the callee's dimension names read as the
        arguments' (``affine_forward(h, w2, b2)`` with h of shape (N, H) returns (N, C))."""
        invoke = super()._invoke(node, callee)
        dims: dict = {}
        products: list = []  # (the callee's product, the caller's size, where, the parameter)
        for p, arg_node, arg in zip(callee.params, node.args, invoke.args):
            want = callee.types.get(p.name, Type((), "float"))
            got = self.type_of(arg)
            lead = len(want.shape) - 1 if shapes.has_rest(want.shape[-1:]) else None
            if (
                lead is not None
                and len(got.shape) >= lead
                and not shapes.has_rest(got.shape[:lead])
            ):
                # the callee takes any number of dimensions from here on: these (a tuple,
                # which may hold the caller's own rest)
                dims[want.shape[-1]] = tuple(got.shape[lead:])
                want = Type(want.shape[:lead], want.kind)
                got = Type(got.shape[:lead], got.kind)
            if len(want.shape) != len(got.shape) or (want.kind == "int") != (got.kind == "int"):
                raise self.src.error(
                    arg_node,
                    f"`{callee.name}` takes `{p.name}` of shape {show(want.shape)}"
                    f"{' (integer labels)' if want.kind == 'int' else ''}, and this is "
                    f"{show(got.shape)}{' (integers)' if got.kind == 'int' else ''}",
                    "pass a value of that shape (a call does not broadcast its arguments)",
                )
            for w, g in zip(want.shape, got.shape):
                if isinstance(w, str) and "*" not in w and dims.setdefault(w, g) == g:
                    continue
                if w == g and isinstance(w, int):
                    continue
                if isinstance(w, str) and "*" in w:  # 4*H: once its names are bound
                    products.append((w, g, arg_node, p, want))
                    continue
                raise self.src.error(
                    arg_node,
                    f"`{callee.name}` takes `{p.name}` of shape {show(want.shape)}, which here "
                    f"would need {w} to be {g}"
                    + (f" and {dims[w]}" if isinstance(w, str) and w in dims else ""),
                    "pass arguments whose shapes agree as the callee's annotations say",
                )
        for w, g, arg_node, p, want in products:
            coefficient, names = shapes.factors(w)
            unbound = [n for n in names if n not in dims]
            if len(unbound) == 1:  # the one name it leaves: the caller's size over the rest
                known = shapes.multiply([dims[n] for n in names if n != unbound[0]])
                size, rest = shapes.factors(shapes.multiply([g]))
                over = shapes.factors(shapes.multiply([coefficient, known]))
                left = list(rest)
                if over[0] and size % over[0] == 0 and all(n in left for n in over[1]):
                    for n in over[1]:
                        left.remove(n)
                    dims[unbound[0]] = shapes.multiply([size // over[0], *left])
            if all(n in dims for n in names) and _called_shape((w,), dims)[0] == g:
                continue
            raise self.src.error(
                arg_node,
                f"`{callee.name}` takes `{p.name}` of shape {show(want.shape)}, and {w} does "
                f"not match its size {g} here",
                "pass arguments whose shapes agree as the callee's annotations say",
            )
        for rest, size in callee.rest_sizes.items():  # x.reshape(N, -1).dot(w) in the callee
            given = dims.get(rest, ())
            if len(given) == 1 and shapes.is_rest(given[0]) and isinstance(dims.get(size), str):
                self.rest_sizes.setdefault(given[0], dims[size])  # the caller's rest holds it
        outputs = []
        differentiable = iter(callee.outputs)
        for k in range(callee.returns):
            if k in callee.saved:
                outputs.append(Type((), "saved"))  # no gradient, nothing computes with it
                continue
            value, _ = next(differentiable)
            t = callee.types.get(value.name, Type((), "float"))
            missing = [d for d in shapes.names_in(t.shape) if d not in dims]
            if missing:
                raise self.src.error(
                    node,
                    f"`{callee.name}` returns a value of shape {show(t.shape)}, whose "
                    f"dimension {missing[0]} none of its parameters' annotations names",
                    "return values whose shapes the parameters' annotations fix",
                )
            outputs.append(Type(_called_shape(t.shape, dims), t.kind))
        self.call_parts[invoke] = outputs
        self.types[invoke] = outputs[0] if invoke.returns == 1 else Type((), "float")
        return invoke

    def _unpacks_shape(self, target, value, stmt) -> bool:
        """`N, D = x.shape`: each name bound to one dimension of the array."""
        array = self._shape_of(value)
        if array is None:
            return False
        operand = self.expr(array)
        shape = self.type_of(operand).shape
        if len(target.elts) != len(shape):
            raise self.src.error(
                value,
                f"`{ast.unparse(array)}` has {len(shape)} dimension(s), "
                f"unpacked into {len(target.elts)} name(s)",
                "unpack one name per dimension",
            )
        for k, t in enumerate(target.elts):
            if not isinstance(t, ast.Name):
                raise self._mutation(t)
            read = ShapeRead(operand, k, "attribute" if isinstance(value, ast.Attribute) else "np")
            self.types[read] = Type((), "int", shape[k])
            self._bind(t, read, stmt)
        return True

    def _shape_of(self, node: ast.expr) -> ast.expr | None:
        """The array whose shape ``node`` reads whole: ``x.shape`` or ``np.shape(x)``."""
        if isinstance(node, ast.Attribute) and node.attr == "shape":
            return node.value
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "shape"
            and self._is_numpy(node.func.value)
            and len(node.args) == 1
            and not node.keywords
        ):
            return node.args[0]
        return None

    def typed_condition(self, test: Expr) -> None:
        self.types.setdefault(test, Type((), "bool"))

    def _typed_index(self, name: str) -> None:
        self.var_types[name] = Type((), "int")

    def _array_integer(self, node: ast.expr) -> Expr | None:
        """``x.shape[k]`` (``np.shape(x)[k]``, ``len(x)``), or a name bound to one
        (``T = x.shape[1]``), as a loop's bound."""
        if isinstance(node, ast.Subscript) and self._shape_of(node.value) is not None:
            return self.expr(node)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "len"
            and "len" not in self.env
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Name)
            and isinstance(self.env.get(node.args[0].id), Var)
            and self.var_types.get(self.env[node.args[0].id].name, Type(())).shape
        ):
            return self.expr(node)  # the length of an array (not of a list parameter)
        if isinstance(node, ast.Name) and isinstance(self.env.get(node.id), Var):
            t = self.var_types.get(self.env[node.id].name)
            if t is not None and t.kind == "int" and t.shape == ():
                return self.expr(node)
        return None

    def _check_in_place(self, stmt: ast.AugAssign, value: Bin) -> None:
        """`t += x` on an array is exact as `t = t + x` only when no other name sees `t`'s
        array change and the result fits in it; anything else is refused, never guessed."""
        name = stmt.target.id
        spelled = {"+": "+=", "-": "-=", "*": "*=", "/": "/=", "**": "**="}[value.op]
        rewrite = f"write `{name} = {name} {value.op} ...`, which makes a new array"
        check = (stmt, name, value.left, f"`{name} {spelled} ...`", rewrite)
        self._check_private(*check)
        self.loop_writes.append(check)
        before, after = self.var_types[value.left.name], self.types[value]
        if after.shape != before.shape:
            raise self.src.error(
                stmt,
                f"NumPy cannot write a result of shape {show(after.shape)} into `{name}` of shape "
                f"{show(before.shape)}",
                rewrite,
            )
        if before.kind != "float":
            raise self.src.error(
                stmt,
                f"`{name}` holds integers, and NumPy cannot write floats into it in place",
                rewrite,
            )

    def _return(self, stmt):
        if isinstance(stmt.value, ast.Name) and stmt.value.id in self.np_names:
            raise self.src.error(stmt.value, "the numpy module is returned", "return an array")
        output, name = super()._return(stmt)
        kind = self.var_types[output.name].kind if output.name in self.var_types else "float"
        if kind != "float":
            raise self.src.error(
                stmt.value,
                f"`{self.fn.name}` returns {'a mask' if kind == 'bool' else 'integers'}, "
                "which has no gradient",
                "return a float value computed from the inputs",
            )
        return output, name

    # -- expressions -------------------------------------------------------------------

    def expr(self, node: ast.expr) -> Expr:
        e, t = self._read(node)
        self._check_rest(node, e)
        self.types[e] = t
        return e

    def _check_rest(self, node: ast.expr, e: Expr) -> None:
        """Refuse, at ``node``, what is exact only for a known number of dimensions when an
        operand's dimensions are open (a rest, ``...x``: see infer.py)."""
        operands = [
            c for c in e.children() if c in self.types and shapes.has_rest(self.types[c].shape)
        ]
        shape = self.types[operands[0]].shape if operands else ()
        if not operands or _exact_for_any_rank(e, shape):
            return
        raise self._shape_unknown(node, shape)

    def _shape_unknown(self, node: ast.expr, shape: Shape) -> ShapeUnknown:
        """The refusal of ``node``, which needs to know how many dimensions a rest holds."""
        err = shapes.rest_error(shape, f"`{self.src.segment(node) or ast.unparse(node)}`")
        located = self.src.error(node, err.message, err.hint)
        return ShapeUnknown(
            located.message,
            located.hint,
            filename=located.filename,
            line=located.line,
            col=located.col,
            source_line=located.source_line,
        )

    def type_of(self, e: Expr) -> Type:
        return self.types[e]

    def _read(self, node: ast.expr) -> tuple[Expr, Type]:
        if isinstance(node, ast.Constant):
            e = self._constant(node)
            return e, Type((), "int" if isinstance(node.value, int) else "float", node.value)
        if isinstance(node, ast.Name):
            if node.id in self.np_names and node.id not in self.env:
                raise self.src.error(
                    node, f"the module `{node.id}` is used as a value", f"call one of: {SUPPORTED}"
                )
            e = self._load(node)
            return e, self.var_types[e.name]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return self._read(node.operand)  # +x is x (as in scalar code)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.expr(node.operand)
            t = self.type_of(inner)
            if t.kind == "bool":
                raise self.src.error(
                    node, "a mask cannot be negated", "compare the other way round"
                )
            value = -t.value if isinstance(t.value, (int, float)) else None
            return Neg(inner), Type(t.shape, t.kind, value)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.MatMult):
                return self._dot(node, node.left, node.right, "@")
            op = BINOPS.get(type(node.op))
            if op is None:
                return self._bad_operator(node), None
            left, right = self.expr(node.left), self.expr(node.right)
            return Bin(op, left, right), self._elementwise(node, op, left, right)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._array_call(node)
        if isinstance(node, ast.Attribute):
            return self._array_attribute(node)
        if isinstance(node, ast.Subscript):
            return self._index(node)
        if isinstance(node, ast.IfExp):
            return self._array_conditional(node)
        e = super().expr(node)  # raises the scalar reader's error for everything else
        raise AssertionError(f"unexpected expression {e!r}")

    def _array_conditional(self, node: ast.IfExp) -> tuple[Expr, Type]:
        """``a if c else b`` with a number for its test: Python picks one side, so both sides
        must have one shape (else the value's shape would depend on the test)."""
        e = self._conditional(node)
        a, b = self.type_of(e.body), self.type_of(e.orelse)
        if a.shape != b.shape:
            raise self.src.error(
                node,
                f"the sides of this conditional expression have different shapes "
                f"({_shape_words(a.shape)} and {_shape_words(b.shape)}), so its shape would "
                "depend on the test",
                "give both sides the same shape (e.g. `0.0 * x` for zeros like x)",
            )
        if a.kind != b.kind and "bool" in (a.kind, b.kind):
            raise self.src.error(
                node, "one side of this conditional expression is a mask", "choose between floats"
            )
        kind = a.kind if a.kind == b.kind else "float"
        return e, Type(a.shape, kind)

    def condition(self, node: ast.expr) -> Expr:
        test = super().condition(node)
        for n in walk(test):
            if isinstance(n, (Compare, And, Or, Not)):
                self.types.setdefault(n, Type((), "bool"))
        return test

    def _condition_operand(self, node: ast.expr, test: ast.Compare) -> Expr:
        e = self.expr(node)
        shape = self.type_of(e).shape
        if shape:
            shown = self.src.segment(test) or ast.unparse(test)
            raise self.src.error(
                test,
                f"the condition `{shown}` compares an array of shape {show(shape)}, but a "
                "condition must be one truth value, not one per element",
                "test a number here (a parameter, or a reduction such as `x.sum()`); to choose "
                "element by element, use np.where(c, a, b)",
            )
        return e

    def _elementwise(self, node, op: str, left: Expr, right: Expr) -> Type:
        a, b = self.type_of(left), self.type_of(right)
        shape = self._broadcast(node, a.shape, b.shape)
        if a.kind == b.kind == "int" and op == "**":
            return Type(shape, "int")
        if a.kind == b.kind == "int" and op in "+-*":
            value = None
            if isinstance(a.value, int) and isinstance(b.value, int) and op == "-":
                value = a.value - b.value
            elif shape == () and _is_size(a.value) and _is_size(b.value) and op == "*":
                value = shapes.multiply([a.value, b.value])  # a size: x.reshape(N * T, D)
            elif shape == () and _is_size(a.value) and _is_size(b.value) and op == "+":
                value = _sum_of_dims([a.value, b.value])  # None unless it is one name's multiple
            return Type(shape, "int", value)
        return Type(shape, "float")

    def _compare(self, node: ast.Compare) -> tuple[Expr, Type]:
        if len(node.ops) != 1:
            raise self.src.error(
                node, "chained comparisons are not supported", "compare two values"
            )
        op = _COMPARE.get(type(node.ops[0]))
        if op is None:
            raise self.src.error(node, "this comparison is not supported", "use > >= < <= == !=")
        left, right = self.expr(node.left), self.expr(node.comparators[0])
        shape = self._broadcast(node, self.type_of(left).shape, self.type_of(right).shape)
        return Compare(op, left, right), Type(shape, "bool")

    def _broadcast(self, node: ast.expr, a: Shape, b: Shape) -> Shape:
        try:
            return shapes.broadcast(a, b)
        except ShapeError as err:
            if shapes.has_rest(a) or shapes.has_rest(b):  # say which expression needs it
                raise self._shape_unknown(node, a if shapes.has_rest(a) else b) from None
            raise self.src.error(node, err.message, err.hint) from None

    def _dot(self, node, left_node, right_node, spelling: str) -> tuple[Expr, Type]:
        left, right = self.expr(left_node), self.expr(right_node)
        a, b = self.type_of(left), self.type_of(right)
        for t, n in ((a, left_node), (b, right_node)):
            if not t.differentiable:
                raise self.src.error(n, "a matrix product of integers or masks", "multiply floats")
        sa, sb = self._same_size(a.shape, b.shape)
        if shapes.has_rest(sa) or shapes.has_rest(sb):
            raise self._shape_unknown(node, sa if shapes.has_rest(sa) else sb)
        try:
            shape = shapes.dot(sa, sb)
        except ShapeError as err:
            raise self.src.error(node, err.message, err.hint) from None
        return Dot(left, right, spelling), Type(shape, "float")

    def _same_size(self, a: Shape, b: Shape) -> tuple[Shape, Shape]:
        """A matrix product's inner dimensions, where one is a rest's size (``#x``, from
        ``x.reshape(N, -1)``) and the other a name: the product says they are equal, so the
        rest holds that many elements (the proof draws it so)."""
        if not a or not b or a[-1] == b[0]:
            return a, b
        left, right = a[-1], b[0]
        for mine, name in ((left, right), (right, left)):
            plain = isinstance(name, str) and "*" not in name and not shapes.is_rest_size(name)
            if not (shapes.is_rest_size(mine) and plain and not shapes.is_rest(name)):
                continue
            if self.rest_sizes.setdefault(shapes.rest(shapes.rest_param(mine)), name) != name:
                break  # the rest was already said to hold another size
            return a[:-1] + (name,), (name,) + b[1:]  # the rest's size, named
        return a, b

    # calls: np.f(...) and methods x.f(...)

    def _is_numpy(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id in self.np_names and node.id not in self.env

    def _array_call(self, node: ast.Call) -> tuple[Expr, Type]:
        func = node.func
        if self._is_random(func, "rand"):
            return self._draw(node)
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.src.error(a, "starred arguments are not supported", "list the arguments")
        if self._shape_of(node) is not None:
            raise self.src.error(
                node,
                "the whole shape is not a value here",
                f"read one dimension: `{ast.unparse(node)}[0]`, or unpack it: `N, D = ...`",
            )
        if isinstance(func, ast.Name) and func.id == "len" and func.id not in self.env:
            return self._length(node)
        if isinstance(func, ast.Attribute) and self._is_numpy(func.value):
            return self._numpy_function(node, func.attr)
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Attribute)
            and (self._is_numpy(func.value.value))
        ):
            if func.value.attr == "linalg" and func.attr == "norm":
                return self._norm(node)
            raise self.src.error(
                func, f"`{ast.unparse(func)}` is not supported", f"use one of: {SUPPORTED}"
            )
        if isinstance(func, ast.Attribute):
            return self._method(node, func.attr)
        if isinstance(func, ast.Name) and func.id in ("abs", "max", "min", "sum"):
            hint = {"abs": "np.abs", "max": "np.max or np.maximum", "min": "np.min or np.minimum"}
            raise self.src.error(
                func,
                f"the builtin `{func.id}` on arrays is not supported",
                f"use {hint.get(func.id, 'np.' + func.id)}",
            )
        super()._call(node)  # the scalar reader's located error
        raise AssertionError("unreachable")

    def _length(self, node: ast.Call) -> tuple[Expr, Type]:
        """``len(x)``: the size of an array's first axis."""
        self._arity(node, "len", 1)
        operand = self.expr(node.args[0])
        t = self.type_of(operand)
        if not isinstance(operand, Var):
            raise self.src.error(node, "`len` of an expression", "bind it to a name first")
        if not t.shape:
            raise self.src.error(node, "`len` of a number", "take `len` of an array")
        if shapes.is_rest(t.shape[0]):
            raise self._shape_unknown(node, t.shape)
        return ShapeRead(operand, 0, "len"), Type((), "int", t.shape[0])

    def _keywords(self, node: ast.Call, allowed: tuple[str, ...]) -> dict[str, ast.expr]:
        out = {}
        for k in node.keywords:
            if k.arg not in allowed:
                raise self.src.error(
                    k,
                    f"the keyword `{k.arg}` is not supported here",
                    f"supported: {', '.join(allowed)}" if allowed else "pass arguments by position",
                )
            out[k.arg] = k.value
        return out

    def _arity(self, node: ast.Call, name: str, n: int) -> None:
        if len(node.args) != n:
            raise self.src.error(
                node,
                f"`{name}` takes {n} argument{'s' if n != 1 else ''} here, not {len(node.args)}",
                "pass the right number of arguments",
            )

    def _numpy_function(self, node: ast.Call, name: str) -> tuple[Expr, Type]:
        shown = f"np.{name}"
        if name in UNARY:
            self._keywords(node, ())
            self._arity(node, shown, 1)
            arg = self.expr(node.args[0])
            self._require_float(node.args[0], arg, shown)
            t = self.type_of(arg)
            kind = "int" if t.kind == "int" and name in _KEEP_INTEGERS else "float"
            return Call(NUMPY_FUNCTIONS[name], (arg,)), Type(t.shape, kind)
        if name in BINARY:
            self._keywords(node, ())
            self._arity(node, shown, 2)
            args = tuple(self.expr(a) for a in node.args)
            for a, n in zip(args, node.args):
                self._require_float(n, a, shown)
            return Call(NUMPY_BINARY[name], args), self._elementwise(node, "*", *args)
        if name in REDUCTIONS:
            keywords = self._keywords(node, _reduce_keywords(name))
            if len(node.args) == 2 and "axis" not in keywords:
                keywords["axis"] = node.args[1]
            elif len(node.args) != 1:
                self._arity(node, shown, 1)
            return self._reduce(node, name, node.args[0], keywords, "np")
        if name == "dot":
            self._keywords(node, ())
            self._arity(node, shown, 2)
            return self._dot(node, node.args[0], node.args[1], "np.dot")
        if name == "outer":
            self._keywords(node, ())
            self._arity(node, shown, 2)
            return self._outer(node)
        if name == "where":
            self._keywords(node, ())
            self._arity(node, shown, 3)
            return self._where(node)
        if name == "clip":
            if not node.args:
                self._arity(node, shown, 3)
            lo, hi = self._clip_bounds(node, node.args[1:], shown)
            return self._clip(node, node.args[0], lo, hi)
        if name == "transpose" and len(node.args) == 2 or node.keywords and name == "transpose":
            keywords = self._keywords(node, ("axes",))
            axes = keywords.get("axes", node.args[1] if len(node.args) == 2 else None)
            return self._move(node, "transpose", node.args[0], [axes], "np")
        if name == "transpose":
            self._keywords(node, ())
            self._arity(node, shown, 1)
            arg = self.expr(node.args[0])
            return self._transpose(node, arg, "np.transpose")
        if name in ("expand_dims", "squeeze", "swapaxes", "ravel", "copy"):
            keywords = self._keywords(node, ("axis",) if name != "swapaxes" else ())
            if not node.args:
                self._arity(node, shown, 1)
            args = list(node.args[1:]) + ([keywords["axis"]] if "axis" in keywords else [])
            return self._move(node, name, node.args[0], args, "np")
        if name in ("zeros", "ones", "full", "zeros_like", "ones_like", "full_like"):
            return self._filled(node, name)
        if name in ("stack", "concatenate", "hstack", "vstack"):
            return self._join(node, name)
        if name == "reshape":
            self._keywords(node, ())
            self._arity(node, shown, 2)
            dims = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            return self._reshape(node, node.args[0], dims, "np")
        if name == "arange":
            self._keywords(node, ())
            self._arity(node, shown, 1)
            stop = self.expr(node.args[0])
            t = self.type_of(stop)
            if t.kind != "int" or t.shape != () or t.value is None:
                raise self.src.error(
                    node.args[0],
                    "np.arange needs a size read from a shape",
                    "write `np.arange(x.shape[0])`, or bind `n = x.shape[0]` first",
                )
            return Arange(stop), Type((t.value,), "int")
        raise self.src.error(
            node.func, f"`{shown}` is not supported yet", f"use one of: {SUPPORTED}"
        )

    def _require_float(self, node, e: Expr, what: str) -> None:
        if not self.type_of(e).differentiable and self.type_of(e).kind == "bool":
            raise self.src.error(node, f"{what} of a mask", "multiply by the mask instead")

    def _method(self, node: ast.Call, name: str) -> tuple[Expr, Type]:
        receiver_node = node.func.value
        if name in REDUCTIONS:
            keywords = self._keywords(node, _reduce_keywords(name))
            if len(node.args) == 1 and "axis" not in keywords:
                keywords["axis"] = node.args[0]
            elif node.args:
                self._arity(node, f".{name}()", 0)
            return self._reduce(node, name, receiver_node, keywords, "method")
        if name == "dot":
            self._keywords(node, ())
            self._arity(node, ".dot()", 1)
            return self._dot(node, receiver_node, node.args[0], "dot")
        moves = ("squeeze", "transpose", "swapaxes", "ravel", "flatten", "copy", "astype")
        if name in (*moves, "clip") and not self.type_of(self.expr(receiver_node)).shape:
            raise self.src.error(
                node.func,
                f"`.{name}()` of a number (a Python float has no such method)",
                (
                    f"call np.{name}(...) on it, or use it as it is"
                    if name not in ("flatten", "astype")
                    else "use the number as it is"
                ),
            )
        if name == "transpose" and not node.args and not node.keywords:
            return self._transpose(node, self.expr(receiver_node), ".T")  # x.transpose() is x.T
        if name in moves:
            keywords = self._keywords(node, ("axis",) if name == "squeeze" else ())
            args = list(node.args) + ([keywords["axis"]] if "axis" in keywords else [])
            if name == "transpose" and len(args) > 1:
                args = [ast.Tuple(elts=args, ctx=ast.Load())]
            return self._move(node, name, receiver_node, args, "method")
        if name == "clip":
            lo, hi = self._clip_bounds(node, node.args, ".clip()")
            return self._clip(node, receiver_node, lo, hi)
        if name == "reshape":
            self._keywords(node, ())
            dims = node.args
            if len(dims) == 1 and isinstance(dims[0], ast.Tuple):
                dims = dims[0].elts
            return self._reshape(node, receiver_node, dims, "method")
        raise self.src.error(
            node.func,
            f"the method `.{name}()` is not supported",
            "supported methods: .dot(), .sum(), .mean(), .max(), .min(), .prod(), .var(), "
            ".std(), .clip(), .reshape(), .squeeze(), .transpose(), .swapaxes(), .ravel(), "
            ".flatten(), .copy(), .astype(float), and .T",
        )

    def _constant_axes(self, node, what: str):
        """An int or a tuple of ints written in the code, or a located error."""
        try:
            value = ast.literal_eval(node)
        except ValueError:
            value = None
        ok = isinstance(value, int) or (
            isinstance(value, tuple) and value and all(isinstance(a, int) for a in value)
        )
        if not ok or isinstance(value, bool):
            raise self.src.error(node, f"{what} must be a constant", "write e.g. `1` or `(0, 2)`")
        return value

    def _move(self, node, name: str, operand_node, arg_nodes, spelling) -> tuple[Expr, Type]:
        """expand_dims, squeeze, transpose with axes, swapaxes, ravel, flatten, copy, astype."""
        operand = self.expr(operand_node)
        t = self.type_of(operand)
        shape = t.shape
        shown = f"np.{name}" if spelling == "np" else f".{name}()"
        text = ", ".join(self.src.segment(n) or ast.unparse(n) for n in node.args[1:])
        if spelling == "method":
            text = ", ".join(self.src.segment(n) or ast.unparse(n) for n in node.args)
        if node.keywords:
            text = ", ".join(
                [text] * bool(text)
                + [f"{k.arg}={self.src.segment(k.value)}" for k in node.keywords]
            )

        def fail(message, hint):
            return self.src.error(node, message, hint)

        args: tuple = ()
        if name in ("copy", "ravel", "flatten"):
            if arg_nodes:
                raise fail(f"{shown} takes no arguments here", f"write `{shown[:-1]})`")
            out = shape if name == "copy" else (shapes.multiply(shape),) if shape else (1,)
        elif name == "astype":
            target = arg_nodes[0] if len(arg_nodes) == 1 else None
            ok = target is not None and (
                (isinstance(target, ast.Name) and target.id == "float")
                or (isinstance(target, ast.Constant) and target.value in ("float", "float64"))
                or (
                    isinstance(target, ast.Attribute)
                    and self._is_numpy(target.value)
                    and target.attr == "float64"
                )
            )
            if not ok or t.kind != "float":
                raise fail(
                    "only `.astype(float)` of floats is supported (an identity)",
                    "drop the conversion, or convert floats to float",
                )
            out = shape
        elif name == "swapaxes":
            if len(arg_nodes) != 2:
                raise fail("swapaxes takes two axes", "write e.g. `x.swapaxes(0, 1)`")
            a, b = (self._constant_axes(n, "an axis") for n in arg_nodes)
            try:
                (a,), (b,) = (shapes.normalize_axis(k, len(shape)) for k in (a, b))
            except (ShapeError, TypeError, ValueError) as err:
                raise fail(getattr(err, "message", "bad axes"), "use axes of the array") from None
            args = (a, b)
            out = list(shape)
            out[a], out[b] = out[b], out[a]
            out = tuple(out)
        elif name == "transpose":
            if len(arg_nodes) != 1 or arg_nodes[0] is None:
                raise fail("transpose takes the axes here", "write e.g. `x.transpose(1, 0, 2)`")
            perm = self._constant_axes(arg_nodes[0], "the axes")
            perm = (perm,) if isinstance(perm, int) else perm
            perm = tuple(k % len(shape) if -len(shape) <= k < len(shape) else -1 for k in perm)
            if sorted(perm) != list(range(len(shape))):
                raise fail(
                    f"the axes {perm} are not a permutation of the {len(shape)} axes",
                    "name each axis once",
                )
            args = perm
            out = tuple(shape[k] for k in perm)
        else:  # expand_dims, squeeze
            if len(arg_nodes) != 1:
                raise fail(
                    f"{shown} needs its axis here",
                    f"write e.g. `{'np.expand_dims(x, 1)' if name == 'expand_dims' else 'x.squeeze(axis=1)'}`"
                    + (
                        " (without it, a dimension of size 1 at run time would go too)"
                        if name == "squeeze"
                        else ""
                    ),
                )
            value = self._constant_axes(arg_nodes[0], "the axis")
            axes = (value,) if isinstance(value, int) else value
            ndim = len(shape) + len(axes) if name == "expand_dims" else len(shape)
            try:
                axes = shapes.normalize_axis(axes, ndim)
            except ShapeError as err:
                raise self.src.error(arg_nodes[0], err.message, err.hint) from None
            args = axes
            if name == "expand_dims":
                rest = iter(shape)
                out = tuple(1 if k in axes else next(rest) for k in range(ndim))
            else:
                if any(shape[k] != 1 for k in axes):
                    raise self.src.error(
                        arg_nodes[0],
                        f"squeeze removes an axis of size 1, but {show(shape)} has "
                        f"{', '.join(str(shape[k]) for k in axes)} there",
                        "squeeze an axis of size 1",
                    )
                out = tuple(d for k, d in enumerate(shape) if k not in axes)
        return Move(name, operand, args, spelling, text), Type(out, t.kind)

    def _filled(self, node: ast.Call, name: str) -> tuple[Expr, Type]:
        """np.zeros, np.ones, np.full and their _like forms: constants of a known shape."""
        keywords = self._keywords(node, ("dtype",))
        if "dtype" in keywords and ast.unparse(keywords["dtype"]) not in (
            "float",
            "np.float64",
            "'float64'",
            '"float64"',
        ):
            raise self.src.error(keywords["dtype"], "only float arrays are supported", "drop dtype")
        full = name.startswith("full")
        self._arity(node, f"np.{name}", 2 if full else 1)
        rest = "".join(f", {k.arg}={self.src.segment(k.value)}" for k in node.keywords)
        value = None
        if full:
            value = self.expr(node.args[1])
            vt = self.type_of(value)
            if vt.shape != () or vt.kind == "bool":
                raise self.src.error(
                    node.args[1], "the fill value must be a number", "write e.g. 0.5"
                )
        first = node.args[0]
        # NumPy's dtype: float, but a _like form's is its array's, and np.full's its value's
        kind = "float"
        if "dtype" not in keywords and name == "full" and self.type_of(value).kind == "int":
            kind = "int"
        if name.endswith("_like"):
            like = self.expr(first)
            t = self.type_of(like)
            if "dtype" not in keywords and t.kind == "int":
                kind = "int"
            return Filled(name, (like,), value, rest), Type(t.shape, kind)
        if isinstance(first, ast.Attribute) and first.attr == "shape":
            operand = self.expr(first.value)
            shape = self.type_of(operand).shape
            return Filled(name, (ShapeOf(operand),), value, rest), Type(shape, kind)
        items = first.elts if isinstance(first, ast.Tuple) else [first]
        exprs, shape = [], []
        for item in items:
            e = self.expr(item)
            t = self.type_of(e)
            if t.kind != "int" or t.shape != () or t.value is None or t.value == -1:
                raise self.src.error(
                    item,
                    "a size must be a number or a size read from a shape",
                    "write e.g. `np.zeros((N, D))` after `N, D = x.shape`, or `np.zeros(x.shape)`",
                )
            exprs.append(e)
            shape.append(t.value)
        return Filled(name, tuple(exprs), value, rest), Type(tuple(shape), kind)

    def _join(self, node: ast.Call, name: str) -> tuple[Expr, Type]:
        keywords = self._keywords(node, ("axis",) if name in ("stack", "concatenate") else ())
        if len(node.args) == 2 and "axis" not in keywords and name in ("stack", "concatenate"):
            keywords["axis"] = node.args[1]
        elif len(node.args) != 1:
            self._arity(node, f"np.{name}", 1)
        listed = node.args[0]
        if not isinstance(listed, (ast.List, ast.Tuple)) or not listed.elts:
            raise self.src.error(
                listed,
                f"np.{name} takes a list of arrays written out here",
                f"write e.g. `np.{name}([a, b])`",
            )
        parts = tuple(self.expr(n) for n in listed.elts)
        types = [self.type_of(p) for p in parts]
        for t, n in zip(types, listed.elts):
            if t.kind != "float" or not t.shape:
                raise self.src.error(
                    n, f"np.{name} joins float arrays here", "pass arrays of floats"
                )
        first = types[0].shape
        ndim = len(first)
        axis_node = keywords.get("axis")
        axis = 0 if axis_node is None else self._constant_axes(axis_node, "the axis")
        if not isinstance(axis, int):
            raise self.src.error(axis_node, "join along one axis", "write e.g. `axis=0`")
        text = f"axis={self.src.segment(axis_node)}" if axis_node is not None else ""
        if name == "stack" or (name == "vstack" and ndim == 1):
            if any(t.shape != first for t in types):
                raise self.src.error(
                    node,
                    f"np.{name} needs arrays of one shape, not "
                    + ", ".join(show(t.shape) for t in types),
                    "stack arrays of the same shape",
                )
            try:
                (axis,) = shapes.normalize_axis(axis, ndim + 1)
            except ShapeError as err:
                raise self.src.error(axis_node, err.message, err.hint) from None
            out = first[:axis] + (len(parts),) + first[axis:]
            return Join(name, parts, axis, text), Type(out, "float")
        if name == "hstack":
            axis = 0 if ndim == 1 else 1
        try:
            (axis,) = shapes.normalize_axis(axis, ndim)
        except ShapeError as err:
            raise self.src.error(axis_node or node, err.message, err.hint) from None
        for t in types:
            if len(t.shape) != ndim or any(
                a != b for k, (a, b) in enumerate(zip(t.shape, first)) if k != axis
            ):
                raise self.src.error(
                    node,
                    f"np.{name} needs arrays that match but along axis {axis}, not "
                    + ", ".join(show(t.shape) for t in types),
                    "make the other dimensions match",
                )
        joined = _sum_of_dims([t.shape[axis] for t in types])
        if joined is None:
            raise self.src.error(
                node,
                "the joined axis would have a size that is a sum of different dimensions ("
                + " + ".join(str(t.shape[axis]) for t in types)
                + "), which stagegen cannot name",
                "join arrays whose sizes along the axis are numbers or the same dimension",
            )
        out = first[:axis] + (joined,) + first[axis + 1 :]
        return Join(name, parts, axis, text), Type(out, "float")

    def _outer(self, node: ast.Call) -> tuple[Expr, Type]:
        a, b = (self.expr(n) for n in node.args)
        for e, n in zip((a, b), node.args):
            t = self.type_of(e)
            if not t.differentiable or len(t.shape) != 1:
                raise self.src.error(
                    n,
                    "np.outer takes two vectors of floats here",
                    "pass 1-d float arrays (reshape an array with `.reshape(-1)` first)",
                )
        return Outer(a, b), Type((self.type_of(a).shape[0], self.type_of(b).shape[0]), "float")

    def _where(self, node: ast.Call) -> tuple[Expr, Type]:
        test, a, b = (self.expr(n) for n in node.args)
        if self.type_of(test).kind != "bool":
            raise self.src.error(
                node.args[0],
                "the first argument of np.where must be a mask (a comparison such as `x > 0`)",
                "compare: `np.where(x > 0, a, b)`",
            )
        for e, n in ((a, node.args[1]), (b, node.args[2])):
            if self.type_of(e).kind == "bool":
                raise self.src.error(n, "np.where chooses between masks here", "choose floats")
        shape = self.type_of(test).shape
        try:
            for e in (a, b):
                shape = shapes.broadcast(shape, self.type_of(e).shape)
        except ShapeError as err:
            raise self.src.error(node, err.message, err.hint) from None
        kind = "int" if self.type_of(a).kind == self.type_of(b).kind == "int" else "float"
        return Where(test, a, b), Type(shape, kind)

    def _clip_bounds(self, node: ast.Call, positional, shown: str):
        """The bounds of a clip, by position or keyword (a_min/a_max, or NumPy 2's min/max);
        a bound not given is None, as NumPy reads it."""
        keywords = self._keywords(node, ("a_min", "a_max", "min", "max"))
        if len(positional) > 2:
            self._arity(node, shown, 3 if shown.startswith("np.") else 2)
        bounds = list(positional) + [None] * (2 - len(positional))
        for k, names in enumerate((("a_min", "min"), ("a_max", "max"))):
            for name in names:
                if name in keywords:
                    if bounds[k] is not None:
                        raise self.src.error(
                            keywords[name], f"the bound `{name}` is given twice", "give it once"
                        )
                    bounds[k] = keywords[name]
        none = ast.Constant(value=None)
        return tuple(none if b is None else b for b in bounds)

    def _clip(self, node, operand_node, lo_node, hi_node) -> tuple[Expr, Type]:
        """``np.clip(x, lo, hi)`` with numbers for the bounds (one may be None: a max or a min)."""
        operand = self.expr(operand_node)
        self._require_float(operand_node, operand, "np.clip")
        bounds = []
        for n in (lo_node, hi_node):
            if isinstance(n, ast.Constant) and n.value is None:
                bounds.append(None)
                continue
            try:
                value = ast.literal_eval(n)
            except ValueError:
                value = None
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise self.src.error(
                    n,
                    "the bounds of np.clip must be numbers written in the code",
                    "write e.g. `np.clip(x, -1.0, 1.0)`; for array bounds, use np.maximum and "
                    "np.minimum",
                )
            bounds.append(self.expr(n))
        lo, hi = bounds
        if lo is None and hi is None:
            raise self.src.error(node, "np.clip without bounds", "give a lower or upper bound")
        shape = self.type_of(operand).shape
        bounds = [b for b in (lo, hi) if b is not None]
        ints = self.type_of(operand).kind == "int" and all(
            self.type_of(b).kind == "int" for b in bounds
        )
        kind = "int" if ints else "float"
        if lo is None:
            return Call("min", (operand, hi)), Type(shape, kind)
        if hi is None:
            return Call("max", (operand, lo)), Type(shape, kind)
        if ast.literal_eval(lo_node) > ast.literal_eval(hi_node):  # (both are numbers here)
            raise self.src.error(
                node,
                "np.clip's lower bound is above its upper bound",
                "give the smaller bound first",
            )
        return Call("clip", (operand, lo, hi)), Type(shape, kind)

    def _norm(self, node: ast.Call) -> tuple[Expr, Type]:
        """``np.linalg.norm(x)`` (of every element, as NumPy's Frobenius norm of a matrix is) or
        ``np.linalg.norm(x, axis=k)``: the 2-norm, a reduction."""
        keywords = self._keywords(node, ("axis", "keepdims", "ord"))
        args = list(node.args)
        if len(args) > 3 or not args:
            self._arity(node, "np.linalg.norm", 1)
        if len(args) >= 2:
            keywords.setdefault("ord", args[1])
        if len(args) == 3:
            keywords.setdefault("axis", args[2])
        order = keywords.pop("ord", None)
        if order is not None and not (isinstance(order, ast.Constant) and order.value in (None, 2)):
            raise self.src.error(
                order,
                "only the 2-norm (ord=None) is supported",
                "drop `ord`, or write the norm out, e.g. `np.sum(np.abs(x))` for ord=1",
            )
        if order is not None and order.value == 2 and "axis" not in keywords:
            raise self.src.error(
                order,
                "`ord=2` of a matrix is its largest singular value, which is not supported",
                "drop `ord` for the 2-norm of every element, or give `axis=` for vectors",
            )
        axis = keywords.get("axis")
        if axis is not None and isinstance(axis, ast.Tuple):
            raise self.src.error(
                axis,
                "np.linalg.norm over two axes is a matrix norm, which is not supported",
                "take the norm over one axis, or of the whole array",
            )
        return self._reduce(node, "norm", args[0], keywords, "np")

    def _reduce(self, node, name, operand_node, keywords, spelling) -> tuple[Expr, Type]:
        ddof = 0
        if "ddof" in keywords:
            written = keywords.pop("ddof")
            try:
                ddof = ast.literal_eval(written)
            except ValueError:
                ddof = None
            if not isinstance(ddof, int) or isinstance(ddof, bool) or ddof < 0:
                raise self.src.error(
                    written,
                    f"the ddof of {name} must be a whole number written in the code",
                    "write e.g. `ddof=1` (the divisor is the count minus ddof)",
                )
        operand = self.expr(operand_node)
        t = self.type_of(operand)
        if t.kind == "bool" or (t.kind == "int" and name != "sum"):
            raise self.src.error(operand_node, f"{name} of integers or a mask", "reduce floats")
        axis, axis_text = None, ""
        if "axis" in keywords:
            try:
                axis = ast.literal_eval(keywords["axis"])
            except ValueError:
                axis = "bad"
            if (
                axis is not None
                and not (
                    isinstance(axis, int)
                    or (isinstance(axis, tuple) and all(isinstance(a, int) for a in axis))
                )
                or isinstance(axis, bool)
            ):
                raise self.src.error(
                    keywords["axis"],
                    "the axis must be a constant",
                    "write e.g. `axis=0` or `axis=(0, 1)`",
                )
            axis_text = self.src.segment(keywords["axis"]) or repr(axis)
        keepdims = False
        if "keepdims" in keywords:
            try:
                keepdims = ast.literal_eval(keywords["keepdims"])
            except ValueError:
                keepdims = None
            if not isinstance(keepdims, bool):
                raise self.src.error(
                    keywords["keepdims"], "keepdims must be True or False", "write `keepdims=True`"
                )
        try:
            axes = shapes.normalize_axis(axis, len(t.shape))
        except ShapeError as err:
            raise self.src.error(keywords.get("axis", node), err.message, err.hint) from None
        if not t.shape:
            raise self.src.error(node, f"{name} of a number", "reduce an array")
        if name == "prod" and axes is not None and len(axes) > 1:
            raise self.src.error(
                keywords["axis"],
                "a product over several axes is not supported",
                "reshape the axes into one first, or take the product one axis at a time",
            )
        shape = shapes.reduce(t.shape, axes, keepdims)
        e = Reduce(
            name, operand, axes, keepdims, spelling, axis_text if axis is not None else "", ddof
        )
        return e, Type(shape, t.kind)

    def _transpose(self, node, operand: Expr, spelling: str) -> tuple[Expr, Type]:
        t = self.type_of(operand)
        return Transpose(operand, spelling), Type(tuple(reversed(t.shape)), t.kind)

    def _reshape(self, node, operand_node, dim_nodes, spelling) -> tuple[Expr, Type]:
        operand = self.expr(operand_node)
        t = self.type_of(operand)
        dims, target = [], []
        for d in dim_nodes:
            e = self.expr(d)
            dt = self.type_of(e)
            if dt.kind != "int" or dt.shape != () or dt.value is None:
                raise self.src.error(
                    d,
                    "a new dimension must be a number or a size read from a shape",
                    "write e.g. `x.reshape(x.shape[0], -1)`",
                )
            dims.append(e)
            target.append(None if dt.value == -1 else dt.value)
        try:
            shape = shapes.reshape(t.shape, target)
        except ShapeError as err:
            raise self.src.error(node, err.message, err.hint) from None
        return Reshape(operand, tuple(dims), spelling), Type(shape, t.kind)

    def _array_attribute(self, node: ast.Attribute) -> tuple[Expr, Type]:
        if self._is_numpy(node.value):
            raise self.src.error(
                node, f"`{ast.unparse(node)}` is not supported", f"call one of: {SUPPORTED}"
            )
        if node.attr == "T":
            operand = self.expr(node.value)
            return self._transpose(node, operand, ".T")
        if node.attr == "shape":
            raise self.src.error(
                node,
                "the whole shape is not a value here",
                f"read one dimension: `{ast.unparse(node)}[0]`",
            )
        if node.attr == "ndim":  # fixed by the shape, as the backward assumes it
            shape = self.type_of(self.expr(node.value)).shape
            if shapes.has_rest(shape):
                raise self._shape_unknown(node, shape)
            return Num(len(shape)), Type((), "int")
        raise self.src.error(
            node,
            f"the attribute `.{node.attr}` is not supported",
            "supported: .T, .shape[k], .ndim, and methods such as .dot() .sum() .reshape()",
        )

    def _index(self, node: ast.Subscript) -> tuple[Expr, Type]:
        value = node.value
        array = self._shape_of(value)
        if array is not None:
            operand = self.expr(array)
            t = self.type_of(operand)
            axis = node.slice
            try:
                k = ast.literal_eval(axis)
            except ValueError:
                k = None
            if type(k) is not int:
                raise self.src.error(axis, "a shape index must be a constant", "write `x.shape[0]`")
            if shapes.has_rest(t.shape) and (k < 0 or any(map(shapes.is_rest, t.shape[: k + 1]))):
                raise self._shape_unknown(node, t.shape)
            if not -len(t.shape) <= k < len(t.shape):
                raise self.src.error(
                    axis,
                    f"`{ast.unparse(array)}` has {len(t.shape)} dimension(s)",
                    f"read an axis from 0 to {len(t.shape) - 1}",
                )
            k %= len(t.shape)
            dim = t.shape[k]
            spelling = "attribute" if isinstance(value, ast.Attribute) else "np"
            return ShapeRead(operand, k, spelling), Type((), "int", dim)
        operand = self.expr(value)
        t = self.type_of(operand)
        raw = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        items: list[Expr] = []
        for item in raw:
            if isinstance(item, ast.Slice):
                if item.step:
                    raise self.src.error(
                        item,
                        "a slice with a step is not supported",
                        "slice from a start to a stop, e.g. `a[:, H : 2 * H]`",
                    )
                if item.lower or item.upper:
                    items.append(self._span(item))
                else:
                    items.append(FullSlice())
            elif (isinstance(item, ast.Constant) and item.value is None) or (
                isinstance(item, ast.Attribute)
                and item.attr == "newaxis"
                and self._is_numpy(item.value)
            ):
                items.append(NewAxis())
            else:
                e = self.expr(item)
                it = self.type_of(e)
                if it.kind == "int" and it.shape == () and _is_loop_index(e, self.integers):
                    items.append(e)  # one step's slot: x[:, t, :]
                    continue
                if it.kind != "int" or not it.shape:
                    raise self.src.error(
                        item,
                        "an index must be `:`, None, or an integer array (labels, np.arange(n))",
                        "for a single row or column, index with an integer array of length 1",
                    )
                items.append(e)
        steps = [i for i in items if _is_loop_index(i, self.integers)]
        if steps and (
            any(_is_array(i) for i in items if i not in steps) or not isinstance(operand, Var)
        ):
            raise self.src.error(
                node,
                "a loop index selects a slot of a named array, with `:` for the other axes",
                "write `x[:, t, :]` on a parameter or a named value",
            )
        if steps:
            shape = tuple(
                d for d, i in zip(t.shape, items + [FullSlice()] * len(t.shape)) if i not in steps
            )
            return Index(operand, tuple(items)), Type(shape, t.kind)
        spans = [k for k, i in enumerate(items) if isinstance(i, Span)]
        if spans:
            return self._sliced(node, operand, t, items)
        if any(_is_array(i) for i in items) and not isinstance(operand, Var):
            raise self.src.error(
                value,
                "an index array reads an expression, not a named value",
                "bind the expression to a name first, then index the name",
            )
        try:
            shape = _index_shape(
                t.shape, items, [self.type_of(i).shape for i in items if _is_array(i)]
            )
        except ShapeError as err:
            raise self.src.error(node, err.message, err.hint) from None
        return Index(operand, tuple(items)), Type(shape, t.kind)


def _difference(stop, start, dim):
    """``stop - start`` when 0 <= start <= stop <= dim for every size: all three multiples of
    one product of names (``H``, ``2*H``, ``4*H``), or numbers; else None."""
    terms = [shapes.factors(d) for d in (start, stop, dim)]
    named = {names for c, names in terms if c}
    if len(named) > 1:
        return None
    names = named.pop() if named else ()
    (c0, _), (c1, _), (cd, _) = terms
    if not 0 <= c0 <= c1 <= cd or c1 == c0:
        return None
    return shapes.multiply([c1 - c0, *names])


def _is_size(value) -> bool:
    """A dimension a shape read or a number gives: 3, "N", "H*W" (not a rest's many)."""
    return (isinstance(value, int) and value >= 0) or (
        isinstance(value, str) and not shapes.is_rest(value)
    )


def _sum_of_dims(sizes) -> object:
    """The sum of dimensions: numbers, or multiples of one product of names (N + N = 2*N);
    None for any other sum (N + M)."""
    coefficient, names = 0, None
    for d in sizes:
        c, n = shapes.factors(d)
        if names is not None and n != names:
            return None
        names = n
        coefficient += c
    return shapes.multiply([coefficient, *names])


def _called_shape(shape: Shape, dims: dict) -> Shape:
    """A callee's shape in the caller's dimensions: ``dims`` maps the callee's names to the
    caller's, and each of its rests (``...x``) to the dimensions the argument had there."""
    out: list = []
    for d in shape:
        if shapes.is_rest(d):
            out += dims[d]
        elif isinstance(d, str) and ("*" in d or shapes.is_rest_size(d)):
            coefficient, names = shapes.factors(d)
            parts: list = [coefficient]
            for n in names:
                parts += (
                    dims[shapes.rest(shapes.rest_param(n))] if shapes.is_rest_size(n) else [dims[n]]
                )
            out.append(shapes.multiply(parts))
        else:
            out.append(dims.get(d, d))
    return tuple(out)


# What is exact whatever the number of dimensions of an operand with a rest (``...x``).
_ANY_RANK = (Var, Bin, Neg, Call, Compare, And, Or, Not, Where, Cond, Reshape, Copy, Draw)
_ANY_RANK_MOVES = ("copy", "astype", "ravel", "flatten")
_ANY_RANK_REDUCTIONS = ("sum", "mean", "max", "min", "var", "std", "norm")


def _exact_for_any_rank(e: Expr, shape: Shape) -> bool:
    if isinstance(e, _ANY_RANK):
        return True
    if isinstance(e, Reduce):  # all of it: the number of dimensions does not matter
        return e.axis is None and not e.keepdims and e.fn in _ANY_RANK_REDUCTIONS
    if isinstance(e, Move):
        return e.fn in _ANY_RANK_MOVES
    if isinstance(e, Filled):
        return e.fn.endswith("_like")
    if isinstance(e, ShapeRead):  # a leading dimension (the reader refused one from the back)
        return not any(shapes.is_rest(d) for d in shape[: e.axis + 1])
    if isinstance(e, Index):  # x[t] or x[:, t] of (N, T, ...): only the axes in front of the rest
        before = next(k for k, d in enumerate(shape) if shapes.is_rest(d))
        return len(e.items) <= before and not any(isinstance(i, NewAxis) for i in e.items)
    return False


def _reduce_keywords(name: str) -> tuple[str, ...]:
    return ("axis", "keepdims", "ddof") if name in ("var", "std") else ("axis", "keepdims")


def _shape_words(shape: Shape) -> str:
    return show(shape) if shape else "a number"


def _is_unary_plus(node) -> bool:
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd)


def _shares_memory(e: Expr, integers: set[str]) -> list[Var]:
    """The named arrays whose memory ``e`` may share: an alias, a view (a transpose, reshape,
    move, or basic indexing with ``:``, ``None``, slices ``a:b`` and a loop's index), or either
    side of a conditional expression."""
    while True:
        if isinstance(e, Var):
            return [e]
        if isinstance(e, Cond):
            return _shares_memory(e.body, integers) + _shares_memory(e.orelse, integers)
        if isinstance(e, (Transpose, Reshape)) or (
            isinstance(e, Move) and e.fn not in ("copy", "astype", "flatten")
        ):
            e = e.operand  # a view of the same memory
        elif isinstance(e, Index) and all(
            isinstance(i, (FullSlice, NewAxis, Span)) or _is_loop_index(i, integers)
            for i in e.items
        ):
            e = e.operand
        else:
            return []


def _is_loop_index(item: Expr, integers: set[str]) -> bool:
    return isinstance(item, Var) and item.name in integers


def _is_array(item: Expr) -> bool:
    return not isinstance(item, (FullSlice, NewAxis))


def _index_shape(shape: Shape, items: list[Expr], array_shapes: list[Shape]) -> Shape:
    """NumPy's indexing rule, for ``:``, None and integer arrays (adjacent to each other; their
    shapes broadcast together and take their place: ``W[x]`` of (V, D) by (N, T) is (N, T, D))."""
    consumed = sum(1 for i in items if not isinstance(i, NewAxis))
    if consumed > len(shape):
        raise ShapeError(
            f"too many indices for an array of shape {show(shape)}", "index each axis at most once"
        )
    arrays = [k for k, i in enumerate(items) if _is_array(i)]
    if not arrays:
        out: list = []
        axis = 0
        for i in items:
            if isinstance(i, NewAxis):
                out.append(1)
            else:
                out.append(shape[axis])
                axis += 1
        return tuple(out) + shape[axis:]
    if any(isinstance(i, NewAxis) for i in items):
        raise ShapeError(
            "mixing None with index arrays is not supported", "index first, then add the axis"
        )
    if arrays != list(range(arrays[0], arrays[-1] + 1)):
        raise ShapeError("index arrays must be next to each other", "reorder the axes first")
    broadcast: Shape = ()
    for s in array_shapes:
        broadcast = shapes.broadcast(broadcast, s)
    return shape[: arrays[0]] + broadcast + shape[arrays[-1] + 1 :]


def _seed_names(fn, np_names) -> set[str]:
    """The parameters passed to ``np.random.seed``."""
    params = {a.arg for a in fn.args.posonlyargs + fn.args.args}
    return {
        node.args[0].id
        for node in ast.walk(fn)
        if isinstance(node, ast.Call)
        and _is_numpy_random(node.func, "seed", np_names)
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id in params
    }


def _is_numpy_random(func: ast.expr, name: str, np_names) -> bool:
    """``np.random.<name>``, with ``np`` one of NumPy's names."""
    return (
        isinstance(func, ast.Attribute)
        and func.attr == name
        and isinstance(func.value, ast.Attribute)
        and func.value.attr == "random"
        and isinstance(func.value.value, ast.Name)
        and func.value.value.id in np_names
    )


def _index_names(fn) -> set[str]:
    """Names written as an index item (the ``y`` of ``x[np.arange(n), y]``): integer labels,
    never differentiated. Names deeper inside an item (``np.arange(x.shape[0])``) are not."""
    found = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Subscript):
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            found.update(i.id for i in items if isinstance(i, ast.Name))
    # A name bound in the function may index as something else (y = np.arange(N); x[y]):
    # only a name that always holds the parameter, or a reshape bound once, says "labels".
    bound: dict[str, int] = {}
    for node in ast.walk(fn):
        targets = node.targets if isinstance(node, ast.Assign) else []
        targets += (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For)) else []
        )
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    bound[n.id] = bound.get(n.id, 0) + 1
    params = {a.arg for a in fn.args.posonlyargs + fn.args.args}
    found = {n for n in found if (n not in bound if n in params else bound.get(n) == 1)}
    # labels reshaped first are labels too: y_flat = y.reshape(N * T), then x[..., y_flat]
    reshaped = {
        node.targets[0].id: node.value.func.value.id
        for node in ast.walk(fn)
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr in ("reshape", "ravel", "flatten")
        and isinstance(node.value.func.value, ast.Name)
    }
    for name in list(found):
        while name in reshaped and reshaped[name] not in found and bound.get(name) == 1:
            name = reshaped[name]
            if name in params and name in bound:
                break  # the parameter's name is bound again: not the labels it was passed
            found.add(name)
    return found
