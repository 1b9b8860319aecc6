"""research: a GPT language model, its data, sharded training, checkpoints and sampling."""
