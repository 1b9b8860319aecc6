"""End to end: an existing tokenizer.json and an existing SentencePiece model each train and
sample; two evaluation sets land in result.json, metrics.jsonl and results.csv."""

import csv
import hashlib
import io
import json
import math
import types

import numpy as np
import pytest

from configs import gpt
from experiments.sweeplib import results as results_lib
from experiments.sweeplib.layout import SweepDir
from research import checkpoint, sample, train as train_lib
from research.data import tokenizer as tokenizer_lib
from research.config import RunConfig
from tests.test_data_sources import make_docs, write_jsonl, write_parquet


def hf_tokenizer_file(path, docs):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(docs, trainer)
    tok.save(str(path))
    return path


def sentencepiece_file(path, docs):
    import sentencepiece as spm

    model = io.BytesIO()
    # Library defaults (unigram, dummy prefix, NFKC): a model as found in the wild.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for d in docs for line in d.splitlines() if line.strip()]),
        model_writer=model, vocab_size=100, hard_vocab_limit=False, minloglevel=2)
    path.write_bytes(model.getvalue())
    return path


def tiny_config(corpus, data_dir, tokenizer, vocab_size, eval_sets):
    c = gpt.get_config("tiny")
    c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.context_length = 1, 32, 2, 16
    c.model.vocab_size = vocab_size
    c.train.batch_size, c.train.tokens = 8, 8 * 16 * 3  # 3 steps
    c.train.eval_every, c.train.eval_batches, c.train.checkpoint_every = 100, 2, 100
    c.train.log_every = 1
    c.mesh.data = 8  # the 8 fake devices of conftest
    c.data.corpus, c.data.data_dir = str(corpus), str(data_dir)
    c.data.tokenizer, c.data.eval_sets = str(tokenizer), eval_sets
    c.data.validation_fraction = 0.3
    return c


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tokenizer.json", "sentencepiece"])
def test_existing_tokenizer_file_trains_and_samples(tmp_path, kind):
    docs = make_docs(80, seed=5)
    corpus = write_jsonl(tmp_path / "train.jsonl.zst", docs)
    other = write_parquet(tmp_path / "other.parquet", make_docs(30, seed=9))
    if kind == "tokenizer.json":
        tok_file, prefix = hf_tokenizer_file(tmp_path / "tokenizer.json", docs), "hf"
    else:
        tok_file, prefix = sentencepiece_file(tmp_path / "sp.model", docs), "spm"
    tok = tokenizer_lib.load_file(tok_file)
    c = tiny_config(corpus, tmp_path / "data", tok_file, tok.vocab_size,
                    ("validation", f"other={other}"))

    sweep = SweepDir(tmp_path / "sweep")
    run = sweep.run_dir("r0")
    result = train_lib.train(RunConfig.from_configdict(c), str(run), progress=False)

    assert result["status"] == "done" and result["tokenizer"].startswith(prefix)
    assert result["tokenizer_sha256"] == hashlib.sha256(tok_file.read_bytes()).hexdigest()
    assert result["eval_sets"] == {"validation": "validation", "other": str(other)}
    assert result["eval_validation_loss"] == result["loss"]
    assert result["eval_validation_loss_stderr"] == result["loss_stderr"]
    assert math.isfinite(result["eval_other_loss"]) and result["eval_other_loss_stderr"] > 0
    assert result["eval_other_loss"] != result["loss"]
    final = [json.loads(line) for line in open(run / "metrics.jsonl") if "eval/" in line][-1]
    assert final["eval/loss"] == result["loss"]
    assert final["eval/other/loss"] == result["eval_other_loss"]

    row = types.SimpleNamespace(name="r0", is_data_point=True, role="single", variant="tiny",
                                seed=0, compute_budget=None, depends_on="")
    with sweep.lock():
        assert results_lib.write(sweep, [row]) == 1
    table = list(csv.DictReader(open(sweep.results_csv)))
    assert float(table[0]["eval_other_loss"]) == pytest.approx(result["eval_other_loss"])
    assert float(table[0]["eval_validation_loss"]) == pytest.approx(result["loss"])
    assert float(table[0]["loss"]) == pytest.approx(result["loss"])

    # Sampling reads the run's own copy of the tokenizer: the original may be gone.
    tok_file.unlink()
    config, params = checkpoint.load_for_inference(str(run))
    run_tok = tokenizer_lib.load_tokenizer(str(run), config.data)
    assert run_tok.sha256 == result["tokenizer_sha256"]
    prompt = run_tok.encode("alpha beta")
    new = sample.generate(config.model, params, prompt,
                          max_new_tokens=5, temperature=1.0, top_k=0, top_p=1.0, seed=0)
    assert len(new) == 5 and np.all((0 <= np.asarray(new)) & (np.asarray(new) < tok.vocab_size))
    assert run_tok.decode(np.concatenate([prompt, new])).startswith("alpha beta")
