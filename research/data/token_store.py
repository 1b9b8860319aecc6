"""The token store: each (corpus, tokenizer) pair tokenized once, on disk, memory-mapped by all runs.

Layout of `<data_dir>/token_store/<corpus key>-<tokenizer name>/` (both parts carry content
hashes, so a changed corpus or tokenizer gets a new store):
- `<split>.tokens`: raw token ids in the narrowest unsigned dtype that holds the vocabulary,
  the documents in order, each followed by the tokenizer's end-of-document id;
- `<split>.docs.npy`: int64 offsets of the documents' first tokens, plus the total (n + 1);
- `info.json`: dtype, counts, hashes, build time. Written last: it marks a complete store.

Building: one process per core, each tokenizing a range of documents read straight from the
prepared array_record split; the parent appends the results in order, so memory stays bounded
by a few chunks whatever the corpus size. The build runs in a temporary directory under an
exclusive file lock and is renamed into place: workers or hosts that start together wait on the
lock, then open the finished store. A build killed midway leaves only a temporary directory,
removed by the next builder.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import files

log = logging.getLogger(__name__)

STORE_DIRNAME = "token_store"
INFO = "info.json"
CHUNK_DOCS = 256  # documents per worker task


@dataclasses.dataclass
class Store:
    path: Path
    info: dict
    tokens: dict  # split -> read-only memmap of token ids
    docs: dict  # split -> read-only int64 document offsets (n_docs + 1)


def dtype_for(vocab_size: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocabulary of {vocab_size} does not fit in uint32")


def open_or_build(corpus, tokenizer, root: Path, *, workers: int = 0,
                  progress: bool = True) -> Store:
    """The store of (corpus, tokenizer) under `root`, built first if no process has yet."""
    key = f"{corpus.key}-{tokenizer.name}"
    final = root / key
    if (final / INFO).is_file():
        return _open(final)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait here, then reuse
        if (final / INFO).is_file():
            return _open(final)
        for stale in root.glob(f".{key}.tmp-*"):  # a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.tmp-"))
        try:
            info = _build(corpus, tokenizer, tmp, workers, progress)
            _write_json(tmp / INFO, info)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; other users' runs read it too
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _open(final)


def _open(path: Path) -> Store:
    info = json.loads((path / INFO).read_text())
    dtype = np.dtype(info["dtype"])
    tokens, docs = {}, {}
    for split in info["splits"]:
        n = int(info[f"{split}_tokens"])
        file = path / f"{split}.tokens"
        tokens[split] = (np.memmap(file, dtype=dtype, mode="r", shape=(n,)) if n
                         else np.zeros(0, dtype=dtype))
        docs[split] = np.load(path / f"{split}.docs.npy", mmap_mode="r")
    return Store(path, info, tokens, docs)


def _build(corpus, tokenizer, out: Path, workers: int, progress: bool) -> dict:
    dtype = dtype_for(int(tokenizer.vocab_size))
    info = {
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256,
        "corpus_key": corpus.key,
        "dataset_dir": corpus.dataset_dir,
        "tokenizer": tokenizer.name,
        "tokenizer_sha256": tokenizer.sha256,
        "vocab_size": int(tokenizer.vocab_size),
        "eod_id": int(tokenizer.eod_id),
        "dtype": dtype.name,
        "splits": list(corpus.splits),
        "bad_records": corpus.report,
    }
    start = time.time()
    for split in corpus.splits:
        info.update(_build_split(corpus, split, tokenizer, dtype, out, workers, progress))
    info["build_s"] = round(time.time() - start, 3)
    return info


def _build_split(corpus, split, tokenizer, dtype, out, workers, progress) -> dict:
    from tqdm import tqdm

    n_docs = corpus.num_documents(split)
    tasks = [(s, min(s + CHUNK_DOCS, n_docs)) for s in range(0, n_docs, CHUNK_DOCS)]
    n_workers = min(workers if workers > 0 else (os.cpu_count() or 1), len(tasks))
    reader = (corpus.dataset_dir, corpus.splits[split], corpus.text_feature, dtype.name)
    lengths, n_tokens, n_bytes = [], 0, 0
    started = time.time()
    bar = tqdm(total=n_docs, desc=f"tokenizing {split}", unit="doc", disable=not progress or None,
               dynamic_ncols=True, mininterval=1.0)
    with open(out / f"{split}.tokens", "wb") as f:
        if n_workers <= 1:  # small corpora: no process start-up cost
            _init_worker(reader, tokenizer, corpus.builder)
            results = map(_encode_range, tasks)
            pool = None
        else:
            # spawn, not fork: the parent may already run JAX's threads.
            pool = multiprocessing.get_context("spawn").Pool(
                n_workers, initializer=_init_worker, initargs=(reader, tokenizer, None))
            results = pool.imap(_encode_range, tasks)
        try:
            for ids, doc_lengths, chunk_bytes in results:
                f.write(ids.astype(dtype, copy=False).tobytes())
                lengths.append(doc_lengths)
                n_tokens += int(ids.size)
                n_bytes += chunk_bytes
                bar.update(len(doc_lengths))
                bar.set_postfix(MB_s=f"{n_bytes / 1e6 / max(time.time() - started, 1e-9):.1f}")
        finally:
            if pool is not None:
                pool.terminate()
    bar.close()
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    np.save(out / f"{split}.docs.npy", offsets)
    seconds = time.time() - started
    log.info("tokenized %s: %d documents, %.1f MB -> %d tokens in %.1f s (%.1f MB/s, %d workers)",
             split, n_docs, n_bytes / 1e6, n_tokens, seconds, n_bytes / 1e6 / max(seconds, 1e-9),
             max(n_workers, 1))
    return {f"{split}_documents": n_docs, f"{split}_tokens": n_tokens,
            f"{split}_bytes": n_bytes, f"{split}_tokenize_s": round(seconds, 3)}


_WORKER: dict = {}


def _init_worker(reader, tokenizer, builder) -> None:
    dataset_dir, split, feature, dtype = reader
    if builder is None:
        import tensorflow_datasets as tfds

        builder = tfds.builder_from_directory(dataset_dir)
        if hasattr(tokenizer, "threads"):
            tokenizer.threads = 1  # the processes already use every core
    _WORKER.update(source=builder.as_data_source(split=split), tokenizer=tokenizer,
                   feature=feature, dtype=np.dtype(dtype))


def _encode_range(task) -> tuple[np.ndarray, np.ndarray, int]:
    """Token ids (each document followed by eod) and per-document lengths of docs [start, stop)."""
    start, stop = task
    source, tok = _WORKER["source"], _WORKER["tokenizer"]
    examples = source.__getitems__(list(range(start, stop)))
    texts = [_text(ex[_WORKER["feature"]]) for ex in examples]
    encoded = tok.encode_batch(texts)
    dtype = _WORKER["dtype"]
    eod = np.array([tok.eod_id], dtype=dtype)
    pieces = [part for ids in encoded for part in (ids.astype(dtype, copy=False), eod)]
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
    lengths = np.array([len(e) + 1 for e in encoded], dtype=np.int64)
    return ids, lengths, sum(len(t.encode("utf-8")) for t in texts)


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "item"):
        return _text(value.item())
    return str(value)


def _write_json(path: Path, obj) -> None:
    files.write_json(path, obj, indent=1)
