"""The parts of the benchmark; each returns plain data (JSON-ready dicts and lists).

1. ``gradients``: gradient runtime of every tool on every function, interleaved, and the
   (forward + backward) / forward cost of the generated code.
2. (in 1) ``fb_over_f`` per function.
3. ``generation``: generation and verification time against program size.
4. ``imports``: ``import stagegen``, and a module of 10 ``@staged`` functions cold and warm.
5. ``loops`` (issue 14): time and peak memory of backwards through loops against the number
   of steps (stagegen.bench.loops).
"""

from __future__ import annotations

import json
import os
import py_compile
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import loops as loop_part
from . import programs
from .competitors import GRADIENT_TOOLS, Skip, max_rel_diff, prepare
from .timing import Contender, interleaved

AGREEMENT = 1e-6  # largest difference from the generated gradient, relative to its largest entry

# The generation part's programs: code for numbers (random straight-line programs) and array code
# (NumPy chains with shape annotations), each made for a size.
CODES = ("numbers", "arrays")
PROGRAMS = {
    "numbers": lambda n: programs.random_program(n, seed=1),
    "arrays": lambda n: programs.array_program(n, seed=1),
}
WARM_UP = {
    "numbers": lambda: programs.random_program(10, seed=99),
    "arrays": lambda: programs.array_program(3, seed=99),  # an array proof takes seconds
}


@dataclass
class Options:
    quick: bool = False
    functions: list[str] | None = None  # keys (programs.by_key); None: the suite
    tools: list[str] | None = None  # gradient tools; None: all installed
    rounds: int = 21  # odd: a median of ratios is then one of the measured ratios
    batch: float = 0.01  # seconds per timed batch
    sizes: list[int] = field(default_factory=lambda: [10, 100, 1000, 2000, 10000])
    verify_sizes: list[int] | None = None  # None: the same as sizes
    codes: list[str] = field(default_factory=lambda: list(CODES))  # generation: which programs
    array_verify_max: int = 1000  # array programs are verified at verify sizes up to this only
    sympy_budget: float = 60.0
    import_reps: int = 5
    steps: list[int] = field(default_factory=lambda: list(loop_part.STEPS))  # loops: T
    loop_functions: list[str] | None = None  # loops: keys (loops.FUNCTIONS); None: all

    @classmethod
    def for_mode(cls, quick: bool) -> Options:
        if not quick:
            return cls()
        return cls(
            quick=True,
            rounds=5,
            batch=0.005,
            sizes=[10, 100, 250, 500],
            array_verify_max=100,
            sympy_budget=20.0,
            import_reps=2,
            steps=list(loop_part.QUICK_STEPS),
        )


def log(message: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def child_env(**extra) -> dict:
    """The environment of a child Python: this stagegen importable, whatever the cwd."""
    import stagegen

    root = str(Path(stagegen.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


# ---------------------------------------------------------------------------- 1 and 2


def gradients(opts: Options) -> list[dict]:
    functions = (
        [programs.by_key(k) for k in opts.functions]
        if opts.functions
        else programs.suite(opts.quick)
    )
    tools = ["forward", "generated"] + [
        t for t in GRADIENT_TOOLS if t != "generated" and (opts.tools is None or t in opts.tools)
    ]
    too_big: dict[str, int] = {}  # family -> smallest size whose SymPy build exceeded the budget
    rows = []
    for number, bf in enumerate(functions, 1):
        head = f"[gradients {number}/{len(functions)}] {bf.label}"
        row = {
            "key": bf.key,
            "label": bf.label,
            "stages": bf.stages,
            "family": bf.family,
            "inputs": len(bf.flat_point),
            "tools": {},
        }
        prepared = {}
        for tool in tools:
            if tool == "sympy" and bf.family in too_big and bf.stages > too_big[bf.family]:
                row["tools"][tool] = {
                    "status": "skipped",
                    "reason": f"build > {opts.sympy_budget:g} s (already at "
                    f"{too_big[bf.family]} stages)",
                }
                continue
            if tool == "sympy":
                log(f"{head}: SymPy diff + lambdify(cse=True), budget {opts.sympy_budget:g} s")
            try:
                prepared[tool] = prepare(tool, bf, sympy_budget=opts.sympy_budget, quick=opts.quick)
            except Skip as skip:
                row["tools"][tool] = {"status": "skipped", "reason": str(skip)}
                if tool == "sympy" and str(skip).startswith("build >"):
                    too_big[bf.family] = bf.stages
        # Correctness first: every competitor's gradient against the generated one.
        reference = prepared["generated"].gradient()
        row["gradient"] = reference
        for tool, p in list(prepared.items()):
            if tool == "forward":
                continue
            diff = max_rel_diff(p.gradient(), reference)
            row["tools"][tool] = {"status": "ok", "max_rel_diff": diff}
            if p.setup_s is not None:
                row["tools"][tool]["setup_s"] = p.setup_s
            if p.detail:
                row["tools"][tool]["detail"] = p.detail
            if not diff <= AGREEMENT:
                row["tools"][tool].update(
                    status="wrong", reason=f"gradient differs by {diff:.1e} (relative)"
                )
                del prepared[tool]
        row["tools"]["forward"] = {"status": "ok"}
        log(f"{head}: timing {', '.join(prepared)} ({opts.rounds} interleaved rounds)")
        timings = interleaved(
            [Contender(t, p.fn, p.args) for t, p in prepared.items()], opts.rounds, opts.batch
        )
        for tool in prepared:
            cell = row["tools"][tool]
            cell["time_s"] = timings.median(tool)
            cell["samples"] = timings.samples[tool]
            if tool not in ("generated", "forward"):
                cell["ratio"] = timings.ratio(tool, "generated")  # tool / generated
        row["b_over_f"] = timings.ratio("generated", "forward")  # the backward replays the forward
        row["fb_over_f"] = 1.0 + row["b_over_f"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------- 3


def generation(opts: Options) -> dict:
    """Generation (and verification) time of each kind of code at each size.

    ``rows`` and ``growth`` are for code for numbers (as before array programs were measured);
    ``arrays`` holds the same for array code. The kinds alternate at each size, so that a
    change in the machine's load falls on both."""
    from stagegen.api import build
    from stagegen.proof import check_build

    unknown = sorted(set(opts.codes) - set(CODES))
    if unknown:
        raise ValueError(f"unknown code(s) {', '.join(unknown)}: choose from {', '.join(CODES)}")
    verify_sizes = opts.sizes if opts.verify_sizes is None else opts.verify_sizes
    will_verify = {
        code: [n for n in opts.sizes if n in verify_sizes and _verified(opts, code, n)]
        for code in opts.codes
    }
    log("[generation] warming up (black, jinja2, SymPy load once)")
    for code in opts.codes:
        warm = build(WARM_UP[code]().source)
        if code == "numbers" or will_verify[code]:
            check_build(warm)
    rows: dict[str, list[dict]] = {code: [] for code in opts.codes}
    for n in opts.sizes:
        for code in opts.codes:
            rows[code].append(_generation_row(opts, code, n, n in will_verify[code]))
    out = {"rows": [], "growth": {}}
    for code in opts.codes:
        part = {"rows": rows[code], "growth": growth(rows[code])}
        if code == "arrays":
            part["verify_max"] = opts.array_verify_max
        if code == "numbers":
            out.update(part)
        else:
            out[code] = part
    return out


def _verified(opts: Options, code: str, n: int) -> bool:
    """Whether a verify size is verified for this kind of code (array proofs are slow)."""
    return code != "arrays" or n <= opts.array_verify_max


def _generation_row(opts: Options, code: str, n: int, verify: bool) -> dict:
    from stagegen.api import build
    from stagegen.proof import check_build

    bf = PROGRAMS[code](n)
    reps = 3 if n <= (500 if opts.quick else 1000) else (2 if n <= 2000 else 1)
    log(f"[generation] {code}, {n} stages: generate x{reps}")
    times, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = build(bf.source, bf.name)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    row = {"stages": n, "generate_s": statistics.median(times), "generate_reps": reps}
    # This process's CPU time: less sensitive than the wall clock to other work on the machine.
    row["generate_cpu_s"] = statistics.median(cpu)
    if verify:
        vreps = 3 if n <= 100 and not opts.quick and code == "numbers" else 1
        log(f"[generation] {code}, {n} stages: verify x{vreps}")
        vtimes = []
        try:
            for _ in range(vreps):
                start = time.perf_counter()
                report = check_build(result)
                vtimes.append(time.perf_counter() - start)
            row["verify_s"] = statistics.median(vtimes)
            row["verify_reference"] = report.functions[0].reference
            row["verify_points"] = len(report.functions[0].points)
        except Exception as exc:  # a failed proof is a finding to report, not a crash
            row["verify_error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    return row


def growth(rows: list[dict]) -> dict:
    """How time grows with size: the doubling 1,000 -> 2,000 (else the largest doubling
    measured), and the span from 1,000 (else the smallest size) to the largest size."""
    by_size = {r["stages"]: r for r in rows}
    out = {}
    for what in ("generate_s", "generate_cpu_s", "verify_s"):
        sizes = [n for n in sorted(by_size) if what in by_size[n]]
        entry = {}
        doubling = [(n, 2 * n) for n in sizes if 2 * n in sizes]
        if doubling:
            n, m = (1000, 2000) if (1000, 2000) in doubling else doubling[-1]
            entry["doubling"] = {"from": n, "to": m, "ratio": by_size[m][what] / by_size[n][what]}
        if len(sizes) >= 2:
            n = 1000 if 1000 in sizes and sizes[-1] > 1000 else sizes[0]
            m = sizes[-1]
            entry["span"] = {
                "from": n,
                "to": m,
                "ratio": by_size[m][what] / by_size[n][what],
                "per_stage_ratio": (by_size[m][what] / m) / (by_size[n][what] / n),
            }
        if entry:
            out[what] = entry
    return out


# ---------------------------------------------------------------------------- 4

_IMPORT_STAGEGEN = """
import json, sys, time
start = time.perf_counter()
import stagegen
elapsed = time.perf_counter() - start
heavy = [m for m in ("sympy", "black", "jinja2", "mpmath") if m in sys.modules]
print(json.dumps({"seconds": elapsed, "loaded": heavy}))
"""

_IMPORT_MODULE = """
import json, sys, time
sys.path.insert(0, {directory!r})
start = time.perf_counter()
import stagegen
middle = time.perf_counter()
import staged10
end = time.perf_counter()
assert staged10.f.backward(3.0, -4.0) == {expected!r}
heavy = [m for m in ("sympy", "black", "jinja2", "mpmath") if m in sys.modules]
print(json.dumps({{"stagegen": middle - start, "module": end - middle, "loaded": heavy}}))
"""


def staged_module() -> tuple[str, list[str]]:
    """The text of a module of 10 @staged functions (different sources), and their names."""
    members = [programs.staged_example(), programs.neuron()]
    members += [programs.logistic_chain(n) for n in (5, 10, 20)]
    members += [programs.random_program(n, seed=3) for n in (10, 20, 30, 40, 50)]
    text = "import math\n\nfrom stagegen import staged\n"
    for bf in members:
        text += "\n\n@staged\n" + bf.source[len(programs.HEADER) :]
    return text, [bf.name for bf in members]


def _run_child(code: str, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def imports(opts: Options) -> dict:
    from stagegen.api import generate, load_backward_module

    with tempfile.TemporaryDirectory(prefix="stagegen-bench-") as tmp:
        tmp_path = Path(tmp)
        env = child_env(STAGEGEN_CACHE_DIR=str(tmp_path / "unused-cache"))
        log(f"[import] import stagegen, fresh process x{opts.import_reps}")
        runs = [_run_child(_IMPORT_STAGEGEN, env) for _ in range(opts.import_reps)]
        result = {
            "import_stagegen_s": statistics.median(r["seconds"] for r in runs),
            "import_stagegen_loaded": sorted({m for r in runs for m in r["loaded"]}),
        }
        text, names = staged_module()
        module_dir = tmp_path / "module"
        module_dir.mkdir()
        (module_dir / "staged10.py").write_text(text)
        py_compile.compile(str(module_dir / "staged10.py"), doraise=True)
        expected = load_backward_module(generate(programs.STAGED_SOURCE, "f"))["f_backward"](
            3.0, -4.0
        )
        code = _IMPORT_MODULE.format(directory=str(module_dir), expected=expected)
        cold, warm, loaded_warm = [], [], set()
        for rep in range(opts.import_reps):
            log(f"[import] module of {len(names)} @staged functions: cold, warm ({rep + 1})")
            cache_env = child_env(STAGEGEN_CACHE_DIR=str(tmp_path / f"cache{rep}"))
            cold.append(_run_child(code, cache_env)["module"])
            second = _run_child(code, cache_env)
            warm.append(second["module"])
            loaded_warm |= set(second["loaded"])
        result.update(
            functions=len(names),
            cold_module_s=statistics.median(cold),
            warm_module_s=statistics.median(warm),
            cold_per_function_s=statistics.median(cold) / len(names),
            warm_per_function_s=statistics.median(warm) / len(names),
            warm_loaded=sorted(loaded_warm),
            cache_entries=_count_files(tmp_path / "cache0"),
        )
    return result


def _count_files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# ---------------------------------------------------------------------------- 5


def loops(opts: Options) -> list[dict]:
    """Backwards through loops: a row per number of steps, for each loop function."""
    return loop_part.run(opts.loop_functions, opts.steps, opts.rounds, opts.batch, log)


def machine() -> dict:
    """What the numbers were measured on."""
    import platform

    from .competitors import available_tools

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("stagegen", "sympy", "black", "jinja2", "numpy", "matplotlib"):
        from .competitors import installed

        versions[package] = installed(package)
    for key, version in available_tools().items():
        if version not in (None, "builtin"):
            versions[{"torch": "torch", "jax": "jax"}.get(key, key)] = version
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.machine()}",
        "versions": {k: v for k, v in versions.items() if v},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_start": _load(),
    }


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run(opts: Options, parts: list[str]) -> dict:
    results = {"machine": machine(), "options": _options_dict(opts), "parts": parts}
    started = time.perf_counter()
    if "gradients" in parts:
        results["gradients"] = gradients(opts)
    if "generation" in parts:
        results["generation"] = generation(opts)
    if "import" in parts:
        results["import"] = imports(opts)
    if "loops" in parts:
        results["loops"] = loops(opts)
    results["machine"]["load_end"] = _load()
    results["elapsed_s"] = time.perf_counter() - started
    return results


def _options_dict(opts: Options) -> dict:
    d = dict(vars(opts))
    return json.loads(json.dumps(d))
