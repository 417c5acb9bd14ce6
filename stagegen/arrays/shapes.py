"""Shape arithmetic on symbolic shapes: the dimension analysis the notes recommend, done by rule.

A shape is a tuple of dimensions; a dimension is a name from an annotation (``"N"``), a
product of names (``"H*W"``, from ``reshape(N, -1)``) or a literal int. Names stand for
sizes unknown until run time, so two different names never match: broadcasting ``(N, D)``
with ``(M,)`` is an error here, even if N == M on some call. The rules raise ShapeError
with a message and a hint; the reader locates it at the expression.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from math import prod
from typing import Union

Dim = Union[str, int]
Shape = tuple[Dim, ...]

# A parameter whose number of dimensions the code does not fix ends in a *rest*: ``"...x"``
# stands for all of ``x``'s dimensions from its position on (none, one or several), as
# jaxtyping's ``*batch`` does. In a product it counts as one size, ``"#x"`` (the number of
# elements in the rest), so ``x.reshape(N, -1)`` of ``(N, ...x)`` is ``(N, #x)``. Only what is
# exact for any number of dimensions is allowed on a rest: elementwise arithmetic with a number
# or the same shape, full reductions, reshapes, the leading dimensions' sizes.
REST, REST_SIZE = "...", "#"
# Two arrays of any shape broadcast together (``x * w``) give an array whose shape is NumPy's
# broadcast of theirs, known at run time: a *joint* rest, ``"...w|x"`` (its members sorted).
# Only what needs no more than that is allowed on it (elementwise arithmetic, full
# reductions); the gradient of each member is the joint one summed back to its shape at run
# time.
JOINT = "|"


def rest(param: str) -> Dim:
    return REST + param


def is_rest(d: Dim) -> bool:
    return isinstance(d, str) and d.startswith(REST)


def has_rest(shape: Shape | None) -> bool:
    return any(is_rest(d) for d in shape or ())


def rest_param(d: Dim) -> str:
    """The parameter a rest (``...x``) or its size (``#x``) belongs to."""
    return d[len(REST) :] if is_rest(d) else d[len(REST_SIZE) :]


def rest_members(d: Dim) -> tuple[str, ...]:
    """The parameters whose shapes a rest is (one, or several broadcast together)."""
    return tuple(rest_param(d).split(JOINT))


def is_joint(d: Dim) -> bool:
    return is_rest(d) and JOINT in d


def has_joint(shape: Shape | None) -> bool:
    return any(is_joint(d) for d in shape or ())


def _joined(a: Dim, b: Dim) -> Dim:
    return REST + JOINT.join(sorted(set(rest_members(a)) | set(rest_members(b))))


def is_rest_size(d: Dim) -> bool:
    return isinstance(d, str) and d.startswith(REST_SIZE)


def rest_error(shape: Shape, what: str) -> ShapeError:
    """``what`` is exact only for a known number of dimensions, and ``shape`` has a rest."""
    members = rest_members(next(d for d in shape if is_rest(d)))
    name = members[0]
    whose = (
        f"`{name}`"
        if len(members) == 1
        else (
            "the broadcast of "
            + ", ".join(f"`{m}`" for m in members[:-1])
            + f" and `{members[-1]}`"
        )
    )
    return ShapeError(
        f"{what} needs to know how many dimensions {whose} has, and neither the code nor the "
        "docstring says",
        f"say it in the code (`N, D = {name}.shape`) or the docstring (`- {name}: ..., of shape "
        f'(N, D)`), or annotate it (`{name}: "N, D"`); if `{name}` is a number, give it a '
        f"default or annotate it `{name}: float`",
    )


class ShapeError(Exception):
    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def show(shape: Shape) -> str:
    """``(N, D)``; a rest shows as ``...``: ``(N, ...)``, and ``(...)`` for any shape."""
    texts = ["..." if is_rest(d) else str(d) for d in shape]
    one = len(shape) == 1 and not is_rest(shape[0])
    return "(" + ", ".join(texts) + ("," if one else "") + ")"


def parse_annotation(text: str) -> Shape:
    """``"N, D"`` or ``"N D"`` -> ("N", "D"); ``""`` or ``"()"`` -> () (a scalar); ``"1, D"``
    keeps the 1; ``"N,"`` is one dimension, as a tuple is.

    Dimensions are separated by commas (as a tuple is written) or, when there is no comma, by
    spaces (as jaxtyping writes shapes: ``"batch dim"``). jaxtyping's other symbols (``*batch``
    and ``...`` for any number of dimensions, ``#N`` for "N or 1", ``_`` for any size, ``N-1``)
    leave a shape unknown until run time, and stagegen writes every gradient for its exact
    shape: they are refused, each with what to write instead.

    Names are read as Python reads identifiers, in NFKC form: the generated code binds them
    (``N, D = x.shape``), and there ``Ｎ`` (fullwidth) is the name ``N``.
    """
    inner = text.strip()
    if inner.startswith("(") and inner.endswith(")"):
        inner = inner[1:-1]
    if "," not in inner and _product(inner) is not None:
        return (_product(inner),)  # "4 * H": one dimension, not three
    if "," in inner:
        parts = [p.strip() for p in inner.split(",")]
        if parts[-1] == "" and (len(parts) == 1 or parts[-2] != ""):
            parts.pop()  # "N," ends like a one-element tuple
    else:
        parts = inner.split()  # "" is a scalar
    dims: list[Dim] = []
    for part in parts:
        if not part:
            raise ShapeError(
                f"the shape `{text}` has an empty dimension name",
                'name each dimension once between commas, as in `x: "N, D"`',
            )
        if part.isascii() and part.isdigit():  # not "²": isdigit, but no int
            dims.append(int(part))
            continue
        product = _product(part)
        if product is not None:  # "4*H", "A*B", "4H": the size is their product
            dims.append(product)
            continue
        refused = _jaxtyping_symbol(part)
        if refused is not None:
            raise refused
        name = unicodedata.normalize("NFKC", part)
        if name.isidentifier() and keyword.iskeyword(name):
            what = "a Python keyword" if name == part else f"the Python keyword `{name}` (NFKC)"
            raise ShapeError(
                f"`{part}` is {what}, so it cannot name a dimension",
                "a dimension name must be a Python identifier that is not a keyword",
            )
        if not name.isidentifier():
            if any(c.isspace() for c in part):
                raise ShapeError(
                    f"the shape `{text}` separates dimensions both with commas and with spaces",
                    'separate them one way: `"N, D"` or `"N D"`',
                )
            raise ShapeError(
                f"`{part}` is not a dimension",
                'name each dimension, as in `x: "N, D"` (names, or literal sizes like 1)',
            )
        dims.append(name)
    return tuple(dims)


_FACTOR = r"(?:\d+|[^\W\d]\w*)"
_PRODUCT = re.compile(rf"\s*{_FACTOR}(?:\s*\*\s*{_FACTOR})+\s*|\s*\d+[^\W\d]\w*\s*")


def _product(part: str) -> Dim | None:
    """``4*H``, ``A * B`` or ``4H`` as one dimension (a product), else None."""
    if not _PRODUCT.fullmatch(part):
        return None
    factors_: list[Dim] = []
    for f in part.split("*"):
        f = f.strip()
        digits = len(f) - len(f.lstrip("0123456789"))
        if 0 < digits < len(f):  # 4H
            factors_ += [int(f[:digits]), unicodedata.normalize("NFKC", f[digits:])]
        else:
            factors_.append(int(f) if f.isdigit() else unicodedata.normalize("NFKC", f))
    if any(isinstance(f, str) and keyword.iskeyword(f) for f in factors_):
        return None
    return multiply(factors_)


def _jaxtyping_symbol(part: str) -> ShapeError | None:
    """The refusal of a jaxtyping shape symbol stagegen cannot honour, or None."""
    if part.startswith("*") or "..." in part:
        return ShapeError(
            f"`{part}` stands for any number of dimensions (jaxtyping's variadic shape), and "
            "stagegen writes each gradient for a known number of dimensions",
            'name every dimension, e.g. `"B N D"` for a batch of (N, D) arrays',
        )
    if part.startswith("#"):
        name = part.lstrip("#") or "N"
        return ShapeError(
            f"`{part}` is a dimension of size {name} or 1 (jaxtyping's broadcastable dimension), "
            "and stagegen needs to know which: the gradient of a broadcast axis is summed",
            f"write `{name}`, or `1` where the array is broadcast along this axis",
        )
    if part == "_":
        return ShapeError(
            "`_` is a dimension of any size (jaxtyping's anonymous dimension), and stagegen "
            "checks shapes by name",
            "name the dimension, e.g. `N`, using the same name wherever the size is the same",
        )
    if part.startswith("?") or (any(c in part for c in "+-*/()") and not part.isidentifier()):
        return ShapeError(
            f"`{part}` is a dimension expression, and stagegen reads only names and sizes",
            "give this dimension a name of its own, e.g. `M`",
        )
    return None


def factors(d: Dim) -> tuple[int, tuple[str, ...]]:
    if isinstance(d, int):
        return d, ()
    if is_rest(d):
        return 1, (REST_SIZE + rest_param(d),)
    coeff, names = 1, []
    for f in d.split("*"):
        if f.isdigit():
            coeff *= int(f)
        else:
            names.append(f)
    return coeff, tuple(sorted(names))


def _dim(coeff: int, names) -> Dim:
    names = sorted(names)
    if not names:
        return coeff
    return "*".join(([str(coeff)] if coeff != 1 else []) + names)


def multiply(dims) -> Dim:
    coeff, names = 1, []
    for d in dims:
        c, n = factors(d)
        coeff *= c
        names += n
    return _dim(coeff, names)


def broadcast(a: Shape, b: Shape) -> Shape:
    if has_rest(a) or has_rest(b):  # exact only against a number or the very same shape
        if a == b or not b:
            return a
        if not a:
            return b
        if len(a) == 1 == len(b) and is_rest(a[0]) and is_rest(b[0]):  # x * w, any shapes
            joined = _joined(a[0], b[0])
            return (joined,)
        raise rest_error(a if has_rest(a) else b, f"broadcasting {show(a)} with {show(b)}")
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(
                f"shapes {show(a)} and {show(b)} do not broadcast: {x} against {y}",
                "make the dimensions match (the same name in both annotations), "
                "or give one of them size 1",
            )
    return tuple(reversed(out))


def dot(a: Shape, b: Shape) -> Shape:
    if not a or not b or len(a) > 2 or len(b) > 2:
        raise ShapeError(
            f"a matrix product of shapes {show(a)} and {show(b)} is not supported",
            "multiply vectors and matrices (1 or 2 dimensions); use * for scalars",
        )
    inner_a, inner_b = a[-1], b[0]
    if inner_a != inner_b:
        raise ShapeError(
            f"the matrix product of {show(a)} and {show(b)} needs {inner_a} == {inner_b}",
            "check the order of the factors, or transpose one with .T",
        )
    return a[:-1] + b[1:]


def normalize_axis(axis, ndim: int) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ShapeError(
                f"axis {ax} is out of range for an array of {ndim} dimension(s)",
                f"use an axis from 0 to {ndim - 1}",
            )
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ShapeError("an axis is repeated", "name each axis once")
    return tuple(sorted(out))


def reduce(shape: Shape, axis: tuple[int, ...] | None, keepdims: bool) -> Shape:
    axes = range(len(shape)) if axis is None else axis
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def reshape(shape: Shape, target: list[Dim | None]) -> Shape:
    """``target`` lists the new dimensions, None for the one -1."""
    if target.count(None) > 1:
        raise ShapeError("reshape has more than one -1", "give every dimension but one")
    total_c, total_n = factors(multiply(shape))
    known_c, known_n = factors(multiply([d for d in target if d is not None]))
    rest_n = list(total_n)
    for n in known_n:
        if n not in rest_n:
            raise ShapeError(
                f"cannot reshape {show(shape)} to {show(tuple('-1' if d is None else d for d in target))}",
                "the new dimensions must multiply to the same size",
            )
        rest_n.remove(n)
    if known_c == 0 or total_c % known_c:
        raise ShapeError(
            f"cannot reshape {show(shape)} to {show(tuple('-1' if d is None else d for d in target))}",
            "the new dimensions must multiply to the same size",
        )
    rest = _dim(total_c // known_c, rest_n)
    if None not in target and rest != 1:
        raise ShapeError(
            f"cannot reshape {show(shape)} to {show(tuple(target))}",
            "the new dimensions must multiply to the same size (or use -1 for the rest)",
        )
    return tuple(rest if d is None else d for d in target)


def size(shape: Shape, sizes: dict) -> tuple[int, ...]:
    """The concrete shape for given sizes of the named dimensions (a rest's size is a tuple:
    its dimensions)."""
    out: list[int] = []
    for d in shape:
        if is_rest(d):
            out += sizes[d]
            continue
        c, names = factors(d)
        out.append(c * prod(_size_of(n, sizes) for n in names))
    return tuple(out)


def _size_of(name: str, sizes: dict) -> int:
    if is_rest_size(name):
        return prod(sizes[rest(rest_param(name))])
    return sizes[name]


def names_in(shape: Shape) -> list[str]:
    """The names a shape's sizes are drawn by: dimension names and rests (``...x``)."""
    found: list[str] = []
    for d in shape:
        for n in [d] if is_rest(d) else factors(d)[1]:
            if is_rest_size(n):
                n = rest(rest_param(n))
            if n not in found:
                found.append(n)
    return found
