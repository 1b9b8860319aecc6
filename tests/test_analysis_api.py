"""The notebook API: load_results as a pandas DataFrame, fits from a DataFrame, and Law.load
with predict / n_opt / d_opt and bootstrap intervals, against hand-computed values."""

import json

import numpy as np
import pytest

from analysis import AnalysisError, Law, fit_law, load_results
from analysis.report import write_json

P = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def rows():
    out = []
    for i, N in enumerate((1e6, 4e6, 1.6e7)):
        for j, D in enumerate((1e8, 3e8, 9e8)):
            loss = P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]
            out.append(dict(run=f"r{i}{j}", params=int(N), tokens=int(D), loss=loss,
                            flops=6 * N * D, status="done"))
    return out


def test_load_results_is_a_dataframe_from_every_format(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = rows()
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    (tmp_path / "r.csv").write_text("run,params,tokens,loss,flops,status\n" + "".join(
        f"{r['run']},{r['params']},{r['tokens']},{r['loss']!r},{r['flops']!r},done\n" for r in data))
    pq.write_table(pa.Table.from_pylist(data), tmp_path / "r.parquet")
    sweep = tmp_path / "sweep" / "runs"
    for r in data:
        (sweep / r["run"]).mkdir(parents=True)
        (sweep / r["run"] / "result.json").write_text(json.dumps(r))
    for path in ("r.jsonl", "r.csv", "r.parquet", "sweep"):
        df = load_results(tmp_path / path)
        assert list(df["run"]) == [r["run"] for r in data]
        assert df["params"].dtype.kind == "i" and df["loss"].dtype.kind == "f"
        np.testing.assert_allclose(df["loss"], [r["loss"] for r in data], rtol=1e-15)
        assert df.attrs["source"]


def test_dataframe_filters_feed_the_fit(tmp_path):
    df = load_results_of(tmp_path, rows() + [dict(run="bad", params=2, tokens=3, loss=9.0,
                                                  flops=36.0, status="done")])
    with pytest.raises(AnalysisError, match="3 points are too few"):  # a slice is a table too
        fit_law(df.iloc[:3], "chinchilla", bootstrap=0)
    fit = fit_law(df[df["run"] != "bad"], "power", "flops", bootstrap=0)
    assert fit["n_points"] == 9 and fit["source"].endswith("r.jsonl")


def load_results_of(tmp_path, data):
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    return load_results(tmp_path / "r.jsonl")


def fit_json(tmp_path, samples=None, law="chinchilla", params=P, compute=None):
    fit = dict(law=law, x=["params", "tokens"], params=params,
               compute=compute or dict(name="6ND"), ci95={}, identified={})
    if samples is not None:
        fit["bootstrap_samples"] = samples
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit))
    return path


def test_law_predicts_the_hand_computed_loss(tmp_path):
    law = Law.load(fit_json(tmp_path))
    # 1.69 + 406.4 / 1e9^0.34 + 410.7 / 2e10^0.28, written out
    want = 1.69 + 406.4 / (1e9 ** 0.34) + 410.7 / (2e10 ** 0.28)
    assert law.predict(1e9, 2e10) == pytest.approx(want, rel=1e-12)
    grid = law.predict(np.array([1e8, 1e9]), np.array([2e10, 2e10]))
    assert grid.shape == (2,) and grid[1] == pytest.approx(want, rel=1e-12)
    assert Law.load(tmp_path).name == "chinchilla"  # the folder holding fit.json


def test_n_opt_and_d_opt_minimise_the_loss_at_fixed_compute(tmp_path):
    law = Law.load(fit_json(tmp_path))
    C = 1e21
    # Closed form with C = 6ND: N_opt = G (C/6)^a, G = (alpha A / (beta B))^(1/(alpha+beta)).
    G = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    assert law.n_opt(C) == pytest.approx(G * (C / 6) ** (0.28 / 0.62), rel=1e-12)
    assert law.d_opt(C) == pytest.approx(C / (6 * law.n_opt(C)), rel=1e-12)
    # Independent truth: the numerical minimum of L(N, C/(6N)) over a fine grid of N.
    N = np.logspace(7, 13, 200_001)
    best = N[np.argmin(law.predict(N, C / (6 * N)))]
    assert law.n_opt(C) == pytest.approx(best, rel=1e-3)


def test_intervals_are_percentiles_of_the_stored_bootstrap(tmp_path):
    n = 101
    samples = {k: [v] * n for k, v in P.items()}
    samples["E"] = list(np.linspace(1.0, 2.0, n))  # only E varies: the loss shifts with it
    law = Law.load(fit_json(tmp_path, samples))
    value, low, high = law.predict(1e9, 2e10, interval=0.9)
    rest = value - P["E"]
    assert low == pytest.approx(1.05 + rest) and high == pytest.approx(1.95 + rest)
    n_value, n_low, n_high = law.n_opt(1e21, interval=0.9)
    assert n_low == pytest.approx(n_value) == pytest.approx(n_high)  # E moves no allocation
    with pytest.raises(AnalysisError, match="no bootstrap samples"):
        Law.load(fit_json(tmp_path)).predict(1e9, 2e10, interval=0.95)


def test_a_real_fit_round_trips_through_fit_json(tmp_path):
    from analysis.laws import make_law

    data = rows()
    fit = fit_law(load_results_of(tmp_path, data), "power", "flops", bootstrap=3, seed=0)
    write_json(fit, str(tmp_path / "fit.json"))
    law = Law.load(tmp_path / "fit.json")
    C = np.array([r["flops"] for r in data])
    # The fitter's own (JAX) evaluation of the same law is the reference.
    theta = [fit["fitted_log_space"][k] for k in make_law("power", "flops").fitted]
    want = make_law("power", "flops").predict(np.array(theta), np.log(C)[:, None])
    np.testing.assert_allclose(law.predict(C), want, rtol=1e-10)
    assert len(law.samples["E"]) == 3
    _, low, high = law.predict(C, interval=0.95)
    assert np.all(low <= high)
    with pytest.raises(AnalysisError, match="allocation needs L"):
        law.n_opt(1e18)
