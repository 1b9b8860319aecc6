"""Sampling: greedy decoding against an independent full forward pass, the top-k / top-p
filters against numpy references, temperature, seeding, the context limit, and the CLI."""

import dataclasses
import functools
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import sample
from research.config import ModelConfig, RunConfig
from research.model import GPT

CFG = ModelConfig(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=2)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def params_for(cfg: ModelConfig):
    """Initial parameters with every weight matrix 10x larger.

    At GPT-2 init a tied model mostly echoes its last input token whatever came before, so
    greedy tests could not see a wrong position or a stale cache entry. Larger weights make
    attention (and so the whole context) decide the next token.
    """
    tokens = jnp.zeros((1, cfg.context_length), jnp.int32)
    params = nn.meta.unbox(jax.jit(GPT(cfg).init)(jax.random.key(0), tokens)["params"])
    sharpen = lambda path, x: x * 10 if path[-1].key in ("kernel", "embedding", "wpe") else x
    return jax.tree_util.tree_map_with_path(sharpen, params)


@functools.lru_cache(maxsize=None)
def _full_forward(cfg):
    return jax.jit(lambda p, t: GPT(cfg).apply({"params": p}, t)[0])


def reference_greedy(cfg, params, prompt_BP, n_new):
    """Greedy decoding without a cache: each step reruns the whole sequence from scratch.

    The sequence is right-padded to the context so one compilation serves every step; the
    logits at the last real position cannot see the padding (causality, tested in
    test_model.py). Also returns the smallest top-1/top-2 logit gap seen, so a test can tell
    that float noise could not have flipped an argmax.
    """
    seq = np.array(prompt_BP, np.int32)
    min_gap = np.inf
    for _ in range(n_new):
        padded = np.zeros((seq.shape[0], cfg.context_length), np.int32)
        padded[:, :seq.shape[1]] = seq
        last = np.asarray(_full_forward(cfg)(params, padded))[:, seq.shape[1] - 1]
        top2 = np.sort(last, axis=-1)[:, -2:]
        min_gap = min(min_gap, float(np.min(top2[:, 1] - top2[:, 0])))
        seq = np.concatenate([seq, last.argmax(-1)[:, None].astype(np.int32)], axis=1)
    return seq[:, prompt_BP.shape[1]:], min_gap


def prompt(shape, seed=0, vocab=CFG.vocab_size):
    return np.random.default_rng(seed).integers(0, vocab, shape).astype(np.int32)


# --- greedy decoding through the KV cache equals the plain forward pass ----------------------

@pytest.mark.parametrize("prompt_len,n_new", [(5, 8), (1, 15), (9, 7)])
def test_greedy_equals_stepwise_argmax_of_full_forward(prompt_len, n_new):
    # (1, 15) fills the whole context; (9, 7) pads the prompt to the full context.
    params = params_for(CFG)
    prompts = prompt((2, prompt_len), seed=prompt_len)
    got = sample.generate(CFG, params, prompts, max_new_tokens=n_new, temperature=0.0)
    want, min_gap = reference_greedy(CFG, params, prompts, n_new)
    assert min_gap > 1e-4  # float noise (~1e-6) cannot flip these argmaxes
    np.testing.assert_array_equal(got, want)
    assert got.shape == (2, n_new) and got.dtype == np.int32
    # The test has teeth: the continuation depends on more than the last prompt token.
    changed = prompts.copy()
    changed[:, 0] = (changed[:, 0] + 1) % CFG.vocab_size
    if prompt_len > 1:
        assert (reference_greedy(CFG, params, changed, n_new)[0] != want).any()
    assert len(np.unique(want)) > 3  # not one token echoed


def test_rope_model_greedy_equals_full_forward():
    cfg = dataclasses.replace(CFG, position="rope", tie_embeddings=False)
    params = params_for(cfg)
    prompts = prompt((1, 4), seed=7)
    got = sample.generate(cfg, params, prompts[0], max_new_tokens=6, temperature=0.0)
    want, _ = reference_greedy(cfg, params, prompts, 6)
    np.testing.assert_array_equal(got, want[0])


def test_one_dimensional_prompt_gives_one_dimensional_output_equal_to_batched_row():
    params = params_for(CFG)
    prompts = prompt((2, 5), seed=5)
    batched = sample.generate(CFG, params, prompts, max_new_tokens=8, temperature=0.0)
    single = sample.generate(CFG, params, prompts[1], max_new_tokens=8, temperature=0.0)
    assert single.shape == (8,)
    np.testing.assert_array_equal(single, batched[1])


# --- the filters ----------------------------------------------------------------------------

def kept(filtered):
    return np.isfinite(np.asarray(filtered))


@pytest.mark.parametrize("k", [1, 3, 17, 50, 80])
def test_top_k_keeps_exactly_the_k_largest(k):
    logits = np.random.default_rng(k).normal(size=(4, 50)).astype(np.float32)
    out = np.asarray(sample.filter_logits(logits, k, 1.0))
    mask = kept(out)
    assert (mask.sum(-1) == min(k, 50)).all()
    for row, row_mask in zip(logits, mask):
        assert set(np.flatnonzero(row_mask)) == set(np.argsort(-row)[:k])
    np.testing.assert_array_equal(out[mask], logits[mask])  # survivors are untouched


def test_top_k_breaks_ties_to_keep_exactly_k_and_zero_is_off():
    flat = np.zeros((1, 10), np.float32)
    assert kept(sample.filter_logits(flat, 3, 1.0)).sum() == 3
    logits = np.random.default_rng(0).normal(size=(2, 10)).astype(np.float32)
    assert kept(sample.filter_logits(logits, 0, 1.0)).all()


def nucleus_reference(logits_row, p, top_k=0):
    """Token ids of the smallest most-probable set whose probability reaches p (float64)."""
    order = np.argsort(-logits_row.astype(np.float64), kind="stable")
    if top_k:
        order = order[:top_k]
    z = logits_row[order].astype(np.float64)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    cumulative = np.cumsum(probs)
    n = int(np.searchsorted(cumulative, p)) + 1  # first prefix whose mass is >= p
    # The set is unambiguous: float32 rounding (~1e-7) could not move p across a boundary.
    assert abs(cumulative[n - 1] - p) > 1e-5 and (n == 1 or abs(cumulative[n - 2] - p) > 1e-5)
    return set(order[:n].tolist()), probs[:n]


@pytest.mark.parametrize("p", [1e-6, 0.3, 0.5, 0.9, 0.99])
def test_top_p_keeps_the_smallest_set_reaching_p(p):
    logits = (2.0 * np.random.default_rng(1).normal(size=(6, 40))).astype(np.float32)
    mask = kept(sample.filter_logits(logits, 0, p))
    for row, row_mask in zip(logits, mask):
        want, kept_probs = nucleus_reference(row, p)
        assert set(np.flatnonzero(row_mask)) == want
        assert kept_probs.sum() >= p > kept_probs[:-1].sum()  # reaches p; one fewer does not


def test_top_p_applies_to_the_renormalised_top_k_survivors():
    logits = (2.0 * np.random.default_rng(2).normal(size=(6, 40))).astype(np.float32)
    mask = kept(sample.filter_logits(logits, 5, 0.7))
    for row, row_mask in zip(logits, mask):
        assert set(np.flatnonzero(row_mask)) == nucleus_reference(row, 0.7, top_k=5)[0]


def test_top_p_one_is_off():
    logits = (30.0 * np.random.default_rng(3).normal(size=(2, 64))).astype(np.float32)
    assert kept(sample.filter_logits(logits, 0, 1.0)).all()  # even probabilities of ~0


# --- sampling: temperature and seeds ----------------------------------------------------------

def frequencies(logits, n, **kw):
    rows = jnp.broadcast_to(jnp.asarray(logits, jnp.float32), (n, len(logits)))
    draws = np.asarray(sample.sample_token(jax.random.key(0), rows, **kw))
    return np.bincount(draws, minlength=len(logits)) / n


def test_draws_follow_the_tempered_filtered_distribution():
    logits = np.array([1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    n = 40_000
    for temperature, top_k in [(1.0, 0), (0.5, 0), (2.0, 3)]:
        z = logits / temperature
        if top_k:
            z = np.where(np.arange(len(z)) < top_k, z, -np.inf)
        want = np.exp(z - z.max())
        want /= want.sum()
        got = frequencies(logits, n, temperature=temperature, top_k=top_k, top_p=1.0)
        sigma = np.sqrt(want * (1 - want) / n) + 1e-12
        assert (np.abs(got - want) < 5 * sigma).all(), (temperature, top_k, got, want)
        assert (got[want == 0] == 0).all()  # filtered tokens are never drawn


def test_temperature_zero_is_greedy_whatever_the_filters_and_seed():
    logits = np.random.default_rng(4).normal(size=(8, 30)).astype(np.float32)
    for seed in [0, 1]:
        for top_k, top_p in [(0, 1.0), (2, 0.5)]:
            got = sample.sample_token(jax.random.key(seed), logits, 0.0, top_k, top_p)
            np.testing.assert_array_equal(got, logits.argmax(-1))
    params = params_for(CFG)
    a = sample.generate(CFG, params, prompt(6), max_new_tokens=8, temperature=0.0, seed=0)
    b = sample.generate(CFG, params, prompt(6), max_new_tokens=8, temperature=0.0, seed=123)
    np.testing.assert_array_equal(a, b)


def test_same_seed_same_sample_different_seed_different_sample():
    params = params_for(CFG)
    kw = dict(max_new_tokens=8, temperature=1.0, top_p=0.95)
    a = sample.generate(CFG, params, prompt(6), seed=1, **kw)
    b = sample.generate(CFG, params, prompt(6), seed=1, **kw)
    c = sample.generate(CFG, params, prompt(6), seed=2, **kw)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert a.min() >= 0 and a.max() < CFG.vocab_size


# --- the context limit and bad arguments ------------------------------------------------------

def test_long_prompt_is_cut_from_the_left_to_fit_the_context():
    params = params_for(CFG)
    long_prompt = prompt(40, seed=9)
    got = sample.generate(CFG, params, long_prompt, max_new_tokens=6, temperature=0.0)
    room = CFG.context_length - 6
    want, _ = reference_greedy(CFG, params, long_prompt[None, -room:], 6)
    np.testing.assert_array_equal(got, want[0])


def test_generation_past_the_context_slides_the_window():
    """More new tokens than the context holds: each window of ctx/2 new tokens continues the
    last ctx/2 tokens of the text so far, exactly as a fresh greedy call on that text would."""
    params = params_for(CFG)
    start = prompt(5)
    ctx, half = CFG.context_length, CFG.context_length // 2
    got = sample.generate(CFG, params, start, max_new_tokens=3 * half + 3, temperature=0.0)
    assert got.shape == (3 * half + 3,)
    text = start
    for w in range(4):
        n = half if w < 3 else 3
        want = sample.generate(CFG, params, text[-(ctx - n):], max_new_tokens=n, temperature=0.0)
        np.testing.assert_array_equal(got[w * half: w * half + n], want)
        text = np.concatenate([text, want])


def test_zero_new_tokens_gives_an_empty_array():
    out = sample.generate(CFG, params_for(CFG), prompt(4), max_new_tokens=0)
    assert out.shape == (0,)


@pytest.mark.parametrize("prompt_ids,kwargs,needle", [
    (prompt(4), dict(max_new_tokens=-1), "max_new_tokens=-1"),
    (prompt(4), dict(max_new_tokens=4, temperature=-0.5), "temperature"),
    (prompt(4), dict(max_new_tokens=4, top_k=-1), "top_k"),
    (prompt(4), dict(max_new_tokens=4, top_p=0.0), "top_p"),
    (prompt(4), dict(max_new_tokens=4, top_p=1.5), "top_p"),
    (np.array([3, 61]), dict(max_new_tokens=4), "prompt ids"),
    (np.zeros(0, np.int32), dict(max_new_tokens=4), "non-empty"),
    (np.array([1.5, 2.0]), dict(max_new_tokens=4), "integers"),
])
def test_bad_arguments_raise_one_line_errors(prompt_ids, kwargs, needle):
    with pytest.raises(sample.SamplingError, match=needle) as info:
        sample.generate(CFG, params_for(CFG), prompt_ids, **kwargs)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_prompt_buckets_are_powers_of_two_capped_at_the_context():
    assert [sample.prompt_bucket(n, 16) for n in [1, 2, 3, 5, 8, 9, 16]] == \
        [1, 2, 4, 8, 8, 16, 16]
    assert sample.prompt_bucket(100, 96) == 96


# --- the command line -------------------------------------------------------------------------

def run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "experiments.sample", *args], cwd=REPO,
                            capture_output=True, timeout=120)
    # Decoded by hand: text mode would turn a sampled "\r" into "\n".
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    return result


@pytest.mark.slow
def test_cli_missing_workdir_and_missing_checkpoint_are_one_line_errors(tmp_path):
    missing = run_cli(str(tmp_path / "nope"), "--prompt", "To be")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: run directory") and missing.stderr.count("\n") == 1
    empty = run_cli(str(tmp_path), "--prompt", "To be")
    assert empty.returncode == 2
    # A folder that holds no run is named as such, not as a run that lacks a checkpoint.
    assert "is not a training run" in empty.stderr and empty.stderr.count("\n") == 1


@pytest.mark.slow
def test_cli_continues_a_prompt_from_a_trained_run(tmp_path):
    """End to end: train two steps of a tiny model, then the CLI's greedy continuation must be
    the library's greedy continuation from the checkpoint the CLI loads."""
    from configs import gpt
    from research import checkpoint, train as train_lib
    from research.data import tokenizer

    c = gpt.get_config("tiny")
    c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.context_length = 1, 32, 2, 32
    c.train.batch_size, c.train.tokens = 8, 8 * 32 * 2
    c.train.eval_batches = 1
    c.data.data_dir = str(tmp_path / "datasets")
    workdir = str(tmp_path / "run")
    assert train_lib.train(RunConfig.from_configdict(c), workdir, progress=False)["status"] == "done"

    text = "ROMEO:\nWhat light"
    result = run_cli(workdir, "--prompt", text, "--temperature", "0",
                     "--max-new-tokens", "20", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr  # the documented spellings are the current ones

    config, params = checkpoint.load_for_inference(workdir)
    tok = tokenizer.load_tokenizer(workdir, config.data)
    prompt_ids = np.asarray(tok.encode(text))
    new_ids = sample.generate(config.model, params, prompt_ids,
                              max_new_tokens=20, temperature=0.0)
    assert result.stdout == tok.decode(np.concatenate([prompt_ids, new_ids])) + "\n"
    assert result.stdout.startswith(text)
