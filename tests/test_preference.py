"""Post-training: each loss against a hand-computed value, DPO's gradient at the reference,
sharded == unsharded DPO, best-of-n's KL and estimator against exact enumeration, the
over-optimisation fitter on known laws, and one-line errors for bad preference files."""

import itertools
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import overoptimization as oo
from analysis.errors import AnalysisError
from research import sharding
from research.config import DEFAULT_RULES, MeshConfig, ModelConfig
from research.model import GPT
from research.posttrain import best_of_n as bon, gold, losses, models, pipeline, records, trainer
from research.data.tokenizer import ByteTokenizer

TINY = ModelConfig(vocab_size=256, context_length=32, d_model=32, n_layers=1, n_heads=2)


def log_softmax(row):
    row = np.asarray(row, np.float64)
    return row - math.log(sum(math.exp(v) for v in row))


def test_masked_sft_loss_is_the_mean_nll_of_response_tokens_only():
    logits = np.array([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 3.0]]], np.float32)
    targets = np.array([[0, 2, 1]], np.int32)
    mask = np.array([[0.0, 1.0, 1.0]])  # the first target is part of the prompt
    hand = -(log_softmax([0.5, 0.5, 0.0])[2] + log_softmax([0.0, 1.0, 3.0])[1]) / 2
    assert float(losses.masked_nll(logits, targets, mask)) == pytest.approx(hand, rel=1e-6)
    # Changing a prompt position's logits changes nothing.
    logits[0, 0] = [-5.0, 9.0, 1.0]
    assert float(losses.masked_nll(logits, targets, mask)) == pytest.approx(hand, rel=1e-6)


def test_bradley_terry_loss_matches_hand_value():
    hand = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(0.5))) / 2
    got = losses.bradley_terry_loss(jnp.array([1.0, -0.5]), jnp.array([0.0, 0.0]))
    assert float(got) == pytest.approx(hand, rel=1e-6)


def test_dpo_loss_with_a_known_reference_matches_hand_value():
    pc, pr, rc, rr = np.array([-3.0]), np.array([-5.0]), np.array([-4.0]), np.array([-4.5])
    beta = 0.5
    z = beta * ((-3.0 + 4.0) - (-5.0 + 4.5))  # 0.5 * (1 + 0.5) = 0.75
    hand = math.log(1 + math.exp(-z))
    assert float(losses.dpo_loss(pc, pr, rc, rr, beta)) == pytest.approx(hand, rel=1e-6)


def _params(seed=0, cfg=TINY):
    # Jitted: an eager Flax init compiles one small program per operation.
    p = jax.jit(GPT(cfg).init)(jax.random.key(seed), jnp.zeros((1, cfg.context_length), jnp.int32))
    return nn.meta.unbox(p["params"])


def _pair_batch(rng, batch=8, width=16, ref=None, cfg=TINY, params=None):
    def side():
        toks = rng.integers(0, 255, (batch, width + 1)).astype(np.int32)
        mask = np.zeros((batch, width), np.float32)
        mask[:, width // 2:] = 1
        return {"inputs": toks[:, :-1], "targets": toks[:, 1:], "target_mask": mask,
                "input_mask": mask}
    b = {f"{s}_{k}": v for s in ("chosen", "rejected") for k, v in side().items()}
    if ref is None:
        b["ref_chosen"] = rng.normal(-40, 1, batch).astype(np.float32)
        b["ref_rejected"] = rng.normal(-40, 1, batch).astype(np.float32)
    else:
        logprobs = jax.jit(models.policy_logprobs, static_argnums=(0, 3))
        b["ref_chosen"] = np.asarray(logprobs(cfg, ref, b, "chosen_"))
        b["ref_rejected"] = np.asarray(logprobs(cfg, ref, b, "rejected_"))
    return b


def test_dpo_gradient_at_the_reference_is_beta_over_two_times_the_log_ratio_gradient():
    """At policy == reference every log-ratio is 0, so dL/dtheta = -(beta/2) d(log pi(c) - log
    pi(r)) / dtheta: exactly proportional to beta, hence zero as beta -> 0."""
    params = _params()
    batch = _pair_batch(np.random.default_rng(0), ref=params, params=params)

    def direction(p):
        return -0.5 * jnp.mean(models.policy_logprobs(TINY, p, batch, "chosen_")
                               - models.policy_logprobs(TINY, p, batch, "rejected_"))
    g_dir = jax.jit(jax.grad(direction))(params)
    # On the host in float64: eager jnp here would compile a program per leaf shape.
    norm = lambda t: float(np.sqrt(sum(np.sum(np.square(x, dtype=np.float64))  # noqa
                                       for x in jax.tree.leaves(jax.device_get(t)))))
    assert norm(g_dir) > 1e-3
    loss_fn = pipeline.dpo_loss_fn(TINY)
    grad_at = jax.jit(jax.grad(lambda p, beta: loss_fn(p, {"beta": beta}, batch)[0]))
    for beta in (1.0, 1e-3, 1e-7):
        g = grad_at(params, beta)
        diff = jax.tree.map(lambda a, b: np.asarray(a) - beta * np.asarray(b), g, g_dir)
        assert norm(diff) <= 1e-4 * beta * norm(g_dir) + 1e-12
        assert norm(g) == pytest.approx(beta * norm(g_dir), rel=1e-4)
    assert norm(g) < 1e-6  # beta = 1e-7: the gradient vanishes


def _dpo_loss_and_grads(mesh_cfg, devices, params, batch, beta=0.3):
    mesh = sharding.make_mesh(mesh_cfg, devices)
    rules = sharding.rules_of(mesh_cfg)
    shardings = trainer.gpt_shardings(TINY, mesh, rules)
    placed = trainer.place(params, shardings)
    rows = trainer.batch_axes_sharding(mesh, rules)
    placed_batch = {k: jax.device_put(v, rows) for k, v in batch.items()}
    loss_fn = pipeline.dpo_loss_fn(TINY)
    with sharding.activate(mesh, rules):
        fn = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, {"beta": beta}, b)[0]),
                     in_shardings=(shardings, {k: rows for k in batch}))
        loss, grads = fn(placed, placed_batch)
    return float(loss), jax.device_get(grads), grads


@pytest.mark.slow
def test_sharded_dpo_equals_unsharded():
    assert jax.device_count() == 8
    params = _params(1)
    batch = _pair_batch(np.random.default_rng(1), batch=8)
    single = MeshConfig(data=1, fsdp=1, tensor=1, rules=DEFAULT_RULES)
    ref_loss, ref_grads, _ = _dpo_loss_and_grads(single, jax.devices()[:1], params, batch)
    for layout in ({"data": 8}, {"data": 2, "fsdp": 2, "tensor": 2}):
        mesh_cfg = MeshConfig(**{"data": 1, "fsdp": 1, "tensor": 1, **layout}, rules=DEFAULT_RULES)
        loss, grads, on_mesh = _dpo_loss_and_grads(mesh_cfg, jax.devices(), params, batch)
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        if "tensor" in layout:  # the parameters really were split
            kernel = on_mesh["blocks"]["mlp"]["up"]["kernel"]
            assert len(kernel.sharding.device_set) == 8
            assert kernel.addressable_shards[0].data.shape != kernel.shape


def test_best_of_n_kl_formula_matches_the_exact_kl_of_a_fine_distribution():
    """Best-of-n over K equally likely outcomes with distinct rewards: P(i-th) = (i/K)^n -
    ((i-1)/K)^n; its KL to uniform tends to log n - (n-1)/n as K grows."""
    K = 200_000
    i = np.arange(1, K + 1, dtype=np.float64)
    for n in (1, 2, 4, 16, 64):
        q = (i / K) ** n - ((i - 1) / K) ** n
        kl = float(np.sum(np.where(q > 0, q * np.log(np.maximum(q, 1e-300) * K), 0.0)))
        assert kl == pytest.approx(float(bon.kl_best_of_n(n)), abs=2e-3)


def test_expected_best_of_n_equals_the_mean_over_every_subset():
    rng = np.random.default_rng(0)
    proxy, value = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    for n in (1, 2, 3, 7):
        brute = [np.mean([value[p, max(s, key=lambda j: proxy[p, j])]
                          for s in itertools.combinations(range(7), n)]) for p in range(3)]
        np.testing.assert_allclose(bon.expected_best_of_n(proxy, value, n), brute, rtol=1e-10)


def test_vowel_share_and_peaked_gold_and_noiseless_labels():
    assert gold.vowel_share("Hello, world!") == pytest.approx(3 / 10)
    assert gold.vowel_share("...") == 0.0
    g = gold.gold_reward(["aaab", "ab", "bbbb"], peak=0.5, width=0.25)
    np.testing.assert_allclose(g, [-1.0, 0.0, -4.0])
    a_wins = gold.bradley_terry_labels([0.0, -1.0], [-1.0, 0.0], temperature=1e-6, seed=0)
    assert a_wins.tolist() == [True, False]
    draws = gold.bradley_terry_labels(np.zeros(20000), -np.ones(20000), temperature=1.0, seed=1)
    assert draws.mean() == pytest.approx(1 / (1 + math.exp(-1)), abs=0.01)


@pytest.mark.parametrize("form, alpha, beta", [("bon", 1.2, 0.5), ("rl", 0.8, 0.4)])
def test_fitter_recovers_known_coefficients_with_intervals(form, alpha, beta):
    rng = np.random.default_rng(3)
    d = np.sqrt(bon.kl_best_of_n([1, 2, 4, 8, 16, 32, 64, 128]))
    truth = oo.design(d, form) @ np.array([alpha, beta])
    table = truth + rng.normal(0, 0.3, (400, len(d)))
    table[:, 0] = 0.0  # the gain at d = 0 is zero by definition
    f = oo.fit_table(d, table, form, bootstrap=200, seed=0)
    assert f["alpha"] == pytest.approx(alpha, abs=0.08)
    assert f["beta"] == pytest.approx(beta, abs=0.06)
    assert f["alpha_interval"][0] < alpha < f["alpha_interval"][1]
    assert f["beta_interval"][0] < beta < f["beta_interval"][1]
    assert f["r2"] > 0.95
    exact = oo.fit(d, truth, form)
    assert exact["alpha"] == pytest.approx(alpha) and exact["r2"] == pytest.approx(1.0)
    top = oo.peak(alpha, beta, form)  # the fitted curve's maximum is a numerical maximum
    grid = np.linspace(1e-6, 10, 200001)
    values = oo.design(grid, form) @ np.array([alpha, beta])
    assert top["d"] == pytest.approx(grid[np.argmax(values)], abs=1e-3)


def test_fitter_rejects_too_few_points():
    with pytest.raises(AnalysisError, match="at least 3 points"):
        oo.fit([0.0, 1.0], [0.0, 1.0])


def _write(tmp_path, lines):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


GOOD = json.dumps({"prompt": "To be", "chosen": " or not", "rejected": " zzz"})


@pytest.mark.parametrize("bad, needle", [
    (json.dumps({"prompt": "To be", "chosen": " or not"}), "missing field 'rejected'"),
    (json.dumps({"prompt": "To be", "chosen": "  ", "rejected": "x"}), "field 'chosen' is empty"),
    ('{"prompt": "To be", "chosen": ', "not valid JSON"),
    (json.dumps(["To be"]), "not an object"),
    (json.dumps({"prompt": 3, "chosen": "a", "rejected": "b"}), "field 'prompt' is a int"),
])
def test_bad_preference_lines_are_one_line_errors_naming_the_line(tmp_path, bad, needle):
    path = _write(tmp_path, [GOOD, "", bad])
    with pytest.raises(records.RecordError) as e:
        records.read_jsonl(path)
    message = str(e.value)
    assert f"{path}:3:" in message and needle in message and "\n" not in message


def test_prompt_longer_than_the_context_names_its_line(tmp_path):
    long_prompt = json.dumps({"prompt": "x" * 40, "chosen": "a", "rejected": "b"})
    path = _write(tmp_path, [GOOD, long_prompt])
    recs = records.read_jsonl(path)
    with pytest.raises(records.RecordError) as e:
        records.encode(ByteTokenizer(), recs, "chosen", context_length=32)
    assert f"{path}:2:" in str(e.value) and "the prompt is 40 tokens" in str(e.value)


def test_encoding_masks_the_response_and_cuts_long_ones():
    tok = ByteTokenizer()
    recs = [records.Record({"prompt": "ab", "response": "cde"}, "x:1"),
            records.Record({"prompt": "", "response": "z" * 50}, "x:2")]
    enc = records.encode(tok, recs, "response", context_length=32)
    assert enc.inputs.shape == (2, 32) and enc.truncated == 1
    # Row 0: [eod a b c d e eod...]; targets that are response tokens: c, d, e.
    assert enc.targets[0][enc.target_mask[0] == 1].tolist() == list(b"cde")
    assert enc.inputs[0][enc.input_mask[0] == 1].tolist() == list(b"cde")
    assert enc.target_mask[1].sum() == 32  # the whole context after the document start


def test_command_help_and_both_configs_load(capsys):
    from experiments import cli, preference

    with pytest.raises(SystemExit) as e:
        preference.main(["--help"])
    assert e.value.code == 0 and "--stages" in capsys.readouterr().out
    for variant in ("smoke", "sweep"):
        c = cli.load_config(f"configs/preference.py:{variant}", [f"--config.dpo.betas=0.1,0.3"])
        assert tuple(c.dpo.betas) == (0.1, 0.3)
        assert c.prompts.prompt_tokens + c.prompts.response_tokens < c.pretrain.model.context_length
