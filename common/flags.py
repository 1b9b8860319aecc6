"""The command-line rules every entry point shares (experiments/cli.py, analysis/__main__.py):
a usage error is one line and exit code 2, no flag is abbreviated, and an unknown flag gets a
"did you mean" drawn from the flags its --help shows."""

from __future__ import annotations

import argparse
import difflib
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line `error: ...; see PROG --help`, exit 2."""

    def __init__(self, *args, **kwargs):
        # No abbreviations: `--worker` must not silently mean `--workers` (nor break when a
        # longer flag is added later); a near miss gets a "did you mean" instead.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)


def refuse_unknown(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """The usage error for unrecognised arguments, naming the nearest documented flag."""
    guess = difflib.get_close_matches(unknown[0].split("=")[0], documented_options(parser), n=1)
    hint = f" (did you mean {guess[0]}?)" if guess else ""
    parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def documented_options(parser: argparse.ArgumentParser) -> list[str]:
    """Option strings shown in --help, subcommands' included (hidden ones are not suggested)."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += documented_options(sub)
        elif action.help != argparse.SUPPRESS:
            out += action.option_strings
    return out
