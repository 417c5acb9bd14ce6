"""Shell completion: `stagegen completion bash|zsh` prints a script for the shell to source.

The options come from the command line's own parsers, so a new option completes without an edit
here. zsh runs the bash script through its bash-completion layer (bashcompinit)."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")
COMMANDS = ("explain", "grade", "completion")

_BASH = """\
# stagegen completion for {shell}: add `eval "$(stagegen completion {shell})"` to your ~/.{rc}
{preamble}_stagegen() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}"
    local first="${{COMP_WORDS[1]}}"
    if [[ $COMP_CWORD -eq 1 && "$cur" != -* ]]; then
        COMPREPLY=( $(compgen -W "{commands}" -- "$cur") $(compgen -f -- "$cur") )
        return
    fi
    if [[ "$first" == completion ]]; then
        COMPREPLY=( $(compgen -W "{shells}" -- "$cur") )
        return
    fi
    local options="{main}"
    [[ "$first" == explain ]] && options="{explain}"
    [[ "$first" == grade ]] && options="{grade}"
    if [[ "$cur" == -* ]]; then
        COMPREPLY=( $(compgen -W "$options" -- "$cur") )
    else
        COMPREPLY=( $(compgen -f -- "$cur") )
    fi
}}
complete -o filenames -F _stagegen stagegen
"""


# zsh runs bash completion functions through bashcompinit, which needs compinit loaded.
ZSH_PREAMBLE = """\
(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }
autoload -U +X bashcompinit && bashcompinit
"""


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(s for action in parser._actions for s in action.option_strings)


def script(
    shell: str,
    main: argparse.ArgumentParser,
    explain: argparse.ArgumentParser,
    grade: argparse.ArgumentParser | None = None,
) -> str:
    preamble = ZSH_PREAMBLE if shell == "zsh" else ""
    return _BASH.format(
        shell=shell,
        rc="zshrc" if shell == "zsh" else "bashrc",
        preamble=preamble,
        commands=" ".join(COMMANDS),
        shells=" ".join(SHELLS),
        main=" ".join(option_strings(main)),
        explain=" ".join(option_strings(explain)),
        grade=" ".join(option_strings(grade)) if grade is not None else "",
    )
