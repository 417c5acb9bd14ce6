"""Lowering: the sweep's gradient expressions, made into what the printer can spell for the
values' types.

The gate table writes selections the way number code reads them (``dz = dm if z >= w else
0.0``). An array has no single truth value, so for arrays a selection becomes a mask
(``(z >= w) * dm``), NumPy's sign, or ``np.where`` where a mask would multiply an infinity
by zero.
"""

from __future__ import annotations

from .arrays.ir import Where, transform_array
from .expr import And, Bin, Call, Compare, Cond, Expr, Neg, Num, walk


def elementwise_selections(e: Expr) -> Expr:
    """``e`` with every ``Cond`` written for arrays."""

    def rewrite(node: Expr) -> Expr | None:
        if not isinstance(node, Cond):
            return None
        test = elementwise_selections(node.test)
        body = elementwise_selections(node.body)
        orelse = node.orelse
        sign = _sign_of(node)
        if sign is not None:
            a, g = sign
            return Bin("*", Call("sign", (elementwise_selections(a),)), body)
        if _is_zero(orelse) and _finite_where_masked(body):
            return Bin("*", _mask(test), body)
        return Where(test, body, elementwise_selections(orelse))

    return transform_array(e, rewrite)


def _mask(test: Expr) -> Expr:
    """A comparison is a mask already; several that must all hold multiply."""
    if isinstance(test, And):
        total = test.items[0]
        for item in test.items[1:]:
            total = Bin("*", total, item)
        return total
    return test


def _sign_of(node: Cond) -> tuple[Expr, Expr] | None:
    """(a, g) for ``g if a > 0 else (-g if a < 0 else 0)``: the abs gate's ``sign(a) * g``."""
    test, inner = node.test, node.orelse
    if not (isinstance(test, Compare) and test.op == ">" and _is_zero(test.right)):
        return None
    if not (isinstance(inner, Cond) and isinstance(inner.test, Compare)):
        return None
    t = inner.test
    if t.op == "<" and t.left == test.left and _is_zero(t.right) and _is_zero(inner.orelse):
        if inner.body == Neg(node.body) or node.body == Neg(inner.body):
            return test.left, node.body
    return None


def _finite_where_masked(e: Expr) -> bool:
    """Whether ``mask * e`` is safe: nothing in ``e`` can be infinite or NaN where the mask is
    0 (a log or a division there would make 0 * inf = NaN)."""
    return not any(
        isinstance(n, Call) or (isinstance(n, Bin) and n.op in ("/", "**")) for n in walk(e)
    )


def _is_zero(e: Expr) -> bool:
    return isinstance(e, Num) and e.value == 0
