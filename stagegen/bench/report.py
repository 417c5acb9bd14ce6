"""The results as tables (aligned plain text for the terminal, Markdown for the results file),
with the issue's targets beside the measured figures."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from .competitors import LABELS
from .loops import span as loop_span

COMPETITOR_ORDER = ["hand", "sympy", "autograd", "micrograd", "torch", "jax"]
TIME_ORDER = ["forward", "generated"] + COMPETITOR_ORDER


@dataclass
class Style:
    unicode: bool = True
    markdown: bool = False

    @property
    def micro(self) -> str:
        return "µs" if self.unicode else "us"

    def mark(self, ok: bool | None) -> str:
        if ok is None:
            return "—" if self.unicode else "n/a"
        if self.unicode:
            return "✓" if ok else "✗"
        return "PASS" if ok else "MISS"

    @property
    def dash(self) -> str:
        return "—" if self.unicode else "-"


def terminal_style(stream=None) -> Style:
    """✓/✗ and µ on a UTF-8 terminal; plain words when piped or on another encoding."""
    stream = stream or sys.stdout
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return Style(unicode=stream.isatty() and encoding == "utf8")


# ---------------------------------------------------------------------------- numbers


def fmt_time(seconds: float | None, style: Style) -> str:
    if seconds is None:
        return style.dash
    if seconds < 1e-3:
        value, unit = seconds * 1e6, style.micro
    elif seconds < 1.0:
        value, unit = seconds * 1e3, "ms"
    else:
        value, unit = seconds, "s"
    return f"{_sig(value)} {unit}"


def _sig(value: float) -> str:
    """Three significant figures, no exponent, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_bytes(value: float | None) -> str:
    """Bytes in B, kB, MB (powers of 1,000), three significant figures."""
    if value is None:
        return "-"
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{_sig(value / scale)} {unit}"
    return f"{_sig(value)} B" if value else "0 B"


def fmt_ratio(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return _sig(value)


# ---------------------------------------------------------------------------- tables


def table(headers: list[str], rows: list[list[str]], style: Style, right: set[int]) -> str:
    """An aligned plain-text table, or a Markdown pipe table."""
    if style.markdown:
        out = ["| " + " | ".join(headers) + " |"]
        out.append(
            "|" + "|".join("---:" if i in right else ":---" for i in range(len(headers))) + "|"
        )
        out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]

    def line(cells):
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule] + [line(r) for r in rows])


def _present_tools(rows: list[dict]) -> list[str]:
    """Tools with a column: those that ran or were skipped for a reason other than absence."""
    present = []
    for tool in TIME_ORDER:
        cells = [r["tools"].get(tool) for r in rows]
        if any(c and c.get("reason") != "not installed" for c in cells):
            present.append(tool)
    return present


def _short(cell: dict | None, style: Style) -> str:
    """A cell for a tool that did not run."""
    if cell is None:
        return style.dash
    reason = cell.get("reason", "")
    if cell.get("status") == "wrong":
        return "WRONG"
    if reason.startswith("build >"):
        return reason.split("(")[0].replace("build ", "").strip()
    return "n/a"


def gradient_tables(rows: list[dict], style: Style) -> list[tuple[str, str, list[str]]]:
    """(title, table, notes): times, ratios, one-off costs; the notes say why a cell is empty."""
    tools = _present_tools(rows)
    out = []
    # 1. time per gradient
    headers = ["function", "stages"] + [LABELS[t] for t in tools]
    body = []
    for r in rows:
        cells = [r["label"], str(r["stages"])]
        for t in tools:
            c = r["tools"].get(t)
            cells.append(fmt_time(c["time_s"], style) if c and "time_s" in c else _short(c, style))
        body.append(cells)
    out.append(
        (
            "1. Gradient runtime: median time per call",
            table(headers, body, style, set(range(1, len(headers)))),
            [
                (
                    "forward: the user's function itself; generated: stagegen's f_backward; "
                    "every gradient checked against the generated one before timing"
                )
            ]
            + gaps(rows, style),
        )
    )
    # 2. ratios
    comps = [t for t in tools if t in COMPETITOR_ORDER]
    short = {"hand": "hand", "sympy": "SymPy", "torch": "PyTorch", "jax": "JAX"}
    headers = ["function"] + [short.get(t, LABELS[t]) for t in comps]
    headers += ["bwd/fwd", "(fwd+bwd)/fwd"]
    body = []
    for r in rows:
        cells = [r["label"]]
        for t in comps:
            c = r["tools"].get(t)
            cells.append(fmt_ratio(c["ratio"]) if c and "ratio" in c else _short(c, style))
        fb = r.get("fb_over_f")
        cells.append(fmt_ratio(r.get("b_over_f")))
        cells.append(f"{fmt_ratio(fb)} {style.mark(fb <= 3.0)}" if fb is not None else "-")
        body.append(cells)
    out.append(
        (
            "2. Relative cost",
            table(headers, body, style, set(range(1, len(headers)))),
            [
                (
                    "hand ... JAX: that tool's time / the generated backward's (> 1: slower than "
                    "the generated code)"
                ),
                (
                    "bwd/fwd: the generated backward (it replays the forward stages it needs) "
                    "over the forward; (fwd+bwd)/fwd: a forward call plus a backward call, over "
                    "the forward (target ≤ 3)"
                ),
            ],
        )
    )
    # 3. one-off costs
    setup_tools = [t for t in ("generated", "sympy", "jax") if t in tools]
    names = {
        "generated": "stagegen generate",
        "sympy": "SymPy diff+lambdify",
        "jax": "JAX jit compile",
    }
    headers = ["function"] + [names[t] for t in setup_tools]
    body = []
    for r in rows:
        cells = [r["label"]]
        for t in setup_tools:
            c = r["tools"].get(t)
            cells.append(
                fmt_time(c["setup_s"], style) if c and "setup_s" in c else _short(c, style)
            )
        body.append(cells)
    out.append(
        (
            "3. One-off cost before the first gradient",
            table(headers, body, style, set(range(1, len(headers)))),
            [
                (
                    "stagegen: generate and load the module (the first one loads black and "
                    "jinja2); SymPy: compose, diff, lambdify(cse=True), in a child process; JAX: "
                    "trace and compile"
                )
            ]
            + [
                f"{LABELS['sympy']}, {r['label']}: {r['tools']['sympy']['detail']}"
                for r in rows
                if r["tools"].get("sympy", {}).get("detail")
            ],
        )
    )
    return out


def gaps(rows: list[dict], style: Style) -> list[str]:
    """Why a cell is empty, grouped by tool and reason."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        for tool, c in r["tools"].items():
            if c.get("status") in ("skipped", "wrong") and tool in LABELS:
                grouped.setdefault((tool, c["reason"]), []).append(r["label"])
    lines = []
    for (tool, reason), labels in grouped.items():
        lines.append(f"{LABELS[tool]}, {reason}: {'; '.join(labels)}")
    return lines


GENERATED_CODES = {
    "numbers": "random straight-line programs over the math functions",
    "arrays": (
        "NumPy chains over an (N, D) value with shape annotations (layers through w, "
        "elementwise functions, broadcasts of b and c, row means, skip connections), "
        "ending in .sum()"
    ),
}


def generation_codes(gen: dict) -> list[tuple[str, dict]]:
    """Each kind of code the generation part measured, with its rows and growth: numbers in
    ``gen`` itself (as in runs from before array code was measured), arrays in ``gen["arrays"]``."""
    out = []
    if gen.get("rows"):
        out.append(("numbers", gen))
    for code in GENERATED_CODES:
        if code != "numbers" and gen.get(code, {}).get("rows"):
            out.append((code, gen[code]))
    return out


def generation_table(gen: dict, style: Style) -> tuple[str, str, list[str]]:
    headers = [
        "code",
        "stages",
        "generate",
        f"{style.micro}/stage",
        "CPU",
        "verify",
        f"{style.micro}/stage",
    ]
    body = []
    codes = generation_codes(gen)
    for code, part in codes:
        for r in part["rows"]:
            n = r["stages"]
            v = r.get("verify_s")
            body.append(
                [
                    code,
                    f"{n:,}",
                    fmt_time(r["generate_s"], style),
                    f"{r['generate_s'] / n * 1e6:,.0f}",
                    fmt_time(r.get("generate_cpu_s"), style),
                    (
                        fmt_time(v, style)
                        if v is not None
                        else ("FAILED" if "verify_error" in r else "-")
                    ),
                    f"{v / n * 1e6:,.0f}" if v is not None else "-",
                ]
            )
    notes = [f"{code}: {GENERATED_CODES[code]}" for code, _ in codes]
    notes.append(
        "generate: parse, reverse sweep, emit (wall clock; CPU: this process's CPU time, "
        "less sensitive to other work on the machine); verify: the proof against SymPy (local "
        "gradients, and end to end at random points"
        + (
            "; arrays element by element, and by central differences)"
            if "arrays" in dict(codes)
            else ")"
        )
    )
    for code, part in codes:
        if "verify_max" in part:
            notes.append(
                f"{code}: verified up to {part['verify_max']:,} stages only (slow proofs; "
                "--array-verify-max)"
            )
    for code, part in codes:
        for what, name in (
            ("generate_s", "generate"),
            ("generate_cpu_s", "generate (CPU)"),
            ("verify_s", "verify"),
        ):
            g = part["growth"].get(what, {})
            if "doubling" in g:
                d = g["doubling"]
                notes.append(
                    f"{code}, {name}: {d['to']:,} / {d['from']:,} stages = {d['ratio']:.2f} "
                    "(linear: 2.0)"
                )
            if "span" in g:
                sp = g["span"]
                d = g.get("doubling", {})
                total = ""  # the span's own ratio, unless it is the doubling's
                if (sp["from"], sp["to"]) != (d.get("from"), d.get("to")):
                    total = (
                        f"{sp['to']:,} / {sp['from']:,} stages = {sp['ratio']:.2f} "
                        f"(linear: {sp['to'] / sp['from']:g}); "
                    )
                notes.append(
                    f"{code}, {name}: {total}time per stage at {sp['to']:,} / at "
                    f"{sp['from']:,} = {sp['per_stage_ratio']:.2f} (linear: 1.0)"
                )
        for r in part["rows"]:
            if "verify_error" in r:
                notes.append(
                    f"{code}: verification of {r['stages']:,} stages failed: {r['verify_error']}"
                )
    title = "4. Generation and verification time against program size"
    return title, table(headers, body, style, {1, 2, 3, 4, 5, 6}), notes


def import_table(imp: dict, style: Style) -> tuple[str, str, list[str]]:
    n = imp["functions"]
    headers = ["what (fresh process)", "time", "per function"]
    body = [
        ["import stagegen", fmt_time(imp["import_stagegen_s"], style), ""],
        [
            f"module of {n} @staged functions, cold cache",
            fmt_time(imp["cold_module_s"], style),
            fmt_time(imp["cold_per_function_s"], style),
        ],
        [
            "same module again, warm cache",
            fmt_time(imp["warm_module_s"], style),
            fmt_time(imp["warm_per_function_s"], style),
        ],
    ]
    loaded = imp["import_stagegen_loaded"]
    notes = [
        "after `import stagegen`, loaded: "
        + (", ".join(loaded) if loaded else "none of sympy, " "black, jinja2, mpmath"),
        "during the warm import, loaded: "
        + (", ".join(imp["warm_loaded"]) or "none of sympy, " "black, jinja2, mpmath"),
        f"files in the cache directory after the cold import: {imp['cache_entries']}",
    ]
    notes.insert(
        0, "STAGEGEN_CACHE_DIR: a fresh empty directory for each cold run, reused for the warm one"
    )
    title = "5. Import cost"
    return title, table(headers, body, style, {1, 2}), notes


def loops_table(parts: list[dict], style: Style) -> tuple[str, str, list[str]]:
    """Time and peak memory of each loop function's backward against the number of steps."""
    headers = [
        "function",
        "steps T",
        "forward",
        "backward",
        "bwd/fwd",
        "time ×" if style.unicode else "time x",
        "CPU/step",
        "peak memory",
        "per step",
        "memory ×" if style.unicode else "memory x",
        "hand-written",
        "hand peak",
    ]
    body = []
    notes = []
    for part in parts:
        growth = {g["to"]: g for g in part.get("growth", [])}
        for r in part["rows"]:
            tools = r["tools"]
            gen, fwd, hand = (tools.get(k, {}) for k in ("generated", "forward", "hand"))
            g = growth.get(r["steps"], {})
            peak = gen.get("peak_bytes")
            body.append(
                [
                    part["key"],
                    f"{r['steps']:,}",
                    fmt_time(fwd.get("time_s"), style),
                    fmt_time(gen.get("time_s"), style),
                    fmt_ratio(r.get("b_over_f")),
                    fmt_ratio(g.get("time")),
                    fmt_time(gen["cpu_s"] / r["steps"], style) if "cpu_s" in gen else "-",
                    fmt_bytes(peak),
                    fmt_bytes(peak / r["steps"]) if peak is not None else "-",
                    fmt_ratio(g.get("memory")),
                    fmt_time(hand["time_s"], style) if "time_s" in hand else _short(hand, style),
                    fmt_bytes(hand.get("peak_bytes")),
                ]
            )
        if "saved" not in part:  # not generated: the error says why
            notes.append(f"{part['key']}: {part['label']}; {part.get('error', 'not measured')}")
            continue
        saved = part["saved"]
        what = f" ({', '.join(saved)})" if saved else ""
        at = part.get("appends_at")
        if at:
            what += f"; run at T={at['steps']:,}, it appended {at['appends']:,} times"
        forward_peak = max(
            (r["tools"]["forward"]["peak_bytes"] for r in part["rows"] if "forward" in r["tools"]),
            default=None,
        )
        notes.append(
            f"{part['key']}: {part['label']}; the backward saves {len(saved)} "
            f"{part.get('value', 'float')}{'' if len(saved) == 1 else 's'} per step{what}"
            + (f"; {part['proof']}" if "proof" in part else "")
            + (
                f"; the forward's peak memory is at most {fmt_bytes(forward_peak)} at every T"
                if forward_peak is not None
                else ""
            )
        )
        if "error" in part:
            notes.append(f"{part['key']}: {part['error']}")
        for r in part["rows"]:
            cell = r["tools"].get("hand", {})
            if cell.get("status") == "wrong":
                notes.append(f"{part['key']}, T={r['steps']:,}: hand-written, {cell['reason']}")
    rounds = [(p["key"], r) for p in parts for r in p["rows"] if "rounds" in r]
    most = max((r["rounds"] for _, r in rounds), default=0)
    fewer = [f"{key}, T={r['steps']:,}: {r['rounds']}" for key, r in rounds if r["rounds"] < most]
    if fewer:
        notes.append(f"timing rounds, {most} unless a round would take long: " + "; ".join(fewer))
    notes += [
        "forward: the function itself; backward: stagegen's generated backward (it replays the "
        "forward, saving what each step overwrites, then runs the steps last first); "
        "hand-written: a backward written in the bench for the same function; every gradient "
        "checked against the hand-written one at every T, and against central differences at "
        "the smallest T, before timing",
        "time ×, memory ×: the generated backward's time and peak memory over the previous "
        "row's (linear growth: the steps' factor); CPU/step: the generated backward's time on "
        "this process's CPU clock (the same batches; other work on the machine does not count "
        "on it), over T",
        "peak memory: tracemalloc's peak during one call, over what was allocated before it "
        "(the arguments not counted, the returned gradient counted; CPython's free list of "
        "floats emptied first, so that every float made is counted); per step: peak / T, "
        "which includes the call's fixed costs: they weigh below about 1,000 steps",
    ]
    title = "6. Loops: time and memory against the number of steps (issue 14)"
    return title, table(headers, body, style, set(range(1, len(headers)))), notes


# ---------------------------------------------------------------------------- targets


def _cell(results: dict, key: str, tool: str) -> dict | None:
    for r in results.get("gradients", []):
        if r["key"] == key:
            return r["tools"].get(tool)
    return None


def targets(results: dict) -> list[dict]:
    """Every target of the issue: what it asks, the figure measured, and whether it is met
    (None when this run did not measure it)."""
    out = []

    def add(what, figure, ok, target):
        out.append({"target": what, "figure": figure, "ok": ok, "wanted": target})

    grads = results.get("gradients")
    if grads is not None:
        c = _cell(results, "staged", "hand")
        value = 1 / c["ratio"] if c and "ratio" in c else None
        add(
            "generated / hand-written, notes' example",
            f"{value:.2f}" if value else "not measured",
            None if value is None else value <= 0.95,
            "≤ 0.95",
        )
        c = _cell(results, "staged", "sympy")
        value = 1 / c["ratio"] if c and "ratio" in c else None
        add(
            "generated / SymPy-cse, notes' example",
            f"{value:.2f}" if value else "not measured",
            None if value is None else value <= 1.05,
            "≤ 1.05",
        )
        c = _cell(results, "chain12", "sympy")
        value = c.get("ratio") if c else None
        add(
            "SymPy-cse / generated, 12-step logistic chain",
            f"{value:.2f}" if value else ("not measured" if not c else c.get("reason", "")),
            None if value is None else value >= 3.0,
            "≥ 3",
        )
        fbs = [(r["fb_over_f"], r["label"]) for r in grads if r.get("fb_over_f") is not None]
        if fbs:
            worst = max(fbs)
            misses = [label for v, label in fbs if v > 3.0]
            figure = f"max {worst[0]:.2f} ({worst[1]})"
            if misses:
                figure += f"; over 3 on {len(misses)} of {len(fbs)}"
            add("(forward + backward) / forward, every function", figure, worst[0] <= 3.0, "≤ 3")
        for tool in ("autograd", "torch"):
            values = [
                (r["tools"][tool]["ratio"], r["label"])
                for r in grads
                if "ratio" in r["tools"].get(tool, {})
            ]
            if values:
                low = min(values)
                misses = [label for v, label in values if v < 200]
                figure = f"min {low[0]:,.0f} ({low[1]})"
                if misses:
                    figure += f"; under 200 on {len(misses)} of {len(values)}"
                ok = low[0] >= 200
            else:
                figure, ok = "not measured (not installed?)", None
            add(f"{LABELS[tool]} / generated, every function", figure, ok, "≥ 200")
    gen = results.get("generation")
    if gen is not None:
        measured = dict(generation_codes(gen))
        for code in measured or {"numbers": gen}:
            part = measured.get(code, gen)
            of = "" if code == "numbers" else ", array code"
            by_size = {r["stages"]: r for r in part["rows"]}
            if 1000 in by_size:
                v = by_size[1000]["generate_s"]
                add(f"generate 1,000 stages{of}", f"{v:.2f} s", v <= 2.0, "≤ 2 s")
            else:
                add(f"generate 1,000 stages{of}", "not measured (sizes)", None, "≤ 2 s")
            d = part["growth"].get("generate_s", {}).get("doubling")
            if d:
                exact = (d["from"], d["to"]) == (1000, 2000)
                add(
                    f"generate {d['to']:,} / {d['from']:,} stages{of}"
                    + ("" if exact else " (2,000/1,000 not measured)"),
                    f"{d['ratio']:.2f}",
                    d["ratio"] <= 2.5,
                    "≤ 2.5",
                )
    imp = results.get("import")
    if imp is not None:
        heavy = [m for m in imp["import_stagegen_loaded"] if m in ("sympy", "black")]
        add(
            "`import stagegen` loads neither sympy nor black",
            f"{fmt_time(imp['import_stagegen_s'], Style())}, loads "
            + (", ".join(heavy) if heavy else "neither"),
            not heavy,
            "neither",
        )
        v = imp["warm_per_function_s"]
        add("@staged per function at import, warm cache", f"{v * 1e3:.1f} ms", v <= 0.005, "≤ 5 ms")
    for part in results.get("loops") or ():
        checks = (("cpu_s", "CPU time", 2.0), ("peak_bytes", "peak memory", 1.2))
        for what, name, limit in checks:
            sp = loop_span(part, what)
            if sp is None:
                add(
                    f"loops, {part['key']}: backward {name} per step, largest T / T=1,000",
                    "not measured (needs two T ≥ 1,000)",
                    None,
                    f"≤ {limit:g}",
                )
                continue
            add(
                f"loops, {part['key']}: backward {name} per step, T={sp['to']:,} / "
                f"T={sp['from']:,} (linear: 1)",
                f"{sp['per_step_ratio']:.2f}",
                sp["per_step_ratio"] <= limit,
                f"≤ {limit:g}",
            )
    return out


def targets_table(results: dict, style: Style) -> str:
    rows = [[style.mark(t["ok"]), t["target"], t["wanted"], t["figure"]] for t in targets(results)]
    return table(["met", "target", "wanted", "measured"], rows, style, set())


# ---------------------------------------------------------------------------- the whole report


def header(results: dict, style: Style) -> list[str]:
    m = results["machine"]
    o = results["options"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    load = " / ".join(
        " ".join(f"{v:.2f}" for v in m[k]) for k in ("load_start", "load_end") if m.get(k)
    )
    lines = [
        f"date: {m['date']}; mode: {'quick' if o['quick'] else 'full'}"
        + (f"; total {results['elapsed_s']:.0f} s" if "elapsed_s" in results else ""),
        (
            f"machine: {m['cpu']}, {m['cores']} cores, {m['system']}; "
            f"{m['implementation']} {m['python']}"
        ),
        f"load average (1, 5, 15 min) at start / end: {load}",
        f"versions: {versions}",
        (
            f"timing: {o['rounds']} interleaved rounds of ~{o['batch'] * 1e3:g} ms batches per "
            "tool in one process; medians over rounds; ratios are medians of per-round ratios"
        ),
    ]
    return lines


def render(results: dict, style: Style) -> str:
    md = style.markdown
    out = []
    title = "stagegen benchmark"
    out.append(f"# {title}" if md else f"{title}\n{'=' * len(title)}")
    for line in header(results, style):
        out.append(f"- {line}" if md else line)

    def section(name, text, notes=()):
        out.append("")
        out.append(f"### {name}" if md else name)
        out.append("")
        out.append(text)
        if notes:
            out.append("")
            out.extend(f"- {n}" if md else f"  {n}" for n in notes)

    if results.get("gradients") is not None:
        grads = results["gradients"]
        for name, text, notes in gradient_tables(grads, style):
            section(name, text, notes)
    if results.get("generation") is not None:
        section(*generation_table(results["generation"], style))
    if results.get("import") is not None:
        section(*import_table(results["import"], style))
    if results.get("loops") is not None:
        section(*loops_table(results["loops"], style))
    issues = (
        ["5"]
        if any(results.get(p) is not None for p in ("gradients", "generation", "import"))
        else []
    )
    issues += ["14"] if results.get("loops") is not None else []
    of = f"issue {issues[0]}" if len(issues) == 1 else f"issues {' and '.join(issues)}"
    section(f"Targets ({of})", targets_table(results, style))
    return "\n".join(out) + "\n"
