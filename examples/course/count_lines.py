"""The course's layers: which ones stagegen generates, and the length of each generated backward
beside a good hand-written one (examples/course/handwritten.py). Prints a markdown table:

    python examples/course/count_lines.py

Lines are a function body's statements (each simple statement and each `for`/`if` header once,
however black wraps it), without the docstring, comments and blank lines. A generated backward
replays the forward values it reads (the hand-written ones get them from the forward's cache);
those replayed lines are counted too, and shown in brackets. A layer is supported when the
committed `<module>_backward.py` holds its backward; otherwise the note is stagegen's refusal
of the function today, without its advice. This script reads the modules; it never imports them.
"""

import ast
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# layer (as the course names it), module, forward function, hand-written backward, note
LAYERS = [
    ("affine (N-d input)", "layers", "affine_forward", "affine_backward", ""),
    ("ReLU", "layers", "relu_forward", "relu_backward", ""),
    ("batch normalization (train)", "layers", "batchnorm_forward", "batchnorm_backward", ""),
    ("layer normalization", "layers", "layernorm_forward", "layernorm_backward", ""),
    (
        "spatial batch normalization",
        "layers",
        "spatial_batchnorm_forward",
        "spatial_batchnorm_backward",
        "both call the batch normalization backward",
    ),
    (
        "softmax loss",
        "layers",
        "softmax_loss",
        "softmax_loss_backward",
        "hand-written recomputes the probabilities",
    ),
    ("dropout (train, seeded)", "layers_dropout", "dropout_forward", "dropout_backward", ""),
    (
        "SVM loss",
        "layers",
        "svm_loss",
        "svm_loss_backward",
        "hand-written recomputes the margins",
    ),
    (
        "two-layer net loss",
        "fc_net",
        "two_layer_loss",
        "two_layer_loss_backward",
        "both call the layers' backwards",
    ),
    ("RNN step", "rnn_layers", "rnn_step_forward", "rnn_step_backward", ""),
    (
        "RNN over a sequence",
        "rnn_layers",
        "rnn_forward",
        "rnn_backward",
        "both call the step's backward",
    ),
    (
        "word embedding",
        "rnn_embedding",
        "word_embedding_forward",
        "word_embedding_backward",
        "",
    ),
    (
        "temporal affine",
        "rnn_temporal",
        "temporal_affine_forward",
        "temporal_affine_backward",
        "",
    ),
    (
        "temporal softmax loss",
        "rnn_temporal",
        "temporal_softmax_loss",
        "temporal_softmax_loss_backward",
        "hand-written recomputes the probabilities",
    ),
    ("LSTM step", "rnn_lstm", "lstm_step_forward", "lstm_step_backward", ""),
    (
        "LSTM over a sequence",
        "rnn_lstm",
        "lstm_forward",
        "lstm_backward",
        "both call the step's backward",
    ),
]


def function(path: Path, name: str) -> ast.FunctionDef | None:
    if not path.exists():
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def statements(fn: ast.FunctionDef) -> list[ast.stmt]:
    """The body's statements, nested ones included, without the docstring."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    found = []
    for stmt in body:
        found.extend(s for s in ast.walk(stmt) if isinstance(s, ast.stmt))
    return found


def replayed(fn: ast.FunctionDef, source: str) -> int:
    """The statements before the first `# backprop` comment that carry a `# (n)` mark: the
    forward values the generated backward computes again."""
    lines = source.splitlines()
    first = next(
        (i + 1 for i in range(fn.lineno, fn.end_lineno) if "# backprop" in lines[i]),
        fn.end_lineno,
    )
    return sum(1 for s in statements(fn) if s.lineno < first and "# (" in lines[s.end_lineno - 1])


def refusal(module: str, name: str) -> str:
    """stagegen's refusal of this one function today, `line:col: what` (its advice left out)."""
    import stagegen
    from stagegen.errors import StagegenError

    path = HERE / f"{module}.py"
    try:
        stagegen.generate(path.read_text(encoding="utf-8"), filename=str(path), function=[name])
    except StagegenError as error:
        where = f"{Path(error.filename).name}:{error.line}:{error.col}"
        return f"refused at {where}: {error.message}"
    return "generated, but no golden is committed"


def rows() -> list[tuple]:
    # the backward's name, as stagegen names it (`affine_forward` -> `affine_backward`)
    from stagegen.program import backward_name

    hand_source = HERE / "handwritten.py"
    out = []
    for layer, module, name, hand, note in LAYERS:
        golden = HERE / f"{module}_backward.py"
        generated = function(golden, backward_name(name))
        handwritten = len(statements(function(hand_source, hand)))
        if generated is None:
            notes = "; ".join(n for n in (refusal(module, name), note) if n)
            out.append((layer, "no", "", handwritten, notes))
        else:
            total = len(statements(generated))
            replay = replayed(generated, golden.read_text(encoding="utf-8"))
            out.append((layer, "yes", f"{total} ({replay} replayed)", handwritten, note))
    return out


def table() -> str:
    lines = [
        "| layer | supported | generated lines | hand-written lines | note |",
        "|---|---|---|---|---|",
    ]
    for layer, supported, generated, hand, note in rows():
        note = note.replace("|", "\\|")
        lines.append(f"| {layer} | {supported} | {generated} | {hand} | {note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
