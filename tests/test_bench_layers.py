"""The two-layer net benchmark (stagegen.bench.layers): its reference gradient, its agreement
check (a wrong competitor is refused, never timed) and the structure of a tiny run. No timing is
asserted: timings live in the benchmark's output."""

import json
from pathlib import Path
import textwrap

import pytest

np = pytest.importorskip("numpy")

from stagegen.bench import layers  # noqa: E402
from stagegen.numeric import central_differences  # noqa: E402

TINY = dict(sizes=(1, 3), dims=(4, 5, 3), min_time=1e-4, repeat=1)

# The example in this checkout (the package may be installed elsewhere, as in CI).
EXAMPLE_FORWARD = (
    Path(__file__).resolve().parent.parent / "examples" / "layers" / "two_layer_net.py"
)

# A stand-in for the generated module, written to a temporary directory (never into examples/):
# the same gradient as the hand-written one, computed in another order.
STAND_IN = """
import numpy as np


def two_layer_loss_backward(X, y, W1, b1, W2, b2, reg=0.0, dloss=1.0):
    n = X.shape[0]
    pre = X @ W1 + b1
    hidden = np.maximum(0, pre)
    scores = hidden @ W2 + b2
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    onehot = np.zeros_like(probs)
    np.add.at(onehot, (np.arange(n), y), 1.0)
    dscores = (probs - onehot) / n * dloss
    dhidden = (pre > 0) * (dscores @ W2.T)
    dW2 = hidden.T @ dscores + reg * W2 * dloss
    dW1 = X.T @ dhidden + reg * W1 * dloss
    return dW1, dhidden.sum(axis=0), dW2, dscores.sum(axis=0){perturb}
"""


def stand_in(tmp_path, perturb=""):
    path = tmp_path / "two_layer_net_backward.py"
    path.write_text(textwrap.dedent(STAND_IN.format(perturb=perturb)))
    return path


def numeric(f, args, index):
    """Central differences of f(*args) with respect to args[index] (stagegen.numeric)."""
    args = list(args)
    args[index] = np.array(args[index], dtype=float)
    return central_differences(f, args, [index])[index]


def test_the_hand_written_reference_matches_numerical_gradients():
    forward = layers.load_forward()
    args = layers.make_inputs(5, 4, 6, 3, seed=1, reg=0.1)
    got = layers.hand_backward(*args)
    for k, name in enumerate(layers.PARAMS):
        want = numeric(forward, args, 2 + k)
        rel = np.max(np.abs(got[k] - want)) / np.max(np.abs(got[k]) + np.abs(want))
        assert rel < 1e-7, (name, rel)


def test_check_gradient_accepts_the_reference_and_refuses_wrong_answers():
    args = layers.make_inputs(3, 4, 5, 3)
    ref = layers.hand_backward(*args)
    assert layers.check_gradient(layers.hand_backward, args, ref) is None

    def perturbed(*a):
        dW1, db1, dW2, db2 = layers.hand_backward(*a)
        return dW1, db1, dW2 * (1 + 1e-5), db2

    assert "dW2 disagrees" in layers.check_gradient(perturbed, args, ref)
    assert "shape" in layers.check_gradient(lambda *a: tuple(g.T for g in ref), args, ref)
    assert "values" in layers.check_gradient(lambda *a: ref[:3], args, ref)
    assert "raised" in layers.check_gradient(lambda *a: 1 / 0, args, ref)

    def mutates(X, *rest):
        out = layers.hand_backward(X, *rest)
        X[0, 0] += 1.0
        return out

    assert "changed its input X" in layers.check_gradient(mutates, args, ref)


def test_a_tiny_run_reports_and_writes_its_results(tmp_path):
    results = layers.run(backward_path=tmp_path / "missing.py", **TINY)
    comps = results["competitors"]
    assert comps["hand"]["status"] == "ok"
    assert comps["stagegen"]["status"] == "skipped"
    reason = comps["stagegen"]["reason"]
    assert "does not exist yet" in reason
    assert "`stagegen two_layer_net.py --wrt W1,b1,W2,b2`" in reason  # what to do, exactly
    assert "leave out --backward" in reason
    assert results["refused"] == []
    assert [r["N"] for r in results["rows"]] == [1, 3]
    for row in results["rows"]:
        assert row["us"]["hand"] > 0 and row["us"]["forward"] > 0
        assert "stagegen" not in row["us"] and row["stagegen_over_hand"] is None
    m = results["machine"]
    assert m["numpy"] == np.__version__ and m["python"] and m["cpus"]
    text = layers.render_text(results)
    assert "hand-written µs" in text and "skipped" in text and "NumPy" in text
    layers.write(results, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert "| N |" in (tmp_path / "out" / "results.md").read_text()


def test_the_command_line_writes_results(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--sizes", "1,2", "--min-time", "0.0001", "--repeat", "1", "--out", str(out)]
    argv += ["--backward", str(tmp_path / "missing.py")]
    assert layers.main(argv) == 0
    captured = capsys.readouterr()
    assert "stagegen/hand" in captured.out
    assert "N=2" in captured.err and "repeat 1/1" in captured.err
    assert (out / "results.md").exists() and (out / "results.json").exists()


def test_a_backward_file_is_loaded_checked_and_timed(tmp_path):
    results = layers.run(backward_path=stand_in(tmp_path), **TINY)
    assert results["competitors"]["stagegen"]["status"] == "ok"
    assert results["refused"] == []
    for row in results["rows"]:
        assert row["us"]["stagegen"] > 0 and row["us"]["stagegen_fwd_bwd"] > 0
        assert row["stagegen_over_hand"] > 0
    table = layers.render_text(results).split("\n\n")[1]
    # Only autograd may be skipped (it is in .[bench], not in .[test]); stagegen never is.
    autograd_skipped = results["competitors"].get("autograd", {}).get("status") != "ok"
    assert table.count("skipped") == (len(results["rows"]) if autograd_skipped else 0)


def test_a_wrong_backward_file_is_refused_and_not_timed(tmp_path):
    path = stand_in(tmp_path, perturb=" * (1 + 1e-6)")  # db2 slightly off
    results = layers.run(backward_path=path, **TINY)
    assert set(results["refused"]) == {"stagegen", "stagegen_fwd_bwd"}  # the pair calls it
    assert "db2 disagrees" in results["competitors"]["stagegen"]["reason"]
    for row in results["rows"]:
        assert "stagegen" not in row["us"] and row["stagegen_over_hand"] is None
    assert "refused" in layers.render_text(results)


def test_a_wrong_competitor_is_refused(tmp_path, monkeypatch):
    real = layers.hand_backward

    def load_wrong(path=None):
        def wrong(*args):
            dW1, db1, dW2, db2 = real(*args)
            return dW1 + 1e-4 * np.abs(dW1).max(), db1, dW2, db2

        return wrong

    monkeypatch.setattr(layers, "load_stagegen", load_wrong)
    results = layers.run(**TINY)
    assert set(results["refused"]) == {"stagegen", "stagegen_fwd_bwd"}  # the pair calls it
    assert "dW1 disagrees" in results["competitors"]["stagegen"]["reason"]
    assert all("stagegen" not in row["us"] for row in results["rows"])
    # the command line says so in its exit status
    argv = ["--sizes", "1", "--min-time", "0.0001", "--repeat", "1", "--out", str(tmp_path)]
    assert layers.main(argv) == 1


def test_autograd_agrees_with_the_hand_written_gradient():
    pytest.importorskip("autograd")
    grad = layers.autograd_gradient()
    for n in (1, 4):
        args = layers.make_inputs(n, 4, 5, 3, reg=0.1)
        assert layers.check_gradient(grad, args, layers.hand_backward(*args)) is None


def test_a_wrong_autograd_is_refused(monkeypatch, tmp_path):
    pytest.importorskip("autograd")
    real = layers.autograd_gradient

    def wrong_autograd():
        grad = real()
        return lambda *args: tuple(g * 1.001 for g in grad(*args))

    monkeypatch.setattr(layers, "autograd_gradient", wrong_autograd)
    results = layers.run(backward_path=tmp_path / "missing.py", **TINY)
    assert results["refused"] == ["autograd"]
    assert all("autograd" not in row["us"] for row in results["rows"])


def test_the_generated_backward_agrees_with_the_hand_written_one():
    # The committed golden of this checkout (the package may be installed elsewhere, as in CI).
    golden = EXAMPLE_FORWARD.with_name("two_layer_net_backward.py")
    backward = layers.load_stagegen(golden)
    for n in (1, 4):
        args = layers.make_inputs(n, 4, 5, 3, reg=0.1)
        assert layers.check_gradient(backward, args, layers.hand_backward(*args)) is None


def test_python_dash_m_runs_the_module_on_one_blas_thread(tmp_path):
    import subprocess
    import sys

    argv = ["--sizes", "1", "--min-time", "0.0001", "--repeat", "1", "--out", str(tmp_path)]
    argv += ["--backward", str(tmp_path / "missing.py")]
    done = subprocess.run(
        [sys.executable, "-m", "stagegen.bench.layers", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "re-running with OPENBLAS_NUM_THREADS=1" in done.stderr
    assert "OPENBLAS_NUM_THREADS=1" in done.stdout  # the header says what was measured
    env = json.loads((tmp_path / "results.json").read_text())["machine"]["blas_threads_env"]
    assert env["OPENBLAS_NUM_THREADS"] == "1"


# ------------------------------------------------------------- an installed stagegen, elsewhere


def test_the_embedded_forward_is_the_examples_forward():
    assert EXAMPLE_FORWARD.read_text(encoding="utf-8") == layers.FORWARD_SOURCE


@pytest.fixture
def outside_a_checkout(tmp_path, monkeypatch):
    """As after a non-editable install, run from an empty directory: no examples/ beside the
    package (it lives in site-packages) and none under the working directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(layers, "CHECKOUT_ROOT", tmp_path / "site-packages")
    assert layers.find_examples() is None
    return elsewhere


def test_outside_a_checkout_the_backward_is_generated_in_memory(outside_a_checkout, capsys):
    out = outside_a_checkout / "out"
    argv = ["--sizes", "1,2", "--min-time", "0.0001", "--repeat", "1", "--out", str(out)]
    assert layers.main(argv) == 0
    captured = capsys.readouterr()
    assert "does not exist" not in captured.out + captured.err
    results = json.loads((out / "results.json").read_text())
    statuses = {k: v["status"] for k, v in results["competitors"].items()}
    # checked against the hand-written gradient at every size before it was timed
    assert statuses["stagegen"] == statuses["forward"] == statuses["stagegen_fwd_bwd"] == "ok"
    assert results["refused"] == []
    assert all(row["us"]["stagegen"] > 0 for row in results["rows"])
    assert results["settings"]["backward"] == layers.IN_MEMORY
    assert "generated in memory" in captured.out
    assert sorted(p.name for p in outside_a_checkout.iterdir()) == ["out"]  # nothing else written


def test_outside_a_checkout_the_forward_is_the_embedded_one(outside_a_checkout):
    forward = layers.load_forward()
    args = layers.make_inputs(3, 4, 5, 3, seed=2, reg=0.1)
    in_checkout = layers.load_by_path(EXAMPLE_FORWARD, layers.FORWARD_NAME)
    assert forward(*args) == in_checkout(*args)
    backward = layers.load_stagegen()
    assert layers.check_gradient(backward, args, layers.hand_backward(*args)) is None
