"""Continue a prompt from a run's latest checkpoint: python -m experiments.sample --workdir DIR
--prompt TEXT [--temperature T --top_k K --top_p P --max_new_tokens M --seed S].

Prints the prompt followed by its continuation. An empty prompt starts a new document.
"""

from experiments import cli  # noqa: F401  (sets quiet logging before jax loads)

import os
import sys

from absl import flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding checkpoints.",
                               required=True)
_PROMPT = flags.DEFINE_string("prompt", "", "Text to continue ('' = start a new document).")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 = greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens; 0 = off.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus: the smallest set of most likely tokens "
                            "reaching this probability; 1 = off.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 200, "Tokens to generate.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")


def main(argv):
    del argv
    workdir = _WORKDIR.value
    if not os.path.isdir(workdir):
        cli.fail(f"workdir {workdir} does not exist; pass the directory of a training run")

    import numpy as np
    from research import checkpoint, sample, tokenizer
    from research.model import ModelConfig

    logging.set_verbosity(logging.ERROR)  # the output is the text, not checkpoint chatter

    checkpoints = checkpoint.checkpoint_dir(workdir)
    # Orbax names each finished step's directory by its number (unfinished ones carry a suffix).
    if not os.path.isdir(checkpoints) or not any(n.isdigit() for n in os.listdir(checkpoints)):
        cli.fail(f"no checkpoint in {workdir} yet; train it first: python -m experiments.train "
                 f"--config configs/gpt.py:VARIANT --workdir {workdir}")
    try:
        config, params = checkpoint.load_for_inference(workdir)
    except FileNotFoundError as e:  # e.g. no config.json next to the checkpoints
        cli.fail(str(e).splitlines()[0])
    tok = tokenizer.load_tokenizer(workdir, config.data)
    prompt_ids = np.asarray(tok.encode(_PROMPT.value), np.int32)
    # The model has to condition on something: an empty prompt is a document boundary.
    context_ids = prompt_ids if prompt_ids.size else np.array([tok.eod_id], np.int32)
    room = int(config.model.context_length) - _MAX_NEW_TOKENS.value
    if 0 < room < context_ids.size:
        print(f"note: the model sees only the prompt's last {room} tokens (context "
              f"{config.model.context_length}, {_MAX_NEW_TOKENS.value} new)", file=sys.stderr)
    new_ids = sample.generate(
        ModelConfig.from_config(config.model), params, context_ids,
        max_new_tokens=_MAX_NEW_TOKENS.value, temperature=_TEMPERATURE.value,
        top_k=_TOP_K.value, top_p=_TOP_P.value, seed=_SEED.value)
    # Decoding prompt and continuation together keeps a character split across them whole.
    print(tok.decode(np.concatenate([prompt_ids, new_ids])))


if __name__ == "__main__":
    cli.run_main(main)
