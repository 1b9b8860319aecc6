"""What every command's "did you mean" suggests from: the flags its --help shows."""

from __future__ import annotations

import argparse


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
