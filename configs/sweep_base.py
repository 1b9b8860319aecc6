"""Every key a sweep config may set, with its default: `configs/sweeps/*.py` start from
`default_sweep()` and state what differs (experiments/sweeplib/spec.py loads and checks them).

A sweep config's `get_config(arg)` returns a ConfigDict with:
  name, kind ("grid" | "isoflop" | "wsd" | "preference"), base (a configs/gpt.py trainer config),
  variants (LADDER names or (n_layers, d_model[, n_heads]) tuples), tokens, tokens_per_param,
  flops, learning_rates, variant_learning_rates, seeds, wsd.decay_fraction, runner.*,
  executor.*, analysis.*.
"""

import ml_collections

from configs import gpt

# "preference": post-training points (configs/sweeps/preference.py), not training runs.
KINDS = ("grid", "isoflop", "wsd", "preference")
EXECUTORS = ("local", "slurm")
SLURM_MODES = ("array", "job_per_run")
TRAINER = "research.train:train"
PREFERENCE_POINT = "experiments.preference_sweep:train_point"  # a preference sweep's train_fn


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
    # A peak LR per variant, keyed by the variant's run name ("100k", "L2d48" for (2, 48)):
    # {"L2d48": 1.2e-2, "100k": 6e-3}, or ((name, lr), ...) pairs (needed for a name with a dot,
    # such as "1.5m": ConfigDict keys cannot hold one). Every variant needs an entry, and no
    # other name may appear; not together with learning_rates. None = off (base LR or the grid).
    c.variant_learning_rates = None
    # Grid only: budgets for named variants instead of `tokens`, {"800k": (262_144,)} or
    # (("800k", (262_144,)),), e.g. the held-out largest size at its cheapest budget alone.
    c.variant_tokens = None
    c.parametrizations = ()  # "sp" / "mup"; empty = the base config's model.parametrization
    # Grid only: every run once per LR schedule, "cosine", "constant" or "wsd" (decaying over
    # the last wsd.decay_fraction of its own steps, from scratch); empty = base.train.schedule.
    c.schedules = ()
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
    # JAX persistent compilation cache (a resumed or retried run, or a run of a shape compiled
    # before, skips compilation): a folder relative to the sweep dir, or "" for the user-wide
    # cache (~/.cache/scaling_lab/jax-cache, research/compile_cache.py) that sweeps and single
    # runs share. An already set JAX_COMPILATION_CACHE_DIR in the environment wins.
    r.compile_cache = ""
    # Runs trained one after another in one child process (imports, data and compiled steps stay
    # warm); 1 = a fresh process per run, 0 = no limit. A crash or failure still costs one run.
    r.runs_per_child = 32
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
    a.x = ""  # the variable of a one-variable law (power/kaplan): params, tokens or flops
    a.bootstrap = 200
    a.params_column = "params"  # N of the law: "params" (total) or "nonembedding_params"
    # Extrapolation check (0 = off): also fit without the runs above this compute, or without
    # the models above this N, and report how well that fit predicts them.
    a.holdout_above_flops = 0.0
    a.holdout_above_params = 0.0
    # --law schedule only (fitted to every curve point of every run, from the run directories):
    # fit without the runs of this schedule and predict their final losses ("" = off).
    a.holdout_schedule = ""
    return c
