"""Expand a sweep config into runs: grid, iso-FLOP, WSD parents and branches, seed replicates.

The sweep's base config is converted to a RunConfig once (at the command-line boundary); every
run's config is then built from it with `dataclasses.replace`: the variant by
configs/gpt.variant_config (the rule configs/gpt.py:VARIANT follows too), then the budget,
evaluation and checkpoint cadence from the run's own number of steps. A run's name is a readable
part plus its config hash (research.run_dir.config_hash, the `config_hash` of its result.json).
A WSD branch's `train.init_from` holds its parent's run name, resolved to the parent's directory
only when the run starts; the hash uses the name, so it is location-free. Steps, warmup and
decay boundaries and FLOPs come from research.run_math, the arithmetic the trainer uses.

Iso-FLOP matching: D is rounded to whole optimizer steps (batch x context tokens), so a run's
analytic FLOPs C' = steps * tokens_per_step * flops_per_token differ from the target C by at most
half a step: |C' - C| / C <= 1 / (2 * steps). `ISOFLOP_TOLERANCE` is the bound `expand` enforces.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from configs import gpt
from experiments import cli
from experiments.sweeplib.errors import SweepError
from experiments.sweeplib.spec import variant_learning_rates, variant_tokens
from research import flops as flops_lib, run_dir, run_math
from research.config import RunConfig
from research.errors import ConfigError

ISOFLOP_TOLERANCE = 0.05  # every iso-FLOP run's C within 5% of its budget (i.e. >= 10 steps)

ROLE_GRID, ROLE_ISOFLOP, ROLE_PARENT, ROLE_BRANCH = "grid", "isoflop", "wsd_parent", "wsd_branch"


@dataclasses.dataclass(eq=False)
class Run:
    name: str
    role: str
    variant: str
    seed: int
    config: RunConfig  # the trainer config; train.init_from resolved at start
    steps: int
    tokens: int  # D the run's result counts (a branch counts its parent's share too)
    flops: float  # analytic training compute of those tokens
    params: int
    nonembedding_params: int
    compute_budget: float = 0.0  # iso-FLOP target C
    depends_on: str = ""  # a WSD branch's parent run
    start_step: int = 0  # a WSD branch starts here, from the parent's checkpoint
    # What a non-trainer run does (a preference sweep's stage and its setting), handed to a
    # runner.train_fn that takes a `point` argument; {} for training runs.
    point: dict = dataclasses.field(default_factory=dict)

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
        return cls(**{**d, "config": run_dir.read_config(d["config"])})


def checked(build, *args, **changes):
    """`build(*args, **changes)` (dataclasses.replace, variant_config, variant_dims, run_config):
    a ConfigError (a budget under one step, heads not dividing the width, an unknown variant)
    is a sweep error."""
    try:
        return build(*args, **changes)
    except ConfigError as e:
        raise SweepError(str(e)) from None


def replace_train(cfg: RunConfig, **changes) -> RunConfig:
    return checked(dataclasses.replace, cfg, train=dataclasses.replace(cfg.train, **changes))


def tokens_per_step(cfg: RunConfig) -> int:
    return run_math.tokens_per_step(cfg.train, cfg.model)


def run_base(base: RunConfig, variant, seed: int, learning_rate: float | None) -> RunConfig:
    """A variant's config (configs/gpt.variant_config: its dimensions, name and LR) with the
    run's seed, and the sweep's LR where the sweep names one."""
    cfg = checked(gpt.variant_config, base, variant)
    lr = cfg.train.learning_rate if learning_rate is None else float(learning_rate)
    return dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, seed=int(seed), learning_rate=lr))


def human(x: float) -> str:
    """1_500_000 -> '1.5M', 2.5e13 -> '2.5e13' (file-name safe)."""
    if x >= 1e10:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _steps_for(tokens: float, c: RunConfig, what: str) -> int:
    steps = run_math.steps_for_tokens(tokens, c.train, c.model)
    if steps < 1:
        raise SweepError(
            f"{what}: budget of {int(tokens)} tokens is smaller than one optimizer step "
            f"({tokens_per_step(c)} tokens = batch {c.train.batch_size} x context "
            f"{c.model.context_length}); raise it"
        )
    return steps


def _make_run(role, c, steps, runner, readable, seed, *, budget=0.0, parent="", start=0) -> Run:
    """The run of `steps` steps; evaluation and checkpoints follow from its own length."""
    cfg = replace_train(
        c, tokens=steps * tokens_per_step(c),
        init_from=parent,  # the parent's name; the child resolves it to its directory
        eval_every=max(1, math.ceil((steps - start) / int(runner.evals_per_run))),
        checkpoint_every=max(1, math.ceil((steps - start) / int(runner.checkpoints_per_run))))
    counts = flops_lib.param_counts(cfg.model)
    name = f"{readable}-s{seed}-{run_dir.config_hash(cfg)}"
    return Run(
        name=name, role=role, variant=cfg.variant, seed=int(seed), config=cfg, steps=steps,
        tokens=cfg.train.tokens, flops=flops_lib.run_flops(cfg.model, cfg.train.tokens),
        params=counts["params"], nonembedding_params=counts["nonembedding_params"],
        compute_budget=float(budget), depends_on=parent, start_step=start,
    )


def expand(sweep) -> list[Run]:
    """All runs of the sweep, parents before their branches; raises SweepError on bad input."""
    if sweep.kind == "preference":  # post-training points, not training runs
        from experiments import preference_sweep
        return preference_sweep.points(sweep)
    lrs = tuple(sweep.learning_rates) or (None,)
    parametrizations = tuple(sweep.parametrizations) or (None,)
    schedules = tuple(sweep.get("schedules", ())) or (None,)
    runs: list[Run] = []
    for variant in sweep.variants:
        checked(gpt.variant_dims, variant)  # fail on an unknown variant before any budget message
    per_variant = variant_learning_rates(sweep)  # {} unless set; then one LR per variant
    budgets_of = variant_tokens(sweep)  # {} unless set; then these variants' own budgets
    sweep_base = checked(cli.run_config, sweep.base)  # the base as the trainer would see it
    if not sweep_base.log.wandb_group:  # W&B shows a sweep's runs together
        sweep_base = dataclasses.replace(
            sweep_base, log=dataclasses.replace(sweep_base.log, wandb_group=str(sweep.name)))
    for seed in sweep.seeds:
        for lr, p, schedule in itertools.product(lrs, parametrizations, schedules):
            lr_tag = f"-lr{lr:g}" if len(lrs) > 1 else ""
            lr_tag += f"-{p}" if len(parametrizations) > 1 else ""
            lr_tag += f"-{schedule}" if len(schedules) > 1 else ""
            shared = sweep_base
            if p is not None:  # before the variant: its LR rule depends on the parametrization
                shared = dataclasses.replace(
                    shared, model=dataclasses.replace(shared.model, parametrization=p))
            if schedule is not None:
                decay = float(sweep.wsd.decay_fraction) if schedule == "wsd" else \
                    shared.train.decay_fraction
                shared = replace_train(shared, schedule=schedule, decay_fraction=decay)
            for variant in sweep.variants:
                name = gpt.variant_dims(variant).name  # checked above
                base = run_base(shared, variant, seed, per_variant.get(name, lr))
                if sweep.kind == "grid":
                    runs += _grid(sweep, base, seed, lr_tag, budgets_of.get(name))
                elif sweep.kind == "isoflop":
                    runs += _isoflop(sweep, base, seed, lr_tag)
                else:
                    runs += _wsd(sweep, base, seed, lr_tag)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise SweepError("two runs of the sweep have the same config; remove duplicate variants or budgets")
    return runs


def _grid(sweep, base, seed, lr_tag, own_budgets=None) -> list[Run]:
    out = []
    params = flops_lib.param_counts(base.model)["params"]
    budgets = list(own_budgets or sweep.tokens) or [r * params for r in sweep.tokens_per_param]
    for tokens in budgets:
        steps = _steps_for(tokens, base, f"variant {base.variant}")
        readable = f"{base.variant}-D{human(steps * tokens_per_step(base))}{lr_tag}"
        out.append(_make_run(ROLE_GRID, base, steps, sweep.runner, readable, seed))
    return out


def _isoflop(sweep, base, seed, lr_tag) -> list[Run]:
    out = []
    per_step = run_math.flops_per_step(base)
    for budget in sweep.flops:
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
        out.append(_make_run(ROLE_ISOFLOP, base, steps, sweep.runner, readable, seed, budget=budget))
    return out


def _wsd(sweep, base, seed, lr_tag) -> list[Run]:
    """One constant-LR parent per model; each budget D a branch decaying over its last fraction."""
    f = float(sweep.wsd.decay_fraction)
    branch_steps = sorted({_steps_for(t, base, f"variant {base.variant}") for t in sweep.tokens})
    starts = {s: run_math.decay_start(f, s) for s in branch_steps}
    parent_steps = max(starts.values())
    # One warmup for the whole family, so a branch's LR up to its start equals the parent's.
    warmup = run_math.warmup_steps(base.train, parent_steps)
    base = replace_train(base, warmup_steps=warmup)
    for s, start in starts.items():
        if start < warmup:
            raise SweepError(
                f"variant {base.variant}: the {s}-step branch would start decaying at step {start}, "
                f"inside the family's {warmup}-step warmup; raise the smallest budget or lower "
                "base.train.warmup_fraction"
            )
    parent = replace_train(base, schedule="constant", keep_steps=tuple(sorted(set(starts.values()))))
    parent_run = _make_run(ROLE_PARENT, parent, parent_steps, sweep.runner, f"{base.variant}-wsdparent{lr_tag}", seed)
    out = [parent_run]
    for s, start in starts.items():
        c = replace_train(base, schedule="wsd", decay_fraction=f, init_step=start)
        readable = f"{base.variant}-D{human(s * tokens_per_step(c))}-wsd{lr_tag}"
        out.append(
            _make_run(ROLE_BRANCH, c, s, sweep.runner, readable, seed, parent=parent_run.name, start=start)
        )
    return out
