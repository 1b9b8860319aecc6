"""The post-training stages, each reading and writing files in one directory:

  data          prompts and SFT examples cut from the pretraining corpus     data/*.jsonl
  sft           supervised fine-tuning on prompt/response JSONL              sft/
  pairs         the SFT policy's samples, labelled by the gold reward        data/pairs_*.jsonl
  reward_model  one Bradley-Terry reward model per training-set size        rm_<pairs>/
  best_of_n     best-of-n with every reward model, gold and proxy measured   best_of_n.json
  dpo           DPO against the frozen SFT policy, one run per beta         dpo_beta<b>/

A stage that finished (its result.json exists) is read back rather than run again, and a stage
interrupted mid-training resumes from its checkpoint. data/ and sft/ live in the context's
`shared_dir` (the workdir itself unless told otherwise): a sweep's reward-model and DPO points
each write their own directory and read the one they share (experiments/preference_sweep.py).
`config` is the ConfigDict of configs/preference.py (the pretraining section is the command's
business, not this module's).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from common import files
from research import checkpoint, sharding
from research.data import batches as data_lib
from research.data import tokenizer as tokenizer_lib
from research.config import DEFAULT_RULES, MeshConfig
from research.errors import UserError
from research.model import GPT
from research.posttrain import best_of_n as bon, gold, losses, models, records, sampling, trainer

STAGES = ("data", "sft", "pairs", "reward_model", "best_of_n", "dpo")


class StageError(UserError):
    """A stage's inputs are missing; the message names the stage to run first."""


@dataclasses.dataclass
class Context:
    config: object
    workdir: str
    model_cfg: object
    run_cfg: object
    tokenizer: object
    pretrained_dir: str
    base_params: object
    mesh: object
    rules: object
    gpt_shardings: object
    say: object
    shared_dir: str = ""  # holds data/ and sft/; "" = workdir

    def path(self, *parts) -> str:
        return os.path.join(self.workdir, *parts)

    def shared(self, *parts) -> str:
        """A path under the directory of the shared stages (data, SFT, pairs)."""
        return os.path.join(self.shared_dir or self.workdir, *parts)


def setup(config, workdir: str, pretrained_dir: str, say=print, shared_dir: str = "") -> Context:
    """The pretrained run's model, parameters and tokenizer, and the stages' mesh; `shared_dir`
    holds data/ and sft/ when they are not in `workdir`."""
    run_cfg, params = checkpoint.load_for_inference(pretrained_dir)
    tok = tokenizer_lib.load_tokenizer(pretrained_dir, run_cfg.data)
    m = config.mesh
    mesh_cfg = MeshConfig(data=m.data, fsdp=m.fsdp, tensor=m.tensor, rules=DEFAULT_RULES)
    mesh = sharding.make_mesh(mesh_cfg)
    rules = sharding.rules_of(mesh_cfg)
    shardings = trainer.gpt_shardings(run_cfg.model, mesh, rules)
    os.makedirs(workdir, exist_ok=True)
    return Context(config, workdir, run_cfg.model, run_cfg, tok, pretrained_dir, params, mesh,
                   rules, shardings, say, shared_dir)


# ---------------------------------------------------------------- data


def _windows(tokens, tokenizer, n: int, prompt_len: int, response_len: int, seed: int):
    """n (prompt, response) texts from random windows of a token stream with no document end."""
    rng = np.random.default_rng(seed)
    out, width, tries = [], prompt_len + response_len, 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:
            raise StageError(f"the corpus has too few windows of {width} tokens without a "
                             "document end; shorten prompts.prompt_tokens/response_tokens")
        start = int(rng.integers(0, len(tokens) - width))
        window = np.asarray(tokens[start:start + width])
        if np.any(window == tokenizer.eod_id):
            continue
        out.append((tokenizer.decode(window[:prompt_len]), tokenizer.decode(window[prompt_len:])))
    return out


def stage_data(ctx: Context) -> None:
    """SFT examples and prompts from the pretraining corpus: training prompts from its train
    split, held-out and evaluation prompts from its validation split (disjoint draws)."""
    p = ctx.config.prompts
    data = data_lib.load_token_data(ctx.run_cfg.data, ctx.pretrained_dir,
                                    vocab_size=ctx.model_cfg.vocab_size, progress=False)
    lengths = (p.prompt_tokens, p.response_tokens)
    sft = _windows(data.train, ctx.tokenizer, p.sft_examples, *lengths, seed=p.seed)
    train = _windows(data.train, ctx.tokenizer, p.pair_prompts, *lengths, seed=p.seed + 1)
    val = _windows(data.val, ctx.tokenizer, p.heldout_prompts + p.eval_prompts, *lengths,
                   seed=p.seed + 2)
    os.makedirs(ctx.shared("data"), exist_ok=True)
    records.write_jsonl(ctx.shared("data", "sft.jsonl"),
                        [{"prompt": a, "response": b} for a, b in sft])
    for name, rows in (("pair_prompts", train), ("heldout_prompts", val[:p.heldout_prompts]),
                       ("eval_prompts", val[p.heldout_prompts:])):
        records.write_jsonl(ctx.shared("data", f"{name}.jsonl"), [{"prompt": a} for a, _ in rows])


def _prompts(ctx, name):
    path = ctx.shared("data", f"{name}.jsonl")
    if not os.path.isfile(path):
        raise StageError(f"{path} is missing; run the data stage first (--stages data)")
    return [r["prompt"] for r in records.read_jsonl(path, ("prompt",))]


def _prompt_ids(ctx, prompts):
    return [np.asarray(ctx.tokenizer.encode(p), np.int32) for p in prompts]


# ---------------------------------------------------------------- training stages


def _finished(path: str):
    return files.read_json(os.path.join(path, "result.json"), default=None)


def _stage_cfg(section):
    return trainer.StageConfig.from_config(section)


def _chunk(ctx) -> int:
    """Rows per forward pass when scoring (a multiple of the data-parallel size)."""
    return 256 * sharding.data_parallel_size(ctx.mesh, ctx.rules)


@functools.lru_cache(maxsize=None)  # one function per model: its compiled step is reused
def sft_loss_fn(model_cfg):
    def loss_fn(params, frozen, batch):
        del frozen
        logits, _ = GPT(model_cfg).apply({"params": params}, batch["inputs"])
        return losses.masked_nll(logits, batch["targets"], batch["target_mask"]), {}
    return loss_fn


def stage_sft(ctx: Context, run: bool = True):
    """SFT parameters (trained, or read back when sft/result.json exists)."""
    out = ctx.shared("sft")
    c = ctx.config.sft
    if _finished(out) is not None:
        return trainer.load_final(out, ctx.base_params, ctx.gpt_shardings)
    if not run:
        raise StageError(f"{out} holds no finished SFT run; run the sft stage first (--stages sft)")
    path = c.data or ctx.shared("data", "sft.jsonl")
    recs = records.read_jsonl(path, records.SFT_FIELDS)
    held = max(1, len(recs) // 20)
    train, heldout = recs[held:], recs[:held]
    enc = records.encode(ctx.tokenizer, train, "response", ctx.model_cfg.context_length)
    rows = enc.rows(slice(None))
    loss_fn = sft_loss_fn(ctx.model_cfg)
    params = trainer.train(out, _stage_cfg(c), ctx.base_params, ctx.gpt_shardings, loss_fn, rows,
                           ctx.mesh, ctx.rules, say=ctx.say)
    held_rows = records.encode(ctx.tokenizer, heldout, "response",
                               ctx.model_cfg.context_length).rows(slice(None))
    before, after = (_mean_nll(ctx, p, held_rows) for p in (ctx.base_params, params))
    files.write_json(os.path.join(out, "result.json"), {
        "data": path, "examples": len(train), "heldout_examples": len(heldout),
        "truncated_responses": enc.truncated, "steps": c.steps,
        "heldout_loss_before": before, "heldout_loss": after})
    return params


@functools.lru_cache(maxsize=None)
def _nll_fn(cfg):
    def fn(params, frozen, batch):
        lp = models.policy_token_logprobs(cfg, params, batch)
        return jnp.stack([-jnp.sum(lp * batch["target_mask"], -1),
                          jnp.sum(batch["target_mask"], -1)], -1)
    return fn


def _mean_nll(ctx, params, rows):
    out = trainer.apply_in_chunks(_nll_fn(ctx.model_cfg), params, rows, _chunk(ctx), ctx.mesh,
                                  ctx.rules)
    return float(out[:, 0].sum() / out[:, 1].sum())


# ---------------------------------------------------------------- pairs


def stage_pairs(ctx: Context, sft_params) -> None:
    """Two samples of the SFT policy per prompt, the gold reward of each, and a Bradley-Terry
    draw deciding which is chosen: data/pairs_train.jsonl and data/pairs_heldout.jsonl."""
    g, p = ctx.config.gold, ctx.config.prompts
    for name, prompts_name, seed in (("train", "pair_prompts", 0),
                                     ("heldout", "heldout_prompts", 1)):
        prompts = _prompts(ctx, prompts_name)
        ids = sampling.sample_responses(ctx.model_cfg, sft_params, ctx.tokenizer.eod_id,
                                        _prompt_ids(ctx, prompts), 2, p.response_tokens,
                                        seed=g.seed * 1000 + seed)
        texts = [[ctx.tokenizer.decode(ids[i, k]) for k in range(2)] for i in range(len(prompts))]
        ga = gold.gold_reward([t[0] for t in texts], g.peak, g.width)
        gb = gold.gold_reward([t[1] for t in texts], g.peak, g.width)
        a_wins = gold.bradley_terry_labels(ga, gb, g.temperature, seed=g.seed * 1000 + seed)
        rows = []
        for i, prompt in enumerate(prompts):
            c, r = (0, 1) if a_wins[i] else (1, 0)
            gc, gr = (ga[i], gb[i]) if a_wins[i] else (gb[i], ga[i])
            rows.append({"prompt": prompt, "chosen": texts[i][c], "rejected": texts[i][r],
                         "gold_chosen": float(gc), "gold_rejected": float(gr)})
        records.write_jsonl(ctx.shared("data", f"pairs_{name}.jsonl"), rows)


def _pair_files(ctx):
    c = ctx.config.pairs
    train = c.train_file or ctx.shared("data", "pairs_train.jsonl")
    heldout = c.heldout_file or ctx.shared("data", "pairs_heldout.jsonl")
    for path in (train, heldout):
        if not os.path.isfile(path):
            raise StageError(f"{path} is missing; run the pairs stage first (--stages pairs) "
                             "or give --config.pairs.train_file/heldout_file")
    return train, heldout


def pair_rows(ctx, recs) -> dict:
    """chosen_* and rejected_* token rows of preference records."""
    ctxlen = ctx.model_cfg.context_length
    encoded = {side: records.encode(ctx.tokenizer, recs, side, ctxlen)
               for side in ("chosen", "rejected")}
    width = max(e.inputs.shape[1] for e in encoded.values())  # one forward takes both
    return {f"{side}_{k}": v for side, e in encoded.items()
            for k, v in e.widened(width).rows(slice(None)).items()}


def _both(batch):
    """One forward over chosen and rejected rows together: halves of the batch."""
    keys = ("inputs", "targets", "target_mask", "input_mask")
    return {k: jnp.concatenate([batch["chosen_" + k], batch["rejected_" + k]]) for k in keys}


def _gold_order(recs):
    """+1 where the gold reward prefers the chosen response (None if the file has no gold)."""
    if not all("gold_chosen" in r.fields for r in recs):
        return None
    return np.array([r.fields["gold_chosen"] > r.fields["gold_rejected"] for r in recs])


def _read_pairs(path):
    return records.read_jsonl(path, records.PREFERENCE_FIELDS)


# ---------------------------------------------------------------- reward model


@functools.lru_cache(maxsize=None)
def rm_loss_fn(model_cfg):
    def loss_fn(params, frozen, batch):
        del frozen
        r = models.reward(model_cfg, params, _both(batch))
        half = r.shape[0] // 2
        loss = losses.bradley_terry_loss(r[:half], r[half:])
        return loss, {"accuracy": jnp.mean((r[:half] > r[half:]).astype(jnp.float32))}
    return loss_fn


def rm_shardings(ctx):
    rep = sharding.replicated(ctx.mesh)
    return {"trunk": ctx.gpt_shardings, "head": {"w": rep, "b": rep}}


def stage_reward_models(ctx: Context, sft_params, run: bool = True) -> dict:
    """{train_pairs: RM params} for every size in reward_model.train_pairs; each reports its
    held-out pair accuracy (against the drawn labels and against the gold ordering)."""
    c = ctx.config.reward_model
    train_path, heldout_path = _pair_files(ctx)
    train_recs, held_recs = _read_pairs(train_path), _read_pairs(heldout_path)
    held_rows = pair_rows(ctx, held_recs)
    init = {"trunk": sft_params, "head": models.init_reward_head(ctx.model_cfg)}
    out = {}
    for k in sorted(int(x) for x in c.train_pairs):
        if k > len(train_recs):
            raise StageError(f"reward_model.train_pairs asks for {k} pairs but {train_path} holds "
                             f"{len(train_recs)}; lower it or raise prompts.pair_prompts")
        where = ctx.path(f"rm_{k}")
        if _finished(where) is not None:
            out[k] = trainer.load_final(where, init, rm_shardings(ctx))
            continue
        if not run:
            raise StageError(f"{where} holds no finished reward model; run the reward_model stage")
        rows = pair_rows(ctx, train_recs[:k])
        # The head starts at zero and is the one new part: it learns head_lr_multiplier x faster.
        multipliers = jax.tree.map(lambda _: 1.0, init)
        multipliers["head"] = jax.tree.map(lambda _: float(c.head_lr_multiplier), init["head"])
        params = trainer.train(where, _stage_cfg(c), init, rm_shardings(ctx),
                               rm_loss_fn(ctx.model_cfg), rows, ctx.mesh, ctx.rules,
                               lr_multipliers=multipliers, say=ctx.say)
        rc, rr = _rewards(ctx, params, held_rows)
        result = {"train_pairs": k, "heldout_pairs": len(held_recs), "steps": c.steps,
                  "heldout_accuracy": float(np.mean(rc > rr))}
        order = _gold_order(held_recs)
        if order is not None:
            result["heldout_gold_accuracy"] = float(np.mean((rc > rr) == order))
        files.write_json(os.path.join(where, "result.json"), result)
        out[k] = params
    return out


@functools.lru_cache(maxsize=None)
def _pair_fn(cfg, score):
    """The chosen and the rejected response scored by `score` (models.reward or
    models.policy_logprobs), stacked: one jitted function per (config, scorer)."""
    def fn(params, frozen, batch):
        return jnp.stack([score(cfg, params, batch, "chosen_"),
                          score(cfg, params, batch, "rejected_")], -1)
    return fn


@functools.lru_cache(maxsize=None)
def _response_fn(cfg, score):
    return lambda params, frozen, batch: score(cfg, params, batch)


def _apply_pairs(ctx, fn, params, rows):
    """fn over (chosen, rejected) rows in chunks -> (chosen values, rejected values)."""
    out = trainer.apply_in_chunks(fn, params, rows, _chunk(ctx), ctx.mesh, ctx.rules)
    return out[:, 0], out[:, 1]


def _apply_responses(ctx, fn, params, prompt_ids, response_ids) -> np.ndarray:
    """fn over encoded (prompt, response ids) rows in chunks -> one value per row."""
    enc = records.encode_ids(ctx.tokenizer.eod_id, prompt_ids, response_ids,
                             ctx.model_cfg.context_length)
    return trainer.apply_in_chunks(fn, params, enc.rows(slice(None)), _chunk(ctx), ctx.mesh,
                                   ctx.rules)


def _rewards(ctx, rm_params, rows):
    return _apply_pairs(ctx, _pair_fn(ctx.model_cfg, models.reward), rm_params, rows)


def score(ctx, rm_params, prompt_ids, response_ids) -> np.ndarray:
    """The reward model's score of each (prompt, response ids) [rows]."""
    return _apply_responses(ctx, _response_fn(ctx.model_cfg, models.reward), rm_params, prompt_ids, response_ids)


# ---------------------------------------------------------------- best-of-n


def _texts(ctx, ids_PNM):
    return [[ctx.tokenizer.decode(ids_PNM[i, k]) for k in range(ids_PNM.shape[1])]
            for i in range(ids_PNM.shape[0])]


def stage_best_of_n(ctx: Context, sft_params, reward_models: dict) -> dict:
    """N samples of the SFT policy per evaluation prompt, scored by the gold reward and every
    reward model; per prompt, the expected gold and proxy reward of the best of n (n = 1, 2,
    4, ... max_n) under each reward model's ranking. Writes best_of_n.json."""
    c, g, p = ctx.config.best_of_n, ctx.config.gold, ctx.config.prompts
    prompts = _prompts(ctx, "eval_prompts")
    ids = _prompt_ids(ctx, prompts)
    samples = sampling.sample_responses(ctx.model_cfg, sft_params, ctx.tokenizer.eod_id, ids,
                                        c.samples, p.response_tokens, seed=c.seed)
    texts = _texts(ctx, samples)
    P, N = samples.shape[:2]
    gold_PN = np.array([gold.gold_reward(t, g.peak, g.width) for t in texts])
    ns = bon.n_values(c.max_n)
    if ns[-1] > N:
        raise StageError(f"best_of_n.max_n={c.max_n} needs best_of_n.samples >= {ns[-1]}")
    flat_prompts = [ids[i] for i in range(P) for _ in range(N)]
    flat_responses = [samples[i, k] for i in range(P) for k in range(N)]
    result = {"n": ns, "kl": bon.kl_best_of_n(ns).tolist(),
              "d": np.sqrt(bon.kl_best_of_n(ns)).tolist(), "prompts": P, "samples": N,
              "sft_gold_reward": float(gold_PN.mean()),
              "sft_vowel_share": float(np.mean([gold.vowel_share(t) for r in texts for t in r])),
              "gold_per_prompt": gold_PN.mean(axis=1).tolist(), "reward_models": []}
    for k, params in sorted(reward_models.items()):
        proxy_PN = score(ctx, params, flat_prompts, flat_responses).reshape(P, N)
        gold_PK = np.stack([bon.expected_best_of_n(proxy_PN, gold_PN, n) for n in ns], 1)
        proxy_PK = np.stack([bon.expected_best_of_n(proxy_PN, proxy_PN, n) for n in ns], 1)
        share_PN = np.array([[gold.vowel_share(t) for t in row] for row in texts])
        share_K = np.stack([bon.expected_best_of_n(proxy_PN, share_PN, n) for n in ns], 1)
        result["reward_models"].append({
            "train_pairs": k, "gold": gold_PK.mean(0).tolist(), "proxy": proxy_PK.mean(0).tolist(),
            "vowel_share": share_K.mean(0).tolist(),
            "gold_gain_table": (gold_PK - gold_PK[:, :1]).tolist(),
            "proxy_gain_table": (proxy_PK - proxy_PK[:, :1]).tolist()})
    files.write_json(ctx.path("best_of_n.json"), result)
    return result


# ---------------------------------------------------------------- DPO


@functools.lru_cache(maxsize=None)
def dpo_loss_fn(model_cfg):
    """DPO on rows carrying the reference's sequence log-probs (ref_chosen, ref_rejected);
    beta is frozen["beta"], an input rather than a constant, so every beta shares one step."""
    def loss_fn(params, frozen, batch):
        beta = frozen["beta"]
        logp = models.policy_logprobs(model_cfg, params, _both(batch))
        half = logp.shape[0] // 2
        loss = losses.dpo_loss(logp[:half], logp[half:], batch["ref_chosen"],
                               batch["ref_rejected"], beta)
        rc, rr = losses.dpo_implicit_rewards(logp[:half], logp[half:], batch["ref_chosen"],
                                             batch["ref_rejected"], beta)
        return loss, {"accuracy": jnp.mean((rc > rr).astype(jnp.float32)),
                      "margin": jnp.mean(rc - rr)}
    return loss_fn


def _pair_logprobs(ctx, params, rows):
    return _apply_pairs(ctx, _pair_fn(ctx.model_cfg, models.policy_logprobs), params, rows)


def response_logprob(ctx, params, prompt_ids, response_ids) -> np.ndarray:
    return _apply_responses(ctx, _response_fn(ctx.model_cfg, models.policy_logprobs), params, prompt_ids, response_ids)


def beta_name(beta: float) -> str:
    return f"dpo_beta{beta:g}"


def stage_dpo(ctx: Context, sft_params, run: bool = True) -> list[dict]:
    """One DPO run per beta in dpo.betas, from the SFT policy against itself frozen; each
    reports held-out preference accuracy, implicit reward margin, the gold reward of its
    samples on the evaluation prompts and KL(policy || SFT) measured on those samples."""
    c, g, p = ctx.config.dpo, ctx.config.gold, ctx.config.prompts
    train_path, heldout_path = _pair_files(ctx)
    train_recs, held_recs = _read_pairs(train_path), _read_pairs(heldout_path)
    rows, held_rows = pair_rows(ctx, train_recs), pair_rows(ctx, held_recs)
    rows["ref_chosen"], rows["ref_rejected"] = _pair_logprobs(ctx, sft_params, rows)
    held_ref = _pair_logprobs(ctx, sft_params, held_rows)
    prompts = _prompts(ctx, "eval_prompts")
    ids = _prompt_ids(ctx, prompts)
    results = []
    for beta in c.betas:
        where = ctx.path(beta_name(beta))
        done = _finished(where)
        if done is not None:
            results.append(done)
            continue
        if not run:
            raise StageError(f"{where} holds no finished DPO run; run the dpo stage first")
        rep = sharding.replicated(ctx.mesh)
        params = trainer.train(where, _stage_cfg(c), sft_params, ctx.gpt_shardings,
                               dpo_loss_fn(ctx.model_cfg), rows, ctx.mesh, ctx.rules,
                               frozen={"beta": np.float32(beta)}, frozen_shardings={"beta": rep},
                               say=ctx.say)
        pc, pr = _pair_logprobs(ctx, params, held_rows)
        rc, rr = beta * (pc - held_ref[0]), beta * (pr - held_ref[1])
        samples = sampling.sample_responses(ctx.model_cfg, params, ctx.tokenizer.eod_id, ids,
                                            c.samples_per_prompt, p.response_tokens, seed=c.seed)
        P, N = samples.shape[:2]
        flat_p = [ids[i] for i in range(P) for _ in range(N)]
        flat_r = [samples[i, k] for i in range(P) for k in range(N)]
        kl_PN = (response_logprob(ctx, params, flat_p, flat_r)
                 - response_logprob(ctx, sft_params, flat_p, flat_r)).reshape(P, N)
        texts = _texts(ctx, samples)
        gold_PN = np.array([gold.gold_reward(t, g.peak, g.width) for t in texts])
        result = {"beta": float(beta), "steps": c.steps, "train_pairs": len(train_recs),
                  "heldout_pairs": len(held_recs),
                  "heldout_accuracy": float(np.mean(rc > rr)),
                  "heldout_margin": float(np.mean(rc - rr)),
                  "gold_reward": float(gold_PN.mean()), "kl": float(kl_PN.mean()),
                  "vowel_share": float(np.mean([gold.vowel_share(t) for r in texts for t in r])),
                  "gold_per_prompt": gold_PN.mean(1).tolist(),
                  "kl_per_prompt": kl_PN.mean(1).tolist()}
        order = _gold_order(held_recs)
        if order is not None:
            result["heldout_gold_accuracy"] = float(np.mean((rc > rr) == order))
        files.write_json(os.path.join(where, "result.json"), result)
        results.append(result)
    return results
