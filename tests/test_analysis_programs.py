"""The fit's stored programs and background plots change nothing in the results."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from analysis import fit as fit_lib
from analysis import programs
from analysis.laws import make_law

TRUE = np.array([np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28])  # a, b, e, alpha, beta
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _noisy_chinchilla(n=60, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    logX = np.stack([rng.uniform(np.log(1e7), np.log(1e10), n),
                     rng.uniform(np.log(1e8), np.log(1e11), n)], 1)
    law = make_law("chinchilla")
    logL = np.log(law.predict(TRUE, logX)) + noise * rng.standard_normal(n)
    return law, logX, logL


def test_stored_programs_give_the_exhaustive_fit_and_skip_tracing(tmp_path, monkeypatch):
    law, logX, logL = _noisy_chinchilla()
    starts = law.grid[::45]  # 100 starts: the code path of the full grid, at a fraction of it
    monkeypatch.delenv(programs.ENV, raising=False)
    exhaustive, best_e, _ = fit_lib.fit_points(law, logX, logL, starts=starts, abandon=False)

    monkeypatch.setenv(programs.ENV, str(tmp_path))
    monkeypatch.setattr(programs, "_loaded", {})
    stored, best_s, _ = fit_lib.fit_points(law, logX, logL, starts=starts)
    assert list(tmp_path.rglob("*.bin")), "no program was stored"

    monkeypatch.setattr(programs, "_loaded", {})  # a new process: only the disk is warm
    monkeypatch.setattr(programs, "_lower", lambda *a: pytest.fail("traced again"))
    loaded, best_l, _ = fit_lib.fit_points(law, logX, logL, starts=starts)

    np.testing.assert_array_equal(loaded.x, stored.x)  # the same program, bit for bit
    np.testing.assert_array_equal(loaded.f, stored.f)
    # Abandoning hopeless starts reaches the exhaustive optimum, near the true law.
    assert loaded.f[best_l] == pytest.approx(exhaustive.f[best_e], rel=1e-9)
    np.testing.assert_allclose(loaded.x[best_l], exhaustive.x[best_e], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loaded.x[best_l][3:], TRUE[3:], atol=0.03)


def test_screened_fit_reaches_the_exhaustive_optimum():
    law, logX, logL = _noisy_chinchilla()
    res, best, _, n_grid = fit_lib.fit_grid(law, logX, logL)
    assert n_grid == len(law.grid) and len(res.x) == fit_lib.SCREEN_KEEP  # the screen ran
    exhaustive, best_e, _ = fit_lib.fit_points(law, logX, logL, starts=law.grid[::45],
                                               abandon=False)
    assert res.f[best] == pytest.approx(exhaustive.f[best_e], rel=1e-9)
    np.testing.assert_allclose(res.x[best], exhaustive.x[best_e], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.x[best][3:], TRUE[3:], atol=0.03)


def test_fingerprint_names_only_what_the_package_source_decides():
    law = make_law("chinchilla")
    assert programs.fingerprint(law.log_pred) == "analysis.laws._chinchilla_log_pred"
    assert fit_lib.objective(law.log_pred).program_key.endswith("_chinchilla_log_pred)")
    assert programs.fingerprint(lambda t, x: t) is None  # a lambda has no stable name
    assert programs.fingerprint(np.log) is None  # outside the package: its source is not keyed
    scale = 2.0
    assert programs.fingerprint(lambda t: t * scale) is None  # a closure


@pytest.mark.slow
def test_background_plots_print_the_same_fit_and_arrive_later(tmp_path):
    law, logX, logL = _noisy_chinchilla(n=40)
    csv = tmp_path / "runs.csv"
    rows = [f"{n:.17g},{d:.17g},{y:.17g}" for (n, d), y in zip(np.exp(logX), np.exp(logL))]
    csv.write_text("params,tokens,loss\n" + "\n".join(rows) + "\n")

    def fit(out, plots):
        return subprocess.run([sys.executable, "-m", "analysis", "fit", str(csv), "--out",
                               str(tmp_path / out), "--bootstrap", "0", "--plots", plots],
                              cwd=ROOT, capture_output=True, text=True, check=True)
    waited = fit("w", "wait")
    background = fit("b", "background")
    assert background.stdout.replace("/b/", "/w/") == waited.stdout
    assert "being drawn by process" in background.stderr
    assert (tmp_path / "b" / "fit.json").is_file()
    deadline = time.time() + 120
    while not (tmp_path / "b" / "report.html").is_file() and time.time() < deadline:
        time.sleep(0.2)
    pngs = sorted(p.name for p in (tmp_path / "w").glob("*.png"))
    assert pngs and sorted(p.name for p in (tmp_path / "b").glob("*.png")) == pngs
    assert not list((tmp_path / "b").glob(".plots-*"))  # the job file is consumed
