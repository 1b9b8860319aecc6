"""The LR-transfer sweep expands to LR x width x parametrization, and its verdict follows the
issue's criterion (same grid point, or adjacent within 0.5% of the best loss)."""

import csv
import json
import subprocess
import sys

import pytest

from experiments import lr_transfer
from experiments.sweeplib import plan, spec
from experiments.sweeplib.errors import SweepError


def test_sweep_config_expands_to_every_lr_width_and_parametrization():
    sweep = spec.load("configs/sweeps/lr_transfer.py")
    runs = plan.expand(sweep)
    assert len(runs) == 6 * 4 * 2 * 3
    seen = {(r.config.model.parametrization, r.config.model.d_model, r.config.train.learning_rate,
             r.seed) for r in runs}
    assert len(seen) == len(runs)
    assert {r.seed for r in runs} == {0, 1, 2}
    # The two parts measured: µP's 3 LRs at every width, SP's 2 at the widest.
    mup_part = plan.expand(spec.load("configs/sweeps/lr_transfer.py:mup"))
    assert len(mup_part) == 3 * 4 * 3 and {r.config.model.parametrization for r in mup_part} == {"mup"}
    sp_part = plan.expand(spec.load("configs/sweeps/lr_transfer.py:sp256"))
    assert {(r.config.model.parametrization, r.config.model.d_model) for r in sp_part} == {("sp", 256)}
    config_hash = lambda r: (r.seed, r.name.rsplit("-", 1)[1])  # noqa: E731  (name: ...-s0-HASH)
    assert {config_hash(r) for r in mup_part + sp_part} <= {config_hash(r) for r in runs}
    assert {r.config.model.d_model for r in runs} == {32, 64, 128, 256}
    assert {r.config.model.n_layers for r in runs} == {2}  # width varies, depth does not
    assert {r.config.model.n_heads for r in runs} == {2}  # ... and the head width with it
    assert {r.steps for r in runs} == {128}
    # µP's base is the narrowest model, where it is SP (same width, same head width).
    assert {(r.config.model.mup_base_width, r.config.model.mup_base_head_dim) for r in runs} == {(32, 16)}
    lrs = sorted({r.config.train.learning_rate for r in runs})
    assert all(b / a == 2.0 for a, b in zip(lrs, lrs[1:]))
    assert all(f"-{r.config.model.parametrization}-" in r.name for r in runs)
    with pytest.raises(SweepError, match="parametrizations"):
        spec.load("configs/sweeps/lr_transfer.py", ["--config.parametrizations=sp,nt"])


def _rows(best_index):
    """Parabolic losses in log2 LR with the minimum at best_index[(p, width)]."""
    rows = []
    for (p, w), i0 in best_index.items():
        for i in range(6):
            rows.append({"parametrization": p, "d_model": str(w), "learning_rate": str(2.0 ** (i - 10)),
                         "loss": str(2.0 + 0.01 * (i - i0) ** 2 + (0.0 if i != i0 else -0.001))})
    return rows


def test_verdict_same_point_adjacent_and_drift():
    data = lr_transfer.curves(_rows({("mup", 64): 3, ("mup", 128): 3, ("mup", 256): 4,
                                     ("sp", 64): 3, ("sp", 128): 2, ("sp", 256): 1}))
    mup, sp = lr_transfer.verdict(data["mup"]), lr_transfer.verdict(data["sp"])
    assert mup["reference_lr"] == 2.0 ** -7
    # Width 256 is one grid point off, and the reference LR costs 0.011 / 1.999 = 0.55% > 0.5%.
    assert mup["widths"][256]["grid_steps_from_reference"] == 1
    assert mup["widths"][256]["penalty_at_reference_lr"] == pytest.approx(0.011 / 1.999, rel=1e-6)
    assert not mup["transfers"]
    assert [sp["widths"][w]["best_lr"] for w in (64, 128, 256)] == [2.0 ** -7, 2.0 ** -8, 2.0 ** -9]
    assert not sp["widths"][256]["ok"]
    flat = lr_transfer.verdict(lr_transfer.curves(_rows({("mup", 64): 3, ("mup", 512): 3}))["mup"])
    assert flat["transfers"]


def test_verdict_counts_an_adjacent_point_within_one_stderr_as_tied():
    """Three seeds per cell: width 256's best is one grid point off and 1% better (over the 0.5%
    tolerance), but its standard errors make the two means indistinguishable; with tight
    standard errors it does not transfer."""
    rows = []
    for seed, noise in enumerate((-0.03, 0.0, 0.03)):
        for w, best in ((32, 3), (256, 4)):
            for i in range(6):
                loss = 2.0 + 0.02 * (i - best) ** 2 + (noise if w == 256 else 0.0)
                rows.append({"parametrization": "mup", "d_model": str(w),
                             "learning_rate": str(2.0 ** (i - 10)), "loss": str(loss), "seed": seed})
    err = lr_transfer.stderrs(rows)["mup"]
    assert err[256][2.0 ** -7] == pytest.approx(0.03 / 3 ** 0.5 * 3 ** 0.5 / 3 ** 0.5, rel=1e-6)
    data = lr_transfer.curves(rows)["mup"]
    assert lr_transfer.verdict(data, err)["transfers"]
    assert lr_transfer.verdict(data, err)["widths"][256]["tied_within_stderr"]
    assert not lr_transfer.verdict(data)["transfers"]  # without the spread: 1% > 0.5%


@pytest.mark.slow
def test_cli_writes_plot_and_json(tmp_path):
    path = tmp_path / "results.csv"
    rows = _rows({("mup", 64): 3, ("mup", 128): 3, ("sp", 64): 3, ("sp", 128): 1})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "experiments.lr_transfer", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mup: best LR per width d64: 0.00781, d128: 0.00781" in proc.stdout
    assert "sp:" in proc.stdout and "does not transfer" in proc.stdout
    assert (out / "lr_transfer.png").stat().st_size > 10_000
    assert json.load(open(out / "lr_transfer.json"))["verdict"]["mup"]["transfers"] is True
    bad = subprocess.run([sys.executable, "-m", "experiments.lr_transfer", str(tmp_path / "nope"),
                          "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1


def test_depth_transfer_sweep_varies_only_depth():
    runs = plan.expand(spec.load("configs/sweeps/depth_transfer.py:sqrt"))
    assert {r.config.model.n_layers for r in runs} == {2, 4, 8}
    assert {r.config.model.d_model for r in runs} == {64}
    assert {(r.config.model.depth_parametrization, r.config.model.mup_base_depth,
             r.config.model.parametrization) for r in runs} == {("sqrt", 2, "mup")}
    assert len(runs) == 3 * 3 * 3
