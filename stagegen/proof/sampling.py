"""Where the proof evaluates: the random points, and for arrays the sizes and labels.

Functions of numbers draw every input number from one of the RANGES in turn (a list's elements
one by one), with Python's random numbers seeded by the function's name and stages. Array
functions get concrete sizes for their dimension names (2, 3, 4, ... for the symbolic and the
50-digit checks; distinct random sizes for float64 central differences), shrunk where a
parameter would have more than ``ARRAY_ELEMENT_LIMIT`` elements, floats drawn from the same
RANGES, and integer labels drawn inside the axis they index, with NumPy's random numbers
seeded by the name, stages and types.
"""

from __future__ import annotations

import hashlib
import math
import random

from ..arrays import shapes
from ..arrays.ir import FullSlice, Index, NewAxis
from ..expr import Var, walk
from ..oracle import FLOAT_LIMIT
from ..program import Program
from ..types import Types, dimension_names
from .common import RANGES

ARRAY_ELEMENT_LIMIT = 512  # elements per parameter past which dimensions are checked at size 1


# ---------------------------------------------------------------------------- numbers


def number_rng(program: Program) -> random.Random:
    """The random numbers of one function of numbers (seeded by its name and stages)."""
    seed = hashlib.sha256(f"{program.name}:{program.stages!r}".encode()).hexdigest()
    return random.Random(int(seed[:16], 16))


LIST_LENGTH = 4  # elements of a list the function reads at no constant index (in loops only)


def list_length(param) -> int:
    """How many elements the proof gives a list parameter: one past the highest constant index
    read, or LIST_LENGTH for a list read only in loops (``len(w)``, ``zip``, ``w[i]``)."""
    return param.length or LIST_LENGTH


def input_names(program: Program) -> list[str]:
    """Every input number: ``x`` for a number parameter, ``w[0]``, ``w[1]``... for a list."""
    names = []
    for p in program.params:
        if p.is_list:
            names += [f"{p.name}[{i}]" for i in range(list_length(p))]
        else:
            names.append(p.name)
    return names


def arguments(program: Program, point: dict[str, float]) -> list:
    """The arguments of a call at ``point`` (a list parameter's elements gathered)."""
    args = []
    for p in program.params:
        if p.is_list:
            args.append([point[f"{p.name}[{i}]"] for i in range(list_length(p))])
        elif p.integer:  # a trip count: a small whole number, from the drawn value
            args.append(min(int(abs(point[p.name]) * 2), INTEGER_LIMIT))
        else:
            args.append(point[p.name])
    return args


INTEGER_LIMIT = 6  # the largest trip count an integer parameter is given


def sample(rng: random.Random, names: list[str], attempt: int) -> dict[str, float]:
    """A random point, in the ``attempt``-th of the RANGES (cycled)."""
    low, high = RANGES[attempt % len(RANGES)]
    return {n: rng.uniform(low, high) for n in names}


# The variations tried, once the usual points are checked, to reach a branch outcome not seen
# yet: a point checked already with its signs flipped, or scaled, or one input scaled; or a
# draw from a wider range.
SCALES = (0.1, 0.3, 0.5, 2.0, 3.0, 10.0)
WIDE_RANGES = [(-5.0, 5.0), (-20.0, 20.0), (0.01, 0.2)]


def variant(rng: random.Random, names: list[str], seen: list[dict], attempt: int) -> dict:
    """A point meant to take a branch the points so far did not (see SCALES)."""
    if not seen or attempt % 4 == 3:
        low, high = WIDE_RANGES[attempt % len(WIDE_RANGES)]
        return {n: rng.uniform(low, high) for n in names}
    base = {n: float(seen[rng.randrange(len(seen))][n]) for n in names}
    how = attempt % 4
    if how == 0:  # flip the signs of some inputs (at least one)
        flipped = [n for n in names if rng.random() < 0.5] or [rng.choice(names)]
        return {n: -v if n in flipped else v for n, v in base.items()}
    if how == 1:  # scale every input
        factor = rng.choice(SCALES)
        return {n: v * factor for n, v in base.items()}
    one = rng.choice(names)  # scale one input
    factor = rng.choice(SCALES) * rng.choice((1.0, -1.0))
    return {n: v * factor if n == one else v for n, v in base.items()}


def within_float_range(values) -> bool:
    """Whether every value is finite and within float range."""
    return all(math.isfinite(float(v)) and abs(float(v)) < FLOAT_LIMIT for v in values)


# ---------------------------------------------------------------------------- arrays: sizes and inputs


def array_seed(program: Program) -> int:
    """The seed of one array function's random numbers (its name, stages and types)."""
    text = f"{program.name}:{program.stages!r}:{sorted(str(k) for k in program.types)!r}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16)


def symbolic_sizes(program: Program) -> dict[str, int]:
    """2, 3, 4, ... in the order the parameters name the dimensions (a rest: one dimension)."""
    sizes = {n: 2 + k for k, n in enumerate(dimension_names(program))}
    drawn = _rests(program, sizes, lambda total, n: (total,) if total is not None else (n,))
    return _joined(program, drawn, None)


def numeric_sizes(program: Program, rng, avoid: dict[str, int]) -> dict[str, int]:
    """Distinct random sizes from 2 to 8 (more if needed), not all equal to ``avoid``; a rest
    gets none, one or two dimensions (so the backward is checked at several ranks)."""
    names = dimension_names(program)
    pool = list(range(2, max(9, len(names) + 4)))
    for _ in range(20):
        picked = [int(v) for v in rng.choice(pool, size=len(names), replace=False)]
        sizes = dict(zip(names, picked))
        if not names or sizes != avoid:
            break
    drawn = _rests(program, sizes, lambda total, n: _random_rest(rng, total, n))
    return _joined(program, drawn, rng)


def _rests(program: Program, sizes: dict, draw) -> dict:
    """``sizes`` with each rest (``...x``) drawn as a tuple of dimensions: ``draw(total, n)``,
    where ``total`` is the number of elements a matrix product fixes it to hold (else None)."""
    out = dict(sizes)
    for name, n in sizes.items():
        if shapes.is_rest(name):
            fixed = program.rest_sizes.get(name)
            out[name] = draw(sizes[fixed] if fixed is not None else None, n)
    return out


def _joints(program: Program) -> set:
    """The joint rests (``...w|x``: arrays of any shape broadcast together) of the function."""
    return {
        d
        for t in [*program.types.values(), *program.types.get("<expressions>", {}).values()]
        for d in getattr(t, "shape", None) or ()
        if shapes.is_joint(d)
    }


def _joined(program: Program, sizes: dict, rng) -> dict:
    """Arrays of any shape that the function broadcasts together (``x * w``) drawn so that
    they do: each group's members from one shape, one member's (picked by ``rng``), the others
    with leading axes dropped and axes set to 1 at random (none without ``rng``)."""
    groups: list[set[str]] = []  # the members of overlapping joints, merged
    for d in sorted(_joints(program)):
        members = set(shapes.rest_members(d))
        touching = [g for g in groups if g & members]
        for g in touching:
            groups.remove(g)
            members |= g
        groups.append(members)
    out = dict(sizes)
    for group in groups:
        ordered = sorted(group)
        if rng is not None:
            ordered = [ordered[int(k)] for k in rng.permutation(len(ordered))]
        common = out[shapes.rest(ordered[0])]
        for m in ordered[1:]:
            shape = list(common)
            if rng is not None:
                shape = shape[int(rng.integers(0, len(shape) + 1)) :]
                shape = [1 if rng.random() < 0.3 else n for n in shape]
            out[shapes.rest(m)] = tuple(shape)
    return _joint_sizes(program, out)


def _joint_sizes(program: Program, sizes: dict) -> dict:
    """``sizes`` with each joint rest sized as NumPy broadcasts its members."""
    import numpy as np

    out = dict(sizes)
    for d in _joints(program):
        members = [out[shapes.rest(m)] for m in shapes.rest_members(d)]
        out[d] = tuple(int(n) for n in np.broadcast_shapes(*members))
    return out


def _random_rest(rng, total: int | None, n: int) -> tuple[int, ...]:
    if total is not None:  # (total,), or split in two where it factors
        splits = [(a, total // a) for a in range(2, total) if total % a == 0]
        return splits[int(rng.integers(len(splits)))] if splits and rng.random() < 0.5 else (total,)
    rank = int(rng.integers(0, 3))
    return tuple(int(v) for v in rng.integers(1, 4, size=rank)) if rank else ()


def show_sizes(sizes: dict[str, int]) -> str:
    """The sizes as the report shows them: ``N=2, D=3``."""
    ones = [n for n, v in sizes.items() if v == 1]  # dimensions shrunk to fit (feasible_sizes)
    shown = [f"{n}={v}" for n, v in sizes.items() if v != 1 or len(ones) <= 3]
    if len(ones) > 3:
        shown.append(f"{len(ones)} more at 1")
    return ", ".join(shown) or "no named dimensions"


def label_bounds(program: Program, sizes: dict[str, int]) -> dict[str, int]:
    """For each labels parameter, the length of the axis it indexes (the smallest, if several)."""
    bounds: dict[str, int] = {}
    types = Types(program)
    labels = {p.name for p in program.params if p.labels}
    for e in program.types["<expressions>"]:
        if not isinstance(e, Index):
            continue
        axis = 0
        for item in e.items:
            if isinstance(item, NewAxis):
                continue
            if not isinstance(item, FullSlice):
                for node in walk(item):
                    if isinstance(node, Var) and node.name in labels:
                        length = shapes.size((types.shape(e.operand)[axis],), sizes)[0]
                        bounds[node.name] = min(bounds.get(node.name, length), length)
            axis += 1
    return bounds


class Inputs:
    """Random arguments for one program at given sizes: floats in a range, labels in range."""

    def __init__(self, program: Program, sizes: dict[str, int], rng):
        self.program, self.sizes, self.rng = program, sizes, rng
        self.bounds = label_bounds(program, sizes)

    def shape(self, name: str) -> tuple[int, ...]:
        return shapes.size(self.program.types[name].shape, self.sizes)

    def sample(self, attempt: int, wide: bool = False) -> dict:
        """Floats from the ``attempt``-th of the RANGES (of the WIDE_RANGES, to reach a branch
        outcome the usual points did not)."""
        ranges = WIDE_RANGES if wide else RANGES
        low, high = ranges[attempt % len(ranges)]
        values: dict = {}
        for p in self.program.params:
            if p.labels and self.program.types[p.name].kind == "bool":
                values[p.name] = self.rng.random(size=self.shape(p.name)) < 0.5  # a mask
            elif p.labels:
                values[p.name] = self.rng.integers(
                    0, self.bounds.get(p.name, 2), size=self.shape(p.name)
                )
            elif p.shape is None:
                values[p.name] = float(self.rng.uniform(low, high))
            else:
                values[p.name] = self.rng.uniform(low, high, size=self.shape(p.name))
        return values


def jsonable(values: dict) -> dict:
    """A point as the report stores it (arrays as nested lists)."""
    import numpy as np

    return {
        k: (np.asarray(v).tolist() if not isinstance(v, float) else v) for k, v in values.items()
    }


def show_point(values: dict) -> str:
    """A point as a failure shows it (a large array by its shape)."""
    import numpy as np

    parts = []
    for k, v in values.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.6g}")
        else:
            a = np.asarray(v)
            shown = (
                np.array2string(a, precision=4, separator=", ")
                if a.size <= 12
                else f"shape {a.shape}"
            )
            parts.append(f"{k}={shown}".replace("\n", ""))
    return ", ".join(parts)


def feasible_sizes(program: Program, sizes: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """The sizes, with the last-named dimensions set to 1 until every parameter has at most
    ARRAY_ELEMENT_LIMIT elements; and the names so set (a 40-dimension annotation would
    otherwise ask for 2**40 elements)."""
    import numpy as np

    sizes = dict(sizes)
    shrunk: list[str] = []

    def largest() -> int:
        counts = [
            int(np.prod(shapes.size(p.shape, sizes), dtype=float))
            for p in program.params
            if p.shape is not None
        ]
        return max(counts, default=0)

    for name in reversed([n for n in sizes if not shapes.is_joint(n)]):
        if largest() <= ARRAY_ELEMENT_LIMIT:
            break
        sizes[name] = (1,) if shapes.is_rest(name) else 1
        shrunk.insert(0, name)
    return _joint_sizes(program, sizes), shrunk
