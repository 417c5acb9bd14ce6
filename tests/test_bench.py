"""The benchmark suite (stagegen.bench): its functions, its competitors' correctness, and the
structure of a tiny run. No timing is asserted: timings live in the benchmark's output."""

import json
import math
import subprocess
import sys
from collections import Counter

import pytest

import stagegen
from stagegen.api import generate, load_backward_module
from stagegen.bench import competitors, programs, report, sympygrad
from stagegen.bench.cli import main
from stagegen.bench.handwritten import neuron_hand, staged_hand
from stagegen.bench.timing import Contender, interleaved
from stagegen.numeric import central_differences


def generated(bf):
    return load_backward_module(generate(bf.source, bf.name))[f"{bf.name}_backward"]


def numeric_gradient(bf):
    """Central differences over the flat inputs (stagegen.numeric; independent of every tool)."""
    args = programs.unflatten(bf.flat_point, bf.layout)
    grads = central_differences(bf.forward(), args, range(len(args)))
    return [g for k in range(len(args)) for g in (grads[k] if bf.layout[k] else [grads[k]])]


# ---------------------------------------------------------------------------- the functions


def test_random_program_is_deterministic_and_exactly_sized():
    a = programs.random_program(60, seed=4)
    b = programs.random_program(60, seed=4)
    assert a.source == b.source and a.point == b.point
    assert a.source != programs.random_program(60, seed=5).source
    body = [line for line in a.source.splitlines() if line.startswith("    v")]
    assert len(body) == 60
    compile(a.source, "<test>", "exec")


def test_random_program_values_stay_bounded_over_the_proof_range():
    import random

    bf = programs.random_program(300, seed=2)
    f = bf.forward()
    rng = random.Random(0)
    for _ in range(200):
        value = f(*[rng.uniform(-2.0, 2.0) for _ in bf.point])
        assert math.isfinite(value) and abs(value) <= programs.LIMIT


def test_random_program_every_stage_reaches_the_output():
    """No dead code: every input and every value is read by a later stage or returned."""
    import re

    bf = programs.random_program(120, seed=7)
    lines = [line.strip() for line in bf.source.splitlines() if line.startswith("    v")]
    read = set()
    for line in lines:
        read |= set(re.findall(r"\b[vx]\d+\b", line.split(" = ", 1)[1]))
    returned = bf.source.rstrip().splitlines()[-1].split()[-1]
    targets = [line.split(" = ")[0] for line in lines]
    inputs = [f"x{i}" for i in range(len(bf.point))]
    assert set(targets + inputs) - read == {returned}


def test_random_program_generates_and_proves():
    bf = programs.random_program(25, seed=11)
    report_ = stagegen.verify(bf.source, bf.name)
    assert report_.functions[0].points  # checked end to end at some points


def _stage_lines(bf):
    return [line.strip() for line in bf.source.splitlines() if line.startswith("    h")]


def test_array_program_is_deterministic_and_exactly_sized():
    a = programs.array_program(80, seed=4)
    assert a.source == programs.array_program(80, seed=4).source
    assert a.source != programs.array_program(80, seed=5).source
    assert a.family == "arrays" and a.stages == 80
    lines = _stage_lines(a)
    assert [line.split(" = ")[0] for line in lines] == [f"h{i}" for i in range(1, 81)]
    assert a.source.rstrip().endswith("return h80.sum()")
    compile(a.source, "<test>", "exec")
    assert 'x: "N, D", w: "D, D", b: "D", c: "N, 1"' in a.source
    for size in (1, 2, 3):  # only the parameters it reads
        small = programs.array_program(size)
        assert 'x: "N, D"' in small.source
        compile(small.source, "<test>", "exec")


def test_array_program_every_stage_reaches_the_output_and_mixes_operations():
    import re

    bf = programs.array_program(400, seed=2)
    lines = _stage_lines(bf)
    for i, line in enumerate(lines[1:], 2):
        assert re.search(rf"\bh{i - 1}\b", line.split(" = ", 1)[1]), line  # the chain
    shapes = Counter(re.sub(r"h\d+", "H", line.split(" = ", 1)[1]) for line in lines)
    templates = {op[1].format(a="H", k="H") for op in programs.ARRAY_OPERATIONS}
    assert len(templates & set(shapes)) >= len(templates) - 2  # nearly every operation occurs
    assert shapes["np.tanh(H)"] < len(lines) / 3  # the squash is a fallback, not the program
    assert sum(1 for s in shapes if "H" in s.replace("H", "", 1)) > 0  # skip connections


def test_array_program_values_stay_bounded_and_unsaturated():
    """Every value within ARRAY_LIMIT for inputs in [-2, 2], and the output's gradient with
    respect to every parameter far from round-off (what the proof's central differences need)."""
    np = pytest.importorskip("numpy")
    bf = programs.array_program(300, seed=3)
    namespace = {}
    exec(bf.source.replace("return h300.sum()", "return locals()"), namespace)
    values_of = namespace[bf.name]
    f = bf.forward()
    rng = np.random.default_rng(0)
    for n, d in ((2, 3), (5, programs.ARRAY_WIDTH)):
        args = {
            "x": rng.uniform(-2, 2, (n, d)),
            "w": rng.uniform(-2, 2, (d, d)),
            "b": rng.uniform(-2, 2, d),
            "c": rng.uniform(-2, 2, (n, 1)),
        }
        values = values_of(**args)
        for name, value in values.items():
            if name.startswith("h"):
                assert np.all(np.abs(value) <= programs.ARRAY_LIMIT), name
        grads = central_differences(f, list(args.values()), range(4))
        for k, name in enumerate(args):
            assert np.max(np.abs(grads[k])) > 1e-6, name  # round-off: about 1e-10


@pytest.mark.parametrize("bf", [programs.staged_example(), programs.neuron()], ids=lambda b: b.key)
def test_notes_hand_written_code_agrees_with_generated_and_numeric(bf):
    hand = {"staged": staged_hand, "neuron": neuron_hand}[bf.key]
    got = competitors.to_floats(hand(*bf.point))
    want = competitors.to_floats(generated(bf)(*bf.point))
    assert competitors.max_rel_diff(got, want) < 1e-12
    assert competitors.max_rel_diff(numeric_gradient(bf), want) < 1e-6


def test_notes_examples_match_the_notes_figures():
    # The notes' neuron: dx = [0.39, -0.59], dw = [-0.20, -0.39, 0.20] at w=[2,-3,-3], x=[-1,-2].
    dw, dx = neuron_hand([2.0, -3.0, -3.0], [-1.0, -2.0])
    assert [round(v, 2) for v in dx] == [0.39, -0.59]
    assert [round(v, 2) for v in dw] == [-0.20, -0.39, 0.20]


# ---------------------------------------------------------------------------- competitors


@pytest.mark.parametrize("tool", ["autograd", "torch", "jax", "micrograd"])
@pytest.mark.parametrize("key", ["staged", "neuron", "chain5", "random40"])
def test_competitor_gradients_agree_with_generated(tool, key):
    package = {k: p for k, _, p in competitors.TOOLS}[tool]
    pytest.importorskip(package)
    bf = programs.by_key(key)
    try:
        p = competitors.prepare(tool, bf)
    except competitors.Skip as skip:
        assert tool == "micrograd" and "cannot express" in str(skip)
        return
    want = competitors.to_floats(generated(bf)(*bf.point))
    assert competitors.max_rel_diff(p.gradient(), want) < 1e-9
    p.fn(*p.args)  # the timed call runs


def test_sympy_gradient_agrees_and_budget_skips():
    bf = programs.staged_example()
    built = sympygrad.build(bf, budget=60)
    fn = sympygrad.compile_gradient(built["code"])
    want = competitors.to_floats(generated(bf)(*bf.point))
    assert competitors.max_rel_diff(competitors.to_floats(fn(*bf.flat_point)), want) < 1e-12
    assert sympygrad.build(programs.logistic_chain(5), budget=0.0)["skipped"].startswith("build >")


def test_a_wrong_competitor_is_reported_and_not_timed(monkeypatch, tmp_path):
    def wrong(bf, **_):
        fn = staged_hand
        return competitors.Prepared(fn, bf.point, lambda: [1.0, 2.0])

    monkeypatch.setitem(competitors.PREPARE, "hand", wrong)
    from stagegen.bench.suite import Options, gradients

    rows = gradients(Options(functions=["staged"], tools=["hand"], rounds=1, batch=0.0005))
    cell = rows[0]["tools"]["hand"]
    assert cell["status"] == "wrong" and "time_s" not in cell
    text = report.render(
        {"machine": _machine(), "options": vars(Options()), "gradients": rows}, report.Style()
    )
    assert "WRONG" in text


def _machine():
    from stagegen.bench.suite import machine

    return machine()


def test_interleaved_timing_gives_every_contender_every_round():
    timings = interleaved(
        [Contender("a", abs, (-1.0,)), Contender("b", max, (1.0, 2.0))], rounds=3, batch=0.0005
    )
    assert [len(timings.samples[k]) for k in "ab"] == [3, 3]
    assert [len(timings.cpu_samples[k]) for k in "ab"] == [3, 3]
    assert timings.cpu_median("a") >= 0
    assert timings.ratio("a", "b") > 0 and timings.median("a") > 0


# ---------------------------------------------------------------------------- a tiny run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--quick",
        "--out",
        str(out),
        "--functions",
        "staged,neuron,chain5",
        "--rounds",
        "1",
        "--batch",
        "0.0005",
        "--sizes",
        "10,20",
        "--array-verify-max",
        "10",  # an array proof takes seconds even at 10 stages
        "--import-reps",
        "1",
        "--steps",
        "10,100",
    ]
    assert main(argv) == 0
    return out


def test_tiny_run_writes_the_table_json_and_plot(tiny_run):
    md = (tiny_run / "results.md").read_text()
    for row in ("notes' staged example", "notes' neuron", "logistic map, 5 steps"):
        assert md.count(f"| {row} |") == 3  # runtime, ratios and one-off cost tables
    assert "machine: " in md and "Python" in md or "CPython" in md
    for target in (
        "generated / hand-written, notes' example",
        "(forward + backward) / forward, every function",
        "`import stagegen` loads neither sympy nor black",
        "@staged per function at import, warm cache",
    ):
        assert target in md
    assert (tiny_run / "results.txt").read_text().startswith("stagegen benchmark")
    try:
        import matplotlib  # noqa: F401

        assert (tiny_run / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert not (tiny_run / "benchmark.png").exists()


def test_tiny_run_gradients_agree_across_tools(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    rows = {r["key"]: r for r in results["gradients"]}
    assert list(rows) == ["staged", "neuron", "chain5"]
    for row in rows.values():
        assert row["tools"]["generated"]["time_s"] > 0
        assert row["fb_over_f"] > 1
        for tool, cell in row["tools"].items():
            if cell["status"] == "ok" and tool != "forward":
                assert cell["max_rel_diff"] <= 1e-6, (row["key"], tool)
                assert cell["time_s"] > 0
            elif cell["status"] != "ok":
                assert cell["status"] == "skipped" and cell["reason"], (row["key"], tool)
    assert rows["staged"]["tools"]["hand"]["status"] == "ok"
    assert rows["chain5"]["tools"]["hand"]["status"] == "skipped"
    staged = programs.staged_example()
    assert rows["staged"]["gradient"] == pytest.approx(list(staged_hand(*staged.point)), rel=1e-12)
    for tool in ("autograd", "torch", "micrograd", "jax"):
        cell = rows["chain5"]["tools"][tool]
        if competitors.installed(tool):
            assert cell["status"] == "ok", cell
        else:
            assert cell["reason"] == "not installed"


def test_tiny_run_generation_and_import_parts(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    gen = results["generation"]
    assert [r["stages"] for r in gen["rows"]] == [10, 20]
    assert all(r["generate_s"] > 0 and r["verify_s"] > 0 for r in gen["rows"])
    assert gen["growth"]["generate_s"]["doubling"] == pytest.approx(
        {"from": 10, "to": 20, "ratio": gen["growth"]["generate_s"]["doubling"]["ratio"]}
    )
    arrays = gen["arrays"]
    assert [r["stages"] for r in arrays["rows"]] == [10, 20]
    for r in gen["rows"] + arrays["rows"]:
        assert r["generate_s"] > 0 and r["generate_cpu_s"] > 0
    assert arrays["growth"]["generate_cpu_s"]["doubling"]["to"] == 20
    small, large = arrays["rows"]
    assert "verify_error" not in small and small["verify_s"] > 0 and small["verify_points"] > 0
    assert "verify_s" not in large and "verify_error" not in large  # over --array-verify-max
    assert arrays["verify_max"] == 10
    assert arrays["growth"]["generate_s"]["doubling"]["from"] == 10
    assert "verify_s" not in arrays["growth"]  # one verified size: no growth
    imp = results["import"]
    assert imp["functions"] == 10
    assert imp["cold_module_s"] > 0 and imp["warm_module_s"] > 0
    assert "sympy" not in imp["import_stagegen_loaded"]


def test_tiny_run_generation_table_shows_numbers_and_arrays(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    md = (tiny_run / "results.md").read_text()
    section = md.split("### 4. Generation")[1].split("###")[0]
    assert "| code | stages | generate |" in section
    for code in ("numbers", "arrays"):
        assert section.count(f"| {code} | ") == 2, code  # sizes 10 and 20
        ratio = results["generation"]["growth" if code == "numbers" else code]
        ratio = (ratio if code == "numbers" else ratio["growth"])["generate_s"]["doubling"]["ratio"]
        assert f"- {code}, generate: 20 / 10 stages = {ratio:.2f} (linear: 2.0)" in section
        assert f"- {code}: " in section  # what the programs are
    assert "- numbers, verify: 20 / 10 stages = " in section
    assert "- arrays, generate (CPU): 20 / 10 stages = " in section
    assert "arrays, verify" not in section  # arrays verified at one size only
    assert "| arrays | 20 | " in section and section.split("| arrays | 20 | ")[1].split("\n")[
        0
    ].endswith("| - | - |")
    assert "arrays: verified up to 10 stages only" in section
    targets = md.split("### Targets")[1]
    assert "generate 20 / 10 stages, array code (2,000/1,000 not measured)" in targets
    assert "generate 1,000 stages, array code | ≤ 2 s | not measured (sizes)" in targets


def test_a_run_from_before_array_programs_still_renders(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    gen = results["generation"]
    del gen["arrays"]
    for r in gen["rows"]:
        del r["generate_cpu_s"]
    del gen["growth"]["generate_cpu_s"]
    text = report.render(results, report.Style(markdown=True))
    section = text.split("### 4. Generation")[1].split("###")[0]
    assert section.count("| numbers | ") == 2 and "arrays" not in section
    assert "(CPU)" not in section
    assert "array code" not in text


def test_generation_of_array_code_alone():
    from stagegen.bench.suite import Options, generation

    gen = generation(Options(codes=["arrays"], sizes=[4, 8], verify_sizes=[]))
    assert gen["rows"] == [] and gen["growth"] == {}
    assert [r["stages"] for r in gen["arrays"]["rows"]] == [4, 8]
    assert not any("verify_s" in r for r in gen["arrays"]["rows"])
    title, text, notes = report.generation_table(gen, report.Style())
    assert "numbers" not in text and text.count("arrays") == 2
    with pytest.raises(ValueError, match="unknown code"):
        generation(Options(codes=["strings"], sizes=[4]))


def test_render_an_earlier_run_from_the_command_line(tiny_run, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stagegen.bench",
            "--render",
            str(tiny_run / "results.json"),
            "--out",
            str(tmp_path),
            "--no-plot",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Targets (issues 5 and 14)" in done.stdout
    assert "PASS" in done.stdout or "MISS" in done.stdout  # plain words when piped
    assert (tmp_path / "results.md").exists()


def test_unknown_function_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--functions", "nonsense"])
    assert exc.value.code == 2


def test_unknown_code_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--parts", "generation", "--codes", "numbers,strings"])
    assert exc.value.code == 2
    assert "unknown code(s) strings" in capsys.readouterr().err


# ---------------------------------------------------------------------------- loops (issue 14)

LOOP_COLUMNS = [
    "function",
    "steps T",
    "forward",
    "backward",
    "bwd/fwd",
    "time x",
    "CPU/step",
    "peak memory",
    "per step",
    "memory x",
    "hand-written",
    "hand peak",
]


@pytest.fixture(scope="module")
def loops_run(tmp_path_factory):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("loops")
    argv = ["--parts", "loops", "--steps", "10,100", "--rounds", "1", "--batch", "0.0005"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(argv + ["--out", str(out), "--no-plot"]) == 0
    return stdout.getvalue(), json.loads((out / "results.json").read_text())


def test_loops_part_prints_a_table_with_the_expected_columns(loops_run):
    from stagegen.bench import loops

    text, results = loops_run
    section = text.split("6. Loops: time and memory against the number of steps (issue 14)")[1]
    table_lines = section.split("Targets")[0].strip().splitlines()
    assert [c.strip() for c in table_lines[0].split("  ") if c.strip()] == LOOP_COLUMNS
    rows = [line.split() for line in table_lines[2:] if line and not line.startswith(" ")]
    assert [(r[0], r[1]) for r in rows] == [(k, t) for k in loops.FUNCTIONS for t in ("10", "100")]
    assert [p["key"] for p in results["loops"]] == list(loops.FUNCTIONS)
    assert "gradients" not in results and "generation" not in results
    assert "Targets (issue 14)" in text and "(issue 5)" not in text


def test_loops_part_figures_and_growth(loops_run):
    text, results = loops_run
    for part in results["loops"]:
        assert "error" not in part, part["error"]
        assert part["proof"] == "proven (stagegen.verify)"
        assert [r["steps"] for r in part["rows"]] == [10, 100]
        for r in part["rows"]:
            assert r["hand_max_rel_diff"] <= 1e-9
            for tool in ("forward", "generated", "hand"):
                assert r["tools"][tool]["status"] == "ok"
                cell = r["tools"][tool]
                assert cell["time_s"] > 0 and cell["cpu_s"] >= 0 and cell["peak_bytes"] >= 0
        assert part["rows"][0]["numeric_max_rel_diff"] <= 1e-6
        (g,) = part["growth"]
        small, large = (r["tools"]["generated"] for r in part["rows"])
        assert g["steps"] == 10
        assert g["time"] == pytest.approx(large["time_s"] / small["time_s"])
        assert g["memory"] == pytest.approx(large["peak_bytes"] / small["peak_bytes"])
        # the growth and memory per step, as the table shows them
        line = next(x for x in text.splitlines() if x.split()[:2] == [part["key"], "100"])
        assert report.fmt_ratio(g["time"]) in line.split()
        assert report.fmt_bytes(large["peak_bytes"] / 100).split()[0] in line.split()
        cpu_per_step = report.fmt_time(large["cpu_s"] / 100, report.Style(unicode=False))
        assert cpu_per_step in line
        # the backward's memory grows with T (it saves or returns something per step)
        assert large["peak_bytes"] > small["peak_bytes"]


def test_loops_part_counts_what_the_backward_saves_per_step(loops_run):
    text, results = loops_run
    parts = {p["key"]: p for p in results["loops"]}
    # read from the generated code, and counted at run time: one append per step and value
    for part in parts.values():
        at = part["appends_at"]
        assert at["appends"] == part["saved_per_step"] * at["steps"], part["key"]
    assert parts["rnn"]["saved"] == ["h"]
    assert parts["newton"]["saved"] == ["g"]
    assert parts["dot"]["saved"] == []  # reads w[i] and x[i] again: nothing to save
    assert parts["numpy_rnn"]["saved"] == ["h"]
    assert "the backward saves 1 float per step (h)" in text
    assert "the backward saves 1 (4, 16) float64 array per step (h)" in text


def test_the_loops_numpy_rnn_is_the_example():
    import ast
    from pathlib import Path

    from stagegen.bench import loops

    def function_text(source, name):
        tree = ast.parse(source)
        (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
        return ast.get_source_segment(source, node)

    example = Path(__file__).resolve().parents[1] / "examples" / "control" / "numpy_rnn.py"
    assert function_text(loops.SOURCE, "rnn_loss") == function_text(example.read_text(), "rnn_loss")


def test_loop_targets_need_two_sizes_of_a_thousand_steps(loops_run):
    text, results = loops_run
    targets = [t for t in report.targets(results) if t["target"].startswith("loops, ")]
    assert len(targets) == 2 * len(results["loops"])
    assert all(t["ok"] is None and "not measured" in t["figure"] for t in targets)
    part = json.loads(json.dumps(results["loops"][0]))
    rows = part["rows"]
    for steps, row in zip((1000, 4000), rows):
        row["steps"] = steps
    gen = [r["tools"]["generated"] for r in rows]
    gen[1]["cpu_s"] = gen[0]["cpu_s"] * 8  # 4 times the steps, 8 times the time
    gen[1]["peak_bytes"] = gen[0]["peak_bytes"] * 5
    got = {t["target"].split(": backward ")[1]: t for t in report.targets({"loops": [part]})}
    cpu = got["CPU time per step, T=4,000 / T=1,000 (linear: 1)"]
    assert cpu["figure"] == "2.00" and cpu["ok"] is True
    memory = got["peak memory per step, T=4,000 / T=1,000 (linear: 1)"]
    assert memory["figure"] == "1.25" and memory["ok"] is False


def test_a_wrong_hand_written_loop_backward_is_reported_and_not_timed(monkeypatch):
    from dataclasses import replace

    from stagegen.bench import loops

    wrong = replace(loops.FUNCTIONS["newton"], hand=lambda a, n: 0.0)
    part = loops.measure(wrong, [10], rounds=1, batch=0.0005)
    (row,) = part["rows"]
    assert row["tools"]["hand"]["status"] == "wrong" and "time_s" not in row["tools"]["hand"]
    assert row["tools"]["generated"]["time_s"] > 0
    title, text, notes = report.loops_table([part], report.Style(unicode=False))
    assert "WRONG" in text
    assert any("hand-written, gradient differs" in n for n in notes)


def test_a_loop_function_stagegen_refuses_is_reported_not_raised():
    from dataclasses import replace

    from stagegen.bench import loops

    part = loops.measure(replace(loops.FUNCTIONS["rnn"], name="lstm"), [10], 1, 0.0005)
    assert part["rows"] == [] and part["error"].startswith("not generated: ")
    assert "no top-level function named `lstm`" in part["error"]
    title, text, notes = report.loops_table([part], report.Style())
    assert any(n.startswith("rnn: ") and "not generated" in n for n in notes)


def test_peak_memory_counts_what_a_call_allocates():
    from stagegen.bench.loops import peak_memory

    small = peak_memory(lambda n: [float(i) for i in range(n)], (10,))
    large = peak_memory(lambda n: [float(i) for i in range(n)], (10_000,))
    assert large > 10_000 * 24 > small  # a float object is 24 bytes in CPython


def test_peak_memory_counts_floats_that_cpython_would_reuse():
    """Floats freed just before the call sit in CPython's free list; the call's floats must
    be counted all the same (else a short loop looks as if it saved nothing)."""
    from stagegen.bench.loops import peak_memory

    def make(n):
        return [i + 0.5 for i in range(n)]

    freed = make(500)
    del freed  # fills the free list
    assert peak_memory(make, (50,)) >= 50 * (24 + 8)  # each float and its slot in the list


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--parts", "loops", "--loops", "rnn,lstm"], "unknown loop function 'lstm'"),
        (["--parts", "loops", "--steps", "0,10"], "numbers of steps must be positive"),
    ],
)
def test_bad_loops_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_saved_per_step_counts_an_append_in_nested_loops_once():
    from stagegen.bench.loops import saved_per_step

    text = (
        "def f_backward(xs):\n"
        "    a_saved = []\n"
        "    b_saved = []\n"
        "    for i in range(3):\n"
        "        a_saved.append(xs[i])\n"
        "        for j in range(2):\n"
        "            b_saved.append(xs[j])\n"
        "    b_saved.append(0.0)\n"  # outside every loop: saved once, not per step
        "    return a_saved\n"
    )
    assert saved_per_step(text, "f") == ["xs[i]", "xs[j]"]
    assert saved_per_step(text, "g") == []


def test_loop_rounds_shrink_to_fit_the_budget_odd_and_at_least_three():
    from stagegen.bench.loops import ROUND_BUDGET_S, rounds_within

    assert rounds_within(21, ROUND_BUDGET_S / 1000) == 21
    assert rounds_within(21, ROUND_BUDGET_S / 5) == 5
    assert rounds_within(21, ROUND_BUDGET_S / 10) == 9  # 10 fit; odd
    assert rounds_within(21, ROUND_BUDGET_S * 2) == 3


def test_a_failed_proof_of_a_loop_backward_is_reported(monkeypatch):
    from stagegen.bench import loops
    from stagegen.errors import VerificationError

    def fails(*args, **kwargs):
        raise VerificationError("local gradient of stage (3) differs\nmore detail")

    monkeypatch.setattr(stagegen, "verify", fails)
    said = loops.prove(loops.FUNCTIONS["rnn"])
    assert said.startswith("proof failed: ") and said.endswith(
        "local gradient of stage (3) differs"
    )


def test_loop_rows_timed_in_fewer_rounds_are_named(loops_run):
    text, results = loops_run
    parts = json.loads(json.dumps(results["loops"]))
    title, table_text, notes = report.loops_table(parts, report.Style())
    assert not any(n.startswith("timing rounds") for n in notes)  # all rows alike
    parts[-1]["rows"][-1]["rounds"] = 0
    title, table_text, notes = report.loops_table(parts, report.Style())
    (note,) = [n for n in notes if n.startswith("timing rounds")]
    most = parts[0]["rows"][0]["rounds"]
    assert note == f"timing rounds, {most} unless a round would take long: numpy_rnn, T=100: 0"
