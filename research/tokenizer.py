"""Tokenizers: lossless bytes (the default) and a SentencePiece BPE trained on the train split.

Both map any text to ids and back exactly, and both reserve one id for the end of a document
(`eod_id`), which the data pipeline puts after every document so the model sees boundaries:
- ByteTokenizer: ids are the UTF-8 bytes (vocabulary 256). Byte 0xFF never occurs in UTF-8,
  so it serves as the end-of-document id without taking any room from real text.
- BpeTokenizer: SentencePiece BPE with byte fallback and no normalisation (identity rule, no
  whitespace folding, no dummy prefix), so every string, including runs of spaces, tabs,
  newlines and characters never seen in training, decodes back to itself. Its model file lives
  in the run directory (`tokenizer.model`) and is reloaded from there on resume and by the
  sampler.
"""

from __future__ import annotations

from research import files
from research.errors import UserError

import hashlib
import io
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

MODEL_FILENAME = "tokenizer.model"
# Documents are fed to the SentencePiece trainer in pieces of at most this many characters,
# cut at line ends, because it skips "sentences" longer than max_sentence_length bytes.
_TRAIN_CHUNK_CHARS = 2000
_TRAIN_MAX_SENTENCE_BYTES = 16384
_ENCODE_CHUNK_CHARS = 8192


class TokenizerError(UserError):
    """A tokenizer cannot be built or loaded; the message names the fix."""


class ByteTokenizer:
    """UTF-8 bytes as tokens; 0xFF (never valid UTF-8) marks the end of a document."""

    vocab_size = 256
    eod_id = 0xFF
    name = "byte"

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        data = np.asarray(ids, dtype=np.int64).ravel()
        if data.size and (data.min() < 0 or data.max() > 255):
            raise TokenizerError("byte tokenizer ids must lie in [0, 255]")
        # A document boundary reads as a blank line; a partial multi-byte character (e.g. a
        # sample cut mid-character) becomes U+FFFD instead of an exception.
        pieces = data.astype(np.uint8).tobytes().split(bytes([self.eod_id]))
        return "\n\n".join(p.decode("utf-8", errors="replace") for p in pieces)


class BpeTokenizer:
    """A trained SentencePiece BPE model (serialized proto bytes)."""

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.vocab_size = int(self._sp.get_piece_size())
        self.eod_id = int(self._sp.eos_id())
        digest = hashlib.sha256(self.model_proto).hexdigest()[:12]
        self.name = f"bpe{self.vocab_size}-{digest}"

    def encode(self, text: str) -> np.ndarray:
        # Encoding many line-aligned pieces in parallel is ~4x faster than one huge string;
        # with no dummy prefix, the concatenation of the pieces' ids decodes to the whole text.
        chunks = list(_line_chunks(text, _ENCODE_CHUNK_CHARS))
        if not chunks:
            return np.zeros(0, dtype=np.int32)
        encoded = self._sp.encode(chunks, num_threads=os.cpu_count() or 1)
        return np.fromiter((i for ids in encoded for i in ids), dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        data = [int(i) for i in np.asarray(ids).ravel()]
        # Split at end-of-document ids so they read as blank lines, like the byte tokenizer.
        docs, current = [], []
        for i in data:
            if i == self.eod_id:
                docs.append(current)
                current = []
            else:
                current.append(i)
        docs.append(current)
        return "\n\n".join(self._sp.decode(d) for d in docs)

    def save(self, path: str | os.PathLike) -> None:
        files.write_atomic(path, self.model_proto)


def _line_chunks(text: str, max_chars: int) -> Iterator[str]:
    """Consecutive pieces of `text` of at most ~max_chars, cut just after a newline if any."""
    start = 0
    while start < len(text):
        stop = start + max_chars
        if stop < len(text):
            cut = text.rfind("\n", start, stop)
            stop = cut + 1 if cut > start else stop
        yield text[start:stop]
        start = stop


def train_bpe(texts: Iterable[str], vocab_size: int, *, seed: int = 0) -> BpeTokenizer:
    """Train a byte-fallback BPE on `texts` (the train split's documents)."""
    import sentencepiece as spm

    if vocab_size < 260 + 8:
        raise TokenizerError(
            f"data.bpe_vocab_size={vocab_size} is too small: BPE needs 256 byte pieces plus "
            "specials and merges; use at least 512"
        )
    sentences = (c for t in texts for c in _line_chunks(t, _TRAIN_CHUNK_CHARS))
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)  # sentence shuffling and sampling
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            byte_fallback=True,  # unseen characters become bytes: nothing maps to <unk>
            character_coverage=1.0,
            normalization_rule_name="identity",  # no NFKC: text must come back unchanged
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            allow_whitespace_only_pieces=True,
            split_digits=True,
            max_sentence_length=_TRAIN_MAX_SENTENCE_BYTES,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=1_000_000,
            unk_id=0,
            eos_id=1,  # end of document
            bos_id=-1,
            pad_id=-1,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
    except RuntimeError as e:  # e.g. a corpus too small for the requested vocabulary
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise TokenizerError(
            f"SentencePiece BPE training failed ({msg}); lower data.bpe_vocab_size or use a "
            "larger corpus"
        ) from None
    return BpeTokenizer(model.getvalue())


def load_bpe(path: str | os.PathLike) -> BpeTokenizer:
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(
            f"no BPE tokenizer at {path}; it is written when a run with data.tokenizer='bpe' "
            "first loads its data"
        )
    return BpeTokenizer(path.read_bytes())


def load_tokenizer(run_dir: str | os.PathLike | None, data_cfg) -> ByteTokenizer | BpeTokenizer:
    """The tokenizer a run uses: bytes, or the BPE model saved in its run directory."""
    kind = data_cfg.tokenizer
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        if run_dir is None:
            raise TokenizerError("a BPE tokenizer lives in a run directory; pass run_dir")
        return load_bpe(Path(run_dir) / MODEL_FILENAME)
    raise TokenizerError(f"unknown data.tokenizer={kind!r}; use 'byte' or 'bpe'")
