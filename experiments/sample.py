"""Continue a prompt from a run's latest checkpoint; prints the prompt and its continuation.

  python -m experiments.sample RUN_DIR --prompt TEXT [--temperature T --top-k K --top-p P
                               --max-new-tokens M --seed S]

An empty prompt starts a new document.
"""

from __future__ import annotations

import os
import sys

from experiments import cli

PROG = "python -m experiments.sample"


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                   help="a training run's directory (the --workdir it was trained in)")
    p.add_argument("--prompt", default="", help="text to continue ('' = start a new document)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 = greedy")
    p.add_argument("--top-k", type=int, default=0, metavar="K",
                   help="sample among the K most likely tokens; 0 = off")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P",
                   help="nucleus: the smallest set of most likely tokens reaching probability P; "
                        "1 = off")
    p.add_argument("--max-new-tokens", type=int, default=200, metavar="M",
                   help="tokens to generate")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    return p


def main(argv) -> int:
    args, _ = cli.parse(build_parser(), argv, allow_overrides=False)
    workdir = args.run_dir
    if not workdir:
        cli.fail(f"no run directory given; {PROG} RUN_DIR --prompt TEXT")
    if not os.path.isdir(workdir):
        cli.fail(f"run directory {workdir} does not exist; pass the directory of a training run")
    if not os.path.isfile(os.path.join(workdir, "config.json")):
        # Not a run at all (a sweep directory, a typo'd parent folder): say so, rather than
        # suggest training a run there.
        hint = (f"it looks like a sweep; pass one of its runs, e.g. {workdir}/runs/NAME"
                if os.path.isdir(os.path.join(workdir, "runs")) else
                "pass the --workdir of a run made by python -m experiments.train")
        cli.fail(f"{workdir} is not a training run (no config.json); {hint}")

    import numpy as np
    from research import checkpoint, sample
    from research.data import tokenizer

    cli.quiet_absl("error")  # the output is the text, not checkpoint chatter
    checkpoints = checkpoint.checkpoint_dir(workdir)
    # Orbax names each finished step's directory by its number (unfinished ones carry a suffix).
    if not os.path.isdir(checkpoints) or not any(n.isdigit() for n in os.listdir(checkpoints)):
        cli.fail(f"no checkpoint in {workdir} yet; train it first: python -m experiments.train "
                 f"--config configs/gpt.py:VARIANT --workdir {workdir}")
    try:
        config, params = checkpoint.load_for_inference(workdir)
    except FileNotFoundError as e:  # e.g. no config.json next to the checkpoints
        cli.fail(cli.one_line(e))
    tok = tokenizer.load_tokenizer(workdir, config.data)
    prompt_ids = np.asarray(tok.encode(args.prompt), np.int32)
    # The model has to condition on something: an empty prompt is a document boundary.
    context_ids = prompt_ids if prompt_ids.size else np.array([tok.eod_id], np.int32)
    room = int(config.model.context_length) - args.max_new_tokens
    if 0 < room < context_ids.size:
        print(f"note: the model sees only the prompt's last {room} tokens (context "
              f"{config.model.context_length}, {args.max_new_tokens} new)", file=sys.stderr)
    new_ids = sample.generate(
        config.model, params, context_ids,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    # Decoding prompt and continuation together keeps a character split across them whole.
    print(tok.decode(np.concatenate([prompt_ids, new_ids])))
    return 0


if __name__ == "__main__":
    cli.run(main)
