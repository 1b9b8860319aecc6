"""After pretraining: SFT, gold-labelled preference pairs, reward models, best-of-n, DPO and the
over-optimisation fits, in one directory.

  python -m experiments.preference --config configs/preference.py:smoke --workdir DIR
                                   [--stages sft,dpo ...] [--config.KEY=VALUE ...]

Stages, in order: pretrain, data, sft, pairs, reward_model, best_of_n, dpo, fit. By default all
run; a finished stage is read back, not rerun, and an interrupted one resumes. `--stages` runs
only the named ones (the others must have finished in DIR). Writes DIR/preference.json.
"""

from __future__ import annotations

import os

from experiments import cli

PROG = "python -m experiments.preference"
STAGES = ("pretrain", "data", "sft", "pairs", "reward_model", "best_of_n", "dpo", "fit")


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_config(p, "configs/preference.py:smoke", "post-training config",
                   example="--config.dpo.betas=0.1,0.3")
    p.add_argument("--workdir", metavar="DIR", required=True, help="directory of every stage")
    p.add_argument("--stages", default=",".join(STAGES), metavar="LIST",
                   help="comma-separated stages to run (default: all)")
    return p


def pretrained_run(config, workdir: str, run: bool, run_config=None) -> str:
    """The run post-training starts from: pretrain_run, or one trained into DIR/pretrain (from
    `run_config`, the RunConfig of config.pretrain, built here when not given)."""
    from research.errors import ConfigError

    if config.pretrain_run:
        if not os.path.isfile(os.path.join(config.pretrain_run, "result.json")):
            raise ConfigError(f"pretrain_run={config.pretrain_run} is not a finished training "
                              "run (no result.json); train it or leave pretrain_run empty")
        return config.pretrain_run
    where = os.path.join(workdir, "pretrain")
    if run:
        from research import train

        run_config = run_config or cli.run_config(config.pretrain)
        cli.note(f"pretrain: {run_config.variant} into {where}")
        result = train.train(run_config, where, progress=False)
        cli.note(f"pretrain: loss {result['loss']:.3f} after {result['steps']} steps")
    elif not os.path.isfile(os.path.join(where, "result.json")):
        raise ConfigError(f"{where} holds no finished pretraining run; run the pretrain stage")
    return where


def main(argv) -> int:
    args, overrides = cli.parse(build_parser(), argv)
    config = cli.load_config(args.config, overrides, example="configs/preference.py:smoke")
    stages = cli.split_list(args.stages, "--stages")
    from research.errors import ConfigError
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    cli.quiet_absl()
    from experiments import preference_report
    from research.posttrain import pipeline

    workdir = args.workdir
    base = pretrained_run(config, workdir, "pretrain" in stages)
    ctx = pipeline.setup(config, workdir, base, say=cli.note)
    wanted = set(stages)
    if "data" in wanted:
        cli.note("data: prompts and SFT examples from the pretraining corpus")
        pipeline.stage_data(ctx)
    sft = None
    if wanted & {"sft", "pairs", "reward_model", "best_of_n", "dpo"}:
        if "sft" in wanted:
            cli.note("sft: supervised fine-tuning")
        sft = pipeline.stage_sft(ctx, run="sft" in wanted)
    if "pairs" in wanted and not config.pairs.train_file:
        cli.note("pairs: sampling the SFT policy, labelling by the gold reward")
        pipeline.stage_pairs(ctx, sft)
    rms = None
    if wanted & {"reward_model", "best_of_n"}:
        cli.note("reward_model: Bradley-Terry reward models")
        rms = pipeline.stage_reward_models(ctx, sft, run="reward_model" in wanted)
    if "best_of_n" in wanted:
        cli.note("best_of_n: sampling and ranking")
        pipeline.stage_best_of_n(ctx, sft, rms)
    if "dpo" in wanted:
        cli.note("dpo: preference tuning against the frozen SFT policy")
        pipeline.stage_dpo(ctx, sft)
    if "fit" in wanted:
        preference_report.write_and_tell(config, workdir)
    return 0


if __name__ == "__main__":
    cli.run(main)
