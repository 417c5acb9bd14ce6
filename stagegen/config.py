"""The options a file is generated with, and where they come from.

A file's options (``--function``, ``--wrt``, ``--split``) come from, first to last:

1. the command line, when any of them is given there;
2. ``[tool.stagegen]`` in the nearest ``pyproject.toml`` above the file (as black finds its
   configuration), with options per file or glob::

       [tool.stagegen.files."examples/expression.py"]
       split = true

       [tool.stagegen.files."examples/layers/*norm.py"]
       wrt = ["x", "gamma", "beta"]

   Globs are relative to the folder of the ``pyproject.toml``; ``*`` stays within one folder,
   ``**`` crosses folders. When several match a file, each key takes the value of the last table
   that sets it. Keys set directly in ``[tool.stagegen]`` apply to every file;
3. the header of the file's existing output, which records the command that wrote it
   ("regenerate with: stagegen expression.py --split").

``[tool.stagegen]`` may also hold ``exclude``, a regular expression of paths to skip when a folder
is searched (as ``--exclude``).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import StagegenError

OPTION_KEYS = ("function", "wrt", "split")


@dataclass(frozen=True)
class Options:
    """How one file is generated. ``origin`` says where the options came from."""

    function: tuple[str, ...] | None = None
    wrt: str | None = None  # comma-separated parameter names
    split: bool = False
    origin: str = "defaults"

    def arguments(self) -> list[str]:
        """The command-line options that give these options."""
        args: list[str] = []
        for name in self.function or ():
            args += ["--function", name]
        if self.wrt:
            args += ["--wrt", self.wrt]
        if self.split:
            args.append("--split")
        return args


def command_for(path: str, options: Options) -> str:
    """The shell command, to run from the current folder, that writes ``path``'s output."""
    return shlex.join(["stagegen", path, *options.arguments()])


# --- the header of a generated file -------------------------------------------------------


def options_from_header(text: str) -> Options | None:
    """The options recorded in a generated module's header, or None when it has no readable
    record (a hand-written file, or an older header)."""
    lines = text.splitlines()[:6]
    for i, line in enumerate(lines[:-1]):
        if line.rstrip().endswith("regenerate with"):
            command = lines[i + 1].lstrip("#").strip()
            break
    else:
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) < 2 or words[0] != "stagegen":
        return None
    functions: list[str] = []
    wrt, split = None, False
    rest = iter(words[2:])
    for word in rest:
        if word in ("--function", "-f"):
            functions.append(next(rest, ""))
        elif word == "--wrt":
            wrt = next(rest, "") or None
        elif word == "--split":
            split = True
        else:
            return None  # not a command this version wrote: do not guess
    return Options(tuple(functions) or None, wrt, split, origin="the header of the output")


# --- pyproject.toml -----------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """The ``[tool.stagegen]`` table of one pyproject.toml."""

    path: Path  # the pyproject.toml
    defaults: dict
    files: tuple[tuple[str, re.Pattern, dict], ...]  # (glob, its regex, options), in file order
    exclude: re.Pattern | None

    @property
    def root(self) -> Path:
        return self.path.parent

    def options_for(self, source: Path) -> Options | None:
        """The options this table gives a file, or None when it says nothing about it."""
        try:
            relative = absolute(source).relative_to(absolute(self.root)).as_posix()
        except ValueError:
            relative = None
        chosen = dict(self.defaults)
        for _glob, pattern, values in self.files:
            if relative is not None and pattern.fullmatch(relative):
                chosen.update(values)
        if not chosen:
            return None
        return Options(
            function=chosen.get("function"),
            wrt=chosen.get("wrt"),
            split=chosen.get("split", False),
            origin=str(self.path),
        )


def glob_pattern(glob: str) -> re.Pattern:
    """A path glob as a regular expression: ``*`` and ``?`` within one folder, ``**`` across
    any number of folders, ``[abc]`` a character class."""
    out, i = [], 0
    glob = glob.removeprefix("./")
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def _error(path: Path, message: str, hint: str, line: int = 0) -> StagegenError:
    return StagegenError(message, hint, filename=str(path), line=line, col=1 if line else 0)


def _option_values(path: Path, where: str, table: dict, allowed: tuple[str, ...]) -> dict:
    """Checked, normalised options of one table."""
    values = {}
    for key, value in table.items():
        if key not in allowed:
            raise _error(
                path,
                f"unknown key `{key}` in {where}",
                "the keys are " + ", ".join(f"`{k}`" for k in allowed),
            )
        if key == "split":
            if not isinstance(value, bool):
                raise _error(
                    path, f"`split` in {where} must be true or false", "write split = true"
                )
            values["split"] = value
        elif key in ("function", "wrt"):
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise _error(
                    path,
                    f"`{key}` in {where} must be a name or a list of names",
                    f'write {key} = ["a", "b"]',
                )
            names = [part.strip() for n in names for part in n.split(",") if part.strip()]
            values[key] = tuple(names) if key == "function" else ",".join(names)
    return values


def parse_project(path: Path, text: str) -> Project:
    """``[tool.stagegen]`` of a pyproject.toml's text, checked."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise _error(
                path,
                "reading pyproject.toml needs Python 3.11 or the tomli package",
                "pip install tomli",
            ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        raise _error(
            path,
            f"not valid TOML ({re.sub(r' [(]at line.*', '', str(exc))})",
            "fix the file (stagegen reads its [tool.stagegen] table)",
            int(found.group(1)) if found else 0,
        ) from None
    table = data.get("tool", {}).get("stagegen", {})
    if not isinstance(table, dict):
        raise _error(path, "`tool.stagegen` must be a table", "write [tool.stagegen]")
    top = {k: v for k, v in table.items() if k not in ("files", "exclude")}
    defaults = _option_values(path, "[tool.stagegen]", top, OPTION_KEYS)
    files = []
    per_file = table.get("files", {})
    if not isinstance(per_file, dict):
        raise _error(
            path,
            "`tool.stagegen.files` must be a table of globs",
            '[tool.stagegen.files."src/model.py"] split = true',
        )
    for glob, values in per_file.items():
        where = f'[tool.stagegen.files."{glob}"]'
        if not isinstance(values, dict):
            raise _error(path, f"{where} must be a table", f"write {where} and options below it")
        files.append((glob, glob_pattern(glob), _option_values(path, where, values, OPTION_KEYS)))
    exclude = table.get("exclude")
    if exclude is not None:
        if not isinstance(exclude, str):
            raise _error(
                path, "`exclude` in [tool.stagegen] must be a string", "a regular expression"
            )
        try:
            exclude = re.compile(exclude)
        except re.error as exc:
            raise _error(
                path, f"`exclude` in [tool.stagegen] is not a regular expression ({exc})", "fix it"
            ) from None
    return Project(path, defaults, tuple(files), exclude)


def absolute(path: Path) -> Path:
    """An absolute, normalised path that keeps symbolic links (globs match the path given)."""
    return Path(os.path.abspath(path))


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in ``start`` or a folder above it; the search stops at the
    root of a repository (a folder holding .git or .hg), as black's does."""
    folder = absolute(start)
    if not folder.is_dir():
        folder = folder.parent
    for candidate in (folder, *folder.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate / "pyproject.toml"
        if (candidate / ".git").exists() or (candidate / ".hg").exists():
            return None
    return None


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> Project:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(path, f"cannot read the file ({exc})", "check it") from None
    return parse_project(path, text)


def project_for(start: Path) -> Project | None:
    """The configuration that applies at ``start`` (a file or a folder), if any."""
    path = find_pyproject(start)
    if path is None:
        return None
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    return _load(path, mtime)


def resolve_options(source: Path, given: Options | None, existing_output: str | None) -> Options:
    """The options ``source`` is generated with: ``given`` on the command line, else the
    project's configuration, else the existing output's header, else the defaults."""
    if given is not None:
        return given
    project = project_for(source)
    if project is not None:
        configured = project.options_for(source)
        if configured is not None:
            return configured
    if existing_output is not None:
        recorded = options_from_header(existing_output)
        if recorded is not None:
            return recorded
    return Options()
