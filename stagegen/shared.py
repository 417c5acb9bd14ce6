"""Shared sub-expressions of an array backward: computed once, under a name.

Two rewrites of the gradient lines of one block (straight-line code), both exact, since each
evaluates an expression once where the code evaluated it several times over the same values:

- **A forward name reused.** A part of a gradient line equal to the right side of a forward
  stage the backward replays is that stage's name: ``x - x.mean(axis=1, keepdims=True)`` reads
  ``x - mu`` when the replay has ``mu = x.mean(axis=1, keepdims=True)``. The caller offers only
  names that hold their value wherever the lines run (see lower.py).
- **A repeat named once.** A costly part (a NumPy call, a reduction, a product, a mask: not a
  bare name, a number or a view such as ``x.T``) that occurs twice or more is computed into a
  new local right before the line of its first use, and read from there; the largest repeat is
  named first, so that the parts inside it are counted once.

The naming rule, deterministic and readable: the operation, then what it is taken of, as the
code spells it — ``np.sqrt(var + eps)`` is ``sqrt_var``, ``np.exp(shifted)`` is
``exp_shifted``, ``np.sum(np.exp(shifted), axis=1)`` is ``sum_exp_shifted``, ``x.max(...)`` is
``max_x``; a comparison is its left side, the comparison, its right side: ``x ==
x.max(axis=1)`` is ``x_is_max``, ``h > 0`` is ``h_gt_0``; a product ``a.dot(b)`` is
``a_dot_b``. A name longer than ``LONGEST`` is cut to the operation and the first name read; a
name that is taken (the user's, a gradient's, a dimension's, another local's) gets ``_2``,
``_3``, ...

The rewrite never replaces the whole right side of an ``=`` line: that line would then bind a
second name to the same array, which an in-place ``+=`` on either, or two returned gradients
sharing memory, would make wrong. Nothing here knows the generated code's line objects: the
caller (lower.py) hands each block's lines over as rows and applies what comes back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .arrays.ir import (
    Dim,
    Dot,
    Index,
    Move,
    Others,
    Outer,
    Reduce,
    Reshape,
    Transpose,
    Where,
    rebuild_array,
    transform_array,
)
from .expr import (
    And,
    Bin,
    Call,
    Compare,
    Const,
    Elem,
    Expr,
    Invoke,
    Item,
    Neg,
    Not,
    Num,
    Or,
    Saved,
    Several,
    Var,
    walk,
)
from .names import usable

# What is worth computing once: calls, reductions, products, masks (and what builds them).
SHAREABLE = (Call, Reduce, Dot, Outer, Where, Others, Compare, And, Or, Not)
LONGEST = 24  # characters of a local's name before it is cut (see the module's docstring)
# Names the generated code calls besides the user's and NumPy's: never a local's.
RESERVED = frozenset({"range", "reversed", "slice", "bool", "float", "len", "np", "math", "_"})


@dataclass
class Row:
    """One line of a block, as this pass reads it: the expression it computes (None for code
    spelled as text, which is left alone), the names it binds or writes into, and whether its
    whole right side may become a name (not for an ``=`` line: see the module's docstring)."""

    value: Expr | None
    writes: frozenset[str]
    whole: bool = False


@dataclass
class Placed:
    """A line of the rewritten block: row ``row``'s line with a new value (``name`` None), or a
    new local ``name = value`` placed before it (and carrying its stage)."""

    row: int
    value: Expr | None
    name: str | None = None


# ---------------------------------------------------------------------------- equality


def spelling_free(e: Expr) -> Expr:
    """``e`` with the spellings that do not change its value made one: ``np.sum(x, axis=1)``
    and ``x.sum(axis=1)``, ``a @ b`` and ``a.dot(b)`` compare equal."""

    def plain(node: Expr) -> Expr | None:
        if isinstance(node, Reduce):
            return Reduce(
                node.fn, spelling_free(node.operand), node.axis, node.keepdims, "np", "", node.ddof
            )
        if isinstance(node, Dot):
            return Dot(spelling_free(node.left), spelling_free(node.right), "dot")
        if isinstance(node, Transpose):
            return Transpose(spelling_free(node.operand), ".T")
        if isinstance(node, Reshape):
            return Reshape(
                spelling_free(node.operand), tuple(spelling_free(d) for d in node.shape), "method"
            )
        return None

    return transform_array(e, plain)


class _Keys:
    """The spelling-free form of every node of some trees, each computed once."""

    def __init__(self):
        self.memo: dict[int, tuple[Expr, Expr]] = {}  # id -> (node, key): the node kept alive

    def __call__(self, e: Expr) -> Expr:
        found = self.memo.get(id(e))
        if found is None or found[0] is not e:
            found = (e, spelling_free(e))
            self.memo[id(e)] = found
        return found[1]


def _reads(e: Expr) -> set[str]:
    return {n.name for n in walk(e) if isinstance(n, (Var, Elem))}


# ---------------------------------------------------------------------------- masks


def negations_off_masks(e: Expr) -> Expr:
    """``e`` with no minus sign on a mask: NumPy refuses ``-`` on booleans, and once a mask is a
    name the printer no longer sees that it is one. As ArrayPrinter spells them, ``-m`` is
    ``-1.0 * m`` and ``-(m * d)`` is ``m * -d``; so the printed code is the same before it."""
    kids = e.children()
    if isinstance(e, Neg) and isinstance(e.operand, (Compare, And, Or, Not)):
        return Bin("*", Num(-1.0), negations_off_masks(e.operand))
    if isinstance(e, Neg) and isinstance(e.operand, Bin) and e.operand.op in ("*", "/"):
        inner = e.operand
        left = inner.left
        while isinstance(left, Bin) and left.op in ("*", "/"):
            left = left.left
        if isinstance(left, (Compare, And, Or, Not)):
            return Bin(
                inner.op, negations_off_masks(inner.left), negations_off_masks(Neg(inner.right))
            )
    if not kids:
        return e
    new = tuple(negations_off_masks(k) for k in kids)
    return e if new == kids else rebuild_array(e, new)


# ---------------------------------------------------------------------------- forward names


def reusable_stage(expr: Expr) -> bool:
    """Whether a forward stage's right side is worth reading by its name where a gradient line
    computes it again: it computes something from a name (not a bare name, nor a number), and
    it is not a call of one of the module's own functions."""
    if isinstance(expr, (Var, Elem, Num, Const, Dim)):
        return False
    if any(isinstance(n, (Invoke, Item, Saved, Several)) for n in walk(expr)):
        return False
    return any(isinstance(n, (Var, Elem)) for n in walk(expr))


def reuse_names(rows: list[Row], named: dict[Expr, str]) -> list[Expr | None]:
    """Each row's value with every part equal to one of ``named`` (right side -> the name
    holding it, keyed by ``spelling_free``) read by that name, the largest part first."""
    keys = _Keys()
    out: list[Expr | None] = []
    for row in rows:
        if row.value is None:
            out.append(None)
            continue
        root = row.value

        def by_name(node: Expr, root=root, whole=row.whole) -> Expr | None:
            if node is root and not whole:
                return None
            if isinstance(node, (Var, Elem, Num, Const, Dim)):
                return node
            name = named.get(keys(node))
            return Var(name) if name is not None else None

        out.append(transform_array(root, by_name))
    return out


# ---------------------------------------------------------------------------- repeats


def name_repeats(rows: list[Row], taken: set[str]) -> list[Placed]:
    """The block's lines with each costly repeated part computed once into a new local, placed
    before the line of its first use. ``taken`` (names the code already uses) gains the new
    names. A part is one value only while no line in between writes a name it reads: the
    occurrences counted are those up to the first line that does (that line still reads the
    value before it writes)."""
    items = [Placed(k, row.value) for k, row in enumerate(rows)]
    writes = [row.writes for row in rows]
    whole = [row.whole for row in rows]
    while True:
        keys = _Keys()
        chosen = _largest_repeat(items, writes, whole, keys)
        if chosen is None:
            return items
        key, node, first, last = chosen
        name = readable_name(node, taken)
        taken.add(name)
        for k in range(first, last + 1):
            item = items[k]
            if item.value is None:
                continue
            root = item.value

            def by_name(n: Expr, root=root, k=k, key=key, keys=keys, name=name) -> Expr | None:
                if n is root and not whole[k]:
                    return None
                if isinstance(n, (Var, Elem, Num, Const, Dim)):
                    return n
                return Var(name) if keys(n) == key else None

            item.value = transform_array(root, by_name)
        items.insert(first, Placed(items[first].row, node, name))
        writes.insert(first, frozenset({name}))
        whole.insert(first, False)  # `name = value`: its right side stays what it is


def _largest_repeat(items, writes, whole, keys):
    """(key, first node, first line, last line) of the largest costly part that occurs twice or
    more while it keeps its value, the first such part in reading order among equals; None."""
    found: dict[Expr, list[tuple[int, Expr]]] = {}
    for k, item in enumerate(items):
        if item.value is None:
            continue
        for node in walk(item.value):
            if node is item.value and not whole[k]:
                continue
            if isinstance(node, SHAREABLE) and any(isinstance(n, (Var, Elem)) for n in walk(node)):
                found.setdefault(keys(node), []).append((k, node))
    best = None
    for order, (key, places) in enumerate(found.items()):
        first, node = places[0]
        reads = _reads(node)
        last = next((k for k in range(first, len(items)) if writes[k] & reads), len(items) - 1)
        count = sum(1 for k, _ in places if k <= last)
        if count < 2:
            continue
        last = max(k for k, _ in places if k <= last)
        rank = (-sum(1 for _ in walk(node)), first, order)
        if best is None or rank < best[0]:
            best = (rank, key, node, first, last)
    return None if best is None else best[1:]


# ---------------------------------------------------------------------------- names

_COMPARED = {"==": "is", "!=": "is_not", ">": "gt", ">=": "ge", "<": "lt", "<=": "le"}


def readable_name(e: Expr, taken: set[str]) -> str:
    """A new local's name for ``e`` (see the module's docstring): not in ``taken``."""
    base = _subject(e) or "shared"
    if len(base) > LONGEST:
        first = next((n.name for n in walk(e) if isinstance(n, (Var, Elem))), "")
        base = "_".join(part for part in (_operation(e), first) if part)
    base = re.sub(r"\W", "_", base).strip("_") or "shared"
    if base[0].isdigit():
        base = "v" + base
    candidate, k = base, 1
    while not usable(candidate, taken) or candidate in RESERVED:
        k += 1
        candidate = f"{base}_{k}"
    return candidate


def _operation(e: Expr) -> str:
    if isinstance(e, (Call, Reduce)):
        return e.fn
    if isinstance(e, Dot):
        return "dot"
    if isinstance(e, Outer):
        return "outer"
    if isinstance(e, Where):
        return "where"
    if isinstance(e, Others):
        return "others"
    return "mask"


def _subject(e: Expr) -> str | None:
    """What ``e`` computes, in words of the code: see the module's docstring."""
    if isinstance(e, (Var, Elem, Dim)):
        return e.name
    if isinstance(e, Num):
        text = e.text or repr(e.value)
        return text.replace("-", "neg").replace(".", "_").replace("+", "")
    if isinstance(e, (Neg, Not)):
        inner = _subject(e.operand)
        return inner if isinstance(e, Neg) or inner is None else f"not_{inner}"
    if isinstance(e, Bin):
        return _subject_of_names(e.left) or _subject_of_names(e.right)
    if isinstance(e, (Call, Reduce)):
        parts = e.args if isinstance(e, Call) else (e.operand,)
        inner = next((s for s in map(_subject_of_names, parts) if s), None)
        return f"{e.fn}_{inner}" if inner else None
    if isinstance(e, Compare):
        left = _subject(e.left)
        right = e.right
        if isinstance(right, Reduce) and right.operand == e.left:
            right_text = right.fn  # x == x.max(axis=1): x_is_max
        else:
            right_text = _subject(right)
        if not left or not right_text:
            return left or right_text
        return f"{left}_{_COMPARED[e.op]}_{right_text}"
    if isinstance(e, (And, Or)):
        word = "_and_" if isinstance(e, And) else "_or_"
        parts = [s for s in map(_subject, e.items) if s]
        return word.join(parts) or None
    if isinstance(e, Dot):
        left, right = _subject(e.left), _subject(e.right)
        return f"{left}_dot_{right}" if left and right else left or right
    if isinstance(e, Outer):
        left, right = _subject(e.left), _subject(e.right)
        return "_".join(["outer", *(s for s in (left, right) if s)])
    if isinstance(e, Transpose):
        inner = _subject(e.operand)
        return f"{inner}_T" if inner else None
    if isinstance(e, Where):
        inner = _subject(e.test)
        return f"where_{inner}" if inner else None
    if isinstance(e, Others):
        inner = _subject(e.operand)
        return f"others_{inner}" if inner else None
    if isinstance(e, (Index, Move, Reshape)):
        return _subject(e.operand)
    kids = e.children()
    return next((s for s in map(_subject, kids) if s), None)


def _subject_of_names(e: Expr) -> str | None:
    """A subject that names a value: a bare number is no subject (``np.maximum(0, x)``)."""
    return None if isinstance(e, Num) else _subject(e)
