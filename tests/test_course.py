"""The course's forward passes as students write them (examples/course/, issue 16): each one's
generated backward, and each good hand-written backward, against central differences of the
forward, on random shapes that include a batch of one; and every module in the folder is either
generated and up to date or refused with the message recorded here.

Each function has a shape spec below: symbolic dimensions per parameter, integer labels and the
dimension they index, boolean masks, and numbers. A function whose generated backward does not
exist yet is a strict xfail (`NOT_GENERATED`): when the golden lands, the test passes, pytest
reports the strict xfail as failed, and the function comes off the list.

After shape inference lands: `stagegen examples/course/MODULE.py` for each module it now takes,
take the module out of REFUSED here and out of the `exclude` of [tool.stagegen] in
pyproject.toml, and its functions out of NOT_GENERATED.
"""

import ast
import functools
import importlib.util
import inspect
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from stagegen.config import project_for
from stagegen.program import backward_name

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "examples" / "course"

# --- the shape specs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """Integer labels of this shape, each in range(below)."""

    shape: str
    below: str


@dataclass(frozen=True)
class Mask:
    """A boolean mask of this shape."""

    shape: str


@dataclass(frozen=True)
class Number:
    """A number parameter, passed as this value (a float is differentiated, an int is not)."""

    value: float | int


@dataclass(frozen=True)
class Case:
    module: str  # examples/course/<module>.py
    function: str
    params: dict  # name -> "N, D" (a float array; sizes are expressions of the dims), or the above
    hand: str  # its hand-written backward in examples/course/handwritten.py
    hand_grads: tuple  # the gradients the hand-written backward returns, in order
    outputs: int = 1  # the values the forward returns before its cache (each has an upstream)
    cache: bool = True  # the forward returns a cache last, which the hand-written one takes
    dims: dict = field(default_factory=dict)  # sizes fixed for every draw (e.g. a small V)


NORM = {"x": "N, D", "gamma": "D", "beta": "D", "eps": Number(1e-5)}
CASES = [
    Case(
        "layers",
        "affine_forward",
        {"x": "N, A, B", "w": "A * B, M", "b": "M"},
        "affine_backward",
        ("x", "w", "b"),
    ),
    Case("layers", "relu_forward", {"x": "N, D"}, "relu_backward", ("x",)),
    Case("layers", "batchnorm_forward", NORM, "batchnorm_backward", ("x", "gamma", "beta")),
    Case("layers", "layernorm_forward", NORM, "layernorm_backward", ("x", "gamma", "beta")),
    Case(
        "layers",
        "spatial_batchnorm_forward",
        {"x": "N, C, H, W", "gamma": "C", "beta": "C", "eps": Number(1e-5)},
        "spatial_batchnorm_backward",
        ("x", "gamma", "beta"),
    ),
    Case(
        "layers",
        "softmax_loss",
        {"x": "N, C", "y": Labels("N", "C")},
        "softmax_loss_backward",
        ("x",),
        cache=False,
    ),
    Case(
        "layers_dropout",
        "dropout_forward",
        {"x": "N, D", "p": Number(0.6), "seed": Number(231)},
        "dropout_backward",
        ("x",),
    ),
    Case(
        "layers",
        "svm_loss",
        {"x": "N, C", "y": Labels("N", "C")},
        "svm_loss_backward",
        ("x",),
        cache=False,
    ),
    Case(
        "fc_net",
        "two_layer_loss",
        {
            "X": "N, A, B",
            "y": Labels("N", "C"),
            "W1": "A * B, H",
            "b1": "H",
            "W2": "H, C",
            "b2": "C",
            "reg": Number(0.3),
        },
        "two_layer_loss_backward",
        ("W1", "b1", "W2", "b2"),
        cache=False,
    ),
    Case(
        "rnn_layers",
        "rnn_step_forward",
        {"x": "N, D", "prev_h": "N, H", "Wx": "D, H", "Wh": "H, H", "b": "H"},
        "rnn_step_backward",
        ("x", "prev_h", "Wx", "Wh", "b"),
    ),
    Case(
        "rnn_layers",
        "rnn_forward",
        {"x": "N, T, D", "h0": "N, H", "Wx": "D, H", "Wh": "H, H", "b": "H"},
        "rnn_backward",
        ("x", "h0", "Wx", "Wh", "b"),
    ),
    Case(
        "rnn_embedding",
        "word_embedding_forward",
        {"x": Labels("N, T", "V"), "W": "V, D"},
        "word_embedding_backward",
        ("W",),
        dims={"V": 3},  # fewer words than positions: a word is picked more than once
    ),
    Case(
        "rnn_temporal",
        "temporal_affine_forward",
        {"x": "N, T, D", "w": "D, M", "b": "M"},
        "temporal_affine_backward",
        ("x", "w", "b"),
    ),
    Case(
        "rnn_temporal",
        "temporal_softmax_loss",
        {"x": "N, T, V", "y": Labels("N, T", "V"), "mask": Mask("N, T")},
        "temporal_softmax_loss_backward",
        ("x",),
        cache=False,
    ),
    Case(
        "rnn_lstm",
        "lstm_step_forward",
        {
            "x": "N, D",
            "prev_h": "N, H",
            "prev_c": "N, H",
            "Wx": "D, 4 * H",
            "Wh": "H, 4 * H",
            "b": "4 * H",
        },
        "lstm_step_backward",
        ("x", "prev_h", "prev_c", "Wx", "Wh", "b"),
        outputs=2,
    ),
    Case(
        "rnn_lstm",
        "lstm_forward",
        {"x": "N, T, D", "h0": "N, H", "Wx": "D, 4 * H", "Wh": "H, 4 * H", "b": "4 * H"},
        "lstm_backward",
        ("x", "h0", "Wx", "Wh", "b"),
    ),
]

# Functions whose generated backward does not exist yet, and why (the refusal of their module).
NOT_GENERATED: dict[str, str] = {}

# Every module in examples/course/ that stagegen refuses today, with the first line of its
# message, exactly (`stagegen --check` reports a module's first refusal, or that of a module it
# imports from).
REFUSED: dict[str, str] = {}
# The files in examples/course/ that are not forwards (stagegen skips them: pyproject.toml).
NOT_FORWARDS = {"handwritten.py", "count_lines.py"}

# --- loading and drawing ---------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def load(stem: str):
    """examples/course/<stem>.py as a module; the folder is on sys.path while it loads, as the
    course's files import each other (`from layers import affine_forward`)."""
    path = COURSE / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"course_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    sys.path.insert(0, str(COURSE))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(COURSE))
        for name in set(sys.modules) - before:  # the siblings it imported, by their bare names
            if (
                getattr(sys.modules[name], "__file__", "")
                and Path(sys.modules[name].__file__).parent == COURSE
            ):
                del sys.modules[name]
    return module


def size(expression: str, dims: dict) -> tuple:
    return tuple(int(eval(part, {}, dims)) for part in expression.split(","))


def dim_names(case: Case) -> list:
    names = set()
    for spec in case.params.values():
        text = spec if isinstance(spec, str) else getattr(spec, "shape", "")
        text += "," + getattr(spec, "below", "")
        names |= set(re.findall(r"[A-Za-z_]\w*", text))
    return sorted(names)


def draws(case: Case) -> list:
    """Three draws of the dimensions: a batch of one first, then two random ones (2 to 4 each),
    seeded by the function's name."""
    rng = np.random.default_rng(zlib.crc32(case.function.encode()))
    out = []
    for k in range(3):
        dims = {d: int(rng.integers(2, 5)) for d in dim_names(case)}
        dims.update(case.dims)
        if k == 0:
            dims["N"] = 1
        out.append(dims)
    return out


def arguments(case: Case, dims: dict, rng) -> list:
    args = []
    for spec in case.params.values():
        if isinstance(spec, str):
            args.append(rng.normal(size=size(spec, dims)))
        elif isinstance(spec, Labels):
            args.append(rng.integers(0, dims[spec.below], size=size(spec.shape, dims)))
        elif isinstance(spec, Mask):
            args.append(rng.random(size=size(spec.shape, dims)) < 0.7)
        else:
            args.append(spec.value)
    return args


def outputs_of(case: Case, result) -> list:
    if not isinstance(result, tuple):
        return [result]
    return list(result[: case.outputs])


def upstreams(case: Case, args: list, rng) -> list:
    forward = getattr(load(case.module), case.function)
    return [rng.normal(size=np.shape(o)) for o in outputs_of(case, forward(*args))]


def central_differences(case: Case, args: list, ups: list, wrt: str, h: float = 1e-5):
    """d/d(wrt) of sum(output * upstream), one element at a time."""
    forward = getattr(load(case.module), case.function)
    k = list(case.params).index(wrt)

    def scalar(value):
        moved = list(args)
        moved[k] = value
        return sum(float(np.sum(o * u)) for o, u in zip(outputs_of(case, forward(*moved)), ups))

    if np.ndim(args[k]) == 0:  # a number such as eps = 1e-5: a step relative to it
        step = 1e-3 * abs(args[k]) or h
        return (scalar(args[k] + step) - scalar(args[k] - step)) / (2 * step)
    grad = np.zeros_like(args[k], dtype=float)
    for index in np.ndindex(*args[k].shape):
        up, down = args[k].copy(), args[k].copy()
        up[index] += h
        down[index] -= h
        grad[index] = (scalar(up) - scalar(down)) / (2 * h)
    return grad


def relative_error(got, want) -> float:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(np.max(np.abs(want), initial=0.0), np.max(np.abs(got), initial=0.0), 1e-3)
    return float(np.max(np.abs(got - want), initial=0.0) / scale)


def check(case: Case, gradients: dict, args: list, ups: list, dims: dict) -> None:
    assert gradients, case.function
    for name, got in gradients.items():
        want = central_differences(case, args, ups, name)
        error = relative_error(got, want)
        assert error < 1e-5, f"{case.function}: d{name} at {dims}: relative error {error:.1e}"


# --- the generated backward ---------------------------------------------------------------------


def generated_gradients(case: Case, args: list, ups: list) -> dict:
    """Run the committed golden's backward; its header names what it returns
    (`# affine_backward(x, w, b, dout=1.0) -> (dx, dw, db)`)."""
    golden = COURSE / f"{case.module}_backward.py"
    name = backward_name(case.function)
    header = re.search(rf"^#\s+{name}\((.*)\) -> \(?([\w, ]+)\)?$", golden.read_text(), re.M)
    assert header, f"{golden.name} has no header line for {name}"
    returned = [g.strip() for g in header.group(2).split(",")]
    backward = getattr(load(f"{case.module}_backward"), name)
    assert len(inspect.signature(backward).parameters) == len(case.params) + len(ups)
    result = backward(*args, *ups)
    result = result if isinstance(result, tuple) else (result,)
    assert len(result) == len(returned)
    names = {f"d{p}": p for p in case.params}
    return {names[g]: value for g, value in zip(returned, result)}


def _marks(case: Case) -> list:
    if case.function in NOT_GENERATED:
        return [pytest.mark.xfail(strict=True, reason=NOT_GENERATED[case.function])]
    return []


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.function, marks=_marks(c)) for c in CASES],
)
def test_generated_backward_matches_central_differences(case):
    rng = np.random.default_rng(zlib.crc32(case.module.encode()))
    for dims in draws(case):
        args = arguments(case, dims, rng)
        ups = upstreams(case, args, rng)
        check(case, generated_gradients(case, args, ups), args, ups, dims)


# --- the hand-written backward ------------------------------------------------------------------


def handwritten_gradients(case: Case, args: list, ups: list) -> dict:
    """The course's convention: `layer_backward(dout, cache)` with the forward's cache; a loss's
    `dx` is for an upstream gradient of 1, so it is scaled by the upstream here."""
    hand = getattr(load("handwritten"), case.hand)
    if case.cache:
        cache = getattr(load(case.module), case.function)(*args)[-1]
        result = hand(*ups, cache)
    else:
        result = hand(*args)
    result = result if isinstance(result, tuple) else (result,)
    assert len(result) == len(case.hand_grads)
    scale = 1.0 if case.cache else ups[0]
    return {p: scale * g for p, g in zip(case.hand_grads, result)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.function)
def test_handwritten_backward_matches_central_differences(case):
    rng = np.random.default_rng(zlib.crc32(case.hand.encode()))
    for dims in draws(case):
        args = arguments(case, dims, rng)
        ups = upstreams(case, args, rng)
        check(case, handwritten_gradients(case, args, ups), args, ups, dims)


def test_a_wrong_gradient_is_caught():
    """The check itself can fail: the ReLU's gradient with the mask the wrong way round."""
    case = next(c for c in CASES if c.function == "relu_forward")
    rng = np.random.default_rng(0)
    args = arguments(case, {"N": 3, "D": 4}, rng)
    ups = upstreams(case, args, rng)
    wrong = {"x": ups[0] * (args[0] < 0)}
    with pytest.raises(AssertionError, match="relative error"):
        check(case, wrong, args, ups, {"N": 3, "D": 4})


def test_every_course_function_has_a_case_and_a_handwritten_backward():
    defined = {
        (path.stem, node.name)
        for path in COURSE.glob("*.py")
        if path.name not in NOT_FORWARDS and not path.stem.endswith("_backward")
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    helpers = {("rnn_lstm", "sigmoid")}  # called by lstm_step_forward, checked through it
    assert {(c.module, c.function) for c in CASES} == defined - helpers
    hand = load("handwritten")
    assert all(callable(getattr(hand, c.hand, None)) for c in CASES)
    assert set(NOT_GENERATED) <= {c.function for c in CASES}


# --- every module: generated and current, or refused as recorded ------------------------------


def test_every_module_is_generated_and_current_or_refused_as_recorded():
    forwards = sorted(
        p.name
        for p in COURSE.glob("*.py")
        if not p.stem.endswith("_backward") and p.name not in NOT_FORWARDS
    )
    assert set(REFUSED) <= set(forwards)
    run = subprocess.run(
        [sys.executable, "-m", "stagegen", "--check", *(f"examples/course/{f}" for f in forwards)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == (2 if REFUSED else 0), run.stderr
    errors = [line for line in run.stderr.splitlines() if ": error: " in line]
    assert len(errors) == len(REFUSED), run.stderr
    for name, error in zip(sorted(REFUSED), errors):  # reported in the order given
        assert error == f"examples/course/{REFUSED[name]}", (name, error)
    for name in forwards:
        if name not in REFUSED:
            golden = f"examples/course/{Path(name).stem}_backward.py"
            assert f"up to date {golden}" in run.stderr, (name, run.stderr)


def test_folder_searches_skip_exactly_the_refused_modules_and_the_others():
    """`stagegen --check examples` passes with the refused modules in the folder: the `exclude`
    of [tool.stagegen] in pyproject.toml names them, and the files that are not forwards."""
    project = project_for(COURSE)
    assert project is not None and project.exclude is not None
    for path in COURSE.glob("*.py"):
        if path.stem.endswith("_backward"):
            continue
        skipped = bool(project.exclude.search("/course/" + path.name))
        assert skipped == (path.name in REFUSED or path.name in NOT_FORWARDS), path.name


# --- the README's table: examples/course/count_lines.py ---------------------------------------


def test_count_lines_covers_every_case_and_says_which_are_generated():
    count = load("count_lines")
    assert [(m, f, h) for _, m, f, h, _ in count.LAYERS] == [
        (c.module, c.function, c.hand) for c in CASES
    ]
    rows = count.table().splitlines()[2:]
    assert len(rows) == len(CASES)
    for case, row in zip(CASES, rows):
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert cells[1] == ("no" if case.function in NOT_GENERATED else "yes"), row
        hand = count.function(COURSE / "handwritten.py", case.hand)
        assert int(cells[3]) == len(count.statements(hand)) > 0, row
        if cells[1] == "no":
            assert cells[4].startswith(f"refused at {case.module}.py:") or cells[4].startswith(
                "refused at layers.py:"  # fc_net.py's first refusal is in layers.py
            ), row


def test_count_lines_counts_statements_not_docstrings_comments_or_wrapping():
    count = load("count_lines")
    tree = ast.parse(
        "def f(x):\n"
        '    """A docstring."""\n'
        "    # a comment\n"
        "\n"
        "    y = (\n"
        "        x + 1\n"
        "    )\n"
        "    for i in range(3):\n"
        "        y += i\n"
        "    return y\n"
    )
    assert len(count.statements(tree.body[0])) == 4


def test_the_readme_shows_the_current_table():
    """The README's table of the course's layers is count_lines.py's output, as committed."""
    table = load("count_lines").table().strip()
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "regenerate the README's table with examples/course/count_lines.py"
