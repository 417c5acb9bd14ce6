"""--split for array code: one operation per stage, the same gradient as the staging as written.

Every layer example is split, generated, loaded and run against its unsplit backward at random
shapes (the two must agree to 1e-10), and proven by ``stagegen.verify``. The split text of the
affine and batch-norm layers is read back: each backward block undoes one forward operation.
What carries no gradient (index items, masks, shape reads) must stay inline. Random programs of
the array fuzzer (tests/test_array_fuzz.py) are split too; more of them on demand:

    STAGEGEN_FUZZ_EXAMPLES=2000 pytest -p no:cacheprovider tests/test_array_split.py -s
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

import stagegen  # noqa: E402
import test_array_fuzz as fuzz  # noqa: E402  (its program generator; tests/ is on the path)
from stagegen.api import load_backward_module  # noqa: E402
from stagegen.arrays.ir import Arange, Dot, Index, Reduce, Reshape, ShapeRead, Transpose  # noqa
from stagegen.expr import Bin, Call, Compare, Neg, Var, walk  # noqa: E402
from stagegen.gates import sigmoid_input  # noqa: E402
from stagegen.reader import read_programs  # noqa: E402
from stagegen.split import split_program  # noqa: E402

LAYERS = Path(__file__).resolve().parent.parent / "examples" / "layers"
SOURCES = sorted(p for p in LAYERS.glob("*.py") if not p.stem.endswith("_backward"))
SAME = 1e-10  # two generated backwards of one function (split and as written)

_EXAMPLES_ENV = os.environ.get("STAGEGEN_SPLIT_FUZZ_EXAMPLES") or os.environ.get(
    "STAGEGEN_FUZZ_EXAMPLES"
)
FUZZ_PROGRAMS = int(_EXAMPLES_ENV or 0) or 40
FUZZ_SEED = 5_000_000  # other programs than the array fuzzer's own (seeds 0, 1, ...)


def backward_of(source: str, *, split: bool, wrt=None):
    text = stagegen.generate(source, wrt=wrt, split=split, filename="layer.py")
    (name,) = [n for n in load_backward_module(text) if n.endswith("_backward")]
    return load_backward_module(text)[name], text


def random_arguments(source: str, rng: np.random.Generator) -> list:
    """An argument for every parameter, at random sizes from 2 to 5: floats for shaped
    parameters and numbers, labels (integers valid along every axis) for index parameters."""
    (program,) = read_programs(source, "layer.py")
    sizes: dict[str, int] = {}
    for p in program.params:
        for d in p.shape or ():
            if isinstance(d, str):
                sizes.setdefault(d, int(rng.integers(2, 6)))
    smallest = min(sizes.values(), default=2)
    args = []
    for p in program.params:
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in p.shape or ())
        if p.labels:
            args.append(rng.integers(0, smallest, size=shape))
        elif p.shape:
            args.append(rng.normal(size=shape))
        else:
            args.append(float(rng.uniform(0.1, 1.0)))
    return args


def assert_same_gradients(split_grads, grads, where: str) -> None:
    if not isinstance(grads, tuple):
        split_grads, grads = (split_grads,), (grads,)
    assert len(split_grads) == len(grads), where
    for k, (a, b) in enumerate(zip(split_grads, grads)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{where}: gradient {k}"
        scale = float(np.max(np.abs(b), initial=0.0))
        np.testing.assert_allclose(a, b, rtol=SAME, atol=SAME * scale, err_msg=f"{where}: {k}")


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_split_layer_has_the_gradient_of_the_layer_as_written(path):
    source = path.read_text(encoding="utf-8")
    split, split_text = backward_of(source, split=True)
    written, written_text = backward_of(source, split=False)
    assert "--split" in split_text and "--split" not in written_text
    rng = np.random.default_rng(sum(path.stem.encode()))
    for draw in range(4):
        args = random_arguments(source, rng)
        shapes = [np.shape(a) for a in args]
        assert_same_gradients(split(*args), written(*args), f"{path.stem}, shapes {shapes}")


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_split_layer_is_proven(path):
    source = path.read_text(encoding="utf-8")
    report = stagegen.verify(source, split=True, filename=str(path))  # raises if it fails
    (program,) = read_programs(source, str(path))
    (proven,) = report.functions
    assert proven.stages == len(split_program(program).stages)  # the split program was proven
    assert proven.points and report.checks > 0


# One operation of the generated text's Python: what the backward blocks' headers count.
def _operations(node: ast.AST) -> int:
    count = 0
    for n in ast.walk(node):
        if isinstance(n, (ast.BinOp, ast.Call, ast.Subscript)):
            count += 1
        elif isinstance(n, ast.UnaryOp) and not isinstance(n.operand, (ast.Name, ast.Constant)):
            count += 1
        elif isinstance(n, ast.Attribute) and n.attr == "T":
            count += 1
    return count


def _forward_operations(source: str) -> int:
    (fn,) = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    return sum(_operations(s.value) for s in fn.body if isinstance(s, (ast.Assign, ast.Return)))


@pytest.mark.parametrize("stem", ["affine", "batchnorm"])
def test_split_text_has_one_operation_per_backward_block(stem):
    source = (LAYERS / f"{stem}.py").read_text(encoding="utf-8")
    _, text = backward_of(source, split=True)
    headers = re.findall(r"^\s*# backprop (.*)$", text, flags=re.M)
    assert headers, text
    for header in headers:
        (statement,) = ast.parse(header).body
        assert _operations(statement.value) == 1, f"{header!r} in\n{text}"
    # ... and every operation of the forward has its block: nothing was left compound.
    assert len(headers) == _forward_operations(source), text


def _operation_nodes(e, types) -> int:
    """The operations of a split stage: structural and elementwise nodes that carry a gradient
    (a negated name stays in its gate, and a sigmoid is one gate, as for numbers)."""
    count = 0
    stack = [e]
    while stack:
        n = stack.pop()
        t = types.get(n)
        if t is None or not t.differentiable:
            continue  # inline: masks, index items, shape reads, `:` and None
        if sigmoid_input(n) is not None:
            count += 1
            stack.append(sigmoid_input(n))
            continue
        if isinstance(n, Neg) and isinstance(n.operand, Var):
            continue
        if isinstance(n, (Bin, Neg, Call, Dot, Transpose, Reshape, Reduce, Index)):
            count += 1
        stack.extend(n.children())
    return count


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_every_split_stage_is_one_typed_operation(path):
    (program,) = read_programs(path.read_text(encoding="utf-8"), str(path))
    read_types = (dict(program.types), dict(program.types["<expressions>"]))
    split = split_program(program)
    exprs = split.types["<expressions>"]
    assert len(split.stages) >= len(program.stages)
    for stage in split.stages:
        assert stage.target in split.types, stage.target
        assert exprs[stage.expr] == split.types[stage.target], stage
        for node in walk(stage.expr):
            if isinstance(node, Var):
                assert node.name in split.types
        if split.types[stage.target].differentiable:
            assert _operation_nodes(stage.expr, exprs) <= 1, stage
    # The program read is left as it was.
    assert (program.types, program.types["<expressions>"]) == read_types


def test_index_items_masks_and_shape_reads_stay_inline():
    source = (
        "import numpy as np\n\n\n"
        'def f(x: "N, C", y: "N", w: "C, C"):\n'
        "    n = x.shape[0]\n"
        "    h = (x > 0) * x.dot(w)\n"
        "    g = np.log(1.0 + h * h)\n"
        "    return np.sum(g[np.arange(x.shape[0]), y]) / n\n"
    )
    (program,) = read_programs(source, "f.py")
    split = split_program(program)
    exprs = split.types["<expressions>"]
    new = [s for s in split.stages if s.target not in {t.target for t in program.stages}]
    assert new, "nothing was split"
    for stage in new:
        assert exprs[stage.expr].differentiable, stage
        assert not isinstance(stage.expr, (Compare, ShapeRead, Arange)), stage
    # The mask is still written where it was read, and so are the gather's index items.
    product = [s for s in split.stages if isinstance(s.expr, Bin) and s.expr.op == "*"]
    assert any(isinstance(s.expr.left, Compare) for s in product), split.stages
    (gather,) = [s for s in split.stages if isinstance(s.expr, Index)]
    assert isinstance(gather.expr.operand, Var)
    assert isinstance(gather.expr.items[0], Arange) and gather.expr.items[1] == Var("y")
    assert isinstance(gather.expr.items[0].stop, ShapeRead)
    # ... and the split function has the gradient of the one as written.
    rng = np.random.default_rng(7)
    split_backward, _ = backward_of(source, split=True)
    written, _ = backward_of(source, split=False)
    for _ in range(3):
        args = random_arguments(source, rng)
        assert_same_gradients(split_backward(*args), written(*args), "inline")


def test_split_names_read_as_the_operations():
    source = (LAYERS / "affine.py").read_text(encoding="utf-8")
    _, text = backward_of(source, split=True)
    assert "# backprop xdotw = x.dot(w)" in text
    assert "# backprop out = xdotw + b" in text


def _split_fuzz_program(seed: int) -> str:
    """Checks one random program; returns "refused", "checked" or "skipped"."""
    prog = fuzz.build_program(seed)
    try:
        written_text = stagegen.generate(prog.source, wrt=prog.wrt, filename="fuzz.py")
    except stagegen.StagegenError:
        return "refused"  # the fuzzer's own test says whether that was right
    split_text = stagegen.generate(prog.source, wrt=prog.wrt, split=True, filename="fuzz.py")
    written = load_backward_module(written_text)["f_backward"]
    split = load_backward_module(split_text)["f_backward"]
    rng = np.random.default_rng(seed)
    checked = False
    for k in range(2):
        args = fuzz.make_args(prog, fuzz.draw_sizes(rng, k), rng)
        with np.errstate(all="ignore"):
            want = written(*fuzz.copies(args))
            got = split(*fuzz.copies(args))
        if not all(np.all(np.isfinite(g)) for g in (want if isinstance(want, tuple) else [want])):
            continue
        assert_same_gradients(got, want, f"seed {seed}\n{prog.source}\n{split_text}")
        checked = True
    return "checked" if checked else "skipped"


def test_split_random_array_programs_have_the_same_gradients():
    verdicts = [_split_fuzz_program(FUZZ_SEED + k) for k in range(FUZZ_PROGRAMS)]
    assert verdicts.count("checked") >= FUZZ_PROGRAMS // 2, verdicts


def test_cli_writes_a_split_array_module_and_its_check_passes(tmp_path, monkeypatch):
    """`stagegen batchnorm.py --split` writes the split module (proven), and `--check` with
    the options read back from its header finds it up to date."""
    from stagegen.cli import main

    (tmp_path / "batchnorm.py").write_text((LAYERS / "batchnorm.py").read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    assert main(["batchnorm.py", "--split", "--quiet"]) == 0
    written = (tmp_path / "batchnorm_backward.py").read_text(encoding="utf-8")
    assert "stagegen batchnorm.py --split" in written
    assert "# backprop varpeps = var + eps" in written
    assert main(["batchnorm.py", "--check", "--quiet"]) == 0


def test_a_split_backward_binds_the_dimensions_by_name():
    # the invented stage names avoid N and D, and so leave them for the backward to bind
    source = (LAYERS / "batchnorm.py").read_text()
    text = stagegen.generate(source, "batchnorm", split=True, filename="batchnorm.py")
    assert "    N, D = x.shape\n" in text
    assert "x.shape[0]" not in text and "x.shape[1]" not in text
