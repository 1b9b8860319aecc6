"""Expand a sweep config into runs: grid, iso-FLOP, WSD parents and branches, seed replicates.

Every run gets its own trainer config (a configs/gpt.py ConfigDict) whose budget, evaluation and
checkpoint cadence follow from its own number of steps, and a deterministic name: a readable part
plus the trainer's config hash (research.run_math.config_hash, the `config_hash` of its
result.json). A WSD branch's `train.init_from` holds its parent's run name, resolved to the
parent's directory only when the run starts; the hash uses the name, so it is location-free.
Steps, warmup and decay boundaries, variant dimensions and FLOPs all come from research.run_math,
the same arithmetic the trainer uses.

Iso-FLOP matching: D is rounded to whole optimizer steps (batch x context tokens), so a run's
analytic FLOPs C' = steps * tokens_per_step * flops_per_token differ from the target C by at most
half a step: |C' - C| / C <= 1 / (2 * steps). `ISOFLOP_TOLERANCE` is the bound `expand` enforces.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import ml_collections

from configs import gpt
from experiments.sweeplib.errors import SweepError
from experiments.sweeplib.spec import variant_learning_rates
from research import flops as flops_lib, run_math
from research.config import RunConfig
from research.config_checks import ConfigError

ISOFLOP_TOLERANCE = 0.05  # every iso-FLOP run's C within 5% of its budget (i.e. >= 10 steps)

ROLE_GRID, ROLE_ISOFLOP, ROLE_PARENT, ROLE_BRANCH = "grid", "isoflop", "wsd_parent", "wsd_branch"


@dataclasses.dataclass(eq=False)
class Run:
    name: str
    role: str
    variant: str
    seed: int
    config: ml_collections.ConfigDict  # the trainer config; train.init_from resolved at start
    steps: int
    tokens: int  # D the run's result counts (a branch counts its parent's share too)
    flops: float  # analytic training compute of those tokens
    params: int
    nonembedding_params: int
    compute_budget: float = 0.0  # iso-FLOP target C
    depends_on: str = ""  # a WSD branch's parent run
    start_step: int = 0  # a WSD branch starts here, from the parent's checkpoint

    @property
    def steps_to_train(self) -> int:
        return self.steps - self.start_step

    @property
    def is_data_point(self) -> bool:
        """A parent's constant-LR loss is not a converged point of the law; its branches are."""
        return self.role != ROLE_PARENT

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["config"] = self.config.to_dict()
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Run":
        d = dict(d)
        d["config"] = ml_collections.ConfigDict(_tuples(d["config"]))
        return cls(**d)


def _tuples(x):
    """JSON turns the config's tuples (keep_steps, mesh rules) into lists; turn them back."""
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    return x


def variant_dims(variant) -> run_math.Dims:
    """A LADDER name or (n_layers, d_model[, n_heads]) -> (name, n_layers, d_model, n_heads)."""
    try:
        return run_math.resolve_variant(variant, gpt.LADDER)
    except ConfigError as e:
        raise SweepError(str(e)) from None


def typed(config) -> RunConfig:
    """The trainer's typed view of a run config; a config it refuses is a sweep error."""
    try:
        return RunConfig.from_configdict(config)
    except ConfigError as e:
        raise SweepError(str(e)) from None


def tokens_per_step(config) -> int:
    cfg = typed(config)
    return run_math.tokens_per_step(cfg.train, cfg.model)


def model_config(base, variant, seed: int, learning_rate: float | None) -> ml_collections.ConfigDict:
    name, n_layers, d_model, n_heads = variant_dims(variant)
    c = copy.deepcopy(base)
    c.variant = name
    c.model.n_layers, c.model.d_model, c.model.n_heads = n_layers, d_model, n_heads
    c.train.seed = int(seed)
    if learning_rate is not None:
        c.train.learning_rate = float(learning_rate)
    return c


def config_hash(config) -> str:
    """The trainer's own hash (research.run_math): a run's name ends with its result.json's
    config_hash. A branch's train.init_from holds its parent's run name here."""
    return run_math.config_hash(typed(config))


def human(x: float) -> str:
    """1_500_000 -> '1.5M', 2.5e13 -> '2.5e13' (file-name safe)."""
    if x >= 1e10:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _cadence(c, steps: int, runner) -> None:
    """Evaluation and checkpoints follow from the run's own length."""
    c.train.eval_every = max(1, math.ceil(steps / int(runner.evals_per_run)))
    c.train.checkpoint_every = max(1, math.ceil(steps / int(runner.checkpoints_per_run)))


def _steps_for(tokens: float, c, what: str) -> int:
    cfg = typed(c)
    tps = run_math.tokens_per_step(cfg.train, cfg.model)
    steps = run_math.steps_for_tokens(tokens, cfg.train, cfg.model)
    if steps < 1:
        raise SweepError(
            f"{what}: budget of {int(tokens)} tokens is smaller than one optimizer step "
            f"({tps} tokens = batch {c.train.batch_size} x context {c.model.context_length}); raise it"
        )
    return steps


def _make_run(role, c, steps, runner, readable, seed, *, budget=0.0, parent="", start=0) -> Run:
    c.train.tokens = steps * tokens_per_step(c)
    c.train.init_from = parent  # the parent's name; the child resolves it to its directory
    _cadence(c, steps - start, runner)
    cfg = typed(c)
    counts = flops_lib.param_counts(cfg.model)
    name = f"{readable}-s{seed}-{run_math.config_hash(cfg)}"
    return Run(
        name=name, role=role, variant=c.variant, seed=int(seed), config=c, steps=steps,
        tokens=cfg.train.tokens, flops=run_math.run_flops(cfg.model, cfg.train.tokens),
        params=counts["params"], nonembedding_params=counts["nonembedding_params"],
        compute_budget=float(budget), depends_on=parent, start_step=start,
    )


def expand(sweep) -> list[Run]:
    """All runs of the sweep, parents before their branches; raises SweepError on bad input."""
    lrs = tuple(sweep.learning_rates) or (None,)
    parametrizations = tuple(sweep.parametrizations) or (None,)
    schedules = tuple(sweep.get("schedules", ())) or (None,)
    runs: list[Run] = []
    for variant in sweep.variants:
        variant_dims(variant)  # fail on an unknown variant before any budget message
    per_variant = variant_learning_rates(sweep)  # {} unless set; then one LR per variant
    for seed in sweep.seeds:
        for lr, p, schedule in itertools.product(lrs, parametrizations, schedules):
            lr_tag = f"-lr{lr:g}" if len(lrs) > 1 else ""
            lr_tag += f"-{p}" if len(parametrizations) > 1 else ""
            lr_tag += f"-{schedule}" if len(schedules) > 1 else ""
            for variant in sweep.variants:
                base = model_config(sweep.base, variant, seed,
                                    per_variant.get(variant_dims(variant).name, lr))
                if p is not None:
                    base.model.parametrization = p
                if "log" in base and not base.log.get("wandb_group", ""):
                    base.log.wandb_group = str(sweep.name)  # W&B shows a sweep's runs together
                if schedule is not None:
                    base.train.schedule = schedule
                    if schedule == "wsd":
                        base.train.decay_fraction = float(sweep.wsd.decay_fraction)
                if sweep.kind == "grid":
                    runs += _grid(sweep, base, seed, lr_tag)
                elif sweep.kind == "isoflop":
                    runs += _isoflop(sweep, base, seed, lr_tag)
                else:
                    runs += _wsd(sweep, base, seed, lr_tag)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise SweepError("two runs of the sweep have the same config; remove duplicate variants or budgets")
    return runs


def _grid(sweep, base, seed, lr_tag) -> list[Run]:
    out = []
    params = flops_lib.param_counts(base.model)["params"]
    budgets = list(sweep.tokens) or [r * params for r in sweep.tokens_per_param]
    for tokens in budgets:
        c = copy.deepcopy(base)
        steps = _steps_for(tokens, c, f"variant {base.variant}")
        readable = f"{base.variant}-D{human(steps * tokens_per_step(c))}{lr_tag}"
        out.append(_make_run(ROLE_GRID, c, steps, sweep.runner, readable, seed))
    return out


def _isoflop(sweep, base, seed, lr_tag) -> list[Run]:
    out = []
    per_step = run_math.flops_per_step(typed(base))
    for budget in sweep.flops:
        c = copy.deepcopy(base)
        steps = run_math.nearest_step(float(budget) / per_step)
        if steps < 1:
            raise SweepError(
                f"variant {base.variant}: compute budget C={budget:.3g} is smaller than one optimizer "
                f"step ({per_step:.3g} FLOPs); raise the budget or drop the variant"
            )
        mismatch = abs(steps * per_step - budget) / budget
        if mismatch > ISOFLOP_TOLERANCE:
            raise SweepError(
                f"variant {base.variant} at C={budget:.3g}: {steps} whole steps miss the budget by "
                f"{mismatch:.1%} (> {ISOFLOP_TOLERANCE:.0%}); raise C or use a smaller batch"
            )
        readable = f"{base.variant}-C{human(budget)}{lr_tag}"
        out.append(_make_run(ROLE_ISOFLOP, c, steps, sweep.runner, readable, seed, budget=budget))
    return out


def _wsd(sweep, base, seed, lr_tag) -> list[Run]:
    """One constant-LR parent per model; each budget D a branch decaying over its last fraction."""
    f = float(sweep.wsd.decay_fraction)
    branch_steps = sorted({_steps_for(t, base, f"variant {base.variant}") for t in sweep.tokens})
    starts = {s: run_math.decay_start(f, s) for s in branch_steps}
    parent_steps = max(starts.values())
    # One warmup for the whole family, so a branch's LR up to its start equals the parent's.
    warmup = run_math.warmup_steps(typed(base).train, parent_steps)
    base = copy.deepcopy(base)
    base.train.warmup_steps = warmup
    for s, start in starts.items():
        if start < warmup:
            raise SweepError(
                f"variant {base.variant}: the {s}-step branch would start decaying at step {start}, "
                f"inside the family's {warmup}-step warmup; raise the smallest budget or lower "
                "base.train.warmup_fraction"
            )
    parent = copy.deepcopy(base)
    parent.train.schedule = "constant"
    parent.train.keep_steps = tuple(sorted(set(starts.values())))
    parent_run = _make_run(ROLE_PARENT, parent, parent_steps, sweep.runner, f"{base.variant}-wsdparent{lr_tag}", seed)
    out = [parent_run]
    for s, start in starts.items():
        c = copy.deepcopy(base)
        c.train.schedule = "wsd"
        c.train.decay_fraction = f
        c.train.init_step = start
        readable = f"{base.variant}-D{human(s * tokens_per_step(c))}-wsd{lr_tag}"
        out.append(
            _make_run(ROLE_BRANCH, c, s, sweep.runner, readable, seed, parent=parent_run.name, start=start)
        )
    return out
