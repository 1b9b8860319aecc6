"""Load a sweep config file (`configs/sweeps/NAME.py[:ARG]`), apply overrides, check it.

A sweep config is an ml_collections file whose `get_config(arg)` returns a ConfigDict with:
  name, kind ("grid" | "isoflop" | "wsd" | "preference"), base (a configs/gpt.py trainer config),
  variants (LADDER names or (n_layers, d_model[, n_heads]) tuples), tokens, tokens_per_param,
  flops, learning_rates, variant_learning_rates, seeds, wsd.decay_fraction, runner.*,
  executor.*, analysis.*.
configs/sweep_base.py `default_sweep()` declares every key, so a sweep file only states what
differs and a misspelt override fails instead of being ignored.
"""

from __future__ import annotations

import math

import ml_collections

from configs import gpt
from configs.sweep_base import EXECUTORS, KINDS, PREFERENCE_POINT, SLURM_MODES
from experiments import cli
from experiments.sweeplib.errors import SweepError
from research.errors import ConfigError


def load(path_and_arg: str, overrides=(), *, example: str = "configs/sweeps/NAME.py"):
    """`configs/sweeps/NAME.py[:ARG]` and its `--config.KEY=VALUE` tokens -> the checked sweep
    ConfigDict (the command line's one override parser, typed: a misspelt key fails)."""
    config = cli.apply_overrides(cli.build_config(path_and_arg, example=example), list(overrides))
    check(config)
    return config


def check(c: ml_collections.ConfigDict) -> None:
    """Refuse malformed sweeps before anything runs (budgets are checked by plan.expand)."""
    if c.kind not in KINDS:
        raise SweepError(f"sweep kind {c.kind!r} is unknown; use one of {', '.join(KINDS)}")
    if c.kind == "preference" and "preference" not in c:
        raise SweepError("a preference sweep needs a preference section (a configs/preference.py "
                         "config); start from configs/sweeps/preference.py")
    if c.kind == "preference" and c.runner.train_fn != PREFERENCE_POINT:
        raise SweepError(f"a preference sweep runs its points with runner.train_fn="
                         f"{PREFERENCE_POINT}, not {c.runner.train_fn!r}")
    if not c.variants:
        raise SweepError("sweep has no variants; list LADDER names or (n_layers, d_model) tuples")
    for p in c.parametrizations:
        if p not in ("sp", "mup"):
            raise SweepError(f"parametrizations has {p!r}; use 'sp' and/or 'mup'")
    for name in c.schedules:
        if name not in ("cosine", "constant", "wsd"):
            raise SweepError(f"schedules has {name!r}; use 'cosine', 'constant' and/or 'wsd'")
    if c.schedules and c.kind != "grid":
        raise SweepError(f"schedules=(...) applies to grid sweeps, not kind {c.kind!r}; "
                         "a wsd sweep's schedules follow from its kind")
    if not c.seeds:
        raise SweepError("sweep has no seeds; set seeds=(0,)")
    variant_learning_rates(c)
    variant_tokens(c)
    if c.kind == "grid" and bool(c.tokens) == bool(c.tokens_per_param):
        raise SweepError("a grid sweep needs exactly one of tokens=(...) or tokens_per_param=(...)")
    if c.kind == "wsd" and not c.tokens:
        raise SweepError("a wsd sweep needs tokens=(...): the budgets its decay branches reach")
    if c.kind == "isoflop" and not c.flops:
        raise SweepError("an isoflop sweep needs flops=(...): its compute budgets C")
    if not 0.0 < float(c.wsd.decay_fraction) < 1.0:
        raise SweepError(f"wsd.decay_fraction={c.wsd.decay_fraction} must lie in (0, 1)")
    if int(c.runner.retries) < 0:
        raise SweepError("runner.retries must be >= 0")
    if int(c.runner.runs_per_child) < 0:
        raise SweepError("runner.runs_per_child must be >= 0 (0 = no limit, 1 = a process per run)")
    if int(c.runner.evals_per_run) < 1 or int(c.runner.checkpoints_per_run) < 1:
        raise SweepError("runner.evals_per_run and runner.checkpoints_per_run must be >= 1")
    if ":" not in c.runner.train_fn:
        raise SweepError(f"runner.train_fn={c.runner.train_fn!r} must read module:function")
    if c.executor.kind not in EXECUTORS:
        raise SweepError(f"executor {c.executor.kind!r} is unknown; use one of {', '.join(EXECUTORS)}")
    if int(c.executor.workers) < 1:
        raise SweepError("executor.workers must be >= 1")
    if c.executor.slurm.mode not in SLURM_MODES:
        raise SweepError(f"executor.slurm.mode {c.executor.slurm.mode!r} is unknown; use array or job_per_run")
    if c.analysis.params_column not in ("params", "nonembedding_params"):
        raise SweepError("analysis.params_column must be 'params' or 'nonembedding_params'")
    if int(c.analysis.bootstrap) < 0:
        raise SweepError("analysis.bootstrap must be >= 0")
    if c.analysis.get("x", "") not in ("", "params", "tokens", "flops"):
        raise SweepError(f"analysis.x {c.analysis.x!r} is unknown; use params, tokens, flops "
                         "or '' (the law's own variables)")
    if c.analysis.holdout_above_flops and c.analysis.holdout_above_params:
        raise SweepError("analysis.holdout_above_flops and analysis.holdout_above_params are "
                         "both set; choose one extrapolation check")


def _variant_table(table, key: str, what: str, example: str) -> list:
    """A per-variant table of a sweep config, {name: value} or ((name, value), ...) -> pairs;
    every name a string that appears once."""
    if hasattr(table, "items"):  # a dict (a ConfigDict in a sweep config)
        pairs = list(table.items())
    else:
        try:
            pairs = [(name, value) for name, value in table]
        except (TypeError, ValueError):
            raise SweepError(f"{key} must map variant names to {what}: {example}") from None
    names = [name for name, _ in pairs]
    for name in names:
        if not isinstance(name, str) or names.count(name) > 1:
            raise SweepError(f"{key}: {name!r} is not a variant name or appears twice; key it by "
                             "names such as '100k' or 'L2d48'")
    return pairs


def _variant_names(c, table_names, key: str) -> list:
    """The sweep's variant run names; SweepError if `table_names` holds any other name."""
    try:
        names = [gpt.variant_dims(v).name for v in c.variants]
    except ConfigError as e:
        raise SweepError(str(e)) from None
    extra = sorted(set(table_names) - set(names))
    if extra:
        raise SweepError(f"{key} names {', '.join(extra)}, not a variant of this "
                         f"sweep ({', '.join(names)}); remove or correct it")
    return names


def variant_learning_rates(c) -> dict:
    """`variant_learning_rates` as {variant run name: peak LR} ({} when unset), checked: one
    positive LR for every variant of the sweep and no other name, and no `learning_rates` grid."""
    table = c.variant_learning_rates
    if not table:
        return {}
    lrs = {}
    for name, lr in _variant_table(table, "variant_learning_rates", "LRs", '{"100k": 6e-3, ...} or (("100k", 6e-3), ...)'):
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
                math.isfinite(lr) and lr > 0):
            raise SweepError(f"variant_learning_rates[{name!r}]={lr!r}; it must be a positive number")
        lrs[name] = float(lr)
    if c.learning_rates:
        raise SweepError("variant_learning_rates and learning_rates are both set; use the grid "
                         "(one LR axis for every variant) or the per-variant table, not both")
    names = _variant_names(c, lrs, "variant_learning_rates")
    missing = [n for n in names if n not in lrs]
    if missing:
        raise SweepError(f"variant_learning_rates has no LR for variant {', '.join(missing)}; "
                         "give every variant of the sweep one")
    return lrs


def variant_tokens(c) -> dict:
    """`variant_tokens` as {variant run name: token budgets} ({} when unset): a grid's named
    variants train at these budgets instead of `tokens` (for example the largest size at its
    smallest budget only). Checked: grid sweeps only, known names, positive budgets."""
    table = c.get("variant_tokens")
    if not table:
        return {}
    if c.kind != "grid":
        raise SweepError(f"variant_tokens applies to grid sweeps, not kind {c.kind!r}")
    budgets = {}
    for name, tokens in _variant_table(table, "variant_tokens", "token budgets", '{"800k": (262144,)} or (("800k", (262144,)),)'):
        try:
            values = tuple(int(t) for t in tokens)
        except (TypeError, ValueError):
            values = ()
        if not values or min(values) < 1 or any(t != float(u) for t, u in zip(values, tokens)):
            raise SweepError(f"variant_tokens[{name!r}]={tokens!r}; it must be a tuple of positive "
                             "whole token budgets, e.g. (262144,)")
        budgets[name] = values
    _variant_names(c, budgets, "variant_tokens")
    return budgets
