"""A parameter's shape annotation, as the ecosystem spells it, read from the syntax tree.

    x: "N, D"                        stagegen's own spelling (also "N D", space-separated)
    x: Float[np.ndarray, "N D"]      jaxtyping's: a dtype, an array type, a shape string
    y: Int[np.ndarray, "N"]          integer labels (no gradient)
    s: Float[np.ndarray, ""]         a 0-d array: a scalar

Only the syntax is read, never evaluated: jaxtyping need not be installed, the array type
(``np.ndarray``, ``Array``, ``jax.Array``, ...) is documentation, and a module with
``from __future__ import annotations`` reads the same. ``Annotated[np.ndarray, "N D"]`` is
read like a plain string; ``Annotated[float, "metres"]`` is a number.

The dtype says what the parameter holds:
- Float, Float16/32/64, BFloat16, Inexact: floats, differentiated. Using such a parameter as an
  index is refused (an index holds integers).
- Int, Int8..Int64, UInt..., Integer: integer labels. They have no gradient, wherever they are
  used: as an index, or in arithmetic with floats (``x * k`` is differentiated in ``x`` only),
  as NumPy computes with an integer array.
- Shaped, Num, Real (any dtype) and a plain string: floats, or labels when the parameter is
  used as an index (as for ``"N"``).
- Bool and Complex are refused: a mask is computed inside the function, and stagegen's
  gradients are real.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

FLOAT_DTYPES = frozenset({"Float", "Float16", "Float32", "Float64", "BFloat16", "Inexact"})
INT_DTYPES = frozenset(
    {"Int", "Int2", "Int4", "Int8", "Int16", "Int32", "Int64", "Integer"}
    | {"UInt", "UInt2", "UInt4", "UInt8", "UInt16", "UInt32", "UInt64"}
)
ANY_DTYPES = frozenset({"Shaped", "Num", "Real", "Annotated"})
_COMPLEX = (
    "a complex parameter is not supported: stagegen's gradients are real",
    'annotate a real array, e.g. `Float[np.ndarray, "N D"]`',
)
REFUSED_DTYPES = {
    "Bool": (
        "a mask parameter (`Bool[...]`) is not supported",
        "pass the values as floats and compute the mask inside the function, e.g. `x > 0`",
    ),
    "Complex": _COMPLEX,
    "Complex64": _COMPLEX,
    "Complex128": _COMPLEX,
}


class AnnotationError(Exception):
    """An annotation stagegen cannot read; the reader locates it at ``node``."""

    def __init__(self, node: ast.AST, message: str, hint: str):
        super().__init__(message)
        self.node, self.message, self.hint = node, message, hint


@dataclass(frozen=True)
class ShapeAnnotation:
    text: str  # the shape string, e.g. "N D"
    node: ast.expr  # the string's node: shape errors point at it
    kind: str | None  # "float", "int" (labels), or None: floats unless used as an index
    dtype: str = ""  # jaxtyping's dtype name as written ("Float64"), "" for a plain string


def jaxtyping_parts(node: ast.expr | None) -> tuple[str, ast.expr, ast.expr] | None:
    """(dtype name, array type, shape string) of ``Dtype[array, "shape"]`` (also
    ``jaxtyping.Float[...]``), else None."""
    if not isinstance(node, ast.Subscript) or not isinstance(node.slice, ast.Tuple):
        return None
    items = node.slice.elts
    if len(items) != 2:
        return None
    shape = items[1]
    if not (isinstance(shape, ast.Constant) and isinstance(shape.value, str)):
        return None
    base = node.value
    if isinstance(base, ast.Attribute):
        name = base.attr
    elif isinstance(base, ast.Name):
        name = base.id
    else:
        return None
    return name, items[0], shape


NUMBER_TYPES = ("float", "int")


def is_number_annotation(node: ast.expr | None) -> bool:
    """``float``, ``int``, or a number with metadata (``Annotated[float, "metres"]``): a
    number, not an array, whatever the string says."""
    if isinstance(node, ast.Name):
        return node.id in NUMBER_TYPES
    parts = jaxtyping_parts(node)
    return parts is not None and isinstance(parts[1], ast.Name) and parts[1].id in NUMBER_TYPES


def is_shape_annotation(node: ast.expr | None) -> bool:
    """A string, or jaxtyping's ``Dtype[array, "shape"]``: the parameter is an array."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    return jaxtyping_parts(node) is not None and not is_number_annotation(node)


def read(node: ast.expr, param: str) -> ShapeAnnotation:
    """The shape annotation of parameter ``param``; raises AnnotationError when ``node`` is
    not one (the caller handles ``float``/``int`` and missing annotations before)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ShapeAnnotation(node.value, node, None)
    parts = jaxtyping_parts(node)
    if parts is None:
        raise AnnotationError(
            node,
            f"stagegen reads the shape of `{param}` from its annotation, and this one is not a "
            "shape",
            f'write the shape as a string of dimension names, e.g. `{param}: "N, D"`, or as '
            f'jaxtyping does, e.g. `{param}: Float[np.ndarray, "N D"]`',
        )
    dtype, _, shape = parts
    if dtype in REFUSED_DTYPES:
        message, hint = REFUSED_DTYPES[dtype]
        raise AnnotationError(node, f"`{param}`: {message}", hint)
    if dtype in FLOAT_DTYPES:
        kind = "float"
    elif dtype in INT_DTYPES:
        kind = "int"
    elif dtype in ANY_DTYPES:
        kind = None
    else:
        raise AnnotationError(
            node.value,
            f"`{dtype}[...]` is not a dtype stagegen knows, so the annotation of `{param}` "
            "does not say what it holds",
            'use jaxtyping\'s `Float[np.ndarray, "N D"]` for floats or `Int[np.ndarray, "N"]` '
            "for integer labels",
        )
    return ShapeAnnotation(shape.value, shape, kind, dtype)
