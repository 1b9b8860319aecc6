"""Load a sweep config file (`configs/sweeps/NAME.py[:ARG]`), apply overrides, check it.

A sweep config is an ml_collections file whose `get_config(arg)` returns a ConfigDict with:
  name, kind ("grid" | "isoflop" | "wsd"), base (a configs/gpt.py trainer config),
  variants (LADDER names or (n_layers, d_model[, n_heads]) tuples), tokens, tokens_per_param,
  flops, learning_rates, seeds, wsd.decay_fraction, runner.*, executor.*, analysis.*.
`default_sweep()` declares every key, so a sweep file only states what differs and a misspelt
override fails instead of being ignored.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os

import ml_collections

from configs import gpt
from experiments.sweeplib.errors import SweepError

KINDS = ("grid", "isoflop", "wsd")
EXECUTORS = ("local", "slurm")
SLURM_MODES = ("array", "job_per_run")
TRAINER = "research.train:train"


def default_sweep() -> ml_collections.ConfigDict:
    """Every key a sweep config may set, with defaults."""
    c = ml_collections.ConfigDict()
    c.name = "sweep"
    c.kind = "grid"
    c.base = gpt.base_config()
    c.variants = ("100k", "300k")
    c.tokens = ()  # grid / wsd: token budgets D
    c.tokens_per_param = ()  # grid alternative: D = r * params, per model
    c.flops = ()  # isoflop: compute budgets C (analytic training FLOPs)
    c.learning_rates = ()  # empty = the base config's learning rate
    c.seeds = (0,)

    c.wsd = ml_collections.ConfigDict()
    c.wsd.decay_fraction = 0.2  # of each branch's own steps

    c.runner = r = ml_collections.ConfigDict()
    r.retries = 1  # extra attempts after a crash (divergence and config errors are final)
    r.evals_per_run = 2  # evaluations spread over a run, plus the final one
    r.checkpoints_per_run = 4  # a kill loses at most this fraction of a run
    r.heartbeat_s = 15.0  # claim refresh period
    r.claim_timeout_s = 180.0  # a claim from another host not refreshed this long is stale
    r.poll_s = 1.0  # how often an idle worker looks for runnable runs
    # JAX persistent compilation cache shared by the sweep's runs (a resumed or retried run, or a
    # same-shape run, skips compilation); relative to the sweep dir; "" = off. An already set
    # JAX_COMPILATION_CACHE_DIR in the environment wins.
    r.compile_cache = "state/jax_cache"
    r.train_fn = TRAINER  # module:function with the trainer's contract

    c.executor = e = ml_collections.ConfigDict()
    e.kind = "local"
    e.workers = 1  # local: parallel worker threads; slurm array: jobs in the array
    # What one run gets. Local: one process per run, devices_per_task of this machine's devices
    # (0 = an even split among the workers). Slurm: nodes x tasks_per_node processes launched
    # with srun, devices_per_task GPUs each (0 = none requested).
    e.resources = res = ml_collections.ConfigDict()
    res.nodes = 1
    res.tasks_per_node = 1
    res.devices_per_task = 0
    e.slurm = s = ml_collections.ConfigDict()
    s.mode = "array"  # "array": workers pull runs; "job_per_run": one job each (+dependencies)
    s.partition = ""
    s.time_min = 120
    s.gpus_per_node = 0
    s.cpus_per_task = 4
    s.mem_gb = 16
    s.account = ""
    s.qos = ""
    s.constraint = ""
    s.array_parallelism = 64

    c.analysis = a = ml_collections.ConfigDict()
    a.enabled = True
    a.law = "chinchilla"
    a.bootstrap = 200
    a.params_column = "params"  # N of the law: "params" (total) or "nonembedding_params"
    # Extrapolation check (0 = off): also fit without the runs above this compute, or without
    # the models above this N, and report how well that fit predicts them.
    a.holdout_above_flops = 0.0
    a.holdout_above_params = 0.0
    return c


def load(path_and_arg: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """`configs/sweeps/NAME.py[:ARG]` -> checked ConfigDict, with `key.path=value` overrides."""
    path, _, arg = path_and_arg.partition(":")
    if not os.path.isfile(path):
        raise SweepError(f"sweep config {path!r} not found; pass --config configs/sweeps/NAME.py")
    module_name = "_sweep_config_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise SweepError(f"{path} has no get_config(arg); define one returning the sweep ConfigDict")
    config = module.get_config(arg) if arg else module.get_config()
    for item in overrides:
        apply_override(config, item)
    check(config)
    return config


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    """`executor.workers=2` -> config.executor.workers = 2 (the key must exist)."""
    key, sep, text = item.partition("=")
    if not sep:
        raise SweepError(f"override {item!r} is not KEY=VALUE; write e.g. executor.workers=2")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare string such as slurm partition names
    *parents, leaf = key.strip().split(".")
    node = config
    try:
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise KeyError(leaf)
        node[leaf] = value
    except (KeyError, AttributeError, TypeError) as e:
        raise SweepError(f"cannot set {key!r} to {value!r} ({e}); check the key in the sweep config") from None


def check(c: ml_collections.ConfigDict) -> None:
    """Refuse malformed sweeps before anything runs (budgets are checked by plan.expand)."""
    if c.kind not in KINDS:
        raise SweepError(f"sweep kind {c.kind!r} is unknown; use one of {', '.join(KINDS)}")
    if not c.variants:
        raise SweepError("sweep has no variants; list LADDER names or (n_layers, d_model) tuples")
    if not c.seeds:
        raise SweepError("sweep has no seeds; set seeds=(0,)")
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
    if c.analysis.holdout_above_flops and c.analysis.holdout_above_params:
        raise SweepError("analysis.holdout_above_flops and analysis.holdout_above_params are "
                         "both set; choose one extrapolation check")
