"""One command-line dialect for every entry point (train, sample, bench, sweep).

- Flags are argparse, spelled with dashes; a misspelt flag is a one-line error with a
  "did you mean".
- A config is `--config FILE[:ARG]` plus overrides `--config.a.b=VALUE`, applied by
  ml_collections' config_flags on a private absl FlagValues with the config locked, so a
  misspelt key fails (`load_config`). Config-parse errors are one line with a "did you mean".
- `run(main)`: a UserError (research/errors.py) is one line `error: ...` and its exit code;
  anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import importlib.util
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common.flags import OneLineParser, refuse_unknown  # noqa: E402  (after the log-level default)
from research.config import RunConfig  # noqa: E402
from research.errors import EXIT_INTERRUPTED, ConfigError, UserError  # noqa: E402

OVERRIDE = re.compile(r"^--?(no)?config\.([A-Za-z0-9_.]+)(=.*)?$", re.S)
OVERRIDE_HELP = ("override any key of the config: --config.KEY=VALUE, e.g. {example} "
                 "(repeatable; a misspelt key is an error)")


def note(message: str) -> None:
    print(message, file=sys.stderr)


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


# --- argparse with one-line errors --------------------------------------------------------------

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every flag's help; descriptions and epilogs keep their line breaks."""

    def _get_help_string(self, action):
        default = action.default
        if action.required or action.nargs == 0 or default is None or default is False \
                or default == "" or default == [] or default is argparse.SUPPRESS:
            # Switches ("off" by default), required flags and empty defaults: nothing to say.
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(OneLineParser):
    """One-line usage errors (common/flags.py), defaults shown in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def parser(prog: str, doc: str, epilog: str | None = None) -> ArgumentParser:
    """A parser whose description is the module docstring."""
    return ArgumentParser(prog=prog, description=doc, epilog=epilog)


def parse_bool(text: str) -> bool:
    value = {"true": True, "t": True, "1": True, "yes": True,
             "false": False, "f": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false)")
    return value


def add_config(p: argparse.ArgumentParser, default: str | None, what: str, required: bool = False,
               example: str = "--config.train.tokens=5_000_000") -> argparse.Action:
    return p.add_argument("--config", default=default, required=required, metavar="FILE[:ARG]",
                          help=f"{what}; {OVERRIDE_HELP.format(example=example)}")


def split_list(text: str, flag: str, kind=str) -> list:
    """A list flag's value: comma-separated, the one list syntax of every command
    (`--widths 64,128`, `--reference-flops 1e18,1e19`; tuple config keys take the same form,
    `--config.tokens=262144,524288`)."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        fail(f"{flag} is empty; give a comma-separated list, e.g. {flag} A,B")
    try:
        return [kind(item) for item in items]
    except ValueError:
        fail(f"{flag} {text!r} is not a comma-separated list of {kind.__name__}s; write e.g. "
             f"{flag} A,B")


def parse(p: argparse.ArgumentParser, argv, allow_overrides: bool = True):
    """(args, override tokens): argparse for the flags, `--config.KEY[=VALUE]` set aside in order."""
    args, extra = p.parse_known_args(list(argv))
    overrides, unknown, i = [], [], 0
    while i < len(extra):
        token = extra[i]
        m = OVERRIDE.match(token)
        if m and allow_overrides:
            overrides.append(token)
            # `--config.KEY VALUE` (space instead of '='): the next token is its value.
            if m.group(3) is None and not m.group(1) and i + 1 < len(extra) \
                    and not extra[i + 1].startswith("--"):
                overrides.append(extra[i + 1])
                i += 1
        else:
            unknown.append(token)
        i += 1
    if unknown:
        refuse_unknown(p, unknown)
    return args, overrides


# --- configs ------------------------------------------------------------------------------------

def _load_module(path: str):
    name = "_config_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shipped_config(path: str) -> str:
    """`configs/...` names the shipped config when no such file is here: the commands work
    from any directory once the package is installed."""
    if os.path.isfile(path) or not path.replace(os.sep, "/").startswith("configs/"):
        return path
    import configs
    shipped = os.path.join(os.path.dirname(os.path.abspath(configs.__file__)),
                           *path.split("/")[1:])
    return shipped if os.path.isfile(shipped) else path


def config_variants(module) -> tuple[str, ...]:
    """The ARGs a config file declares (`VARIANTS`), or () when it does not say."""
    return tuple(getattr(module, "VARIANTS", ()))


def build_config(spec: str, *, example: str = "configs/gpt.py:VARIANT"):
    """`FILE[:ARG]` -> the ConfigDict its get_config(ARG) returns (unlocked, no overrides)."""
    path, _, arg = spec.partition(":")
    path = shipped_config(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found; pass --config {example}")
    module = _load_module(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config(arg); define one returning a ConfigDict")
    variants = config_variants(module)
    if arg and variants and arg not in variants:
        guess = difflib.get_close_matches(arg, variants, n=1)
        hint = f"did you mean {path}:{guess[0]}? " if guess else ""
        raise ConfigError(f"unknown variant {arg!r} in {path}; {hint}"
                          f"choose one of: {', '.join(variants)}")
    return module.get_config(arg) if arg else module.get_config()


def config_keys(config, prefix: str = "") -> list[str]:
    """Every key path of a ConfigDict, sections included: ['model', 'model.d_model', ...]."""
    out = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        out.append(path)
        if hasattr(value, "items") and not isinstance(value, (tuple, list)):
            out += config_keys(value, path + ".")
    return out


def apply_overrides(config, tokens: list[str]):
    """config_flags semantics for `--config.KEY=VALUE` tokens on a locked copy of `config`."""
    from absl import flags
    from ml_collections import config_flags

    keys = set(config_keys(config))
    for token in tokens:
        m = OVERRIDE.match(token)
        if m is None:
            continue  # a value given as the next token
        key = m.group(2)
        if key not in keys:
            guess = difflib.get_close_matches(key, sorted(keys), n=1)
            hint = f"did you mean --config.{guess[0]}?" if guess else "see the config file for its keys"
            raise ConfigError(f"unknown config key {key!r}; {hint}")
    argv = ["config", *(_quote_words(config, token, keys) for token in tokens)]
    values = flags.FlagValues()
    try:
        holder = config_flags.DEFINE_config_dict("config", config, flag_values=values,
                                                 lock_config=True, sys_argv=argv)
        values(argv)
    except (flags.Error, ValueError, TypeError, KeyError, AttributeError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        m = re.search(r"--config\.([A-Za-z0-9_.]+)", message)
        hint = "give a value of the key's type"
        if m and m.group(1) in keys:
            current = _value_at(config, m.group(1))
            hint = f"config.{m.group(1)} is {type(current).__name__} (now {current!r})"
        raise ConfigError(f"bad override ({message.removeprefix('flag ')}); {hint}") from None
    return holder.value


def _quote_words(config, token: str, keys) -> str:
    """`--config.variants=100k,300k` -> `--config.variants=('100k','300k')`: a tuple key takes a
    plain comma-separated list, like every list flag; bare words become strings (numbers stay
    numbers). A Python literal (parentheses, quotes) passes unchanged."""
    m = OVERRIDE.match(token)
    if m is None or m.group(3) is None or m.group(2) not in keys:
        return token
    text = m.group(3)[1:]
    if not isinstance(_value_at(config, m.group(2)), tuple) or not text \
            or any(ch in text for ch in "()[]'\""):
        return token
    try:
        ast.literal_eval(text)
        return token  # numbers: config_flags parses them as they are
    except (ValueError, SyntaxError):
        pass
    items = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        try:
            items.append(repr(ast.literal_eval(item)))
        except (ValueError, SyntaxError):
            items.append(repr(item))
    return f"--config.{m.group(2)}=({','.join(items)},)"


def _value_at(config, key: str):
    for part in key.split("."):
        config = config[part]
    return config


def load_config(spec: str, overrides: list[str] = (), *, example: str = "configs/gpt.py:VARIANT"):
    """`--config FILE[:ARG]` and its `--config.KEY=VALUE` tokens -> a locked ConfigDict."""
    return apply_overrides(build_config(spec, example=example), list(overrides))


def run_config(config) -> RunConfig:
    """A run's ConfigDict, as the command line built it -> the checked, typed RunConfig: the
    one conversion at the boundary (research/ takes only RunConfig)."""
    return RunConfig.from_configdict(config)


def load_run_config(spec: str, overrides: list[str] = (), *,
                    example: str = "configs/gpt.py:VARIANT") -> RunConfig:
    """`--config FILE[:ARG]` and its overrides -> the run's RunConfig."""
    return run_config(load_config(spec, overrides, example=example))


# --- running a command --------------------------------------------------------------------------

def run(main, argv=None) -> None:
    """Run `main(argv) -> exit code`; a UserError is one line and its exit code, a bug a traceback."""
    sys.exit(guarded(main, argv))


def guarded(main, argv=None) -> int:
    try:
        return int(main(sys.argv[1:] if argv is None else argv) or 0)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # train resumes from its last checkpoint when run again
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def one_line(e: BaseException) -> str:
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__


def quiet_absl(level: str = "warning") -> None:
    """What absl.app.run did for these commands: library log lines at `level` and up only."""
    from absl import flags, logging

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # libraries reading absl flags get their defaults
    logging.set_verbosity(level)


def maybe_initialize_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
    """Multi-host: explicit flags (num_processes > 1), else a Slurm srun step or a TPU pod is
    detected (research/distributed.py). Call before touching devices; says what it found."""
    from research import distributed

    found = distributed.initialize(coordinator, num_processes, process_id)
    if found.method != "none":
        print(f"distributed: {found.describe()}", file=sys.stderr)
