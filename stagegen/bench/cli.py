"""The command line of the benchmark: ``python -m stagegen.bench``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import loops as loop_part
from . import report
from .suite import CODES, Options, log, run

PARTS = ("gradients", "generation", "import", "loops")


def _ints(text: str) -> list[int]:
    return [int(v.replace("_", "")) for v in text.split(",") if v.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stagegen.bench",
        description="Benchmark stagegen's generated backward against hand-written code, SymPy, "
        "autograd, micrograd, PyTorch and JAX; generation, verification and import cost; time "
        "and memory of backwards through loops against the number of steps.",
    )
    p.add_argument(
        "--quick", action="store_true", help="fewer functions, sizes and rounds (<1 min)"
    )
    p.add_argument(
        "--out", default="stagegen-bench", help="directory for results.md, .json, .txt and the PNG"
    )
    p.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    p.add_argument(
        "--functions",
        help="comma-separated function keys (staged, neuron, chainN, randomN); default: the suite",
    )
    p.add_argument(
        "--tools",
        help="comma-separated competitors (hand, sympy, autograd, micrograd, torch, jax); "
        "default: every installed one",
    )
    p.add_argument("--rounds", type=int, help="interleaved timing rounds (odd is best)")
    p.add_argument("--batch", type=float, help="seconds per timed batch")
    p.add_argument("--sizes", type=_ints, help="program sizes for generation, e.g. 10,100,1000")
    p.add_argument("--verify-sizes", type=_ints, help="sizes to verify too (default: all sizes)")
    p.add_argument(
        "--codes",
        help=f"comma-separated kinds of generated program ({','.join(CODES)}); default: both",
    )
    p.add_argument(
        "--array-verify-max",
        type=int,
        help="verify array programs only up to this size (default 1000, quick 100: slow proofs)",
    )
    p.add_argument(
        "--steps",
        type=_ints,
        help="loops: numbers of steps T (default 10,100,1000,10000,100000; quick: to 10000)",
    )
    p.add_argument(
        "--loops",
        help="loops: comma-separated loop functions (rnn, dot, newton, numpy_rnn); default: all",
    )
    p.add_argument("--sympy-budget", type=float, help="seconds SymPy may take to build a gradient")
    p.add_argument("--import-reps", type=int, help="fresh processes per import measurement")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument(
        "--render",
        metavar="RESULTS.json",
        help="measure nothing: render the tables and plot of an earlier run into --out",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser().error(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    opts = Options.for_mode(args.quick)
    if args.functions:
        opts.functions = [f.strip() for f in args.functions.split(",") if f.strip()]
    if args.tools:
        opts.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if args.codes:
        opts.codes = [c.strip() for c in args.codes.split(",") if c.strip()]
        unknown = sorted(set(opts.codes) - set(CODES))
        if unknown:
            parser().error(f"unknown code(s) {', '.join(unknown)}: choose from {', '.join(CODES)}")
    if args.loops:
        opts.loop_functions = [k.strip() for k in args.loops.split(",") if k.strip()]
        try:
            for key in opts.loop_functions:
                loop_part.by_key(key)
        except ValueError as exc:
            parser().error(str(exc))
    if args.steps is not None and (not args.steps or min(args.steps) < 1):
        parser().error("--steps: numbers of steps must be positive, e.g. 10,100,1000")
    names = ("rounds", "batch", "sizes", "verify_sizes", "array_verify_max", "steps")
    for name in names + ("sympy_budget", "import_reps"):
        value = getattr(args, name)
        if value is not None:
            setattr(opts, name, value)
    try:
        from .programs import by_key

        for key in opts.functions or ():
            by_key(key)
    except ValueError as exc:
        parser().error(str(exc))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        results = json.loads(Path(args.render).read_text())
    else:
        results = run(opts, parts)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plain = report.render(results, report.Style(unicode=True))
    (out / "results.txt").write_text(plain)
    (out / "results.md").write_text(report.render(results, report.Style(markdown=True)))
    png = None if args.no_plot else report_plot(results, out / "benchmark.png")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # a terminal that cannot show ≤ gets ?
    sys.stdout.write(report.render(results, report.terminal_style()))
    written = ["results.md", "results.txt", "results.json"] + (["benchmark.png"] if png else [])
    log(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


def report_plot(results: dict, path: Path):
    from .plot import plot

    written = plot(results, path)
    if written is None and not any(results.get(p) for p in ("gradients", "generation", "import")):
        log("no plot: the plot draws the gradients, generation and import parts only")
    elif written is None:
        log("no plot: matplotlib is not installed (pip install 'stagegen[bench]')")
    return written
