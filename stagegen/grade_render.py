"""The grading report as text (a terminal, with colour when asked), Markdown and HTML: every
line of the backward with its mark, the forward stages it replays or differentiates, and the
reason under a wrong line."""

from __future__ import annotations

import html

MARKS = {True: "✓", False: "✗", None: " "}
ASCII_MARKS = {True: "ok", False: "XX", None: "  "}
BELOW, ASCII_BELOW = "└─", "->"


def _tag(verdict) -> str:
    return "(" + ",".join(str(n) for n in verdict.stages) + ")" if verdict.stages else ""


def heading(report) -> str:
    return (
        f"grading {report.backward} in {report.filename} against the forward "
        f"{report.forward} ({report.stage_count} stages)"
    )


def summary(report) -> str:
    graded = report.graded
    wrong = [v for v in graded if v.ok is False]
    if report.ok:
        sampled = sum(1 for v in graded if v.method == "sampled")
        how = "SymPy" + (f"; {sampled} compared at sampled points, 50 digits" if sampled else "")
        return (
            f"all {len(graded)} graded lines are right: {report.backward} is the gradient of "
            f"{report.forward} ({how})"
        )
    n = len(wrong)
    return (
        f"{n} line{'s' if n != 1 else ''} wrong of {len(graded)} graded; the first: "
        f"{report.first_error}"
    )


def _rows(report, marks) -> list[tuple[object, str, str]]:
    """(verdict, the line's prefix, its text) for every line."""
    width = max((len(_tag(v)) for v in report.lines), default=0)
    rows = []
    for v in report.lines:
        prefix = f"{v.line:>4} {marks[v.ok]:<2} {_tag(v):<{width}} "
        rows.append((v, prefix, v.text.rstrip()))
    return rows


def render_text(report, color: bool = False, ascii: bool = False) -> str:
    marks = ASCII_MARKS if ascii else MARKS
    below = ASCII_BELOW if ascii else BELOW

    def paint(code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    out = [heading(report), ""]
    for v, prefix, text in _rows(report, marks):
        pad = " " * (len(prefix) + _indent(v.text))
        if v.ok is not None:
            code = "32" if v.ok else "1;31"
            prefix = prefix.replace(marks[v.ok], paint(code, marks[v.ok]), 1)
        elif text.strip().startswith("#"):
            text = paint("2", text)
        out.append(prefix + text)
        out += [pad + paint("31", f"{below} {message}") for message in v.messages]
    out += ["", paint("32" if report.ok else "1;31", summary(report))]
    text = "\n".join(out) + "\n"
    if ascii:  # a terminal that cannot show them: the dash spelled out, other characters escaped
        text = text.replace("—", "--").encode("ascii", "backslashreplace").decode("ascii")
    return text


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def render_markdown(report) -> str:
    lines = [f"### Grading `{report.backward}` against `{report.forward}`", ""]
    lines += [f"{'✓' if report.ok else '✗'} {_md_summary(report)}", "", "```text"]
    lines += render_text(report).splitlines()[2:-2]
    lines += ["```", ""]
    if report.issues:
        lines.append("Wrong lines:")
        lines.append("")
        lines += [f"- **line {i.line}**: {i.message}" for i in report.issues]
        lines.append("")
    return "\n".join(lines)


def _md_summary(report) -> str:
    if report.ok:
        return summary(report)
    return summary(report).replace(str(report.first_error), f"line {report.first_error.line}")


STYLE = """\
.stagegen-grade pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px;
  line-height: 1.45; background: #fafafa; padding: 0.8em; border-radius: 4px;
  white-space: pre-wrap; }
.stagegen-grade .ok { color: #1a7f37; font-weight: bold; }
.stagegen-grade .wrong { color: #c62828; font-weight: bold; }
.stagegen-grade .bad-line { background: #fdecea; display: inline-block; width: 100%; }
.stagegen-grade .why { color: #c62828; }
.stagegen-grade .tag, .stagegen-grade .num, .stagegen-grade .comment { color: #888; }
"""


def render_html(report, standalone: bool = False) -> str:
    esc = html.escape
    width = max((len(_tag(v)) for v in report.lines), default=0)
    rows = []
    for v in report.lines:
        mark = {True: '<span class="ok">✓</span>', False: '<span class="wrong">✗</span>'}.get(
            v.ok, " "
        )
        text = esc(v.text.rstrip())
        if v.ok is None and v.text.strip().startswith("#"):
            text = f'<span class="comment">{text}</span>'
        row = (
            f'<span class="num">{v.line:>4}</span> {mark}  '
            f'<span class="tag">{esc(_tag(v)):<{width}}</span> {text}'
        )
        if v.ok is False:
            row = f'<span class="bad-line">{row}</span>'
        rows.append(row)
        pad = " " * (4 + 1 + 1 + 2 + width + 1 + _indent(v.text))
        rows += [f'{pad}<span class="why">└─ {esc(m)}</span>' for m in v.messages]
    verdict = "ok" if report.ok else "wrong"
    body = (
        f'<div class="stagegen-grade"><p>{esc(heading(report))}</p>'
        f"<pre>{chr(10).join(rows)}</pre>"
        f'<p class="{verdict}">{esc(summary(report))}</p></div>'
    )
    if not standalone:
        return f"<style>{STYLE}</style>{body}"
    title = esc(f"grading {report.backward}")
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>\n{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
