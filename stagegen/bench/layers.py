"""The two-layer net benchmark (issue 6): ``python -m stagegen.bench.layers [--quick] [--out DIR]``.

What it measures: the gradient of the loss in ``examples/layers/two_layer_net.py`` (affine, ReLU,
affine, softmax cross-entropy, L2 regularization) with respect to ``W1, b1, W2, b2``, at several
batch sizes N (D=64 inputs, H=128 hidden units, C=10 classes), computed by

* ``stagegen``: the generated ``examples/layers/two_layer_net_backward.py``, loaded by path (or
  ``--backward FILE``). Outside a checkout (an installed stagegen, run from another directory)
  there is no such file: the backward is then generated in memory, by the installed stagegen,
  from a copy of the forward embedded here (``FORWARD_SOURCE``), and the report says so. It
  replays the forward values it needs, so one call is the whole gradient (forward included);
* ``hand-written``: a NumPy backward written here the way a course's teaching assistant writes it
  (forward caching ``hidden`` and the probabilities, then ``dscores``, ``dW2``, ... ); it computes
  its own forward too, so both sides do the same work;
* ``autograd``: ``autograd.grad`` of the same forward written with ``autograd.numpy`` (optional:
  ``pip install ".[bench]"``).

For the fairness notes it also times the example's forward alone, and the forward followed by the
generated backward (what a training loop that also wants the loss value would pay).

Before anything is timed, every competitor's gradient is compared with the hand-written one at
every batch size (``np.allclose``, rtol 1e-7, atol 1e-7 times the largest entry of the reference
array); one that disagrees, raises, returns the wrong shapes or writes into its inputs is refused
and never timed or reported. Timing is timeit's: calls per measurement calibrated so one
measurement takes at least ``--min-time`` seconds, the best of ``--repeat`` measurements; the
competitors take turns within each repeat so that background noise falls on all of them alike.

BLAS threads: by default the command line runs NumPy's BLAS on one thread (``--blas-threads 1``;
it re-runs itself with ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` set,
since they are read when NumPy loads). Every competitor spends much of its time in the same
BLAS calls; multithreaded BLAS on small matrices mostly measures how busy the other cores are.
``--blas-threads 0`` keeps the machine's default. The header reports the setting and the load
average before and after the run.

Prints a table to stdout, a progress line per measurement to stderr, and writes ``results.md``
and ``results.json`` to ``--out`` (default ``stagegen-bench-layers/``). The exit status is 1 when a
competitor was refused, 0 otherwise (a competitor that is missing is skipped, not refused).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import timeit
from dataclasses import dataclass
from pathlib import Path

import numpy as np

D, H, C = 64, 128, 10  # inputs, hidden units, classes
REG = 0.05  # L2 regularization strength (nonzero, so the reg * W terms are part of the work)
SIZES = (1, 4, 16, 64, 256, 1024)
QUICK_SIZES = (1, 16, 256)
MIN_TIME, QUICK_MIN_TIME = 0.2, 0.02  # seconds per measurement
REPEAT, QUICK_REPEAT = 7, 3
RTOL = 1e-7  # agreement with the hand-written gradient
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


CHECKOUT_ROOT = Path(__file__).resolve().parents[2]  # the repository, when run from a checkout
FORWARD_FILE = "two_layer_net.py"
BACKWARD_FILE = "two_layer_net_backward.py"
FORWARD_NAME = "two_layer_loss"
BACKWARD_NAME = "two_layer_loss_backward"
WRT = "W1,b1,W2,b2"

# The forward, as examples/layers/two_layer_net.py has it (a test keeps the two identical), so
# that an installed stagegen, run from any directory, benchmarks the same function.
FORWARD_SOURCE = '''\
"""The loss of a two-layer net: affine, ReLU, affine, softmax, with L2 regularization."""

import numpy as np


def two_layer_loss(X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, C", b2: "C", reg=0.0):
    hidden = np.maximum(0, X @ W1 + b1)
    scores = hidden @ W2 + b2
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = X.shape[0]
    data_loss = -np.sum(log_probs[np.arange(n), y]) / n
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    return loss
'''


def find_examples() -> Path | None:
    """examples/layers/ of a source checkout: beside the package, or (after a plain
    `pip install .`, where the package lives in site-packages) under the working directory;
    None when neither has it (an installed stagegen run from elsewhere)."""
    for root in (CHECKOUT_ROOT, Path.cwd()):
        if (root / "examples" / "layers" / FORWARD_FILE).is_file():
            return root / "examples" / "layers"
    return None


# Where a checkout keeps them (they need not exist: see default_forward / load_stagegen).
EXAMPLES = CHECKOUT_ROOT / "examples" / "layers"
FORWARD_PATH = EXAMPLES / FORWARD_FILE
BACKWARD_PATH = EXAMPLES / BACKWARD_FILE
IN_MEMORY = (
    "generated in memory by this stagegen from the two-layer net's forward "
    f"(no examples/layers/{BACKWARD_FILE} here)"
)

PARAMS = ("W1", "b1", "W2", "b2")

# Column order of the table; "forward" and "stagegen_fwd_bwd" are context, not competitors.
KEYS = ("stagegen", "hand", "autograd", "forward", "stagegen_fwd_bwd")
LABELS = {
    "stagegen": "stagegen",
    "hand": "hand-written",
    "autograd": "autograd",
    "forward": "forward only",
    "stagegen_fwd_bwd": "stagegen fwd+bwd",
}


def log(message: str) -> None:
    print(f"[layers] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- the hand-written code


def hand_backward(X, y, W1, b1, W2, b2, reg=0.0):
    """Gradients (dW1, db1, dW2, db2) of the two-layer net's loss, written by hand.

    The forward pass keeps what the backward pass needs (the hidden activations and the class
    probabilities); the loss value itself is not needed for the gradient and is not computed.
    """
    N = X.shape[0]
    # forward
    hidden = np.maximum(0, X.dot(W1) + b1)  # (N, H) ReLU activations
    scores = hidden.dot(W2) + b2  # (N, C)
    scores = scores - scores.max(axis=1, keepdims=True)  # shift for numerical stability
    exp_scores = np.exp(scores)
    probs = exp_scores / exp_scores.sum(axis=1, keepdims=True)  # softmax
    # backward
    dscores = probs  # d(loss)/d(scores) = (probs - one_hot(y)) / N
    dscores[np.arange(N), y] -= 1
    dscores /= N
    dW2 = hidden.T.dot(dscores) + reg * W2
    db2 = dscores.sum(axis=0)
    dhidden = dscores.dot(W2.T)
    dhidden[hidden <= 0] = 0  # ReLU lets the gradient through where it was active
    dW1 = X.T.dot(dhidden) + reg * W1
    db1 = dhidden.sum(axis=0)
    return dW1, db1, dW2, db2


# ------------------------------------------------------------------------------ the competitors


@dataclass
class Competitor:
    key: str
    fn: object = None  # fn(X, y, W1, b1, W2, b2, reg) -> (dW1, db1, dW2, db2), or None
    status: str = "ok"  # ok | skipped | refused
    reason: str = ""
    gradient: bool = True  # False for the forward alone (timed for context, not checked)

    @property
    def label(self) -> str:
        return LABELS.get(self.key, self.key)


def load_by_path(path: Path, name: str):
    """The attribute ``name`` of the Python file at ``path`` (not a package module)."""
    spec = importlib.util.spec_from_file_location(f"stagegen_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def load_source(text: str, name: str, filename: str):
    """The attribute ``name`` of a module made from ``text``."""
    namespace: dict = {"__name__": f"stagegen_bench_{Path(filename).stem}"}
    exec(compile(text, filename, "exec"), namespace)
    return namespace[name]


def load_forward(path: Path | None = None):
    """The example's NumPy forward ``two_layer_loss``: from ``path``; by default from the
    checkout's example, or, outside a checkout, from the copy embedded here."""
    if path is None:
        examples = find_examples()
        if examples is None:
            return load_source(FORWARD_SOURCE, FORWARD_NAME, FORWARD_FILE)
        path = examples / FORWARD_FILE
    return load_by_path(Path(path), FORWARD_NAME)


def backward_origin(path: Path | None = None) -> str:
    """Where the stagegen backward comes from: a file, or generated in memory."""
    if path is not None:
        return str(path)
    examples = find_examples()
    if examples is not None and (examples / BACKWARD_FILE).exists():
        return str(examples / BACKWARD_FILE)
    return IN_MEMORY


def load_stagegen(path: Path | None = None):
    """The generated ``two_layer_loss_backward``: from ``path`` (FileNotFoundError, saying how
    to make it, when it is not there); by default the checkout's generated file, or, when there
    is none (an installed stagegen, run from another directory), generated now, in memory, from
    the forward, exactly as `stagegen two_layer_net.py --wrt W1,b1,W2,b2` writes it."""
    if path is None:
        origin = backward_origin()
        if origin != IN_MEMORY:
            return load_by_path(Path(origin), BACKWARD_NAME)
        return generate_backward()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist yet: generate it with `stagegen {FORWARD_FILE} --wrt {WRT}` "
            f"in the folder of {FORWARD_FILE} (examples/layers/ of a stagegen checkout), or "
            "leave out --backward to time a backward generated in memory"
        )
    return load_by_path(path, BACKWARD_NAME)


def generate_backward(forward_source: str = FORWARD_SOURCE):
    """``two_layer_loss_backward`` generated from ``forward_source`` by this stagegen."""
    import stagegen
    from stagegen.api import load_backward_module

    text = stagegen.generate(forward_source, FORWARD_NAME, wrt=WRT, filename=FORWARD_FILE)
    return load_backward_module(text, FORWARD_FILE)[BACKWARD_NAME]


def autograd_gradient():
    """``autograd.grad`` of the two-layer net's loss, written with ``autograd.numpy``."""
    import autograd
    import autograd.numpy as anp

    def two_layer_loss(X, y, W1, b1, W2, b2, reg=0.0):
        hidden = anp.maximum(0, X @ W1 + b1)
        scores = hidden @ W2 + b2
        shifted = scores - anp.max(scores, axis=1, keepdims=True)
        log_probs = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
        n = X.shape[0]
        data_loss = -anp.sum(log_probs[np.arange(n), y]) / n
        return data_loss + 0.5 * reg * (anp.sum(W1 * W1) + anp.sum(W2 * W2))

    return autograd.grad(two_layer_loss, argnum=(2, 3, 4, 5))


def installed_version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def competitors(backward_path: Path | None = None, forward_path: Path | None = None) -> list:
    """Every competitor, each either ready or skipped with the reason."""
    found = [Competitor("hand", hand_backward)]
    try:
        backward = load_stagegen(backward_path)
        found.append(Competitor("stagegen", backward))
    except Exception as exc:  # missing file, or a file that does not load
        backward = None
        found.append(Competitor("stagegen", status="skipped", reason=f"{exc}"))
    try:
        found.append(Competitor("autograd", autograd_gradient()))
    except ImportError as exc:
        found.append(
            Competitor(
                "autograd",
                status="skipped",
                reason=f'not installed ({exc}); pip install ".[bench]"',
            )
        )
    try:
        forward = load_forward(forward_path)
    except Exception as exc:
        forward = None
        reason = f"the forward {forward_path or FORWARD_FILE} does not load: {exc}"
        found.append(Competitor("forward", status="skipped", reason=reason, gradient=False))
    else:
        found.append(Competitor("forward", forward, gradient=False))
    if forward is not None and backward is not None:

        def stagegen_fwd_bwd(X, y, W1, b1, W2, b2, reg=0.0):
            forward(X, y, W1, b1, W2, b2, reg)
            return backward(X, y, W1, b1, W2, b2, reg)

        found.append(Competitor("stagegen_fwd_bwd", stagegen_fwd_bwd))
    else:
        found.append(
            Competitor(
                "stagegen_fwd_bwd",
                status="skipped",
                reason="needs the forward and the generated backward",
            )
        )
    return sorted(found, key=lambda c: KEYS.index(c.key) if c.key in KEYS else len(KEYS))


# ------------------------------------------------------------------------------ the agreement


def make_inputs(n: int, d: int = D, h: int = H, c: int = C, seed: int = 0, reg: float = REG):
    """(X, y, W1, b1, W2, b2, reg): a batch and weights at the scale of a net being trained."""
    rng = np.random.default_rng([seed, n, d, h, c])
    X = rng.standard_normal((n, d))
    y = rng.integers(0, c, size=n)
    W1 = rng.standard_normal((d, h)) / np.sqrt(d)
    b1 = 0.1 * rng.standard_normal(h)
    W2 = rng.standard_normal((h, c)) / np.sqrt(h)
    b2 = 0.1 * rng.standard_normal(c)
    return X, y, W1, b1, W2, b2, reg


def check_gradient(fn, args: tuple, reference: tuple, rtol: float = RTOL) -> str | None:
    """None when fn(*args) agrees with the reference gradients, else why it is refused."""
    before = [np.array(a, copy=True) for a in args]
    try:
        got = fn(*args)
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    for name, old, new in zip(("X", "y") + PARAMS + ("reg",), before, args):
        if not np.array_equal(old, np.asarray(new)):
            return f"changed its input {name}"
    try:
        got = tuple(got)
    except TypeError:
        return f"returned {type(got).__name__}, not (dW1, db1, dW2, db2)"
    if len(got) != len(reference):
        return f"returned {len(got)} values, not {len(reference)} (dW1, db1, dW2, db2)"
    for name, g, r in zip(PARAMS, got, reference):
        g = np.asarray(g)
        if g.shape != r.shape:
            return f"d{name} has shape {g.shape}, expected {r.shape}"
        if not np.all(np.isfinite(g)):
            return f"d{name} is not finite"
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        if not np.allclose(g, r, rtol=rtol, atol=rtol * scale):
            err = float(np.max(np.abs(g - r))) / max(scale, 1e-300)
            return f"d{name} disagrees with the hand-written gradient (max error {err:.2e} of its scale)"
    return None


def check_all(found: list, sizes, dims: tuple, seed: int, reg: float) -> None:
    """Refuse (status 'refused') every gradient competitor that disagrees at some batch size."""
    for n in sizes:
        args = make_inputs(n, *dims, seed=seed, reg=reg)
        reference = hand_backward(*[np.array(a, copy=True) for a in args])
        for comp in found:
            if comp.status != "ok" or not comp.gradient or comp.key == "hand":
                continue
            reason = check_gradient(comp.fn, args, reference)
            if reason is not None:
                comp.status, comp.reason = "refused", f"at N={n}: {reason}"
                log(f"REFUSED {comp.label}: {comp.reason}")


# ---------------------------------------------------------------------------------- the timing


def calibrate(timer: timeit.Timer, min_time: float) -> int:
    """Calls per measurement so that one measurement takes at least ``min_time`` seconds."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= min_time:
            return number
        # aim a little past min_time so the next try usually lands
        number = max(number * 2, int(number * 1.2 * min_time / max(elapsed, 1e-9)))


def time_size(found: list, args: tuple, n: int, min_time: float, repeat: int) -> dict:
    """{key: {'best': s, 'samples': [s, ...], 'number': k}} for the ready competitors at N=n."""
    ready = [c for c in found if c.status == "ok"]
    names = [f"a{i}" for i in range(len(args))]
    call = f"fn({', '.join(names)})"
    timers = {}
    result = {}
    for comp in ready:
        timer = timeit.Timer(call, globals={"fn": comp.fn, **dict(zip(names, args))})
        timer.timeit(1)  # warm up
        timers[comp.key] = timer
        result[comp.key] = {"number": calibrate(timer, min_time), "samples": []}
    for r in range(repeat):
        k = r % len(ready)
        for comp in ready[k:] + ready[:k]:  # take turns, starting elsewhere each repeat
            entry = result[comp.key]
            seconds = timers[comp.key].timeit(entry["number"]) / entry["number"]
            entry["samples"].append(seconds)
            log(
                f"N={n:<5} {comp.label:<17} repeat {r + 1}/{repeat}: {seconds * 1e6:10.2f} µs "
                f"({entry['number']} calls)"
            )
    for entry in result.values():
        entry["best"] = min(entry["samples"])
    return result


# ------------------------------------------------------------------------------------ the run


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "autograd": installed_version("autograd"),
        "stagegen": installed_version("stagegen"),
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.machine()}",
        "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:
        info["blas"] = None
    info["blas_threads_env"] = {v: os.environ[v] for v in THREAD_VARS if v in os.environ}
    info["load_average_start"] = _load()
    return info


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def ratio(results: dict, top: str, bottom: str) -> float | None:
    if top in results and bottom in results:
        return results[top]["best"] / results[bottom]["best"]
    return None


def run(
    sizes=SIZES,
    dims: tuple = (D, H, C),
    min_time: float = MIN_TIME,
    repeat: int = REPEAT,
    seed: int = 0,
    reg: float = REG,
    backward_path: Path | None = None,
    forward_path: Path | None = None,
) -> dict:
    """Check every competitor, then time them at every batch size; the results as a dict."""
    info = machine()
    found = competitors(backward_path, forward_path)
    for comp in found:
        if comp.status == "skipped":
            log(f"skipping {comp.label}: {comp.reason}")
    check_all(found, sizes, dims, seed, reg)
    rows = []
    for n in sizes:
        args = make_inputs(n, *dims, seed=seed, reg=reg)
        timed = time_size(found, args, n, min_time, repeat)
        rows.append(
            {
                "N": n,
                "us": {k: v["best"] * 1e6 for k, v in timed.items()},
                "samples_us": {k: [s * 1e6 for s in v["samples"]] for k, v in timed.items()},
                "calls_per_measurement": {k: v["number"] for k, v in timed.items()},
                "stagegen_over_hand": ratio(timed, "stagegen", "hand"),
                "autograd_over_stagegen": ratio(timed, "autograd", "stagegen"),
                "autograd_over_hand": ratio(timed, "autograd", "hand"),
                "hand_over_forward": ratio(timed, "hand", "forward"),
            }
        )
    d, h, c = dims
    info["load_average_end"] = _load()
    return {
        "benchmark": "gradient of the two-layer net's loss w.r.t. W1, b1, W2, b2",
        "machine": info,
        "settings": {
            "sizes": list(sizes),
            "D": d,
            "H": h,
            "C": c,
            "reg": reg,
            "dtype": "float64",
            "seed": seed,
            "min_time_s": min_time,
            "repeat": repeat,
            "statistic": "best of repeats, µs per call",
            "agreement": f"np.allclose(rtol={RTOL}, atol={RTOL} * max|reference|) at every N",
            "backward": backward_origin(backward_path),
        },
        "competitors": {
            c.key: {"label": c.label, "status": c.status, "reason": c.reason} for c in found
        },
        "refused": [c.key for c in found if c.status == "refused"],
        "rows": rows,
    }


# ---------------------------------------------------------------------------------- the output


def _cell(row: dict, key: str, results: dict) -> str:
    if key in row["us"]:
        return f"{row['us'][key]:.1f}"
    return results["competitors"].get(key, {}).get("status", "—")


def _ratio(value) -> str:
    return "—" if value is None else f"{value:.2f}x"


HEAD = (
    "N",
    "stagegen µs",
    "hand-written µs",
    "autograd µs",
    "stagegen/hand",
    "autograd/stagegen",
    "forward µs",
    "stagegen fwd+bwd µs",
)


def table_rows(results: dict) -> list[tuple]:
    return [
        (
            str(row["N"]),
            _cell(row, "stagegen", results),
            _cell(row, "hand", results),
            _cell(row, "autograd", results),
            _ratio(row["stagegen_over_hand"]),
            _ratio(row["autograd_over_stagegen"]),
            _cell(row, "forward", results),
            _cell(row, "stagegen_fwd_bwd", results),
        )
        for row in results["rows"]
    ]


def header_lines(results: dict) -> list[str]:
    m, s = results["machine"], results["settings"]
    threads = (
        ", ".join(f"{k}={v}" for k, v in m["blas_threads_env"].items()) or "BLAS threads: default"
    )
    load = f"load average (1, 5, 15 min) {m['load_average_start']} before, "
    load += f"{m.get('load_average_end')} after"
    return [
        f"{results['benchmark']}; D={s['D']}, H={s['H']}, C={s['C']}, reg={s['reg']}, {s['dtype']}",
        f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['system']}; Python {m['python']} "
        f"({m['implementation']}), NumPy {m['numpy']} ({m['blas']}; {threads}), "
        f"autograd {m['autograd'] or 'not installed'}; {m['date']}",
        f"timing: {s['statistic']}; at least {s['min_time_s']} s per measurement, "
        f"{s['repeat']} repeats, competitors taking turns; {load}",
    ]


def targets(results: dict) -> list[str]:
    """What the measurements say about the issue's two targets (no verdict beyond the numbers)."""
    lines = []
    within = [(r["N"], r["stagegen_over_hand"]) for r in results["rows"] if r["stagegen_over_hand"]]
    if within:
        ok = [n for n, v in within if v <= 1.2]
        bad = [f"N={n} ({v:.2f}x)" for n, v in within if v > 1.2]
        lines.append(
            "within 1.2x of the hand-written backward at N = "
            + (", ".join(map(str, ok)) or "none")
            + ("; not within at " + ", ".join(bad) if bad else "")
        )
    faster = [
        (r["N"], r["autograd_over_stagegen"])
        for r in results["rows"]
        if r["autograd_over_stagegen"]
    ]
    if faster:
        ok = [f"N={n} ({v:.1f}x)" for n, v in faster if v > 1]
        bad = [f"N={n} ({v:.2f}x)" for n, v in faster if v <= 1]
        lines.append(
            "faster than autograd at "
            + (", ".join(ok) or "no N")
            + ("; not at " + ", ".join(bad) if bad else "")
        )
    return lines


def notes(results: dict) -> list[str]:
    lines = [f"stagegen's backward: {results['settings']['backward']}"]
    for key, comp in results["competitors"].items():
        if comp["status"] != "ok":
            lines.append(f"{comp['label']}: {comp['status']}: {comp['reason']}")
    lines.append(
        "stagegen, hand-written and autograd each compute the forward values they need inside "
        "the one timed call, and none returns the loss value; 'stagegen fwd+bwd' is the example's "
        "forward (which does return the loss) followed by the generated backward, what a training "
        "loop that wants the loss too would pay with stagegen."
    )
    return lines


def render_text(results: dict) -> str:
    rows = table_rows(results)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HEAD)
    ]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = header_lines(results) + ["", fmt(HEAD), fmt(["-" * w for w in widths])]
    out += [fmt(r) for r in rows]
    extra = targets(results) + notes(results)
    if extra:
        out += [""] + extra
    return "\n".join(out) + "\n"


def render_markdown(results: dict) -> str:
    out = ["# stagegen benchmark: the two-layer net's gradient", ""]
    out += [f"- {line}" for line in header_lines(results)]
    out += ["", "| " + " | ".join(HEAD) + " |", "|" + "|".join("---:" for _ in HEAD) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(results)]
    out += ["", "Command: `python -m stagegen.bench.layers" + results.get("command", "") + "`", ""]
    out += [f"- {line}" for line in targets(results) + notes(results)]
    return "\n".join(out) + "\n"


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (out / "results.md").write_text(render_markdown(results), encoding="utf-8")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stagegen.bench.layers",
        description="Time the gradient of the two-layer net's loss: stagegen's generated backward "
        "against a hand-written NumPy backward and autograd, at several batch sizes.",
    )
    p.add_argument("--quick", action="store_true", help="fewer sizes, shorter measurements")
    p.add_argument(
        "--out", default="stagegen-bench-layers", help="directory for results.md and .json"
    )
    p.add_argument("--sizes", type=_ints, help=f"batch sizes (default {','.join(map(str, SIZES))})")
    p.add_argument("--min-time", type=float, help="seconds per measurement (default 0.2)")
    p.add_argument("--repeat", type=int, help="measurements per competitor and size (best is kept)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument(
        "--backward",
        type=Path,
        default=None,
        help=f"the generated backward's file (default: examples/layers/{BACKWARD_FILE} of a "
        "checkout, else generated in memory)",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads (default 1; 0 keeps the machine's default). Applied by re-running "
        "the command with OPENBLAS/OMP/MKL_NUM_THREADS set, so only from the command line",
    )
    return p


def blas_env(threads: int) -> dict | None:
    """The environment to re-run with for ``threads`` BLAS threads, or None if it is set already."""
    if threads <= 0 or all(os.environ.get(v) == str(threads) for v in THREAD_VARS):
        return None
    return {**os.environ, **{v: str(threads) for v in THREAD_VARS}}


def main(argv: list[str] | None = None, reexec: bool = False) -> int:
    args = parser().parse_args(argv)
    env = blas_env(args.blas_threads)
    if reexec and env is not None:
        # the thread counts are read when NumPy's BLAS loads: re-run this command with them set
        log(f"re-running with {', '.join(f'{v}={args.blas_threads}' for v in THREAD_VARS)}")
        sys.stdout.flush()
        argv = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, "-m", "stagegen.bench.layers", *argv], env)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    min_time = (
        args.min_time if args.min_time is not None else (QUICK_MIN_TIME if args.quick else MIN_TIME)
    )
    repeat = args.repeat or (QUICK_REPEAT if args.quick else REPEAT)
    results = run(
        sizes=sizes, min_time=min_time, repeat=repeat, seed=args.seed, backward_path=args.backward
    )
    results["command"] = "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    sys.stdout.write(render_text(results))
    out = Path(args.out)
    write(results, out)
    log(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 1 if results["refused"] else 0


if __name__ == "__main__":
    sys.exit(main(reexec=True))
