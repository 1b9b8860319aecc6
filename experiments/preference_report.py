"""preference.json and the figures of a preference run directory, from its stages' files:
the over-optimisation fits (analysis.overoptimization) and the headline numbers."""

from __future__ import annotations

import json
import os

import numpy as np

from analysis import overoptimization as oo


def _read(path):
    from research.errors import UserError

    if not os.path.isfile(path):
        raise UserError(f"{path} is missing; run the stage that writes it first (--stages)")
    with open(path) as f:
        return json.load(f)


def _rises_then_falls(values) -> bool:
    """The curve's largest value is strictly inside it and both ends are lower."""
    v = np.asarray(values)
    top = int(np.argmax(v))
    return 0 < top < len(v) - 1


def _count_lines(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _binomial_stderr(p, n):
    return float(np.sqrt(p * (1 - p) / n)) if n else None


def best_of_n_section(workdir, fit_cfg) -> tuple[list, list, dict]:
    bon = _read(os.path.join(workdir, "best_of_n.json"))
    fits, curves = [], []
    for rm in bon["reward_models"]:
        f = oo.fit_table(bon["d"], rm["gold_gain_table"], "bon", fit_cfg.bootstrap, fit_cfg.seed)
        f["train_pairs"] = rm["train_pairs"]
        f["peak"] = oo.peak(f["alpha"], f["beta"], "bon")
        proxy = np.asarray(rm["proxy"])
        f["gold_rises_then_falls"] = _rises_then_falls(rm["gold"])
        f["proxy_keeps_rising"] = bool(np.all(np.diff(proxy) > 0))
        fits.append(f)
        gold = np.asarray(rm["gold"])
        curves.append({"label": f"RM {rm['train_pairs']} pairs", "d": bon["d"],
                       "gold": gold - gold[0], "proxy": proxy - proxy[0], "fit": f})
    return fits, curves, bon


def dpo_section(workdir, config, bon, fit_cfg):
    from research.posttrain.pipeline import beta_name

    runs = [_read(os.path.join(workdir, beta_name(b), "result.json")) for b in config.dpo.betas]
    sft_gold = np.asarray(bon["gold_per_prompt"])
    for r in runs:  # gold gain over SFT, paired by prompt, with its standard error
        diff = np.asarray(r["gold_per_prompt"]) - sft_gold
        r["gold_gain_over_sft"] = float(diff.mean())
        r["gold_gain_over_sft_stderr"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
        held = r.get("heldout_pairs") or _count_lines(
            config.pairs.heldout_file or os.path.join(workdir, "data", "pairs_heldout.jsonl"))
        r["heldout_accuracy_stderr"] = _binomial_stderr(r["heldout_accuracy"], held)
    # The SFT policy is the point d = 0; every policy is measured on the same prompts.
    gain = np.stack([np.zeros_like(sft_gold)] + [np.asarray(r["gold_per_prompt"]) - sft_gold
                                                 for r in runs], 1)
    kl = np.stack([np.zeros_like(sft_gold)] + [np.asarray(r["kl_per_prompt"]) for r in runs], 1)
    fit = None
    if len(runs) >= 2:
        fit = oo.fit_table(None, gain, "rl", fit_cfg.bootstrap, fit_cfg.seed, d_table_PK=kl)
        fit["peak"] = oo.peak(fit["alpha"], fit["beta"], "rl")
        order = np.argsort([0.0] + [r["kl"] for r in runs])
        d = np.sqrt(np.maximum(kl.mean(0), 0))[order]
        curve = {"label": "DPO over beta", "d": d, "gold": gain.mean(0)[order], "proxy": None,
                 "fit": fit}
    else:
        curve = None
    return runs, fit, curve


def write(config, workdir: str) -> dict:
    fit_cfg = config.fit
    fits, curves, bon = best_of_n_section(workdir, fit_cfg)
    dpo_runs, dpo_fit, dpo_curve = dpo_section(workdir, config, bon, fit_cfg)
    rms = [_read(os.path.join(workdir, f"rm_{k}", "result.json"))
           for k in sorted(int(x) for x in config.reward_model.train_pairs)]
    for r in rms:
        r["heldout_accuracy_stderr"] = _binomial_stderr(r["heldout_accuracy"], r["heldout_pairs"])
    sft = _read(os.path.join(workdir, "sft", "result.json"))
    smallest = bon["reward_models"][0]
    figures = os.path.join(workdir, "figures")
    paths = [oo.plot_curves(curves, os.path.join(figures, "best_of_n.png"),
                            "best-of-n: gold reward gain and fitted R_bon")]
    if dpo_curve is not None:
        paths.append(oo.plot_curves([dpo_curve], os.path.join(figures, "dpo.png"),
                                    "DPO over beta: gold reward gain and fitted R_RL"))
    if len(fits) >= 2:
        paths.append(oo.plot_coefficients([f["train_pairs"] for f in fits], fits,
                                          os.path.join(figures, "coefficients.png"),
                                          "reward-model training pairs"))
    headline_dpo = {k: v for k, v in dpo_runs[0].items() if not k.endswith("_per_prompt")}
    summary = {
        "reward_model": {**rms[-1], "by_train_pairs": rms},
        "sft": {"gold_reward": bon["sft_gold_reward"], "vowel_share": bon["sft_vowel_share"],
                "heldout_loss": sft["heldout_loss"],
                "heldout_loss_before": sft["heldout_loss_before"]},
        "dpo": {**headline_dpo, "sweep": [{k: v for k, v in r.items()
                                           if not k.endswith("_per_prompt")} for r in dpo_runs]},
        "best_of_n": [{"n": n, "kl": kl, "proxy_reward": p, "gold_reward": g, "vowel_share": v}
                      for n, kl, p, g, v in zip(bon["n"], bon["kl"], smallest["proxy"],
                                                smallest["gold"], smallest["vowel_share"])],
        "best_of_n_reward_model_pairs": smallest["train_pairs"],
        "best_of_n_by_reward_model": [{"train_pairs": rm["train_pairs"], "gold": rm["gold"],
                                       "proxy": rm["proxy"]} for rm in bon["reward_models"]],
        "overoptimization": {"best_of_n": fits, "dpo": dpo_fit},
        "gold": dict(config.gold),
        "figures": [os.path.relpath(p, workdir) for p in paths],
    }
    from common import files

    files.write_json(os.path.join(workdir, "preference.json"), summary)
    return summary


def write_and_tell(config, workdir: str) -> dict:
    """write(), then the headline and where it went, on stdout (both preference commands)."""
    summary = write(config, workdir)
    print(headline(summary))
    print(f"wrote {os.path.join(workdir, 'preference.json')} and "
          f"{os.path.join(workdir, 'figures')}")
    return summary


def headline(s: dict) -> str:
    f = s["overoptimization"]["best_of_n"][0]
    return (f"reward model held-out accuracy {s['reward_model']['heldout_accuracy']:.3f}; "
            f"DPO (beta {s['dpo']['beta']:g}) held-out accuracy {s['dpo']['heldout_accuracy']:.3f},"
            f" gold {s['dpo']['gold_reward']:.3f} vs SFT {s['sft']['gold_reward']:.3f}; "
            f"best-of-n (RM {f['train_pairs']} pairs) R_bon fit R^2 {f['r2']:.3f}, "
            f"gold rises then falls: {f['gold_rises_then_falls']}, proxy keeps rising: "
            f"{f['proxy_keeps_rising']}")
