"""What a new user meets first: every documented command's --help, the first check on a
machine (experiments.devices), the input formats and flag spellings of the analysis, one list
syntax, the errors of first mistakes, and the sweep plan's time estimate."""

import io
import json
import os
import re
import runpy
import sys
import warnings

import numpy as np
import pytest

from analysis import AnalysisError
from analysis import __main__ as analysis_cli
from analysis.data import load_results
from analysis.fit import fit_law
from experiments import cli, sample, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRUTH = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def chinchilla(N, D):
    return TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]


def grid_rows(n_sizes=3, n_budgets=3):
    return [dict(run=f"r{i}{j}", params=1e6 * 4 ** i, tokens=1e8 * 3 ** j,
                 loss=chinchilla(1e6 * 4 ** i, 1e8 * 3 ** j))
            for i in range(n_sizes) for j in range(n_budgets)]


# --- every command the docs name answers --help ---------------------------------------------

def documented_modules():
    """Every `python -m MODULE [SUBCOMMAND]` in README.md and docs/*.md."""
    pages = [os.path.join(ROOT, "README.md")]
    docs = os.path.join(ROOT, "docs")
    pages += [os.path.join(docs, f) for f in sorted(os.listdir(docs)) if f.endswith(".md")]
    found = set()
    for page in pages:
        text = open(page, encoding="utf-8").read()
        for module, sub in re.findall(r"python -m ([a-z_][a-z_.]*)(?: +(plan|run|status|fit|"
                                      r"isoflop|envelope|curves|bench)\b)?", text):
            internal = module.startswith("experiments.sweeplib")  # a worker's child, not a command
            if module.split(".")[0] in ("experiments", "analysis", "scaling_lab") and not internal:
                found.add((module, sub))
    return sorted(found)


def run_module(module, argv, monkeypatch):
    """`python -m module argv...` in this process (its code runs afresh as __main__)."""
    monkeypatch.setattr(sys, "argv", [module, *argv])
    try:
        with warnings.catch_warnings():  # "found in sys.modules": expected, we imported it
            warnings.simplefilter("ignore", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as e:
        return e.code or 0
    return 0


def test_docs_name_the_commands_this_test_covers():
    modules = {m for m, _ in documented_modules()}
    assert {"experiments.train", "experiments.sample", "experiments.sweep", "experiments.devices",
            "analysis"} <= modules


@pytest.mark.parametrize("module, sub", documented_modules())
def test_every_documented_command_prints_its_help(module, sub, monkeypatch, capsys):
    code = run_module(module, [sub, "--help"] if sub else ["--help"], monkeypatch)
    out = capsys.readouterr().out
    assert code == 0 and "usage:" in out and "--help" in out


def test_devices_runs_and_says_what_it_sees(monkeypatch, capsys):
    assert run_module("experiments.devices", [], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "platform: cpu" in out and "devices: 8 in all" in out and "MFU peak" in out


def test_compare_torch_has_a_command_line(monkeypatch, capsys):
    assert run_module("experiments.compare_torch", ["--help"], monkeypatch) == 0
    assert "--torch-python" in capsys.readouterr().out


@pytest.mark.parametrize("module,argv", [("experiments.compare_torch", []),
                                         ("experiments.bench", ["--compare-torch"])])
def test_both_torch_comparison_commands_refuse_an_unknown_config(module, argv, monkeypatch, capsys):
    # Checked before any torch interpreter is looked for, so this needs no torch.
    assert run_module(module, argv + ["--configs", "a,z"], monkeypatch) == 2
    assert capsys.readouterr().err.strip() == "error: unknown config 'z'; choose from a, b, c"


# --- analysis inputs ----------------------------------------------------------------------

def test_parquet_and_tsv_tables_load_like_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = grid_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "grid.parquet")
    tsv = tmp_path / "grid.tsv"
    tsv.write_text("params\ttokens\tloss\n" + "".join(
        f"{r['params']}\t{r['tokens']}\t{r['loss']}\n" for r in rows))
    for path in (tmp_path / "grid.parquet", tsv):
        table = load_results(path)
        np.testing.assert_allclose(table.numeric("loss"), [r["loss"] for r in rows])
        np.testing.assert_allclose(table.numeric("params"), [r["params"] for r in rows])


def test_binary_file_that_is_not_parquet_is_one_line(tmp_path):
    path = tmp_path / "grid.bin"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AnalysisError, match="not a text table"):
        load_results(path)


def test_tokens_column_and_missing_column_names_only_the_files_columns(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(dict(params=r["params"], train_tokens=r["tokens"],
                                            eval_x_loss=r["loss"])) + "\n" for r in grid_rows()))
    table = load_results(path, loss_column="eval_x_loss", tokens_column="train_tokens")
    np.testing.assert_allclose(table.numeric("tokens"), [r["tokens"] for r in grid_rows()])
    with pytest.raises(AnalysisError) as err:
        table.numeric("nonembedding_params")
    listed = str(err.value).split("(have: ")[1].split(")")[0].split(", ")
    assert sorted(listed) == ["eval_x_loss", "params", "train_tokens"]


def test_best_of_lr_selection_says_how_many_rows_it_kept(tmp_path):
    rows = [dict(r, run=f"{r['run']}-lr{lr}", learning_rate=lr,
                 loss=r["loss"] * (1 + abs(np.log(lr / 3e-3))))
            for r in grid_rows(2, 2) for lr in (7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2, 2.4e-2)]
    path = tmp_path / "ladder.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(AnalysisError) as err:
        fit_law(load_results(path), "chinchilla", bootstrap=0)
    text = str(err.value)
    assert "4 points are too few" in text and "kept 4 of 24 rows" in text and "--select all" in text


# --- the analysis command line --------------------------------------------------------------

def test_misspelt_flag_gets_a_suggestion_and_the_right_help(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        analysis_cli.main(["fit", "r.csv", "--out", str(tmp_path), "--bootsrap", "0"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "did you mean --bootstrap?" in err and "see python -m analysis fit --help" in err
    assert "analysis analysis" not in err


def test_underscore_spelling_is_refused_everywhere_naming_the_dashed_flag(capsys):
    for parse, argv, dashed in (
            (analysis_cli._parse, ["fit", "r.csv", "--out", "o", "--params_column", "n"],
             "--params-column"),
            (sweep.parse_args, ["run", "--config", "configs/sweeps/smoke.py", "--workdir", "w",
                                "--retry_failed"], "--retry-failed")):
        with pytest.raises(SystemExit) as info:
            parse(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"(did you mean {dashed}?)" in err, err


def test_one_list_syntax_comma_separated_everywhere():
    args = analysis_cli._parse(["fit", "r.csv", "--out", "o", "--reference-flops", "1e18,1e19",
                                "--select-by", "learning_rate,batch_size"])
    assert args.reference_flops == [1e18, 1e19]
    assert args.select_by == ["learning_rate", "batch_size"]
    config = cli.load_config("configs/sweeps/smoke.py", ["--config.variants=100k,300k",
                                                         "--config.tokens=1536,3072",
                                                         "--config.seeds=0,1"])
    assert config.variants == ("100k", "300k") and config.tokens == (1536, 3072)
    assert config.seeds == (0, 1)
    # A Python literal still works (a tuple variant needs one).
    config = cli.load_config("configs/sweeps/smoke.py", ["--config.variants=((2, 48), '100k')"])
    assert config.variants == ((2, 48), "100k")
    assert cli.split_list("64, 128,256", "--widths", int) == [64, 128, 256]


def test_fit_reports_its_stages_on_a_terminal_only(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert analysis_cli._progress(io.StringIO()) is None
    stream = Terminal()
    say = analysis_cli._progress(stream)
    rows = [dict(r, flops=6 * r["params"] * r["tokens"]) for r in grid_rows(2, 2)]
    path = tmp_path / "smoke.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The smoke sweep's law: 4 points fit the three-parameter power law in compute.
    fit = fit_law(load_results(path), "power", "flops", bootstrap=3, progress=say)
    assert fit["n_points"] == 4
    lines = stream.getvalue().splitlines()
    assert any("fitting power to 4 points from" in ln for ln in lines)
    assert any("bootstrap: 3 resamples" in ln for ln in lines)


# --- first mistakes with the experiments ----------------------------------------------------

def test_sample_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit) as e:
        sample.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "is not a training run" in err and "train it first" not in err
    assert "looks like a sweep" in err


@pytest.mark.slow
def test_sweep_plan_needs_no_workdir_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = os.path.join(ROOT, "configs/sweeps/smoke.py")
    assert sweep.main(["plan", "--config", config, "--no-bench"]) == 0
    assert "4 runs" in capsys.readouterr().out and os.listdir(tmp_path) == []


def test_smoke_sweep_fits_a_law_its_four_points_support(tmp_path):
    from configs.sweeps import smoke
    from experiments.sweeplib import finish, plan
    from experiments.sweeplib.layout import SweepDir

    config = smoke.get_config()
    cmd = finish.analysis_commands(SweepDir(tmp_path), config)[0]
    law = cmd[cmd.index("--law") + 1]
    x = cmd[cmd.index("--x") + 1]
    from analysis.laws import make_law
    assert len(plan.expand(config)) >= make_law(law, x).min_points


def test_plan_charges_compilation_once_per_shape_and_startup_once_per_worker():
    from experiments.sweeplib import estimate, plan, spec

    runs = plan.expand(spec.load("configs/sweeps/smoke.py"))
    bench = {estimate.shape_key(r.config): dict(step_s=0.1, compile_s=10.0) for r in runs}
    got = estimate.estimates(runs, bench, workers=1)
    shapes_seen, total = set(), 0.0
    for i, r in enumerate(runs):  # by hand: the cost model of estimate's docstring
        key = estimate.shape_key(r.config)
        first = key not in shapes_seen
        shapes_seen.add(key)
        want = (estimate.PER_RUN_S + (estimate.STARTUP_S if i == 0 else 0)
                + (estimate.FIRST_OF_SHAPE * 10.0 if first else 0)
                + r.steps_to_train * 0.1 + estimate.eval_batches(r) * 0.1 / 3)
        assert got[r.name] == pytest.approx(want)
        total += want
    assert len(shapes_seen) == 2
    assert sum(got.values()) == pytest.approx(total)


def test_default_sweep_and_readme_state_the_same_duration():
    from configs.sweeps import default

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    said = re.search(r"about (\d+) minutes", default.__doc__).group(1)
    assert f"{said} minutes" in readme or f"{said} min" in readme
