"""`stagegen completion bash|zsh`: the script parses, offers every option of the command line
and of `explain`, the commands, and files."""

import io
import os
import shutil
import subprocess

import pytest

from stagegen import cli
from stagegen.completion import option_strings


def _script(shell: str) -> str:
    out = io.StringIO()
    assert cli.main(["completion", shell], out=out) == 0
    return out.getvalue()


def _complete(script: str, words: list[str], cwd) -> list[str]:
    """What bash's completion function offers for the command line ``words`` (the last word
    is the one being completed)."""
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _stagegen; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    run = subprocess.run(["bash", "-c", program], capture_output=True, text=True, cwd=cwd)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_options_commands_and_files(tmp_path):
    script = _script("bash")
    (tmp_path / "model.py").write_text("def f(x):\n    return x\n")
    assert _complete(script, ["stagegen", "--sp"], tmp_path) == ["--split"]
    assert _complete(script, ["stagegen", "ex"], tmp_path) == ["explain"]
    assert _complete(script, ["stagegen", "mo"], tmp_path) == ["model.py"]
    assert _complete(script, ["stagegen", "explain", "--fo"], tmp_path) == ["--format"]
    assert _complete(script, ["stagegen", "completion", "z"], tmp_path) == ["zsh"]
    offered = set(_complete(script, ["stagegen", "-"], tmp_path))
    assert set(option_strings(cli._parser())) <= offered
    assert "--at" not in offered  # explain's option, not the main command's
    assert "--at" in _complete(script, ["stagegen", "explain", "--"], tmp_path)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_the_script(tmp_path):
    program = f"{_script('zsh')}\nprint -r -- ${{_comps[stagegen]}}"
    # compinit writes its dump file under $HOME: a temporary one
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    run = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "_stagegen" in run.stdout  # the function is registered for stagegen


def test_an_unknown_shell_is_a_usage_error(capsys):
    assert cli.main(["completion", "fish"]) == 2
    assert "one of: bash, zsh" in capsys.readouterr().err
