"""The shapes of unannotated array parameters, read from what the function itself says.

In order, for a parameter without an annotation:
1. the code: ``N, D = x.shape`` fixes ``x`` to ``(N, D)``; ``N = x.shape[0]`` (or ``x.shape[0]``
   read anywhere) fixes its first dimension and leaves the rest open: ``(N, ...x)``;
2. a number default (``eps=1e-5``, ``shift=-1.0``), or a comparison in an ``if`` or ``while``
   test (``if a >= 0:``), makes a number;
3. the docstring, as the course documents its layers: ``- x: Input data, of shape (N, D)``;
   ``(N, d_1, ..., d_k)`` is ``(N, ...x)``, and ``of any shape`` is ``(...x)``; an entry that
   gives no shape (``- p: Dropout parameter.``) is a number;
4. anything else is an array of any shape, ``(...x)``: the reader allows on it only what is exact
   for every number of dimensions, and says how to fix the shape where it needs more.

``...x`` is a *rest* (see ``shapes``): the generated backward reads those dimensions from ``x``
at run time (``dx = dx_row.reshape(x.shape)``), so it is exact for every shape the forward takes.
Only the syntax is read; nothing is run.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ..parse import ARRAY_ATTRIBUTES
from . import shapes
from .shapes import Shape, ShapeError


@dataclass(frozen=True)
class Inferred:
    shape: Shape | None  # None: a number
    source: str  # "the code", "the docstring", "its default", "no shape"
    node: ast.AST  # where the shape was read: errors about it point here
    mask: bool = False  # the docstring calls it a boolean array: no gradient


def uses_arrays(fn: ast.FunctionDef, numpy_names: set[str]) -> bool:
    """Whether an unannotated function is array code: it calls NumPy, multiplies matrices, or
    reads an array's attribute or method (``.shape``, ``.sum()``)."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id in numpy_names:
            return True
        if isinstance(node, ast.Attribute) and node.attr in ARRAY_ATTRIBUTES:
            return True
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            return True
    return False


def infer(
    fn: ast.FunctionDef, params: list[str], call_shapes: dict | None = None
) -> dict[str, Inferred]:
    """The inferred shape of each parameter of ``fn`` named in ``params``; with ``call_shapes``
    (@staged: one call's array arguments, each ``(shape, kind)`` with kind "float", "int" or
    "bool"), those of that call."""
    found = _from_the_function(fn, params)
    return found if call_shapes is None else _from_the_call(fn, found, call_shapes)


def _from_the_call(fn, found: dict[str, Inferred], call_shapes: dict) -> dict[str, Inferred]:
    """The shapes of one call, with sizes kept symbolic: an axis of size 1 is 1 (a broadcast
    pattern), and axes of equal sizes share one name, the code's or the docstring's where it
    names one (``N``), else ``x_1`` (parameter and axis). Every call with the same ranks, ones
    and equalities gets the same backward; @staged generates another for another pattern."""
    kinds = {name: kind for name, (_, kind) in call_shapes.items()}
    call_shapes = {name: sizes for name, (sizes, _) in call_shapes.items()}
    named: dict[int, str] = {}  # a size -> the name its unnamed axes take
    sizes_of: dict[str, int] = {}  # a name the code or docstring gives -> its size here
    for name, inferred in found.items():
        shape, sizes = inferred.shape, call_shapes.get(name)
        if shape is None or sizes is None or shapes.has_rest(shape) or len(shape) != len(sizes):
            continue
        for d, n in zip(shape, sizes):
            if isinstance(d, str) and "*" not in d and n != 1:
                named.setdefault(n, d)
                sizes_of.setdefault(d, n)
            elif isinstance(d, str) and n != 1:  # 4*H of size 12: H is 3
                c, names = shapes.factors(d)
                if len(names) == 1 and n % c == 0 and n // c != 1:
                    named.setdefault(n // c, names[0])
                    sizes_of.setdefault(names[0], n // c)
    out: dict[str, Inferred] = {}
    for name, inferred in found.items():
        sizes = call_shapes.get(name)
        if sizes is None:  # a number at the call
            out[name] = Inferred(None, "the first call", fn)
            continue
        said = inferred.shape if inferred.shape and len(inferred.shape) == len(sizes) else ()
        said = said if not shapes.has_rest(said) else ()
        dims = tuple(
            _as_said(said[k] if said else None, n, sizes_of)
            or (1 if n == 1 else named.setdefault(n, f"{name}_{k}"))
            for k, n in enumerate(sizes)
        )
        out[name] = Inferred(dims, "the first call", fn, inferred.mask or kinds[name] == "bool")
    return out


def _as_said(d, n: int, sizes_of: dict):
    """The axis as the code or docstring names it (``N``, ``4*H``), where this call's size
    agrees with that name's size elsewhere in the call (else None: named by size)."""
    if not isinstance(d, str) or n == 1:
        return None
    c, names = shapes.factors(d)
    if len(names) == 1 and c * sizes_of.get(names[0], 0) == n:
        return d
    return None


def _from_the_function(fn: ast.FunctionDef, params: list[str]) -> dict[str, Inferred]:
    """Each parameter's shape as the code and the docstring give it."""
    documented = docstring_shapes(fn)
    masks = docstring_masks(fn)
    entries = _entries(fn)
    out: dict[str, Inferred] = {}
    args = fn.args.posonlyargs + fn.args.args
    defaults = dict(
        zip([a.arg for a in args][len(args) - len(fn.args.defaults) :], fn.args.defaults)
    )
    tested = _tested_names(fn)
    for name in params:
        arg = next((a for a in args if a.arg == name), fn)
        unpacked = _unpacked_shape(fn, name)
        if unpacked is not None:
            shape = unpacked[0]
            said = documented.get(name)
            if said is not None and len(said) == len(shape) and not shapes.has_rest(said):
                # `_, H = h0.shape`: the axis the code leaves unnamed takes the docstring's name
                shape = tuple(
                    w if d == _unnamed(name, k) else d for k, (d, w) in enumerate(zip(shape, said))
                )
            out[name] = Inferred(shape, "the code", unpacked[1], name in masks)
            continue
        default = defaults.get(name)
        if _is_number(default):  # code, so before the docstring: w=0.5 is a number
            out[name] = Inferred(None, "its default", default)
            continue
        if name in tested:  # `if a >= 0:` tests one truth value: a is a number
            out[name] = Inferred(None, "a condition", fn)
            continue
        first = _first_dimension(fn, name)
        if name in documented and not (first and documented[name] == (shapes.rest(name),)):
            # (the code's (N, ...) says more than the docstring's "of any shape")
            out[name] = Inferred(documented[name], "the docstring", fn.body[0], name in masks)
            continue
        if first is not None:
            out[name] = Inferred((first[0], shapes.rest(name)), "the code", first[1])
            continue
        if name in entries:  # the course gives every array a shape: "- p: Dropout parameter."
            out[name] = Inferred(None, "the docstring", fn.body[0])
            continue
        out[name] = Inferred((shapes.rest(name),), "no shape", arg)
    return out


def _is_number(node) -> bool:
    """A number written as a default: ``1e-5``, ``-1.0``, ``2``."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    )


def _tested_names(fn) -> set[str]:
    """Names compared directly in an ``if`` or ``while`` test (``if a >= 0:``)."""
    found: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            for test in ast.walk(node.test):
                if isinstance(test, ast.Compare):
                    found |= {
                        n.id for n in [test.left, *test.comparators] if isinstance(n, ast.Name)
                    }
    return found


def _unpacked_shape(fn, name: str) -> tuple[Shape, ast.AST] | None:
    """``N, D = x.shape`` (or ``N, _ = x.shape``): x's exact shape, with the names bound."""
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if not (isinstance(target, ast.Tuple) and _is_shape_of(value, name)):
            continue
        dims: list = []
        for k, elt in enumerate(target.elts):
            if not isinstance(elt, ast.Name):
                return None  # the reader says what is wrong with it
            dims.append(elt.id if elt.id != "_" else _unnamed(name, k))
        return tuple(dims), node
    return None


def _unnamed(name: str, k: int) -> str:
    """The name of axis ``k`` of ``name`` that ``_, H = x.shape`` leaves unnamed."""
    return f"{name}_{k}"


def _first_dimension(fn, name: str) -> tuple[str, ast.AST] | None:
    """``N = x.shape[0]`` (the name N) or ``x.shape[0]`` read anywhere (the name ``x_0``):
    x has at least one dimension, and the rest stays open."""
    bound: tuple[str, ast.AST] | None = None
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and _reads_first(node.value, name)
        ):
            return node.targets[0].id, node
        if (
            bound is None
            and isinstance(node, (ast.Subscript, ast.Call))
            and _reads_first(node, name)
        ):
            bound = (f"{name}_0", node)
    return bound


def _reads_first(node: ast.AST, name: str) -> bool:
    """``x.shape[0]``, ``np.shape(x)[0]`` or ``len(x)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
        return (
            len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id == name
        )
    return (
        isinstance(node, ast.Subscript)
        and _is_shape_of(node.value, name)
        and isinstance(node.slice, ast.Constant)
        and node.slice.value == 0
    )


def _is_shape_of(node: ast.AST, name: str) -> bool:
    """``x.shape`` or ``np.shape(x)``."""
    if isinstance(node, ast.Attribute) and node.attr == "shape":
        return isinstance(node.value, ast.Name) and node.value.id == name
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "shape"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == name
    )


# ---------------------------------------------------------------------------- docstrings

# "- x: Input data, of shape (N, D)" / "x: ... shape (N, d_1, ..., d_k)" / "of any shape"
_ENTRY = re.compile(r"^\s*(?:[-*]\s*)?(\w+)\s*(?:\([^)]*\))?\s*:(.*)$")
_SHAPE = re.compile(r"\bshape\s*(?:of\s*)?\(([^()]*)\)", re.IGNORECASE)
_ANY = re.compile(r"\bof\s+any\s+shape\b", re.IGNORECASE)


# "mask: Boolean array of shape (N, T)": the entry starts by saying it is a boolean array
_BOOLEAN = re.compile(r"\s*(an?\s+)?(numpy\s+)?bool(ean)?\s+(numpy\s+)?(array|mask)\b", re.I)


def docstring_masks(fn: ast.FunctionDef) -> set[str]:
    """The parameters the docstring calls boolean (``- mask: Boolean array of shape (N, T)``):
    masks, which select and have no gradient."""
    return {name for name, text in _entries(fn).items() if _BOOLEAN.match(text)}


def docstring_shapes(fn: ast.FunctionDef) -> dict[str, Shape]:
    """The shapes the docstring gives its parameters, as the course writes them. An entry runs
    from ``- name:`` to the next entry; a shape that does not read as one is left out."""
    found: dict[str, Shape] = {}
    for name, text in _entries(fn).items():
        m = _SHAPE.search(text)
        if m:
            shape = _docstring_shape(m.group(1), name)
            if shape is not None:
                found[name] = shape
        elif _ANY.search(text):
            found[name] = (shapes.rest(name),)
    return found


def _entries(fn: ast.FunctionDef) -> dict[str, str]:
    """Each parameter's entry in the docstring: from ``- name:`` to the next entry."""
    doc = ast.get_docstring(fn)
    if not doc:
        return {}
    names = {a.arg for a in fn.args.posonlyargs + fn.args.args}
    entries: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        m = _ENTRY.match(line)
        if m and m.group(1) in names and m.group(1) not in entries:
            current = m.group(1)
            entries[current] = m.group(2)
        elif m or not line.strip() or line.strip().endswith(":"):
            current = None  # another entry, a blank line, or a heading ("Returns a tuple of:")
        elif current is not None:
            entries[current] += " " + line.strip()
    return entries


def _docstring_shape(text: str, name: str) -> Shape | None:
    """``N, D`` -> (N, D); ``N, d_1, ..., d_k`` -> (N, ...x); None if it is not a shape."""
    parts = [p.strip() for p in text.split(",")]
    if parts and parts[-1] == "":
        parts.pop()
    if "..." in parts:
        k = parts.index("...")
        # d_1, ..., d_k: the dimensions around the ellipsis are the rest's own
        parts = parts[: max(k - 1, 0)] + ["*"]
        if parts.count("*") != 1 or parts[-1] != "*":
            return None
    dims: list = []
    for part in parts:
        if part == "*":
            dims.append(shapes.rest(name))
            continue
        try:
            (dim,) = shapes.parse_annotation(part + ",")
        except (ShapeError, ValueError):
            return None
        dims.append(dim)
    return tuple(dims)
