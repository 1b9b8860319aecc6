"""The token store: built once per (corpus, tokenizer) even by concurrent processes, narrowest
dtype, document boundaries, memory-mapped, rebuilt when the corpus or tokenizer changes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from research.data import batches as data_lib
from research.data import token_store
from tests.test_data_sources import cfg_for, make_docs, write_jsonl

REPO = Path(__file__).resolve().parents[1]

# Waits for a start file (so both processes have imported everything), then loads the data and
# prints the store path and a digest of the train tokens. INFO logs show who tokenized.
SCRIPT = """
import hashlib, logging, os, sys, time
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
from research.data import batches as data
from tests.test_data_sources import cfg_for
cfg = cfg_for(sys.argv[2], sys.argv[3], store_workers=int(sys.argv[5]))
while not os.path.exists(sys.argv[4]):
    time.sleep(0.01)
td = data.load_token_data(cfg, progress=False)
print(td.info["store"], hashlib.sha256(td.train.tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_two_concurrent_processes_build_the_store_once(tmp_path):
    # 700 documents: 3 chunks per train split, so the builder really uses 2 worker processes.
    corpus = write_jsonl(tmp_path / "c.jsonl.zst", make_docs(700, seed=3))
    go = tmp_path / "go"
    args = [sys.executable, "-c", SCRIPT, str(REPO), str(corpus), str(tmp_path / "shared"),
            str(go), "2"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(1.0)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert outs[0][0] == outs[1][0]  # same store, same tokens
    logs = outs[0][1] + outs[1][1]
    assert logs.count("tokenized train:") == 1 and logs.count("tokenized validation:") == 1, logs
    assert "2 workers" in logs
    store_root = tmp_path / "shared" / token_store.STORE_DIRNAME
    assert not list(store_root.glob(".*.tmp-*"))

    # The multi-process build equals a single-process one.
    single = data_lib.load_token_data(cfg_for(corpus, tmp_path / "single", store_workers=1),
                                      progress=False)
    import hashlib
    assert outs[0][0].split()[1] == hashlib.sha256(single.train.tobytes()).hexdigest()


def test_store_layout_dtype_boundaries_and_memmap(tmp_path):
    docs = make_docs(30)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    td = data_lib.load_token_data(cfg_for(corpus, tmp_path / "d"), progress=False)
    assert isinstance(td.train, np.memmap) and td.train.dtype == np.uint8
    assert not td.train.flags.writeable
    store = Path(td.info["store"])
    info = json.loads((store / "info.json").read_text())
    assert info["tokenizer_sha256"] == td.tokenizer.sha256 and info["dtype"] == "uint8"
    for split, tokens in (("train", td.train), ("validation", td.val)):
        offsets = np.load(store / f"{split}.docs.npy")
        assert offsets[0] == 0 and offsets[-1] == len(tokens)
        assert len(offsets) == info[f"{split}_documents"] + 1
        # Every document ends with eod exactly at its boundary and nowhere else (bytes never 0xFF).
        assert np.array_equal(np.flatnonzero(np.asarray(tokens) == 0xFF), offsets[1:] - 1)

    assert token_store.dtype_for(256) == np.uint8
    assert token_store.dtype_for(257) == np.uint16 and token_store.dtype_for(65536) == np.uint16
    assert token_store.dtype_for(65537) == np.uint32


def test_store_is_reused_and_rebuilt_on_change(tmp_path, monkeypatch):
    docs = make_docs(30)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    cfg = cfg_for(corpus, tmp_path / "d")
    first = data_lib.load_token_data(cfg, progress=False)

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a finished store")

    with monkeypatch.context() as m:
        m.setattr(token_store, "_build", no_build)
        again = data_lib.load_token_data(cfg, progress=False)
    assert again.info["store"] == first.info["store"]

    bpe = data_lib.load_token_data(cfg_for(corpus, tmp_path / "d", tokenizer="bpe",
                                           bpe_vocab_size=300), tmp_path / "run", progress=False)
    assert bpe.train.dtype == np.uint16 and bpe.info["store"] != first.info["store"]

    write_jsonl(corpus, docs + ["one more document"])
    os.utime(corpus, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    changed = data_lib.load_token_data(cfg, progress=False)
    assert changed.info["store"] != first.info["store"]
    assert changed.info["corpus_sha256"] != first.info["corpus_sha256"]


def test_vocab_size_mismatch_is_one_line_before_tokenizing(tmp_path, monkeypatch):
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(10))
    monkeypatch.setattr(token_store, "_build", lambda *a, **k: pytest.fail("tokenized anyway"))
    with pytest.raises(data_lib.VocabSizeError) as info:
        data_lib.load_token_data(cfg_for(corpus, tmp_path / "d"), vocab_size=512)
    assert str(info.value) == ("model.vocab_size=512 but the byte tokenizer has 256 tokens; "
                               "set --config.model.vocab_size=256")


def test_eval_set_specs_are_named_and_checked(tmp_path):
    assert data_lib.parse_eval_sets(()) == [("validation", "validation")]
    assert data_lib.parse_eval_sets(("validation", "wiki=/x/a.jsonl.zst", "/y/books.parquet",
                                     "/z/shard-*.jsonl")) == [
        ("validation", "validation"), ("wiki", "/x/a.jsonl.zst"), ("books", "/y/books.parquet"),
        ("shard-", "/z/shard-*.jsonl")]
    with pytest.raises(data_lib.DataError, match="twice"):
        data_lib.parse_eval_sets(("a=/x.jsonl", "a=/y.jsonl"))
    with pytest.raises(data_lib.DataError, match="NAME=SOURCE"):
        data_lib.parse_eval_sets(("bad name=/x.jsonl",))
    cfg = cfg_for(write_jsonl(tmp_path / "c.jsonl", ["a", "b"]), tmp_path / "d",
                  eval_sets=("validation", f"gone={tmp_path / 'missing.jsonl'}"))
    from research.errors import ConfigError
    with pytest.raises(ConfigError, match="missing.jsonl"):
        data_lib.check_sources(cfg)


def test_epoch_order_is_a_bijection_computed_per_index():
    for n in (1, 2, 3, 17, 1000, 4097):
        for seed, epoch in ((0, 0), (3, 1)):
            order = data_lib._epoch_order(seed, epoch, n, np.arange(n))
            assert sorted(order.tolist()) == list(range(n))
    a = data_lib._epoch_order(0, 0, 10**9, np.array([5, 6, 7]))  # no 8 GB permutation needed
    assert a.tolist() == data_lib._epoch_order(0, 0, 10**9, np.arange(8))[5:].tolist()
    assert data_lib._epoch_order(0, 1, 1000, np.arange(1000)).tolist() != \
        data_lib._epoch_order(0, 0, 1000, np.arange(1000)).tolist()
