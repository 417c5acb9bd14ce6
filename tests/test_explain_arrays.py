"""stagegen explain for array code: each gradient's shape and the dimension argument that fixes
it (the notes' "dW must have W's shape (D, M); the only product of X (N, D) and dout (N, M) with
that shape is X.T.dot(dout)"), and values at a point, traced from the generated backward and
checked here against NumPy."""

import ast
import os
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stagegen
from stagegen import cli
from stagegen.api import generate, load_backward_module
from stagegen.explanation import ArrayExplanation, explain_source

LAYERS = Path(__file__).resolve().parent.parent / "examples" / "layers"
EXAMPLES = sorted(p for p in LAYERS.glob("*.py") if not p.name.endswith("_backward.py"))
AFFINE = LAYERS / "affine.py"


def explain_cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["explain", *map(str, args)], out, err)
    return code, out.getvalue(), err.getvalue()


def annotations(path: Path) -> tuple[str, dict[str, tuple]]:
    """The function's name and each annotated parameter's shape, read here from the source."""
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    shapes = {}
    for a in fn.args.args:
        if isinstance(a.annotation, ast.Constant):
            dims = [d.strip() for d in a.annotation.value.split(",") if d.strip()]
            shapes[a.arg] = tuple(dims)
    return fn.name, shapes


def shown(shape: tuple) -> str:
    return "(" + ", ".join(shape) + ("," if len(shape) == 1 else "") + ")"


def sizes_for(path: Path) -> str:
    """Small distinct sizes for every dimension the annotations name."""
    names: list[str] = []
    for shape in annotations(path)[1].values():
        names += [d for d in shape if d not in names and not d.isdigit()]
    return ",".join(f"{d}={2 + k}" for k, d in enumerate(names))


def labels(path: Path) -> set[str]:
    """Parameters used as indices (`x[np.arange(n), y]`): they have no gradient."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple):
            found |= {e.id for e in node.slice.elts if isinstance(e, ast.Name)}
    return found


# ---------------------------------------------------------------------------- symbolically


def test_affine_symbolic_dimension_arguments_in_the_notes_words():
    code, out, err = explain_cli(AFFINE)
    assert code == 0, err
    assert (
        "dw must have w's shape (D, M); the only product of x (N, D) and dout (N, M) with "
        "that shape is x.T.dot(dout)"
    ) in out
    assert (
        "dx must have x's shape (N, D); the only product of dout (N, M) and w (D, M) with "
        "that shape is dout.dot(w.T)"
    ) in out
    assert "db has b's shape (M,): dout (N, M) is summed over axis 0" in out
    # each argument sits right under the line it explains
    lines = out.splitlines()
    k = next(i for i, line in enumerate(lines) if line.strip().startswith("dw = x.T.dot(dout)"))
    assert "dw must have w's shape (D, M)" in lines[k + 1]
    assert "symbolically" in lines[0] and "--at N=2,D=3,M=4" in lines[0]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_layer_explained_symbolically(path):
    code, out, err = explain_cli(path)
    assert code == 0, err
    assert err == ""
    name, shapes = annotations(path)
    assert out.startswith(f"{name} from {path}, symbolically")
    inputs = out.split("gradient on each input")[1]
    for param, shape in shapes.items():
        if param in labels(path):
            assert f"d{param} " not in inputs  # integer labels have no gradient
            continue
        assert re.search(rf"d{param}\s+# {param}'s shape {re.escape(shown(shape))}, ", inputs)
    # every "dv has v's shape S" names the shape of that parameter or stage, and every
    # parameter named so is shown with its annotated shape
    for grad, of, shape in re.findall(r"(\w+) (?:has|must have) (\w+)'s shape (\([^)]*\))", out):
        assert grad == f"d{of}"
        if of in shapes:
            assert shape == shown(shapes[of])


def test_a_product_the_shapes_do_not_decide_is_said_to_be_one():
    source = (
        "import numpy as np\n\n"
        'def square(x: "N, D", w: "D, D"):\n'
        "    out = x.dot(w)\n"
        "    return out\n"
    )
    text = explain_source(source).text()
    assert (
        "dw must have w's shape (D, D); x (N, D) and dout (N, D) give that shape as "
        "x.T.dot(dout), and also as dout.T.dot(x): here the shapes alone do not decide"
    ) in text
    assert "the only product" not in text


def test_matrix_vector_products_and_outer_products():
    source = (
        "import numpy as np\n\n"
        'def matvec(A: "M, D", v: "D"):\n'
        "    out = A.dot(v)\n"
        "    return out\n"
    )
    text = explain_source(source).text()
    assert (
        "dA must have A's shape (M, D); the only product of dout (M,) and v (D,) with that "
        "shape is np.outer(dout, v)"
    ) in text
    # dout.dot(A) has that shape too, but computes what A.T.dot(dout) computes: no rival
    assert (
        "dv must have v's shape (D,); the only product of A (M, D) and dout (M,) with that "
        "shape is A.T.dot(dout)"
    ) in text


def test_sums_spreads_scatters_and_forks_are_argued():
    text = explain_cli(LAYERS / "batchnorm.py")[1]
    assert "dgamma has gamma's shape (D,): xhat * dout (N, D) is summed over axis 0" in text
    assert "dsq has sq's shape (N, D): dvar / N (D,) is spread along axis 0" in text
    assert "dmu has mu's shape (D,): dxmu (N, D) is summed over axis 0" in text
    assert "gradients add at a fork: adds to dxmu from (7)" in text
    assert "a copy, since a += below must not write into dxmu" in text
    svm = explain_cli(LAYERS / "svm_loss.py")[1]
    # rows np.arange(n) beside one label per row name each position once: a plain +=
    assert "dx has x's shape (N, C): dcorrect (N,) is added into dx at (np.arange(n), y)\n" in svm
    assert "np.add.at" not in svm
    embedding = explain_cli(LAYERS.parent / "course" / "rnn_embedding.py")[1]
    assert (
        "dW has W's shape (V, D): dout (N, T, D) is added into zeros of that shape at (x,) "
        "(np.add.at adds where an index repeats)"
    ) in embedding
    softmax = explain_cli(LAYERS / "softmax_loss.py")[1]
    assert (
        "dlog_z has log_z's shape (N, 1): dlog_probs (N, C) is summed over axis 1, kept as "
        "size 1"
    ) in softmax


def test_the_lines_shown_are_the_generated_backward():
    """Every line of the generated backward's blocks appears in the explanation, in order."""
    for path in EXAMPLES:
        text = generate(path.read_text(), filename=str(path))
        body = text.split("# backprop", 1)[1]
        wanted = [
            line.strip().split("  # (")[0]
            for line in body.splitlines()
            if line.strip() and not line.strip().startswith(("#", "return"))
        ]
        shown_lines = [line.strip() for line in explain_cli(path)[1].splitlines()]
        position = 0
        for line in wanted:
            matches = [
                k for k in range(position, len(shown_lines)) if shown_lines[k].startswith(line)
            ]
            assert matches, f"{path.name}: {line!r} is not explained"
            position = matches[0] + 1


# ---------------------------------------------------------------------------- at a point


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_layer_explained_at_a_point(path):
    at = sizes_for(path) + (",reg=0.25" if "reg" in path.read_text() else "")
    code, out, err = explain_cli(path, "--at", at, "--seed", 7)
    assert code == 0, err
    name, shapes = annotations(path)
    sizes = ", ".join(at.split(","))
    assert out.startswith(f"{name} from {path}, at {sizes.replace(',reg', ', reg')}")
    assert "(seed 7)" in out.splitlines()[0]
    inputs = out.split("beside a central finite difference")[1]
    wrt = [p for p in shapes if p not in labels(path)]
    for param in wrt:
        row = next(line for line in inputs.splitlines() if line.strip().startswith(f"d{param} "))
        assert row.rstrip().endswith("✓ agree"), row
    assert "✗" not in out


def affine_point(seed: int, N=2, D=2, M=3):
    """affine's arrays as the teaching aid draws them: x, w, b in parameter order from a standard
    normal (NumPy's default_rng(seed))."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D))
    w = rng.standard_normal((D, M))
    b = rng.standard_normal((M,))
    return x, w, b


def numbers_in(text: str) -> np.ndarray:
    return np.array(ast.literal_eval(text), dtype=float)


def test_affine_summarised_values_equal_numpy():
    code, out, err = explain_cli(AFFINE, "--at", "N=2,D=2,M=3", "--seed", 5)
    assert code == 0, err
    x, w, b = affine_point(5)
    dout = np.ones((2, 3))
    # small arrays are shown whole, to 4 significant digits
    dw_row = next(line for line in out.splitlines() if line.strip().startswith("#   → dw "))
    assert "dw (D, M) = (2, 3): " in dw_row
    assert np.allclose(numbers_in(dw_row.split(": ", 1)[1]), x.T.dot(dout), rtol=1e-3)
    out_row = next(line for line in out.splitlines() if line.strip().startswith("out = "))
    assert np.allclose(numbers_in(out_row.split(": ", 1)[1]), x.dot(w) + b, rtol=1e-3, atol=1e-4)
    x_row = next(line for line in out.splitlines() if line.strip().startswith("x "))
    assert np.allclose(numbers_in(x_row.split(": ", 1)[1]), x, rtol=1e-3)


def test_values_read_from_the_traced_backward_are_exact():
    ex = explain_source(AFFINE.read_text(), None, {"N": 3, "D": 4, "M": 5}, seed=11)
    assert isinstance(ex, ArrayExplanation)
    x, w, b = affine_point(11, 3, 4, 5)
    steps = {s.gradient: s for block in ex.blocks for s in block.steps}
    assert np.array_equal(steps["dw"].value, x.T.dot(np.ones((3, 5))))
    assert np.array_equal(steps["dx"].value, np.ones((3, 5)).dot(w.T))
    assert np.array_equal(steps["db"].value, np.full(5, 3.0))
    assert np.array_equal(ex.values["x"], x)


FORK = """import numpy as np


def fork(x: "N, D", w: "D"):
    h = x * w
    out = h * h + x
    return out
"""


def test_a_gradient_written_twice_is_read_after_each_line():
    """dx is written at (2) and added to at (1): the tracer reads it after each line."""
    ex = explain_source(FORK, None, {"N": 3, "D": 2}, seed=6)
    writes = [s for block in ex.blocks for s in block.steps if s.gradient == "dx"]
    assert [(s.stage.number, s.accumulate) for s in writes] == [(2, False), (1, True)]
    x, w = ex.values["x"], ex.values["w"]
    h = x * w
    assert np.array_equal(writes[0].value, np.ones((3, 2)))
    assert np.allclose(writes[1].value, 1 + w * (2 * h), rtol=1e-15)
    assert "gradients add at a fork: adds to dx from (2)" in ex.text()


def test_input_gradients_are_what_the_generated_backward_returns():
    source = (LAYERS / "batchnorm.py").read_text()
    ex = explain_source(source, None, {"N": 4, "D": 3}, seed=2)
    v = ex.values
    namespace = load_backward_module(generate(source, wrt=["x", "gamma", "beta", "eps"]))
    expected = namespace["batchnorm_backward"](v["x"], v["gamma"], v["beta"], v["eps"])
    got = {g.name: g.value for g in ex.inputs}
    assert list(got) == ["x", "gamma", "beta", "eps"]
    for name, value in zip(got, expected):
        assert np.array_equal(got[name], value)


def test_the_seed_decides_the_arrays():
    source = AFFINE.read_text()
    one = explain_source(source, None, {"N": 2, "D": 3, "M": 4}, seed=1)
    again = explain_source(source, None, {"N": 2, "D": 3, "M": 4}, seed=1)
    other = explain_source(source, None, {"N": 2, "D": 3, "M": 4}, seed=2)
    assert np.array_equal(one.values["w"], again.values["w"])
    assert not np.array_equal(one.values["w"], other.values["w"])
    assert one.text() == again.text()


def test_labels_are_drawn_in_range():
    ex = explain_source((LAYERS / "svm_loss.py").read_text(), None, {"N": 40, "C": 3}, seed=0)
    y = ex.values["y"]
    assert y.dtype.kind == "i" and y.shape == (40,)
    assert y.min() >= 0 and y.max() <= 2 and len(set(y.tolist())) == 3


def test_python_api_repr_and_formats():
    namespace: dict = {}
    exec(compile(AFFINE.read_text(), str(AFFINE), "exec"), namespace)
    ex = stagegen.explain(namespace["affine"], N=2, D=3, M=4, seed=4)
    assert repr(ex) == "<Explanation of affine at N=2, D=3, M=4 (seed 4): 6 backward lines>"
    assert repr(stagegen.explain(namespace["affine"])).startswith(
        "<Explanation of affine symbolically"
    )
    assert "explain(affine, N=2, D=3, M=4)" in str(stagegen.explain(namespace["affine"]))
    html = ex._repr_html_()
    assert "x.T.dot(dout)" in html and "<svg" in html
    markdown = ex.markdown()
    assert "dw must have w's shape (D, M)" in markdown
    assert ex.svg().startswith("<svg")


def test_cli_formats():
    for fmt in ("markdown", "html"):
        code, out, err = explain_cli(AFFINE, "--at", "N=2,D=3,M=4", "--format", fmt)
        assert code == 0, err
        assert "x.T.dot(dout)" in out and "✓ agree" in out
    assert "<svg" in explain_cli(AFFINE, "--format", "html")[1]


# ---------------------------------------------------------------------------- bad input


DEF_LINE = 'def affine(x: "N, D", w: "D, M", b: "M"):'


@pytest.mark.parametrize(
    "at, message",
    [
        ("N=2,D=3,M=4,K=2", "`K` is neither a parameter of `affine(x, w, b)` nor one of its "),
        ("N=2,D=3", 'no size for the dimension `M` (w: "D, M")'),
        ("N=2.5,D=3,M=4", "`N=2.5` is not a size"),
        ("N=0,D=3,M=4", "`N=0` is not a size"),
        ("x=3,N=2,D=3,M=4", "`x` is an array of shape (N, D): its values are drawn at random"),
        ("N=200,D=300,M=4", "`x` would have 60,000 elements at these sizes"),
    ],
)
def test_bad_points_exit_2_located(at, message, tmp_path):
    code, out, err = explain_cli(AFFINE, "--at", at)
    assert code == 2
    assert out == ""
    assert err.startswith(f"{AFFINE}:6:1: error: {message}")
    assert DEF_LINE in err and "Traceback" not in err


def test_a_domain_a_normal_leaves_is_drawn_positive(tmp_path):
    source = tmp_path / "logs.py"
    source.write_text(
        "import numpy as np\n\n\n"
        'def logs(x: "N"):\n'
        "    out = np.sum(np.log(x))\n"
        "    return out\n"
    )
    code, out, err = explain_cli(source, "--at", "N=4")
    assert code == 0, err
    assert "x drawn uniformly from [0.5, 2]" in out.splitlines()[0]
    assert "because with a standard normal stage (1) `out` is not finite" in out
    ex = explain_source(source.read_text(), None, {"N": 4}, seed=0)
    x = ex.values["x"]
    assert x.min() >= 0.5 and x.max() <= 2
    assert np.allclose(ex.inputs[0].value, 1 / x, rtol=1e-15)


def test_a_point_outside_the_domain_exits_2_at_the_stage(tmp_path):
    source = tmp_path / "logs.py"
    source.write_text(
        "import numpy as np\n\n\n"
        'def logs(x: "N"):\n'
        "    t = x * 2\n"
        "    out = np.sum(np.log(t - 10))\n"
        "    return out\n"
    )
    code, out, err = explain_cli(source, "--at", "N=4")
    assert code == 2 and out == ""
    assert err.startswith(f"{source}:6:5: error: stage (2) `out` is not finite at this point")
    assert "choose other sizes or numbers" in err


def test_the_circuit_of_array_code(tmp_path):
    """Each wire carries its shape (green, above) and the gradient flowing back along it as the
    generated backward writes it (red, below)."""
    import xml.etree.ElementTree as ET

    drawing = tmp_path / "affine.svg"
    code, out, err = explain_cli(AFFINE, "--graph", drawing)
    assert code == 0, err
    root = ET.fromstring(drawing.read_text())
    ns = {"svg": "http://www.w3.org/2000/svg"}
    wires = {}
    for g in root.iterfind(".//svg:g[@class='wire']", ns):
        texts = {t.get("class"): t.text for t in g.iterfind("svg:text", ns)}
        wires[(g.get("data-from"), g.get("data-to"))] = (texts["value"], texts["gradient"])
    assert wires == {
        ("x", "out"): ("(N, D)", "dout.dot(w.T)"),
        ("w", "out"): ("(D, M)", "x.T.dot(dout)"),
        ("b", "out"): ("(M,)", "dout.sum(axis=0)"),
        ("out", "output"): ("(N, M)", "dout"),
    }
    svm = explain_source((LAYERS / "svm_loss.py").read_text(), None, {"N": 3, "C": 4})
    dot = svm.dot()
    assert "dmargins_in" in dot and "(N, C) = (3, 4)" in dot
    # labels and sizes carry no gradient; a copy's wire carries what is copied
    from stagegen.circuit import circuit_of

    c = circuit_of(svm)
    flowing = {(w.source, w.target): w.gradient for w in c.wires}
    assert flowing[("y", "correct")] == "none" and flowing[("x", "n")] == "none"
    assert flowing[("x", "margins")] == "dmargins_in"
    assert flowing[("x", "correct")] == "dcorrect"


def test_the_command_itself():
    """One real run of the command: exit status and streams as a user sees them."""
    done = subprocess.run(
        [sys.executable, "-m", "stagegen", "explain", str(AFFINE), "--at", "N=2,D=3"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "no size for the dimension `M`" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "stagegen", "explain", str(AFFINE), "--at", "N=2,D=3,M=4"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "db has b's shape (M,): dout (N, M) is summed over axis 0" in done.stdout


def test_the_readme_shows_what_the_command_prints():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    command = "stagegen explain examples/layers/affine.py\n```\n\n```\n"
    shown_block = readme.split(command, 1)[1].split("```", 1)[0]
    printed = explain_cli(AFFINE)[1].splitlines()
    lines = [line for line in shown_block.splitlines() if line.strip() not in ("", "...")]
    assert len(lines) >= 7
    for line in lines:
        assert line in printed, line


EXPLAIN_FUZZ = int(os.environ.get("STAGEGEN_FUZZ_EXAMPLES") or 40)


def test_explain_never_fails_on_random_array_programs():
    """The array fuzzer's programs (tests/test_array_fuzz.py), explained symbolically and at a
    point and drawn: every one is explained or refused with a located error, and every input's
    gradient agrees with the finite difference. ``STAGEGEN_FUZZ_EXAMPLES=N`` runs N programs
    (1,500 ran clean when this was written)."""
    from test_array_fuzz import build_program

    from stagegen.errors import StagegenError

    explained = 0
    for seed in range(EXPLAIN_FUZZ):
        source = build_program(seed).source
        signature = source.split("def f(", 1)[1].split(")", 1)[0]
        sizes = {k: v for k, v in {"N": 2, "D": 3, "M": 4, "s": 0.7}.items() if k in signature}
        for point in (None, sizes):
            try:
                ex = explain_source(source, "f", point, seed=seed)
            except StagegenError as exc:  # a refusal says what is wrong and what to do
                assert exc.message and exc.hint, str(exc)
                continue
            text = ex.text()
            ex.svg()
            assert "✗" not in text, f"seed {seed}:\n{source}\n{text}"
            explained += 1
    assert explained >= EXPLAIN_FUZZ  # most programs are explained both ways


def test_the_tracer_reads_each_statement_after_it_ran():
    """traced.py on a hand-written module: a multi-line statement, a += and np.add.at are each
    read once, after their last line; the blocks and the signature are read from the text."""
    from stagegen.traced import read_backward, traced_run

    text = '''import numpy as np


def g_backward(x, idx, dout=1.0):
    """Doc."""
    t = x * 2  # (1)
    # backprop u = ...
    du = (
        t
        + 1
    )  # (2)
    du += t  # (2)
    # backprop t = ...
    dx = np.zeros(3)  # (1)
    np.add.at(dx, idx, du)  # (1)
    return dx
'''
    generated = read_backward(text, "g")
    assert generated.headers == ["u = ...", "t = ..."]
    assert generated.upstream == "dout" and generated.returned == ["dx"]
    assert [(line.block, line.comment, line.writes) for line in generated.lines] == [
        (-1, "(1)", ["t"]),
        (0, "(2)", ["du"]),
        (0, "(2)", ["du"]),
        (1, "(1)", ["dx"]),
        (1, "(1)", ["dx"]),
        (1, "", []),
    ]
    assert generated.lines[1].code == ["du = (", "    t", "    + 1", ")"]
    namespace = load_backward_module(text)
    x = np.array([1.0, 2.0])
    after = traced_run(namespace["g_backward"], [x, np.array([0, 0])], generated.lines)
    assert np.array_equal(after[1]["du"], 2 * x + 1)
    assert np.array_equal(after[2]["du"], 4 * x + 1)
    assert np.array_equal(after[3]["dx"], np.zeros(3))
    assert np.array_equal(after[4]["dx"], [(4 * x + 1).sum(), 0, 0])
    assert after[5] == {}


def test_a_slice_is_explained_with_each_gate_added_into_its_slot(tmp_path):
    """LSTM-like gates `a[:, :H]`, `a[:, H:]`: the first gradient is written into its slot of
    new zeros, the next added into its own with a plain +=, and the teaching aid does not call
    either np.add.at."""
    path = tmp_path / "gates.py"
    path.write_text(
        "import numpy as np\n\n\ndef gates(a, c):\n"
        '    """\n    - a: of shape (N, 2H)\n    - c: of shape (N, H)\n    """\n'
        "    N, H = c.shape\n    i = np.tanh(a[:, :H])\n    f = 1 / (1 + np.exp(-a[:, H:]))\n"
        "    return np.sum(i * c + f)\n"
    )
    code, out, err = explain_cli(f"{path}::gates", "--at", "N=2,H=3")
    assert code == 0, err
    assert "da[:, H:] = (1 - f) * f * df" in out
    assert "is written into zeros of that shape at (:, H:)\n" in out
    assert "is added into da at (:, :H)\n" in out
    assert out.count("✓ agree") == 2


def test_agreement_is_measured_against_the_forward_as_written(monkeypatch):
    """The central difference beside each gradient runs the user's source, as the proof does:
    with stagegen's own reading of the forward made to answer 0, it still agrees (found in
    review: "agree" used to compare stagegen with its own reading)."""
    from stagegen import explain_arrays

    monkeypatch.setattr(explain_arrays._Forward, "output", lambda self, values: 0.0)
    code, out, err = explain_cli(LAYERS / "affine.py", "--at", "N=2,D=3,M=2")
    assert code == 0, err
    assert out.count("✓ agree") == 3 and "✗" not in out, out
