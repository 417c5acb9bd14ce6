"""Array expressions: the scalar nodes of ``expr`` (Var, Num, Neg, Bin, Call, Compare) plus the
NumPy operations of the array language, and a printer for both.

A ``Call`` here names a NumPy function (``exp``, ``maximum``, ...), printed ``np.exp(...)``.
Nodes keep the user's spelling (``x.dot(w)``, ``x @ w``, ``np.dot(x, w)``; ``x.sum(...)`` or
``np.sum(x, ...)``), so the forward replay reads as the user wrote it; the gradient code is
always written in one house style, the one a course's solutions use: ``x.T.dot(dout)``,
``dout.sum(axis=0)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..gates import numpy_spelling
from .shapes import JOINT, REST_SIZE
from ..expr import (
    PREC_ATOM,
    PREC_MUL,
    And,
    Bin,
    Call,
    Compare,
    Expr,
    Neg,
    Not,
    Num,
    Or,
    Printer,
    Var,
    precedence_of,
)


@dataclass(frozen=True)
class Dim(Expr):
    """A dimension named in a shape annotation ("N"), bound at the top of the backward."""

    name: str


@dataclass(frozen=True)
class Dot(Expr):
    left: Expr
    right: Expr
    spelling: str = "dot"  # "dot" (a.dot(b)), "@", or "np.dot"

    def children(self):
        return (self.left, self.right)

    @property
    def precedence(self) -> int:
        return PREC_MUL if self.spelling == "@" else PREC_ATOM


@dataclass(frozen=True)
class Transpose(Expr):
    operand: Expr
    spelling: str = ".T"  # or "np.transpose"

    def children(self):
        return (self.operand,)


@dataclass(frozen=True)
class Reshape(Expr):
    operand: Expr
    shape: tuple[Expr, ...]  # dimensions as expressions; Num(-1) for "the rest"
    spelling: str = "method"  # or "np"

    def children(self):
        return (self.operand, *self.shape)


@dataclass(frozen=True)
class Reduce(Expr):
    fn: str  # sum, mean, max, min, prod, var, std, norm (np.linalg.norm)
    operand: Expr
    axis: tuple[int, ...] | None  # None: every axis
    keepdims: bool = False
    spelling: str = "np"  # "np" (np.sum(x, ...)) or "method" (x.sum(...))
    axis_text: str = ""  # how the user wrote the axis, kept for the replay
    ddof: int = 0  # var and std: the divisor is the count minus ddof

    def children(self):
        return (self.operand,)


@dataclass(frozen=True)
class FullSlice(Expr):
    """``:`` inside an index."""


@dataclass(frozen=True)
class NewAxis(Expr):
    """``None`` inside an index."""


@dataclass(frozen=True)
class Index(Expr):
    operand: Expr
    items: tuple[Expr, ...]  # FullSlice, NewAxis, or integer-array expressions

    def children(self):
        return (self.operand, *self.items)


@dataclass(frozen=True)
class ShapeRead(Expr):
    operand: Expr  # a parameter
    axis: int
    spelling: str = "attribute"  # x.shape[k]; or "np" (np.shape(x)[k]) or "len" (len(x))

    def children(self):
        return (self.operand,)


@dataclass(frozen=True)
class Arange(Expr):
    stop: Expr

    def children(self):
        return (self.stop,)


@dataclass(frozen=True)
class Move(Expr):
    """An operation that moves elements without changing them: ``expand_dims``, ``squeeze``,
    ``transpose`` with axes, ``swapaxes``, ``ravel``, ``flatten``, and the identities ``copy``
    and ``astype(float)``. ``args`` are its integer arguments (axes), ``text`` how they are
    written between the parentheses, after the operand for the np. spelling."""

    fn: str
    operand: Expr
    args: tuple = ()
    spelling: str = "method"  # or "np"
    text: str = ""
    undoes: str = ""  # in gradient code: the forward operation it undoes (for the teaching aid)

    def children(self):
        return (self.operand,)


@dataclass(frozen=True)
class Filled(Expr):
    """An array of one value (``np.zeros``, ``np.ones``, ``np.full``, and their ``_like``
    forms): a constant, no gradient. ``shape`` is a ``ShapeOf``, a tuple's dimensions, or the
    array a ``_like`` form copies the shape of; ``value`` is ``np.full``'s number."""

    fn: str
    shape: tuple[Expr, ...]
    value: Expr | None = None
    text: str = ""  # the rest of the call as written (e.g. ", dtype=float")

    def children(self):
        return (*self.shape, *((self.value,) if self.value is not None else ()))


@dataclass(frozen=True)
class Join(Expr):
    """``np.stack``, ``np.concatenate``, ``np.hstack``, ``np.vstack`` of a list of arrays."""

    fn: str
    parts: tuple[Expr, ...]
    axis: int = 0  # the axis (normalised) they are joined along in the result
    text: str = ""  # the axis as written, for the replay

    def children(self):
        return self.parts


@dataclass(frozen=True)
class Span(Expr):
    """``start:stop`` inside an index (None for an open end): the gradient code's slices."""

    start: Expr | None
    stop: Expr | None

    def children(self):
        return tuple(e for e in (self.start, self.stop) if e is not None)


@dataclass(frozen=True)
class Put(Expr):
    """``a[items] = value`` read as a value: the array ``operand`` held before the write, with
    ``value`` written at ``items`` (index items as a read takes them, or one boolean mask of
    its shape). The replay writes it as the user did, into a copy when the array before the
    write is read again."""

    operand: Expr
    items: tuple[Expr, ...]
    value: Expr
    selected: tuple = field(default=(), compare=False, repr=False)  # the positions' shape

    def children(self):
        return (self.operand, *self.items, self.value)


# Nodes only the gradient code uses.


@dataclass(frozen=True)
class Others(Expr):
    """For each element of ``operand``, the product of the other elements along ``axis`` (of
    ``size`` elements): the gradient of a product, exact where an element is 0 (no division
    by it). Each row of ``np.eye(size)`` masks one element out:
    ``np.prod(np.where(np.eye(D, dtype=bool), 1.0, x[..., None, :]), axis=-1)``."""

    operand: Expr
    axis: int
    ndim: int
    size: Expr

    def children(self):
        return (self.operand, self.size)


@dataclass(frozen=True)
class SumTo(Expr):
    """A gradient summed back to the shape ``shape`` its array had before NumPy broadcast it,
    where that is known only at run time (two arrays of any shape: ``x * w``); printed as a
    call of the generated module's ``unbroadcast``."""

    operand: Expr
    shape: tuple[Expr, ...]

    def children(self):
        return (self.operand, *self.shape)


@dataclass(frozen=True)
class JointShape(Expr):
    """The shape NumPy broadcasts arrays of any shape to (``np.broadcast_shapes``), or, with
    ``size``, its number of elements."""

    operands: tuple[Expr, ...]
    size: bool = False

    def children(self):
        return self.operands


@dataclass(frozen=True)
class BroadcastTo(Expr):
    operand: Expr
    shape: tuple[Expr, ...]

    def children(self):
        return (self.operand, *self.shape)


@dataclass(frozen=True)
class Zeros(Expr):
    shape: tuple[Expr, ...]

    def children(self):
        return self.shape


@dataclass(frozen=True)
class Outer(Expr):
    left: Expr
    right: Expr

    def children(self):
        return (self.left, self.right)


@dataclass(frozen=True)
class ShapeOf(Expr):
    """``x.shape``, unpacked into the dimensions it binds."""

    operand: Expr

    def children(self):
        return (self.operand,)


@dataclass(frozen=True)
class Draw(Expr):
    """``np.random.rand(*x.shape)`` right after ``np.random.seed(seed)``: uniform draws, a
    constant with no gradient. The backward draws them again from the same seed without
    touching NumPy's global state: ``np.random.RandomState(seed).rand(*x.shape)`` gives the
    same numbers."""

    seed: Expr  # the parameter the forward seeds with
    like: Expr  # the array whose shape it draws

    def children(self):
        return (self.seed, self.like)


@dataclass(frozen=True)
class RestOf(Expr):
    """The dimensions of a parameter from ``start`` on, however many there are (a rest): printed
    ``*x.shape[1:]`` inside a shape; ``size`` prints how many elements they hold."""

    operand: Expr
    start: int
    size: bool = False

    def children(self):
        return (self.operand,)


@dataclass(frozen=True)
class AddAt(Expr):
    """``np.add.at(target, items, values)``: a gather's gradient scattered, adding where indices
    repeat."""

    target: Expr
    items: tuple[Expr, ...]
    values: Expr

    def children(self):
        return (self.target, *self.items, self.values)


@dataclass(frozen=True)
class Where(Expr):
    """``np.where(test, body, orelse)``: number code's ``body if test else orelse``, elementwise."""

    test: Expr
    body: Expr
    orelse: Expr

    def children(self):
        return (self.test, self.body, self.orelse)


@dataclass(frozen=True)
class Copy(Expr):
    operand: Expr
    number: bool = False  # a number's copy is float(x): a 0-d array upstream is not written into

    def children(self):
        return (self.operand,)


def rebuild_array(e: Expr, kids: tuple[Expr, ...]) -> Expr:
    """``e`` with new children (the array counterpart of ``expr.rebuild``)."""
    from ..expr import rebuild

    if isinstance(e, Dot):
        return Dot(kids[0], kids[1], e.spelling)
    if isinstance(e, Transpose):
        return Transpose(kids[0], e.spelling)
    if isinstance(e, Reshape):
        return Reshape(kids[0], tuple(kids[1:]), e.spelling)
    if isinstance(e, Reduce):
        return Reduce(e.fn, kids[0], e.axis, e.keepdims, e.spelling, e.axis_text, e.ddof)
    if isinstance(e, Index):
        return Index(kids[0], tuple(kids[1:]))
    if isinstance(e, ShapeRead):
        return ShapeRead(kids[0], e.axis, e.spelling)
    if isinstance(e, RestOf):
        return RestOf(kids[0], e.start, e.size)
    if isinstance(e, Draw):
        return Draw(kids[0], kids[1])
    if isinstance(e, Arange):
        return Arange(kids[0])
    if isinstance(e, BroadcastTo):
        b = BroadcastTo(kids[0], tuple(kids[1:]))
        if hasattr(e, "shape_key"):
            object.__setattr__(b, "shape_key", e.shape_key)
        return b
    if isinstance(e, Zeros):
        return Zeros(tuple(kids))
    if isinstance(e, SumTo):
        return SumTo(kids[0], tuple(kids[1:]))
    if isinstance(e, JointShape):
        return JointShape(tuple(kids), e.size)
    if isinstance(e, Outer):
        return Outer(kids[0], kids[1])
    if isinstance(e, Move):
        return Move(e.fn, kids[0], e.args, e.spelling, e.text, e.undoes)
    if isinstance(e, Filled):
        n = len(e.shape)
        return Filled(e.fn, tuple(kids[:n]), kids[n] if e.value is not None else None, e.text)
    if isinstance(e, Join):
        return Join(e.fn, tuple(kids), e.axis, e.text)
    if isinstance(e, Span):
        kids = list(kids)
        start = kids.pop(0) if e.start is not None else None
        stop = kids.pop(0) if e.stop is not None else None
        return Span(start, stop)
    if isinstance(e, Others):
        return Others(kids[0], e.axis, e.ndim, kids[1])
    if isinstance(e, Copy):
        return Copy(kids[0], e.number)
    if isinstance(e, Where):
        return Where(*kids)
    if isinstance(e, ShapeOf):
        return ShapeOf(kids[0])
    if isinstance(e, AddAt):
        return AddAt(kids[0], tuple(kids[1:-1]), kids[-1])
    if isinstance(e, Put):
        return Put(kids[0], tuple(kids[1:-1]), kids[-1], e.selected)
    if hasattr(e, "rebuilt"):
        return e.rebuilt(kids)
    return rebuild(e, kids)


def transform_array(e: Expr, fn) -> Expr:
    """``expr.transform`` for array expressions: rebuild top-down, replacing where fn says."""
    replaced = fn(e)
    if replaced is not None:
        return replaced
    kids = e.children()
    if not kids:
        return e
    new = tuple(transform_array(k, fn) for k in kids)
    return e if new == kids else rebuild_array(e, new)


def distinct_positions(items, shape, shape_of) -> bool:
    """Whether an index (no mask) into an array of ``shape`` names each position once: ``:``,
    slices, a loop's index, or rows ``np.arange(N)`` (all of them) beside one label per row
    (``shape_of`` gives an item's shape). Then a write or a plain ``+=`` there is exact; an
    index that may repeat a position needs np.add.at (and keeps one of the values written)."""
    arrays = [
        k
        for k, i in enumerate(items)
        if not isinstance(i, (FullSlice, NewAxis, Span)) and shape_of(i) != ()
    ]
    if not arrays:
        return True
    if len(arrays) != 2 or arrays[1] != arrays[0] + 1:
        return False
    rows, labels = (items[k] for k in arrays)
    return (
        isinstance(rows, Arange)
        and shape_of(rows) == (shape[arrays[0]],)
        and shape_of(labels) == shape_of(rows)
    )


def stage_line(target: str, e: Expr, printer) -> str:
    """A stage as the line of code that makes it: ``t = e``, and a write into an array as the
    user wrote it, ``t[items] = value`` (into ``t``, a copy of the array before it)."""
    if isinstance(e, Put):
        return f"{printer(Index(Var(target), e.items))} = {printer(e.value)}"
    return f"{target} = {printer(e)}"


# The generated module's helper behind SumTo (emit.py writes it where a backward calls it).
UNBROADCAST = "unbroadcast"


def unbroadcast_source(np: str) -> str:
    """The text of the helper, for a module that imports NumPy as ``np``."""
    return f'''def {UNBROADCAST}(gradient, shape):
    """The gradient of an array of `shape` that NumPy broadcast: summed over the axes
    broadcasting added in front and the axes of size 1 it stretched."""
    gradient = {np}.sum(gradient, axis=tuple(range({np}.ndim(gradient) - len(shape))))
    ones = tuple(k for k, n in enumerate(shape) if n == 1)
    return {np}.sum(gradient, axis=ones, keepdims=True) if ones else gradient'''


class ArrayPrinter(Printer):
    """Prints array expressions; ``np`` is the name NumPy is imported as."""

    def __init__(self, np_name: str = "np", masks: set[str] = frozenset()):
        super().__init__(np_name)
        self.np = np_name
        self.masks = masks  # names of boolean arrays: NumPy refuses `-` on them

    def _is_mask(self, e: Expr) -> bool:
        return isinstance(e, (Compare, And, Or, Not)) or (
            isinstance(e, Var) and e.name in self.masks
        )

    def _receiver(self, e: Expr) -> str:
        """The object of a method call or attribute: parenthesised unless it is an atom."""
        return self._wrap(e, precedence_of(e) < PREC_ATOM or (isinstance(e, Num) and e.value < 0))

    def _dims(self, items) -> list[str]:
        """A shape's dimensions as written in a tuple: a rest starred (``*x.shape[1:]``)."""
        return [
            (
                f"*{self.text(i)}"
                if isinstance(i, (RestOf, JointShape)) and not i.size
                else self.text(i)
            )
            for i in items
        ]

    def _tuple(self, items) -> str:
        if len(items) == 1 and isinstance(items[0], RestOf) and not items[0].size:
            return self.text(items[0])  # every dimension from the first: np.shape(x)
        if len(items) == 1 and isinstance(items[0], JointShape) and not items[0].size:
            return self.text(items[0])  # every dimension: np.broadcast_shapes(...)
        texts = self._dims(items)
        return f"({texts[0]},)" if len(texts) == 1 else f"({', '.join(texts)})"

    def _reduce_args(self, e: Reduce) -> list[str]:
        args = []
        if e.axis is not None:
            axis = e.axis_text or (str(e.axis[0]) if len(e.axis) == 1 else str(e.axis))
            args.append(f"axis={axis}")
        if e.keepdims:
            args.append("keepdims=True")
        if e.ddof:
            args.append(f"ddof={e.ddof}")
        return args

    def text(self, e: Expr) -> str:
        np = self.np
        if isinstance(e, Neg) and self._is_mask(e.operand):
            # NumPy refuses `-` on a mask: the negated mask is its product with -1.0
            return self.text(Bin("*", Num(-1.0), e.operand))
        if isinstance(e, Neg) and isinstance(e.operand, Bin) and e.operand.op in ("*", "/"):
            inner = e.operand
            left = inner.left
            while isinstance(left, Bin) and left.op in ("*", "/"):
                left = left.left
            if self._is_mask(left):  # a mask cannot be negated: -(m * d) is m * -d
                return self.text(Bin(inner.op, inner.left, Neg(inner.right)))
        if isinstance(e, Dim) and e.name.startswith(REST_SIZE):  # (the teaching aid's words)
            members = [RestOf(Var(m), 0) for m in e.name[len(REST_SIZE) :].split(JOINT)]
            if members[1:]:
                return self.text(JointShape(tuple(members), size=True))
            return self.text(RestOf(members[0].operand, 0, size=True))
        if isinstance(e, Dim):
            return e.name
        if isinstance(e, Call):
            return f"{np}.{numpy_spelling(e.fn)}({', '.join(self.text(a) for a in e.args)})"
        if isinstance(e, Dot):
            if e.spelling == "@":
                left = self._wrap(e.left, precedence_of(e.left) < PREC_MUL)
                right = self._wrap(e.right, precedence_of(e.right) <= PREC_MUL)
                return f"{left} @ {right}"
            if e.spelling == "np.dot":
                return f"{np}.dot({self.text(e.left)}, {self.text(e.right)})"
            return f"{self._receiver(e.left)}.dot({self.text(e.right)})"
        if isinstance(e, Transpose):
            if e.spelling == "np.transpose":
                return f"{np}.transpose({self.text(e.operand)})"
            return f"{self._receiver(e.operand)}.T"
        if isinstance(e, Draw):
            like = self.text(ShapeOf(e.like))
            return f"{np}.random.RandomState({self.text(e.seed)}).rand(*{like})"
        if isinstance(e, RestOf):  # (a shape lists it starred: _dims)
            if e.start == 0:  # any shape, a number's too: np.shape(x), np.size(x)
                return f"{np}.{'size' if e.size else 'shape'}({self.text(e.operand)})"
            part = f"{self.text(ShapeOf(e.operand))}[{e.start}:]"
            return f"int({np}.prod({part}))" if e.size else part
        if isinstance(e, Reshape):
            dims = ", ".join(self._dims(e.shape))
            if len(e.shape) == 1 and isinstance(e.shape[0], RestOf) and not e.shape[0].size:
                dims = self._tuple(e.shape)  # back to every dimension: .reshape(x.shape)
            if e.spelling == "np":
                return f"{np}.reshape({self.text(e.operand)}, ({dims}))"
            return f"{self._receiver(e.operand)}.reshape({dims})"
        if isinstance(e, Reduce):
            args = self._reduce_args(e)
            if e.fn == "norm":
                return f"{np}.linalg.norm({', '.join([self.text(e.operand), *args])})"
            if e.spelling == "method":
                return f"{self._receiver(e.operand)}.{e.fn}({', '.join(args)})"
            return f"{np}.{e.fn}({', '.join([self.text(e.operand), *args])})"
        if isinstance(e, FullSlice):
            return ":"
        if isinstance(e, NewAxis):
            return "None"
        if isinstance(e, Index):
            return f"{self._receiver(e.operand)}[{', '.join(self.text(i) for i in e.items)}]"
        if isinstance(e, ShapeRead):
            if e.spelling == "len":
                return f"len({self.text(e.operand)})"
            if e.spelling == "np":
                return f"{np}.shape({self.text(e.operand)})[{e.axis}]"
            return f"{self._receiver(e.operand)}.shape[{e.axis}]"
        if isinstance(e, Arange):
            return f"{np}.arange({self.text(e.stop)})"
        if isinstance(e, BroadcastTo):
            return f"{np}.broadcast_to({self.text(e.operand)}, {self._tuple(e.shape)})"
        if isinstance(e, SumTo):
            return f"{UNBROADCAST}({self.text(e.operand)}, {self._tuple(e.shape)})"
        if isinstance(e, JointShape):
            joint = f"{np}.broadcast_shapes({', '.join(self.text(o) for o in e.operands)})"
            return f"int({np}.prod({joint}))" if e.size else joint
        if isinstance(e, Zeros):
            return f"{np}.zeros({self._tuple(e.shape)})"
        if isinstance(e, Outer):
            return f"{np}.outer({self.text(e.left)}, {self.text(e.right)})"
        if isinstance(e, Move):
            if e.spelling == "np":
                rest = f", {e.text}" if e.text else ""
                return f"{np}.{e.fn}({self.text(e.operand)}{rest})"
            return f"{self._receiver(e.operand)}.{e.fn}({e.text})"
        if isinstance(e, Filled):
            if e.fn.endswith("_like"):
                shape = self.text(e.shape[0])
            elif len(e.shape) == 1 and isinstance(e.shape[0], ShapeOf):
                shape = self.text(e.shape[0])
            else:
                shape = self._tuple(e.shape)
            value = f", {self.text(e.value)}" if e.value is not None else ""
            return f"{np}.{e.fn}({shape}{value}{e.text})"
        if isinstance(e, Join):
            parts = ", ".join(self.text(p) for p in e.parts)
            axis = f", {e.text}" if e.text else ""
            return f"{np}.{e.fn}([{parts}]{axis})"
        if isinstance(e, Span):
            start = self.text(e.start) if e.start is not None else ""
            stop = self.text(e.stop) if e.stop is not None else ""
            return f"{start}:{stop}"
        if isinstance(e, Others):
            last = e.axis == e.ndim - 1
            operand = self.text(e.operand)
            rows = f"{self._receiver(e.operand)}[..., None, :]"
            if e.ndim == 2 and not last:  # a matrix's columns: its transpose's rows
                rows = f"{self._receiver(e.operand)}.T[..., None, :]"
            elif not last:
                rows = f"{np}.moveaxis({operand}, {e.axis}, -1)[..., None, :]"
            eye = f"{np}.eye({self.text(e.size)}, dtype=bool)"
            product = f"{np}.prod({np}.where({eye}, 1.0, {rows}), axis=-1)"
            if e.ndim == 2 and not last:
                return f"{product}.T"
            return product if last else f"{np}.moveaxis({product}, -1, {e.axis})"
        if isinstance(e, ShapeOf):
            return f"{self._receiver(e.operand)}.shape"
        if isinstance(e, AddAt):
            # inside the tuple np.add.at takes, `:` is spelled slice(None)
            items = ["slice(None)" if isinstance(i, FullSlice) else self.text(i) for i in e.items]
            index = f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
            return f"{np}.add.at({self.text(e.target)}, {index}, {self.text(e.values)})"
        if isinstance(e, Where):
            return f"{np}.where({self.text(e.test)}, {self.text(e.body)}, {self.text(e.orelse)})"
        if isinstance(e, Copy):
            if e.number:
                return f"float({self.text(e.operand)})"
            return f"{self._receiver(e.operand)}.copy()"
        return super().text(e)


__all__ = [
    "Arange",
    "ArrayPrinter",
    "BroadcastTo",
    "Copy",
    "Dim",
    "Dot",
    "Draw",
    "FullSlice",
    "Index",
    "NewAxis",
    "Filled",
    "Join",
    "Move",
    "Others",
    "Outer",
    "Put",
    "Span",
    "Reduce",
    "Reshape",
    "RestOf",
    "ShapeRead",
    "Transpose",
    "Where",
    "AddAt",
    "ShapeOf",
    "JointShape",
    "SumTo",
    "UNBROADCAST",
    "unbroadcast_source",
    "Zeros",
    "distinct_positions",
    "rebuild_array",
    "stage_line",
]
