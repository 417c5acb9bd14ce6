"""The errors users see.

Every bad-input error is a ``StagegenError`` that knows where it happened, and renders as

    FILE:LINE:COL: error: <what is wrong> — <what to do instead>
        <the source line>
        ^

The CLI prints exactly that and exits with status 2; the API raises it.
"""

from __future__ import annotations


class StagegenError(Exception):
    """Base of every error stagegen raises on purpose (bad input, failed proof)."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        filename: str = "<string>",
        line: int = 0,
        col: int = 0,
        source_line: str = "",
    ):
        self.message = message
        self.hint = hint
        self.filename = filename
        self.line = line  # 1-based; 0 means "the file as a whole"
        self.col = col  # 1-based
        self.source_line = source_line
        super().__init__(self.render())

    @property
    def location(self) -> str:
        if self.line <= 0:
            return self.filename
        return f"{self.filename}:{self.line}:{max(self.col, 1)}"

    def render(self) -> str:
        text = f"{self.location}: error: {self.message}"
        if self.hint:
            text += f" — {self.hint}"
        if self.source_line and self.line > 0:
            shown = self.source_line.rstrip("\n").expandtabs(1)
            stripped = shown.lstrip()
            indent = len(shown) - len(stripped)
            caret_at = max(self.col - 1 - indent, 0)
            text += f"\n    {stripped}\n    {' ' * caret_at}^"
        return text

    def __str__(self) -> str:
        return self.render()

    def located_at(
        self, filename: str, line: int, col: int = 1, source_line: str = ""
    ) -> StagegenError:
        """This error if it already has a line; otherwise a copy (same class, same message)
        placed at ``filename:line:col``, e.g. a function's `def` when no finer place is known."""
        if self.line > 0 or line <= 0:
            return self
        return type(self)(
            self.message,
            self.hint,
            filename=filename,
            line=line,
            col=col,
            source_line=source_line,
        )


class HandWrittenWrong(StagegenError):
    """A backward the user wrote disagrees with its forward: the user's error (exit status 2),
    located at its ``def`` until grading names the line (stagegen.handwritten)."""

    def __init__(self, message, hint="", *, program=None, source=None, found="", **where):
        super().__init__(message, hint, **where)
        self.program, self.source, self.found = program, source, found


class ShapeUnknown(StagegenError):
    """Array code that needs a number of dimensions neither the code nor the docstring fixes.
    The CLI refuses it; @staged waits for the first call and specialises to its shapes."""


class VerificationError(StagegenError):
    """A generated gradient disagrees with the reference: a bug in stagegen, never a user error."""


class Source:
    """A module's text and name, so that any stage can point back into it."""

    def __init__(
        self, text: str, filename: str = "<string>", line_offset: int = 0, col_offset: int = 0
    ):
        self.text = text
        self.filename = filename
        # The decorator parses a function cut out of its file; offsets map back to the file.
        self.line_offset = line_offset
        self.col_offset = col_offset
        # Split as the parser does (not str.splitlines, which also breaks at form feeds),
        # so that line numbers from ``ast`` index this list.
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    def segment(self, node) -> str | None:
        """The source text of a one-line node; ast.get_source_segment re-splits the whole
        module on every call, which made parsing quadratic in the file's length."""
        line, end = node.lineno, getattr(node, "end_lineno", None)
        if end != line or not 0 < line <= len(self.lines):
            import ast

            return ast.get_source_segment(self.text, node)
        raw = self.lines[line - 1].encode("utf-8")
        return raw[node.col_offset : node.end_col_offset].decode("utf-8")

    def error(self, node, message: str, hint: str = "") -> StagegenError:
        """A located error at an ``ast`` node (or anything with lineno/col_offset)."""
        line = getattr(node, "lineno", 0) or 0
        byte_col = getattr(node, "col_offset", 0) or 0
        # ast counts columns in UTF-8 bytes; people count characters.
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        col = len(text.encode("utf-8")[:byte_col].decode("utf-8", "ignore")) + 1
        return self.error_at(line, col, message, hint)

    def error_at(self, line: int, col: int, message: str, hint: str = "") -> StagegenError:
        source_line = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if source_line and self.col_offset:
            source_line = " " * self.col_offset + source_line
        return StagegenError(
            message,
            hint,
            filename=self.filename,
            line=line + self.line_offset if line else 0,
            col=col + self.col_offset if line else 0,
            source_line=source_line,
        )
