"""The main job: 7 model sizes on the embedded Shakespeare corpus, every run a 16-point loss
curve, and the schedule law fitted to every curve point (docs/schedule-law.md). Sized to finish
in about 10 minutes on 2 CPU cores (a quiet machine, from a fresh clone, `pip install`
included), compilation included, then the fit.

  python -m experiments.sweep run --config configs/sweeps/default.py --workdir sweeps/default

Why this shape (docs/default-job.md has the measured candidates): at these sizes the loss
differs far more across budgets than across sizes, so the N term needs a wide N range: 1.8k to
793k non-embedding parameters (450x). The small end is what pins alpha, and it is cheap: the
five sizes up to 100k train at all three budgets (128 to 512 steps; each curve adds the points
in between). The two largest sizes cost the most per step, so they train only at their cheaper
budgets: 335k at two, and 793k at one, held out (the law fitted on the smaller sizes predicts
it). The largest budget is under a quarter of an epoch of the corpus, so no token is seen twice.
"""

from configs.sweep_base import default_sweep


def get_config(arg: str = ""):
    s = default_sweep()
    s.name = "default"
    s.kind = "grid"
    s.base.model.context_length = 128
    # Rotary positions: with learned absolute ones these small byte-level models sit on a
    # plateau near 2.55 nats for the first ~400 steps, so short runs measure optimization,
    # not capacity (the fit then puts E at 0 and leaves alpha unconstrained).
    s.base.model.position = "rope"
    s.base.train.batch_size = 16
    # µP with the LR transferred from its 32-wide base (docs/mup.md): against one shared SP LR
    # (3e-3) it lowers every run's loss and predicts held-out sizes better (docs/default-job.md).
    s.base.model.parametrization = "mup"
    s.base.train.learning_rate = 6e-3
    # Every run is a curve of 16 evenly spaced points, each on the same 2 batches of 16
    # windows (points of one curve are comparable). The final evaluation (result.json's loss)
    # uses 32 batches, 512 of the validation split's 3,332 disjoint windows of 128 tokens:
    # stderr about 0.5% of the loss, at most a tenth of the shortest run's training time.
    s.base.train.eval_points = 0  # no log-spaced points: the first ~60 steps are a plateau
    s.base.train.eval_batches = 2
    s.base.train.final_eval_batches = 32
    # 1.8k to 793k non-embedding parameters; (n_layers, d_model[, n_heads]) or ladder names.
    s.variants = ((2, 8), (2, 16), (2, 32), (2, 48), "100k", "300k", "800k")
    s.tokens = (262_144, 524_288, 1_048_576)  # 128 to 512 steps of 16 x 128 tokens
    # The two largest sizes at their cheaper budgets only: 300k's 1.05M-token run would cost as
    # much as the five smallest sizes' runs together, and the held-out 793k needs one run.
    s.variant_tokens = {"300k": (262_144, 524_288), "800k": (262_144,)}
    s.runner.evals_per_run = 16
    s.runner.checkpoints_per_run = 4
    s.analysis.law = "schedule"
    # Embeddings are most of the smallest models; the law in non-embedding N is the cleaner one.
    s.analysis.params_column = "nonembedding_params"
    s.analysis.bootstrap = 1000
    # Can the law be trusted? Fit the six smaller sizes, predict the 793k model's run.
    s.analysis.holdout_above_params = 400_000
    return s
