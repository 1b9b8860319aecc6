"""Coordinate check (research/coord_check.py): under µP every module's output, and its change
from init after a few Adam steps, is flat in width; breaking any rule of µP's table (injected
here one at a time) makes the check fail. Two widths (32 and 128, m = 4), one layer, a few steps:
the slopes an error causes are +-0.5 to +-1 in log width, far outside the tolerance."""

import subprocess
import sys

import pytest

from configs import gpt
from research import coord_check, mup, train_state
from research.config import RunConfig

BASE, WIDE = 32, 128
STEPS = 2
# Each measurement trains two widths (and each injected error retrains one): a small training
# experiment, compiled afresh for every rule, so the whole file is in the slow tier.
pytestmark = pytest.mark.slow


def _config(tie=True):
    c = gpt.get_config("tiny")
    c.model.n_layers, c.model.n_heads, c.model.context_length = 1, 2, 16
    c.model.tie_embeddings = tie
    c.train.batch_size = 8
    c.train.learning_rate = 1e-2  # large enough that SP's growth shows at once
    return c


def _measure(widths, tie=True, parametrizations=("mup",)):
    train_state._build_steps.cache_clear()  # an injected rule must not reuse a compiled step
    return coord_check.measure(RunConfig.from_configdict(_config(tie)), widths, steps=STEPS, seeds=2, record_steps=(0,),
                               parametrizations=parametrizations, base_width=BASE)


@pytest.fixture(scope="module")
def tied():
    return _measure((BASE, WIDE), parametrizations=("sp", "mup"))


@pytest.fixture(scope="module")
def untied():
    return _measure((BASE, WIDE), tie=False)


def test_mup_is_flat_and_sp_is_not(tied, untied):
    """µP: every module's output at init (attention and output logits: K^-1/2, as predicted) and
    its change after STEPS steps within 0.25 of flat, tied or untied; SP breaks it at once."""
    for name in ("wte", "block_0/attn/logits", "block_0/attn/out", "block_0/mlp/up", "block_0",
                 "output_logits"):
        assert name in tied["delta"]["mup"][STEPS], sorted(tied["delta"]["mup"][STEPS])
    assert coord_check.violations(tied, "mup") == {}
    assert coord_check.violations(untied, "mup") == {}
    sp = coord_check.violations(tied, "sp")
    assert max(sp.values()) > 1.0, sp


def _with_base(wide_result, base_result, p="mup"):
    """The wide width's curves joined to the base width's: at the base every µP factor is 1, so
    an injected width rule cannot change it (only the wide width is retrained)."""
    out = {"rms": {p: {}}, "delta": {p: {}}}
    for kind in ("rms", "delta"):
        for t, layers in wide_result[kind][p].items():
            out[kind][p][t] = {k: [base_result[kind][p][t][k][0], v[0]] for k, v in layers.items()}
    widths = [BASE, WIDE]
    out["slopes"] = coord_check.slopes(widths, out["rms"])
    out["delta_slopes"] = coord_check.slopes(widths, out["delta"])
    return out


def _hidden_init_not_scaled(cfg, role):
    return cfg.mup_init_mult if role == mup.HIDDEN else 1.0


def _embedding_lr_like_hidden(cfg, role):
    return 1.0 / mup.width_multiplier(cfg) if role in (mup.HIDDEN, mup.EMBEDDING) else 1.0


def _readout_lr_like_hidden(cfg, role):
    return 1.0 / mup.width_multiplier(cfg) if role in (mup.HIDDEN, mup.READOUT) else 1.0


ERRORS = {  # a rule of the table broken: (function replaced, by what, tied embeddings?)
    "hidden init std without 1/sqrt(m)": ("init_multiplier", _hidden_init_not_scaled, True),
    "hidden Adam LR without 1/m": ("lr_multiplier", lambda cfg, role: 1.0, True),
    "readout without 1/m": ("readout_scale", lambda cfg: cfg.mup_output_mult, True),
    "attention 1/sqrt(K) instead of 1/K": (
        "attention_scale", lambda cfg: cfg.mup_attn_mult * (cfg.d_model // cfg.n_heads) ** -0.5,
        True),
    "embedding LR / m": ("lr_multiplier", _embedding_lr_like_hidden, True),
    "untied readout LR / m": ("lr_multiplier", _readout_lr_like_hidden, False),
}


@pytest.mark.parametrize("error", sorted(ERRORS))
def test_check_fails_on_each_injected_rule_error(error, tied, untied, monkeypatch):
    name, broken, tie = ERRORS[error]
    monkeypatch.setattr(mup, name, broken)
    wide = _measure((WIDE,), tie=tie)
    monkeypatch.undo()
    train_state._build_steps.cache_clear()
    found = coord_check.violations(_with_base(wide, tied if tie else untied))
    assert found, f"{error}: the coordinate check did not notice"


def test_sp_and_mup_share_the_base_width_up_to_the_multipliers(tied):
    """At the base width µP is SP times the base multipliers: the embedding (before any
    multiplier acts) is the same module with the same init."""
    assert tied["rms"]["mup"][0]["wte"][0] == pytest.approx(tied["rms"]["sp"][0]["wte"][0], rel=1e-6)


def test_plot_is_written(tied, tmp_path):
    from experiments.coord_check import plot
    plot(tied, str(tmp_path / "cc.png"))
    assert (tmp_path / "cc.png").stat().st_size > 20_000


def test_cli_refuses_a_width_the_heads_cannot_split(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.coord_check", "--config", "configs/gpt.py:tiny",
         "--widths", "64,90", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "n_heads" in proc.stderr
