"""Token arrays, training batches as a pure function of (seed, step), and evaluation batches.

Layout: each split is one flat token array, the documents in order, each followed by the
tokenizer's end-of-document id (`tokenizer.eod_id`: byte 0xFF for the byte tokenizer, which
never occurs in UTF-8, or SentencePiece's `</s>`), so the model can see document boundaries.

Packing: a sequence is `context_length + 1` consecutive tokens (inputs plus the targets shifted
by one). Window w of a split starts at token `w * context_length`, so consecutive windows share
only their boundary token: every token after the first is a target in exactly one window per
epoch, and no token is wasted.

Batches: global sequence i = step * batch_size + row is window `perm_e[i mod n]` of epoch
e = i // n, where n is the number of train windows and perm_e a permutation seeded by
(seed, e). Nothing but (seed, step) and the data decides a batch, so resuming at any step needs
no iterator state, and a token budget beyond one epoch simply continues into the next.
"""

from __future__ import annotations

from research.errors import UserError

import dataclasses
import fcntl
import functools
import logging
import os
from pathlib import Path

import numpy as np

from research import corpus as corpus_lib
from research import files
from research import tokenizer as tokenizer_lib

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")


class DataError(UserError):
    """The data cannot serve the request; the message names the fix."""


@dataclasses.dataclass
class TokenData:
    tokenizer: object  # ByteTokenizer | BpeTokenizer
    train: np.ndarray  # flat token ids (uint16 or int32), documents separated by eod_id
    val: np.ndarray
    info: dict  # corpus, corpus_sha256, tokenizer, vocab_size, {split}_documents/tokens/bytes


def load_token_data(data_cfg, run_dir: str | os.PathLike | None = None) -> TokenData:
    """Prepare the corpus, get the run's tokenizer, and return both splits tokenized.

    BPE: the model in `run_dir/tokenizer.model` is used when present (resume, sampling);
    otherwise one is trained on the train split (cached under data.data_dir per split contents
    and vocabulary size) and saved there. Tokenized BPE arrays are cached under data.data_dir,
    keyed by the split contents (corpus hash, held-out choice) and the tokenizer's identity;
    bytes are cheap enough to recompute.
    """
    corpus = corpus_lib.prepare_corpus(data_cfg)
    cache_root = corpus_lib.resolve_data_dir(data_cfg) / "token_cache"
    tokenizer = _run_tokenizer(data_cfg, corpus, run_dir, cache_root)

    cache_dir = cache_root / f"{corpus.key}-{tokenizer.name}"
    if tokenizer.name != "byte" and (cache_dir / "info.json").is_file():
        info = files.read_json(cache_dir / "info.json")
        arrays = {s: np.load(cache_dir / f"{s}.npy", mmap_mode="r") for s in SPLITS}
        return TokenData(tokenizer, arrays["train"], arrays["validation"], info)

    info = {
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256,
        "dataset_dir": corpus.dataset_dir,
        "tokenizer": tokenizer.name,
        "vocab_size": int(tokenizer.vocab_size),
        "eod_id": int(tokenizer.eod_id),
    }
    arrays = {}
    for split in SPLITS:
        tokens, n_docs, n_bytes = _tokenize_split(corpus, split, tokenizer)
        if n_docs == 0:
            raise DataError(f"corpus {corpus.name!r} has no {split} documents; add documents")
        arrays[split] = tokens
        info[f"{split}_documents"] = n_docs
        info[f"{split}_tokens"] = int(tokens.size)
        info[f"{split}_bytes"] = n_bytes
    if tokenizer.name != "byte":
        _write_cache(cache_dir, arrays, info)
    return TokenData(tokenizer, arrays["train"], arrays["validation"], info)


def _tokenize_split(corpus, split, tokenizer) -> tuple[np.ndarray, int, int]:
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.int32
    eod = np.array([tokenizer.eod_id], dtype=dtype)
    pieces, n_docs, n_bytes = [], 0, 0
    for _, text in corpus.documents(split):
        pieces += [np.asarray(tokenizer.encode(text)).astype(dtype), eod]
        n_docs += 1
        n_bytes += len(text.encode("utf-8"))
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    return tokens, n_docs, n_bytes


def _run_tokenizer(data_cfg, corpus, run_dir, cache_root: Path):
    kind = data_cfg.tokenizer
    if kind != "bpe":
        return tokenizer_lib.load_tokenizer(run_dir, data_cfg)  # bytes, or a clear error
    run_model = Path(run_dir) / tokenizer_lib.MODEL_FILENAME if run_dir is not None else None
    if run_model is not None and run_model.is_file():
        return tokenizer_lib.load_bpe(run_model)
    cached = cache_root / f"{corpus.key}-bpe{int(data_cfg.bpe_vocab_size)}.model"
    cached.parent.mkdir(parents=True, exist_ok=True)
    with open(cached.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process trains; the others then load it
        if cached.is_file():
            tok = tokenizer_lib.load_bpe(cached)
        else:
            log.info("training BPE (vocab %d) on the train split", data_cfg.bpe_vocab_size)
            texts = (text for _, text in corpus.documents("train"))
            tok = tokenizer_lib.train_bpe(texts, int(data_cfg.bpe_vocab_size))
            tok.save(cached)
    if run_model is not None:
        tok.save(run_model)
    return tok


def _write_cache(cache_dir: Path, arrays: dict, info: dict) -> None:
    """Write arrays then info.json (the completion marker), each atomically."""
    for split, tokens in arrays.items():
        with files.atomic_file(cache_dir / f"{split}.npy") as f:
            np.save(f, tokens)
    files.write_json(cache_dir / "info.json", info, indent=1)


# ---------------------------------------------------------------- packing and batches


def num_windows(tokens: np.ndarray, context_length: int) -> int:
    """Windows of context_length + 1 tokens at stride context_length."""
    if context_length < 1:
        raise DataError(f"context_length={context_length} must be positive")
    return max(0, (len(tokens) - 1) // context_length)


def _windows(tokens: np.ndarray, starts: np.ndarray, context_length: int) -> np.ndarray:
    offsets = np.arange(context_length + 1)
    return np.asarray(tokens[starts[:, None] * context_length + offsets], dtype=np.int32)


@functools.lru_cache(maxsize=8)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    order = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)
    order.flags.writeable = False
    return order


def _local_rows(batch_size: int, process_index: int, process_count: int) -> np.ndarray:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise DataError(f"process_index={process_index} not in [0, process_count={process_count})")
    if batch_size < 1 or batch_size % process_count:
        raise DataError(
            f"batch_size={batch_size} must be a positive multiple of process_count={process_count}"
        )
    local = batch_size // process_count
    return np.arange(process_index * local, (process_index + 1) * local)


def train_batch(
    data: TokenData,
    *,
    step: int,
    batch_size: int,
    context_length: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """int32 [batch_size // process_count, context_length + 1]: this process's rows of the
    global batch for `step` (inputs = [:, :-1], targets = [:, 1:])."""
    if step < 0 or seed < 0:
        raise DataError(f"step={step} and seed={seed} must be non-negative")
    n = num_windows(data.train, context_length)
    if n == 0:
        raise DataError(
            f"the train split has {len(data.train)} tokens, fewer than one sequence of "
            f"{context_length + 1}; use a larger corpus or a shorter model.context_length"
        )
    rows = step * batch_size + _local_rows(batch_size, process_index, process_count)
    epochs, positions = np.divmod(rows, n)
    starts = np.empty_like(rows)
    for epoch in np.unique(epochs):
        mask = epochs == epoch
        starts[mask] = _epoch_order(int(seed), int(epoch), n)[positions[mask]]
    return _windows(data.train, starts, context_length)


def epochs_seen(data: TokenData, tokens: int, context_length: int) -> float:
    """Epochs of the unique training targets that a budget of `tokens` target tokens covers."""
    n = num_windows(data.train, context_length)
    if n == 0:
        raise DataError("the train split is shorter than one sequence")
    return float(tokens) / (n * context_length)


def eval_batches(
    data: TokenData,
    *,
    n_batches: int,
    batch_size: int,
    context_length: int,
    process_index: int = 0,
    process_count: int = 1,
) -> list[np.ndarray]:
    """A fixed list of validation batches, int32 [local_batch, context_length + 1] each.

    The n_batches * batch_size windows are spread evenly over the validation split (distinct,
    in order). If the split holds fewer windows, fewer whole batches are returned (with a
    warning); if it cannot fill even one batch, DataError.
    """
    n = num_windows(data.val, context_length)
    available = n // batch_size
    if available == 0:
        raise DataError(
            f"the validation split has {len(data.val)} tokens, fewer than one batch of "
            f"{batch_size} x {context_length + 1}; raise data.validation_fraction or lower "
            "train.batch_size / model.context_length"
        )
    if available < n_batches:
        log.warning(
            "validation split holds only %d batches of %d x %d; evaluating on %d, not %d",
            available, batch_size, context_length + 1, available, n_batches,
        )
        n_batches = available
    total = n_batches * batch_size
    starts = (np.arange(total) * n) // total  # distinct since total <= n
    rows = _local_rows(batch_size, process_index, process_count)
    return [
        _windows(data.val, starts[b * batch_size + rows], context_length)
        for b in range(n_batches)
    ]


def bytes_per_token(data: TokenData) -> float:
    """UTF-8 bytes of validation text per validation token (eod ids count as tokens).

    bits_per_byte = loss_nats_per_token / ln(2) / bytes_per_token.
    """
    return data.info["validation_bytes"] / data.info["validation_tokens"]
