"""Post-training configs: `python -m experiments.preference --config configs/preference.py:ARG`.

  smoke  the whole pipeline at a small scale on the embedded corpus (a ~100k-parameter model,
         a few minutes on 2 CPU cores): pretrain, SFT, pairs, 2 reward models, best-of-n, DPO.
  sweep  the over-optimisation sweep: reward models on 4 training-set sizes x n up to 128, and
         DPO at 5 values of beta (a larger version of the smoke run). In one process here;
         configs/sweeps/preference.py:sweep runs the same stages as sweep-runner points.

Every key can be overridden (`--config.dpo.betas=0.1,0.3`); `pretrain` is a configs/gpt.py run
config, used only when `pretrain_run` does not name an existing run to start from.
"""

import ml_collections

from configs import gpt

VARIANTS = ("smoke", "sweep")


def _stage(**kw):
    base = dict(steps=100, batch_size=32, learning_rate=1e-3, warmup_steps=10, weight_decay=0.0,
                grad_clip=1.0, seed=0, checkpoint_every=100, log_every=10)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def get_config(arg: str = "smoke") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = arg
    pre = gpt.get_config("100k")
    pre.model.context_length = 128
    pre.model.position = "rope"
    pre.train.batch_size = 16
    pre.train.tokens = 128 * 16 * 400  # 400 steps
    pre.train.eval_batches = 4
    pre.train.checkpoint_every = 400
    c.pretrain = pre
    c.pretrain_run = ""  # an existing run directory to start from instead of pretraining
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.prompts = ml_collections.ConfigDict(dict(
        prompt_tokens=32, response_tokens=48, sft_examples=2000, pair_prompts=512,
        heldout_prompts=256, eval_prompts=48, seed=0))
    # gold = -((vowel share - peak) / width)^2; pairs labelled with P = sigmoid(dgold / T).
    c.gold = ml_collections.ConfigDict(dict(peak=0.41, width=0.05, temperature=0.5, seed=0))
    c.sft = _stage(data="", steps=60, learning_rate=1e-3)
    c.pairs = ml_collections.ConfigDict(dict(train_file="", heldout_file=""))
    c.reward_model = _stage(train_pairs=(64, 512), steps=100, batch_size=16, learning_rate=3e-4,
                            head_lr_multiplier=30.0)
    c.best_of_n = ml_collections.ConfigDict(dict(max_n=32, samples=32, seed=0))
    c.dpo = _stage(betas=(0.1, 0.03, 1.0), steps=60, batch_size=16, learning_rate=3e-5,
                   samples_per_prompt=8)
    c.fit = ml_collections.ConfigDict(dict(bootstrap=200, seed=0))
    if arg == "sweep":
        pre.train.tokens = 128 * 16 * 1500
        pre.train.checkpoint_every = 500
        c.prompts.pair_prompts = 2048
        c.prompts.eval_prompts = 256
        c.reward_model.train_pairs = (64, 256, 1024, 2048)
        c.reward_model.steps = 400
        c.best_of_n.max_n = 128
        c.best_of_n.samples = 256
        c.dpo.betas = (0.01, 0.03, 0.1, 0.3, 1.0)
        c.dpo.steps = 300
        c.fit.bootstrap = 1000
    return c
