"""The over-optimisation sweep as sweep-runner points (configs/sweeps/preference.py):

  pref-shared-HASH       pretrain (or reuse pretrain_run), data, SFT, pairs: the shared stages
  pref-rm<k>-HASH        one reward model on the first k pairs, and its best-of-n curve
  pref-dpo-beta<b>-HASH  one DPO run at beta = b

Each reward-model and DPO point depends on the shared point (the runner's `depends_on`, as a
WSD branch depends on its parent): it waits for it, reads its data/ and sft/ from the shared
point's directory (handed over by the child as point["parent_dir"]) and writes only its own
run directory. A
point runs the same pipeline functions as `python -m experiments.preference`, so it resumes from
its checkpoints and is retried like a training run. When every point is final the runner calls

  python -m experiments.preference_sweep fit DIR

which copies the points' results into DIR/analysis/ in the layout the one command writes
(sft/, rm_<k>/, dpo_beta<b>/ result.json files and one best_of_n.json over every reward model)
and writes DIR/analysis/preference.json and DIR/analysis/figures/ with the same code
(experiments/preference_report.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys

from common import files

PROG = "python -m experiments.preference_sweep"
ROLES = {"shared": "pref_shared", "reward_model": "pref_reward_model", "dpo": "pref_dpo"}
# The preference-config sections each stage reads: a point's name hashes only these (and its
# parent's name), so adding a beta leaves the finished reward-model points where they are.
SHARED_SECTIONS = ("pretrain_run", "mesh", "prompts", "gold", "sft", "pairs")
STAGE_SECTIONS = {"shared": SHARED_SECTIONS, "reward_model": ("reward_model", "best_of_n"),
                  "dpo": ("dpo",)}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- plan


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def points(sweep) -> list:
    """The sweep's points, the shared one first (plan.Run objects; plan.expand calls this)."""
    from experiments import cli
    from experiments.sweeplib import plan
    from experiments.sweeplib.errors import SweepError
    from research import flops as flops_lib, run_dir, run_math
    from research.errors import ConfigError

    pref = sweep.preference
    try:
        run_cfg = cli.run_config(pref.pretrain)
    except ConfigError as e:
        raise SweepError(f"preference.pretrain: {e}") from None
    if not pref.reward_model.train_pairs or not pref.dpo.betas:
        raise SweepError("a preference sweep needs preference.reward_model.train_pairs and "
                         "preference.dpo.betas (one point each)")
    counts = flops_lib.param_counts(run_cfg.model)
    settings = pref.to_dict()
    del settings["pretrain"]  # the runs' own config carries it (Run.config)
    ctx = run_cfg.model.context_length

    def make(stage, value, steps, tokens, seed, parent="", **section_changes):
        point_cfg = json.loads(json.dumps(settings, default=list))
        for section, changes in section_changes.items():
            point_cfg[section].update(changes)
        identity = {"stage": stage, "parent": parent or run_dir.config_hash(run_cfg),
                    **{k: point_cfg[k] for k in STAGE_SECTIONS[stage]}}
        tag = "shared" if value is None else (
            f"rm{value}" if stage == "reward_model" else f"dpo-beta{value:g}")
        point = {"stage": stage, "preference": point_cfg}
        if value is not None:
            point["train_pairs" if stage == "reward_model" else "beta"] = value
        return plan.Run(
            name=f"pref-{tag}-{_hash(identity)}", role=ROLES[stage],
            variant=run_cfg.variant, seed=int(seed), config=run_cfg, steps=max(1, int(steps)),
            tokens=int(tokens), flops=flops_lib.run_flops(run_cfg.model, tokens),
            params=counts["params"], nonembedding_params=counts["nonembedding_params"],
            depends_on=parent, point=point)

    # Steps and tokens: the training the point does (rows of ctx tokens; a pair is two rows).
    pre_steps = 0 if pref.pretrain_run else run_math.steps_for_tokens(
        run_cfg.train.tokens, run_cfg.train, run_cfg.model)
    pre_tokens = pre_steps * run_math.tokens_per_step(run_cfg.train, run_cfg.model)
    shared = make("shared", None, pre_steps + pref.sft.steps,
                  pre_tokens + pref.sft.steps * pref.sft.batch_size * ctx, pref.sft.seed)
    rm, dpo = pref.reward_model, pref.dpo
    out = [shared]
    for k in sorted({int(x) for x in rm.train_pairs}):
        out.append(make("reward_model", k, rm.steps, rm.steps * 2 * rm.batch_size * ctx,
                        rm.seed, shared.name,
                        reward_model={"train_pairs": [k]}))
    for b in dict.fromkeys(float(x) for x in dpo.betas):
        out.append(make("dpo", b, dpo.steps, dpo.steps * 2 * dpo.batch_size * ctx, dpo.seed,
                        shared.name,
                        dpo={"betas": [b]}))
    return out


# ---------------------------------------------------------------- one point


def _last_training_loss(stage_dir: str) -> float:
    return float(files.read_jsonl(os.path.join(stage_dir, "metrics.jsonl"))[-1]["loss"])


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None}


def train_point(config, workdir: str, progress: bool = True, point: dict | None = None) -> dict:
    """Run one point (runner.train_fn of a preference sweep): `config` is the pretraining
    RunConfig, `point` the stage and its settings (plan.Run.point) plus `parent_dir`, the
    shared point's directory (set by the child; empty for the shared point itself). Writes
    workdir/result.json (status, the point's numbers, `loss`) last."""
    import ml_collections

    from experiments import preference
    from research import compile_cache, flops as flops_lib
    from research.errors import ConfigError
    from research.posttrain import pipeline

    del progress  # the stages print one line each
    if not point or point.get("stage") not in ROLES:
        raise ConfigError("runner.train_fn=experiments.preference_sweep:train_point runs only "
                          "the points of a preference sweep (configs/sweeps/preference.py)")
    pref = ml_collections.ConfigDict(point["preference"])
    stage = point["stage"]
    result = {"status": "done", "stage": stage, "seed": None,
              **flops_lib.param_counts(config.model)}
    shared = point.get("parent_dir", "")
    if stage != "shared" and not os.path.isfile(os.path.join(shared, "sft", "result.json")):
        raise pipeline.StageError(
            f"the {stage} point needs the shared stages (data, sft, pairs) finished in "
            f"{shared or '(no shared directory given)'}, and they are not; run the whole sweep, "
            "whose shared point runs first")
    compile_cache.enable()  # as for training runs: a retried or later point loads its programs
    if stage == "shared":
        base = preference.pretrained_run(pref, workdir, run=True, run_config=config)
        ctx = pipeline.setup(pref, workdir, base, say=_say)
        _say("data, sft, pairs: the shared stages")
        pipeline.stage_data(ctx)
        sft = pipeline.stage_sft(ctx)
        if not pref.pairs.train_file:
            pipeline.stage_pairs(ctx, sft)
        sft_result = files.read_json(ctx.shared("sft", "result.json"))
        result.update(_scalars(sft_result), seed=pref.sft.seed, loss=sft_result["heldout_loss"])
    else:
        base = preference.pretrained_run(pref, shared, run=False)
        ctx = pipeline.setup(pref, workdir, base, say=_say, shared_dir=shared)
        sft = pipeline.stage_sft(ctx, run=False)
        if stage == "reward_model":
            k = int(point["train_pairs"])
            _say(f"reward_model: {k} pairs, then best-of-n with it")
            rms = pipeline.stage_reward_models(ctx, sft)
            pipeline.stage_best_of_n(ctx, sft, rms)
            where = ctx.path(f"rm_{k}")
            result.update(_scalars(files.read_json(os.path.join(where, "result.json"))),
                          seed=pref.reward_model.seed, loss=_last_training_loss(where))
        else:
            beta = float(point["beta"])
            _say(f"dpo: beta {beta:g}")
            (run,) = pipeline.stage_dpo(ctx, sft)
            where = ctx.path(pipeline.beta_name(beta))
            result.update(_scalars(run), seed=pref.dpo.seed, loss=_last_training_loss(where))
    files.write_json(os.path.join(workdir, "result.json"), result)
    return result


# ---------------------------------------------------------------- the fit over the points


def _copy(src: str, dst: str) -> None:
    from research.errors import UserError

    if not os.path.isfile(src):
        raise UserError(f"{src} is missing: its point has not finished; see "
                        "`python -m experiments.sweep status DIR`")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)


def merge_best_of_n(parts: list[dict]) -> dict:
    """One best_of_n.json over every reward model, from the points' one-model files (each
    point sampled the same SFT policy with the same seed, so the samples agree)."""
    from research.errors import UserError

    first = parts[0]
    for p in parts[1:]:
        for key in ("n", "prompts", "samples", "gold_per_prompt"):
            if p[key] != first[key]:
                raise UserError(f"the reward-model points' best-of-n samples differ ({key}); "
                                "their shared SFT policy or best_of_n settings are not the same")
    merged = {k: v for k, v in first.items() if k != "reward_models"}
    merged["reward_models"] = sorted((rm for p in parts for rm in p["reward_models"]),
                                     key=lambda rm: rm["train_pairs"])
    return merged


def collect(root: str):
    """The points' results in DIR/analysis/, laid out as the one command's directory; returns
    (the preference config, that directory)."""
    import ml_collections

    from experiments.sweeplib import plan
    from experiments.sweeplib.layout import SweepDir, read_json
    from research.errors import UserError
    from research.posttrain.pipeline import beta_name

    sweep_dir = SweepDir(root)
    stored = read_json(sweep_dir.plan_file)
    if stored is None or stored["sweep"].get("kind") != "preference":
        raise UserError(f"{root} holds no preference sweep (no sweep.json of kind preference); "
                        "run `python -m experiments.sweep run --config "
                        "configs/sweeps/preference.py --workdir DIR` first")
    pref = ml_collections.ConfigDict(stored["sweep"]["preference"])
    out = str(sweep_dir.analysis)
    best_of_n = []
    for run in (plan.Run.from_json(r) for r in stored["runs"]):
        src = str(sweep_dir.run_dir(run.name))
        stage = run.point["stage"]
        if stage == "shared":
            _copy(os.path.join(src, "sft", "result.json"), os.path.join(out, "sft", "result.json"))
        elif stage == "reward_model":
            name = f"rm_{run.point['train_pairs']}"
            _copy(os.path.join(src, name, "result.json"), os.path.join(out, name, "result.json"))
            best_of_n.append(files.read_json(os.path.join(src, "best_of_n.json")))
        else:
            name = beta_name(float(run.point["beta"]))
            _copy(os.path.join(src, name, "result.json"), os.path.join(out, name, "result.json"))
    files.write_json(os.path.join(out, "best_of_n.json"), merge_best_of_n(best_of_n))
    return pref, out


def main(argv) -> int:
    from experiments import cli, preference_report

    p = cli.parser(PROG, "The over-optimisation fit over a preference sweep's points: "
                         "DIR/analysis/preference.json and figures.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=cli.ArgumentParser)
    fit = sub.add_parser("fit", help="collect the points' results and fit",
                         prog=f"{PROG} fit")
    fit.add_argument("sweep_dir", metavar="DIR", help="the sweep directory")
    args, _ = cli.parse(p, argv, allow_overrides=False)
    preference_report.write_and_tell(*collect(args.sweep_dir))
    return 0


if __name__ == "__main__":
    from experiments import cli as _cli

    _cli.run(main)
