"""Token arrays, training batches as a pure function of (seed, step), and evaluation batches.

Layout: each split is one flat token array, memory-mapped from the token store
(research/data/token_store.py), the documents in order, each followed by the tokenizer's
end-of-document id (`tokenizer.eod_id`: byte 0xFF for the byte tokenizer, which never occurs in
UTF-8, or the tokenizer's eos), so the model can see document boundaries.

Evaluation sets (`data.eval_sets`): the held-out split ("validation") and/or other sources
tokenized whole, each a flat array like the splits, evaluated on a fixed list of windows.

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
import logging
import mmap
import os
import re
from pathlib import Path

import numpy as np

from research.data import corpus as corpus_lib
from research.data import token_store
from research.data import tokenizer as tokenizer_lib

log = logging.getLogger(__name__)



class DataError(UserError):
    """The data cannot serve the request; the message names the fix."""


@dataclasses.dataclass
class TokenData:
    tokenizer: object  # ByteTokenizer | BpeTokenizer | HfTokenizer
    train: np.ndarray  # flat token ids (read-only memmap), documents separated by eod_id
    val: np.ndarray  # the held-out documents of the training corpus
    info: dict  # corpus, corpus_sha256, tokenizer(_sha256), vocab_size, {split}_documents/...
    # name -> flat token ids of each evaluation set, in data.eval_sets order (first = `loss`)
    eval_sets: dict = dataclasses.field(default_factory=dict)
    eval_info: dict = dataclasses.field(default_factory=dict)  # name -> {source, bytes, tokens}


def load_token_data(data_cfg, run_dir: str | os.PathLike | None = None, *,
                    vocab_size: int | None = None, progress: bool = True) -> TokenData:
    """Prepare the corpus, get the run's tokenizer, and memory-map its token store (built on
    first use) for the train split and every evaluation set.

    BPE: the model in `run_dir/tokenizer.model` is used when present (resume, sampling);
    otherwise one is trained on the train split (cached under data.data_dir per split contents
    and vocabulary size) and saved there. `vocab_size` (model.vocab_size) is checked against
    the tokenizer before anything is tokenized.
    """
    corpus = corpus_lib.prepare_corpus(data_cfg)
    data_dir = corpus_lib.resolve_data_dir(data_cfg)
    tokenizer = _run_tokenizer(data_cfg, corpus, run_dir, data_dir / "token_cache")
    if vocab_size is not None and int(vocab_size) != int(tokenizer.vocab_size):
        raise VocabSizeError(
            f"model.vocab_size={vocab_size} but the {tokenizer.name} tokenizer has "
            f"{tokenizer.vocab_size} tokens; set --config.model.vocab_size={tokenizer.vocab_size}")
    store_root = data_dir / token_store.STORE_DIRNAME
    workers = int(data_cfg.store_workers)
    store = token_store.open_or_build(corpus, tokenizer, store_root, workers=workers,
                                      progress=progress)
    info = {k: v for k, v in store.info.items() if k != "splits"}
    info["store"] = str(store.path)
    data = TokenData(tokenizer, store.tokens["train"], store.tokens["validation"], info)
    for name, spec in parse_eval_sets(data_cfg.eval_sets):
        if spec == HELD_OUT:
            tokens, n_bytes = store.tokens["validation"], info["validation_bytes"]
            source_info = {"source": HELD_OUT}
        else:
            other = corpus_lib.prepare_corpus(data_cfg, spec, eval_only=True)
            eval_store = token_store.open_or_build(other, tokenizer, store_root,
                                                   workers=workers, progress=progress)
            tokens, n_bytes = eval_store.tokens["validation"], eval_store.info["validation_bytes"]
            source_info = {"source": spec, "corpus_sha256": other.sha256}
        data.eval_sets[name] = tokens
        data.eval_info[name] = {**source_info, "tokens": int(tokens.size), "bytes": int(n_bytes)}
    return data


HELD_OUT = "validation"


def parse_eval_sets(specs) -> list[tuple[str, str]]:
    """data.eval_sets -> [(name, source)]: "NAME=SOURCE" or "SOURCE" (named after its file)."""
    specs = [str(s) for s in (specs or ())] or [HELD_OUT]
    out = []
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not sep:
            source = spec
            stem = corpus_lib.sources.strip_format(Path(source.split("*")[0].rstrip("/")).name)
            name = HELD_OUT if source == HELD_OUT else stem
        name = name.strip()
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not source:
            raise DataError(f"data.eval_sets entry {spec!r} needs a name of letters, digits, "
                            "'_', '.' or '-' and a source; write NAME=SOURCE")
        if name in (n for n, _ in out):
            raise DataError(f"data.eval_sets names {name!r} twice; give each set its own NAME=")
        out.append((name, source))
    return out


def check_sources(data_cfg) -> None:
    """Fail fast (before a run writes anything) on a missing corpus or eval-set path."""
    from research.errors import ConfigError

    for spec in [str(data_cfg.corpus)] + [s for _, s in parse_eval_sets(data_cfg.eval_sets)]:
        if spec not in (HELD_OUT, corpus_lib.SHAKESPEARE) and not spec.startswith(
                corpus_lib.TFDS_PREFIX):
            try:
                corpus_lib.sources.resolve(spec)
            except corpus_lib.CorpusError as e:  # a config naming a missing path
                key = "data.corpus" if spec == str(data_cfg.corpus) else "data.eval_sets"
                raise ConfigError(f"{key}: {e}") from None


class VocabSizeError(DataError):
    """model.vocab_size differs from the tokenizer's vocabulary."""


def _run_tokenizer(data_cfg, corpus, run_dir, cache_root: Path):
    kind = str(data_cfg.tokenizer)
    if kind != "bpe":
        return tokenizer_lib.load_tokenizer(run_dir, data_cfg)  # bytes, a file, or a clear error
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


# ---------------------------------------------------------------- packing and batches


def num_windows(tokens: np.ndarray, context_length: int) -> int:
    """Windows of context_length + 1 tokens at stride context_length."""
    if context_length < 1:
        raise DataError(f"context_length={context_length} must be positive")
    return max(0, (len(tokens) - 1) // context_length)


def _windows(tokens: np.ndarray, starts: np.ndarray, context_length: int) -> np.ndarray:
    position = _file_position(tokens)
    if position is not None:
        return _read_windows(tokens, position, starts, context_length)
    offsets = np.arange(context_length + 1)
    return np.asarray(tokens[starts[:, None] * context_length + offsets], dtype=np.int32)


def _read_windows(tokens: np.memmap, position: int, starts: np.ndarray,
                  context_length: int) -> np.ndarray:
    """Windows of a memory-mapped split read with pread, not through the map.

    A page fault on a file mapping maps its neighbours too (read-around, ~100 KB), and
    mapped file pages count in the process's RSS: random windows read through the map grew
    RSS with the corpus (by ~300 MB over 3,200 windows of a 400 MB corpus). Read with
    pread, the pages stay in the shared page cache and RSS is flat in corpus size."""
    fd = _descriptor(tokens.filename)
    width, item = context_length + 1, tokens.dtype.itemsize
    out = np.empty((len(starts), width), dtype=np.int32)
    for row, start in enumerate(np.asarray(starts, dtype=np.int64)):
        first = int(start) * context_length
        if not 0 <= first <= len(tokens) - width:
            raise IndexError(f"window at token {first} is outside the {len(tokens)} tokens")
        raw = os.pread(fd, width * item, position + first * item)
        out[row] = np.frombuffer(raw, dtype=tokens.dtype)
    return out


def _file_position(tokens) -> int | None:
    """Byte position of tokens[0] in its file, for a contiguous memmap (or a slice of one);
    None for anything else."""
    mapping = getattr(tokens, "_mmap", None)  # numpy's handle on the map, shared by views
    if mapping is None or not tokens.filename or not tokens.flags.c_contiguous:
        return None
    mapped_from = tokens.offset - tokens.offset % mmap.ALLOCATIONGRANULARITY
    return mapped_from + tokens.ctypes.data - np.frombuffer(mapping, np.uint8).ctypes.data


_DESCRIPTORS: dict = {}  # file name -> read-only descriptor, kept open for the process


def _descriptor(path: str) -> int:
    fd = _DESCRIPTORS.get(path)
    if fd is None:
        fd = _DESCRIPTORS[path] = os.open(path, os.O_RDONLY)
    return fd


def _epoch_order(seed: int, epoch: int, n: int, positions: np.ndarray) -> np.ndarray:
    """perm_e[positions] for a pseudo-random permutation perm_e of [0, n) seeded by (seed, e).

    A 4-round Feistel network on the smallest even-bit domain >= n, with cycle walking back
    into [0, n): a bijection computed per index, so memory and start-up time do not grow with
    the corpus (a materialised permutation of 14M windows of a 2 GB corpus is 112 MB).
    """
    keys = np.random.Generator(np.random.PCG64([seed, epoch])).integers(
        0, 2**63, size=4, dtype=np.uint64)
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    x = _feistel(np.asarray(positions, dtype=np.uint64), half, keys)
    outside = x >= n
    while outside.any():  # terminates: each cycle of the bijection on [0, 4^half) meets [0, n)
        x[outside] = _feistel(x[outside], half, keys)
        outside = x >= n
    return x.astype(np.int64)


def _feistel(x: np.ndarray, half: int, keys: np.ndarray) -> np.ndarray:
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)
    left, right = x >> shift, x & mask
    for key in keys:
        left, right = right, left ^ (_mix(right ^ key) & mask)
    return (left << shift) | right


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash (wrapping arithmetic)."""
    x = x * np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


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
        starts[mask] = _epoch_order(int(seed), int(epoch), n, positions[mask])
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
    eval_set: str | None = None,
) -> list[np.ndarray]:
    """A fixed list of validation batches, int32 [local_batch, context_length + 1] each.

    From the evaluation set `eval_set` (a name of data.eval_sets), or by default the held-out
    split. The n_batches * batch_size windows are spread evenly over it (distinct, in order:
    disjoint targets, so no window is counted twice). If it holds fewer windows, fewer whole
    batches are returned (with a warning; `eval_capacity` says how many); if it cannot fill
    even one batch, DataError.
    """
    tokens = data.val if eval_set is None else data.eval_sets[eval_set]
    n = num_windows(tokens, context_length)
    available = eval_capacity(data, batch_size, context_length, eval_set)
    if available < n_batches:
        log.warning(
            f"{eval_set or 'validation'} set holds only"
            " %d batches of %d x %d; evaluating on %d, not %d",
            available, batch_size, context_length + 1, available, n_batches,
        )
        n_batches = available
    total = n_batches * batch_size
    starts = (np.arange(total) * n) // total  # distinct since total <= n
    rows = _local_rows(batch_size, process_index, process_count)
    return [
        _windows(tokens, starts[b * batch_size + rows], context_length)
        for b in range(n_batches)
    ]


def window_subset(n_small: int, n_large: int) -> np.ndarray | None:
    """Where the windows of an evaluation of `n_small` windows sit among those of one of
    `n_large` windows of the same set (flat indices, in order), or None if not all of them
    are there. `eval_batches` spreads n windows evenly (window i starts at i * N // n of the
    N possible), so when n_small divides n_large, window i of the small one is window
    i * (n_large / n_small) of the large one."""
    if n_small < 1 or n_large % n_small:
        return None
    return np.arange(n_small) * (n_large // n_small)


def eval_capacity(data: TokenData, batch_size: int, context_length: int,
                  eval_set: str | None = None) -> int:
    """Whole batches of distinct windows the evaluation set (default: the held-out split) holds;
    DataError if not even one."""
    tokens = data.val if eval_set is None else data.eval_sets[eval_set]
    available = num_windows(tokens, context_length) // batch_size
    if available == 0:
        raise DataError(
            f"the {eval_set or 'validation'} set has {len(tokens)} tokens, fewer than one batch of "
            f"{batch_size} x {context_length + 1}; raise data.validation_fraction or lower "
            "train.batch_size / model.context_length"
        )
    return available


def bytes_per_token(data: TokenData, eval_set: str | None = None) -> float:
    """UTF-8 bytes of text per token (eod ids count as tokens) of the held-out split, or of the
    evaluation set `eval_set`.

    bits_per_byte = loss_nats_per_token / ln(2) / bytes_per_token.
    """
    if eval_set is not None:
        return data.eval_info[eval_set]["bytes"] / data.eval_info[eval_set]["tokens"]
    return data.info["validation_bytes"] / data.info["validation_tokens"]
