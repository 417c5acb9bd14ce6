"""The plot: gradient time per function and tool; (forward + backward) / forward; generation and
verification time against size; import cost. matplotlib with the Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path

from .competitors import LABELS
from .report import TIME_ORDER, generation_codes

COLOURS = {
    "forward": "#9e9e9e",
    "generated": "#1b7837",
    "hand": "#7fbf7b",
    "sympy": "#762a83",
    "autograd": "#e08214",
    "micrograd": "#fdb863",
    "torch": "#b2182b",
    "jax": "#2166ac",
}


def plot(results: dict, path: Path) -> Path | None:
    """Write the PNG; None when matplotlib is not installed or there is nothing to draw."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grads = results.get("gradients")
    gen = results.get("generation")
    imp = results.get("import")
    if not (grads or gen or imp):
        return None
    fig = plt.figure(figsize=(15, 10.5), dpi=110)
    grid = fig.add_gridspec(2, 3, height_ratios=[1.15, 1], hspace=0.42, wspace=0.28)
    if grads:
        _gradient_panel(fig.add_subplot(grid[0, :]), grads)
        _ratio_panel(fig.add_subplot(grid[1, 0]), grads)
    if gen:
        _generation_panel(fig.add_subplot(grid[1, 1]), gen)
    if imp:
        _import_panel(fig.add_subplot(grid[1, 2]), imp)
    m = results["machine"]
    load = m.get("load_start")
    quick = " (quick mode)" if results["options"].get("quick") else ""
    fig.suptitle(
        f"stagegen benchmark{quick} — {m['date']} — {m['cpu']}, {m['cores']} cores, Python {m['python']}"
        + (f", load {load[0]:.2f}" if load else ""),
        fontsize=12,
    )
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _gradient_panel(ax, grads: list[dict]) -> None:
    tools = [t for t in TIME_ORDER if any("time_s" in r["tools"].get(t, {}) for r in grads)]
    width = 0.85 / len(tools)
    for i, tool in enumerate(tools):
        xs, ys = [], []
        for j, r in enumerate(grads):
            cell = r["tools"].get(tool, {})
            if "time_s" in cell:
                xs.append(j + (i - (len(tools) - 1) / 2) * width)
                ys.append(cell["time_s"] * 1e6)
        ax.bar(xs, ys, width, label=LABELS[tool], color=COLOURS[tool], edgecolor="white", lw=0.3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(grads)))
    ax.set_xticklabels([_label(r) for r in grads], fontsize=9)
    ax.set_ylabel("time per gradient (µs, log scale)")
    ax.set_title("Gradient runtime, same function and point, one process (lower is better)")
    ax.legend(ncol=len(tools), fontsize=9, loc="upper left", frameon=False)
    ax.grid(axis="y", which="major", alpha=0.3)
    bottom = ax.get_ylim()[0]
    highest = max(c["time_s"] * 1e6 for r in grads for c in r["tools"].values() if "time_s" in c)
    ax.set_ylim(bottom, highest * 12)  # room for the legend
    for j, r in enumerate(grads):  # say why a bar is missing where the reason is a finding
        for i, tool in enumerate(tools):
            reason = r["tools"].get(tool, {}).get("reason", "")
            if reason.startswith("build >") or r["tools"].get(tool, {}).get("status") == "wrong":
                x = j + (i - (len(tools) - 1) / 2) * width
                text = reason.split("(")[0].strip() if reason.startswith("build") else "wrong"
                ax.text(
                    x,
                    bottom * 1.15,
                    text,
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color=COLOURS[tool],
                )


def _label(r: dict) -> str:
    label = r["label"].replace("notes' ", "notes'\n").replace(", ", "\n")
    return label


def _ratio_panel(ax, grads: list[dict]) -> None:
    values = [r.get("fb_over_f") or 0.0 for r in grads]
    colours = [COLOURS["generated"] if v <= 3.0 else "#d6604d" for v in values]
    ax.bar(range(len(grads)), values, color=colours)
    ax.axhline(3.0, color="black", ls="--", lw=1)
    ax.text(
        -0.45,
        3.05,
        "target ≤ 3",
        ha="left",
        va="bottom",
        fontsize=8,
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
    )
    ax.set_xticks(range(len(grads)))
    ax.set_xticklabels([r["key"] for r in grads], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("(forward + backward) / forward")
    ax.set_title("Cost of the gradient relative to the function", fontsize=10)
    ax.set_ylim(0, max(values + [3.0]) * 1.2)


def _generation_panel(ax, gen: dict) -> None:
    smallest = None
    for code, part in generation_codes(gen):
        marker, of = ("o-", "") if code == "numbers" else ("s--", ", arrays")
        for key, name, colour in (
            ("generate_s", "generate", COLOURS["generated"]),
            ("verify_s", "verify (proof)", COLOURS["sympy"]),
        ):
            pts = [(r["stages"], r[key]) for r in part["rows"] if key in r]
            if pts:
                ax.plot(*zip(*pts), marker, color=colour, label=name + of)
                n0, t0 = pts[-1]
                lo = pts[0][0]
                ax.plot([lo, n0], [t0 * lo / n0, t0], ":", color=colour, lw=1)
                smallest = lo if smallest is None else min(smallest, lo)
    ax.axhline(2.0, color="black", ls="--", lw=0.8)
    if smallest is not None:
        ax.text(smallest, 2.1, "target: 1,000 stages ≤ 2 s", fontsize=8, va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("stages (random straight-line program; array chain)")
    ax.set_ylabel("seconds")
    ax.set_title(
        "Generation and verification vs size\n(dotted: linear through the largest)", fontsize=10
    )
    ax.legend(fontsize=8, frameon=False)
    ax.grid(which="major", alpha=0.3)


def _import_panel(ax, imp: dict) -> None:
    n = imp["functions"]
    names = ["import\nstagegen", f"{n} @staged,\ncold cache", f"{n} @staged,\nwarm cache"]
    values = [imp["import_stagegen_s"], imp["cold_module_s"], imp["warm_module_s"]]
    values = [v * 1e3 for v in values]
    ax.barh(names, values, color=[COLOURS["forward"], COLOURS["torch"], COLOURS["generated"]])
    ax.axvline(5.0 * n, color="black", ls="--", lw=1)
    ax.text(5.0 * n, 2.72, f" target, warm: {n} × 5 ms", fontsize=8, va="bottom")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.1f} ms", va="center", fontsize=8)
    ax.set_xlabel("milliseconds (fresh process)")
    ax.set_title("Import cost", fontsize=10)
    ax.set_ylim(2.8, -0.5)  # top to bottom, with a line of room under the last bar
    ax.set_xlim(0, max(values + [5.0 * n]) * 1.35)
