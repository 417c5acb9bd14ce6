"""Finding the Python files below a folder, as black does.

Skipped: hidden folders and files (``.git``, ``.venv``, ...), virtual environments (a folder
holding ``pyvenv.cfg``, or named ``venv``), ``__pycache__`` and the build folders black skips,
paths that git ignores (``git ls-files``; without git, a plain reader of the ``.gitignore`` files
below the folder), paths the ``exclude`` regular expression matches, and stagegen's own outputs
(``*_backward.py`` that start with the generated mark).

``exclude`` is searched for (``re.search``) in the path relative to the folder, written with
``/``, starting with ``/`` and, for a folder, ending with ``/``: ``/tests/`` skips every folder
named tests, ``_old\\.py$`` every file ending so.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from pathlib import Path

SKIPPED_FOLDERS = frozenset(
    {
        "__pycache__",
        "__pypackages__",
        "_build",
        "buck-out",
        "build",
        "dist",
        "node_modules",
        "site-packages",
        "venv",
    }
)


def skipped_folder(folder: Path) -> bool:
    name = folder.name
    return (
        name.startswith(".")
        or name in SKIPPED_FOLDERS
        or (folder / "pyvenv.cfg").is_file()  # a virtual environment, whatever its name
    )


def python_files(root: Path, exclude: re.Pattern | None = None, is_output=None) -> list[Path]:
    """The Python files below ``root``, sorted, without the skipped ones. ``is_output(path)``
    says whether a file is stagegen's output (skipped)."""
    listed = git_listed(root)
    ignore = None if listed is not None else GitignoreReader(root)
    listed_folders = None
    if listed is not None:  # a folder git lists nothing in is not walked (build trees, data)
        listed_folders = {folder for path in listed for folder in path.parents}
    found = []
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        rel_folder = here.relative_to(root).as_posix()
        rel_folder = "" if rel_folder == "." else rel_folder + "/"
        keep = []
        for sub in sorted(subfolders):
            path = here / sub
            rel = "/" + rel_folder + sub + "/"
            if skipped_folder(path) or (exclude is not None and exclude.search(rel)):
                continue
            if ignore is not None and ignore.ignored(path, folder=True):
                continue
            if listed_folders is not None and absolute(path) not in listed_folders:
                continue
            keep.append(sub)
        subfolders[:] = keep
        for name in sorted(names):
            if not name.endswith(".py") or name.startswith("."):
                continue
            path = here / name
            if exclude is not None and exclude.search("/" + rel_folder + name):
                continue
            if listed is not None and absolute(path) not in listed:
                continue
            if ignore is not None and ignore.ignored(path, folder=False):
                continue
            if not path.is_file():
                continue
            if is_output is not None and name.endswith("_backward.py") and is_output(path):
                continue
            found.append(path)
    return found


def git_listed(root: Path) -> set[Path] | None:
    """The files below ``root`` that git does not ignore (tracked, or untracked and not
    ignored), or None when git is missing or ``root`` is not in a work tree."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            cwd=root,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    base = absolute(root)
    names = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    return {absolute(base / name) for name in names if name}


class GitignoreReader:
    """The common part of .gitignore: comments, ``!`` negation, a trailing ``/`` for folders
    only, a ``/`` inside a pattern anchoring it to the .gitignore's folder, ``*``, ``?`` and
    ``**``. The .gitignore files read are those from the project's root (the nearest folder
    above holding .git, .hg or pyproject.toml, as black finds it) down to each path; git's
    global excludes are not."""

    def __init__(self, root: Path):
        self.root = project_root(root)
        self.rules: dict[Path, list[tuple[re.Pattern, bool, bool]]] = {}

    def _rules(self, folder: Path) -> list[tuple[re.Pattern, bool, bool]]:
        if folder not in self.rules:
            rules = []
            try:
                lines = (folder / ".gitignore").read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                lines = []
            for line in lines:
                line = line.rstrip()
                if not line or line.startswith("#"):
                    continue
                negate = line.startswith("!")
                line = line[1:] if negate else line
                folder_only = line.endswith("/")
                line = line.rstrip("/")
                anchored = "/" in line
                line = line.lstrip("/")
                regex = _gitignore_regex(line, anchored)
                rules.append((regex, negate, folder_only))
            self.rules[folder] = rules
        return self.rules[folder]

    def ignored(self, path: Path, folder: bool) -> bool:
        path = absolute(path)
        if not path.is_relative_to(self.root):
            return False
        verdict = False
        chain = [self.root]
        rel_parts = path.relative_to(self.root).parts
        for part in rel_parts[:-1]:
            chain.append(chain[-1] / part)
        for base in chain:  # deeper .gitignore files come later and win
            relative = path.relative_to(base).as_posix()
            for regex, negate, folder_only in self._rules(base):
                if folder_only and not folder:
                    continue
                if regex.fullmatch(relative):
                    verdict = not negate
        return verdict


def absolute(path: Path) -> Path:
    """An absolute, normalised path; symbolic links are kept (a link's own path is what
    git lists and what .gitignore patterns match)."""
    return Path(os.path.abspath(path))


def project_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding .git, .hg or pyproject.toml; ``start``
    itself when there is none."""
    start = absolute(start)
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in (".git", ".hg", "pyproject.toml")):
            return folder
    return start


def _gitignore_regex(pattern: str, anchored: bool) -> re.Pattern:
    parts = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            # character classes and plain characters, one at a time
            if pattern[i] == "[" and "]" in pattern[i + 1 :]:
                end = pattern.index("]", i + 1)
                parts.append(fnmatch.translate(pattern[i : end + 1])[4:-3])
                i = end + 1
            else:
                parts.append(re.escape(pattern[i]))
                i += 1
    body = "".join(parts)
    return re.compile(body if anchored else f"(?:.*/)?{body}")
