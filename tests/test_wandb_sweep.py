"""W&B for sweeps (optional; a fake wandb module stands in): a sweep's runs share one group named
after the sweep, tracking changes no run's identity, and the fit is logged to a run of its own
with its parameters, intervals and figures."""

import json
import sys
import types

from configs.sweeps import smoke
from experiments.sweeplib import plan, tracking
from experiments.sweeplib.layout import SweepDir
from research import metrics


class FakeRun:
    def __init__(self, kwargs):
        self.kwargs, self.logged, self.saved, self.finished = kwargs, [], [], False
        self.summary = {}

    def log(self, values, step=None):
        self.logged.append(dict(values))

    def save(self, path, base_path=None):
        self.saved.append(path)

    def finish(self):
        self.finished = True


class FakeWandb(types.ModuleType):
    def __init__(self):
        super().__init__("wandb")
        self.runs = []

    def init(self, **kwargs):
        self.runs.append(FakeRun(kwargs))
        return self.runs[-1]

    class Image:
        def __init__(self, path):
            self.path = path


def tracked_smoke():
    s = smoke.get_config()
    s.base.log.wandb = True
    return s


def test_sweep_runs_share_a_group_named_after_the_sweep_and_keep_their_names():
    runs = plan.expand(tracked_smoke())
    assert {r.config.log.wandb_group for r in runs} == {"smoke"}
    assert [r.name for r in runs] == [r.name for r in plan.expand(smoke.get_config())]
    settings = metrics.wandb_settings(runs[0].config)
    assert settings["group"] == "smoke"
    own = tracked_smoke()
    own.base.log.wandb_group = "ablation-3"  # an explicit group wins
    assert {r.config.log.wandb_group for r in plan.expand(own)} == {"ablation-3"}


def test_the_run_sink_passes_the_group(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    config = plan.expand(tracked_smoke())[0].config
    metrics.MetricsWriter(str(tmp_path), config=config, wandb=metrics.wandb_settings(config)).close()
    assert fake.runs[0].kwargs["group"] == "smoke"


def test_the_fit_is_logged_to_a_run_of_its_own(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    where = SweepDir(tmp_path)
    where.analysis.mkdir(parents=True)
    fit = dict(law="power", formula="L(C) = E + A / C^alpha", n_points=4,
               params=dict(E=1.5, A=30.0, alpha=0.1), ci95=dict(alpha=[0.05, 0.2], E=None),
               identified=dict(alpha=True, E=False))
    (where.analysis / "fit.json").write_text(json.dumps(fit))
    (where.analysis / "loss_vs_x.png").write_bytes(b"png")
    (where.analysis / "report.html").write_text("<html></html>")
    lines = []
    assert tracking.log_fit(where, tracked_smoke(), lines.append)
    (run,) = fake.runs
    assert run.kwargs["group"] == "smoke" and run.kwargs["name"] == "smoke-fit"
    assert run.kwargs["job_type"] == "analysis" and run.kwargs["config"]["law"] == "power"
    logged = run.logged[0]
    assert logged["fit/alpha"] == 0.1 and logged["fit/alpha_ci95_low"] == 0.05
    assert logged["fit/E_identified"] is False
    assert logged["figures/loss_vs_x"].path.endswith("loss_vs_x.png")
    assert run.summary["fit/E"] == 1.5 and run.saved and run.finished
    assert "fit logged to W&B" in lines[-1]


def test_no_tracking_no_wandb_needed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    where = SweepDir(tmp_path)
    where.analysis.mkdir(parents=True)
    (where.analysis / "fit.json").write_text("{}")
    assert not tracking.log_fit(where, smoke.get_config())
    lines = []
    assert not tracking.log_fit(where, tracked_smoke(), lines.append)
    assert "wandb is not installed" in lines[0]
