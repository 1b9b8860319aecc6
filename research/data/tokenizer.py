"""Tokenizers: lossless bytes (the default), a SentencePiece BPE trained on the train split, or an
existing tokenizer file (a SentencePiece `.model` or a Hugging Face `tokenizer.json`).

Both map any text to ids and back exactly, and both reserve one id for the end of a document
(`eod_id`), which the data pipeline puts after every document so the model sees boundaries:
- ByteTokenizer: ids are the UTF-8 bytes (vocabulary 256). Byte 0xFF never occurs in UTF-8,
  so it serves as the end-of-document id without taking any room from real text.
- BpeTokenizer: SentencePiece BPE with byte fallback and no normalisation (identity rule, no
  whitespace folding, no dummy prefix), so every string, including runs of spaces, tabs,
  newlines and characters never seen in training, decodes back to itself. Its model file lives
  in the run directory (`tokenizer.model`) and is reloaded from there on resume and by the
  sampler.
- A tokenizer file (`data.tokenizer = PATH`): its vocabulary size is the model's, its
  end-of-document id is `data.eod_token` or else its own eos / `<|endoftext|>`-style token. A
  copy is kept in the run directory, so resume and sampling do not depend on the original path.

Every tokenizer has a `sha256` (of its model file; of a fixed label for bytes) that names it in
token-store keys and result.json, and `encode_batch` for the store's bulk tokenization.
"""

from __future__ import annotations

from common import files
from research.errors import UserError

import hashlib
import io
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

MODEL_FILENAME = "tokenizer.model"
HF_FILENAME = "tokenizer.json"
# Tried in order when a tokenizer file does not name its end-of-document token (data.eod_token).
EOD_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>", "[SEP]")
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
    sha256 = hashlib.sha256(b"utf-8 bytes; end of document 0xff").hexdigest()

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        data = np.asarray(ids, dtype=np.int64).ravel()
        if data.size and (data.min() < 0 or data.max() > 255):
            raise TokenizerError("byte tokenizer ids must lie in [0, 255]")
        # A document boundary reads as a blank line; a partial multi-byte character (e.g. a
        # sample cut mid-character) becomes U+FFFD instead of an exception.
        pieces = data.astype(np.uint8).tobytes().split(bytes([self.eod_id]))
        return "\n\n".join(p.decode("utf-8", errors="replace") for p in pieces)


class BpeTokenizer:
    """A SentencePiece model (serialized proto bytes): trained here, or loaded from a file."""

    def __init__(self, model_proto: bytes, *, eod_token: str = "", label: str = "bpe"):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        self.model_proto = bytes(model_proto)
        self._eod_token, self._label = eod_token, label
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        except RuntimeError:
            raise TokenizerError("not a SentencePiece model; give a .model file written by "
                                 "SentencePiece") from None
        self.vocab_size = int(self._sp.get_piece_size())
        if eod_token:
            self.eod_id = int(self._sp.piece_to_id(eod_token))
            if self._sp.id_to_piece(self.eod_id) != eod_token:
                raise TokenizerError(f"the SentencePiece model has no piece {eod_token!r}; fix "
                                     "data.eod_token")
        else:
            self.eod_id = int(self._sp.eos_id())
            if self.eod_id < 0:
                raise TokenizerError("the SentencePiece model has no eos piece; name its "
                                     "end-of-document piece in data.eod_token")
        self.sha256 = hashlib.sha256(self.model_proto).hexdigest()
        self.name = f"{label}{self.vocab_size}-{self.sha256[:12]}"
        # Line-aligned pieces may be encoded separately (and in parallel) only when the model
        # adds no dummy prefix: then the pieces' ids concatenate to the whole text's.
        proto = sentencepiece_model_pb2.ModelProto.FromString(self.model_proto)
        self._chunked = not proto.normalizer_spec.add_dummy_prefix
        self.threads = os.cpu_count() or 1

    def __reduce__(self):  # picklable for the token store's worker processes
        return (_bpe_from_state, (self.model_proto, self._eod_token, self._label))

    def encode(self, text: str) -> np.ndarray:
        return self.encode_batch([text])[0].astype(np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        if not self._chunked:
            return [np.asarray(ids, dtype=np.int32) for ids in
                    self._sp.encode(list(texts), num_threads=self.threads)]
        # Encoding many line-aligned pieces in parallel is ~4x faster than one huge string.
        pieces, owners = [], []
        for i, text in enumerate(texts):
            for chunk in _line_chunks(text, _ENCODE_CHUNK_CHARS):
                pieces.append(chunk)
                owners.append(i)
        out: list[list[int]] = [[] for _ in texts]
        for owner, ids in zip(owners, self._sp.encode(pieces, num_threads=self.threads)):
            out[owner].extend(ids)
        return [np.asarray(ids, dtype=np.int32) for ids in out]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return "\n\n".join(self._sp.decode(d) for d in split_documents(ids, self.eod_id))

    def save(self, path: str | os.PathLike) -> None:
        files.write_atomic(path, self.model_proto)


def _bpe_from_state(proto, eod_token, label):
    return BpeTokenizer(proto, eod_token=eod_token, label=label)


class HfTokenizer:
    """A Hugging Face `tokenizers` tokenizer.json (e.g. GPT-2 or Llama-style BPE)."""

    def __init__(self, json_bytes: bytes, *, eod_token: str = ""):
        from tokenizers import Tokenizer

        self.json_bytes = bytes(json_bytes)
        self._eod_token = eod_token
        try:
            self._tok = Tokenizer.from_str(self.json_bytes.decode("utf-8"))
        except Exception as e:  # tokenizers raises a bare Exception for malformed files
            raise TokenizerError(f"not a Hugging Face tokenizer.json ({str(e)[:80]}); give a "
                                 "file saved by the `tokenizers` library") from None
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        names = (eod_token,) if eod_token else EOD_CANDIDATES
        ids = [self._tok.token_to_id(t) for t in names]
        found = [i for i in ids if i is not None]
        if not found:
            fix = "fix data.eod_token" if eod_token else (
                f"it has none of {list(EOD_CANDIDATES)}; name its end-of-document token in "
                "data.eod_token")
            raise TokenizerError(f"tokenizer.json has no token {names[0]!r}; {fix}")
        self.eod_id = int(found[0])
        self.sha256 = hashlib.sha256(self.json_bytes).hexdigest()
        self.name = f"hf{self.vocab_size}-{self.sha256[:12]}"

    def __reduce__(self):
        return (_hf_from_state, (self.json_bytes, self._eod_token))

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encoded]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return "\n\n".join(self._tok.decode(d, skip_special_tokens=False)
                           for d in split_documents(ids, self.eod_id))

    def save(self, path: str | os.PathLike) -> None:
        files.write_atomic(path, self.json_bytes)


def _hf_from_state(json_bytes, eod_token):
    return HfTokenizer(json_bytes, eod_token=eod_token)


def split_documents(ids, eod_id: int) -> list[list[int]]:
    """Token ids cut at end-of-document ids (dropped): decoders join the pieces with a blank
    line, so documents read apart, as with the byte tokenizer."""
    docs, current = [], []
    for i in (int(i) for i in np.asarray(ids).ravel()):
        if i == eod_id:
            docs.append(current)
            current = []
        else:
            current.append(i)
    docs.append(current)
    return docs


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


def load_bpe(path: str | os.PathLike, *, eod_token: str = "", label: str = "bpe") -> BpeTokenizer:
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(
            f"no BPE tokenizer at {path}; it is written when a run with data.tokenizer='bpe' "
            "first loads its data"
        )
    return BpeTokenizer(path.read_bytes(), eod_token=eod_token, label=label)


def run_copy(run_dir: str | os.PathLike, kind: str) -> Path:
    """Where a run keeps its copy of the tokenizer file named by data.tokenizer."""
    name = HF_FILENAME if str(kind).endswith(".json") else MODEL_FILENAME
    return Path(run_dir) / name


def load_file(path: str | os.PathLike, eod_token: str = "") -> BpeTokenizer | HfTokenizer:
    """An existing SentencePiece .model or Hugging Face tokenizer.json."""
    path = _check_file_spec(path)
    if not path.is_file():
        raise TokenizerError(f"tokenizer file {path} does not exist; fix data.tokenizer")
    try:
        if path.suffix == ".json":
            return HfTokenizer(path.read_bytes(), eod_token=eod_token)
        return BpeTokenizer(path.read_bytes(), eod_token=eod_token, label="spm")
    except TokenizerError as e:
        raise TokenizerError(f"{path}: {e}") from None


def _check_file_spec(spec) -> Path:
    path = Path(spec).expanduser()
    if path.suffix not in (".model", ".json"):
        raise TokenizerError(f"data.tokenizer={str(spec)!r} is not 'byte', 'bpe', a "
                             "SentencePiece .model or a tokenizer.json path; fix it")
    return path


def load_tokenizer(run_dir: str | os.PathLike | None, data_cfg):
    """The tokenizer a run uses: bytes, the BPE saved in its run directory, or its tokenizer
    file (the run directory's copy when there is one)."""
    kind = str(data_cfg.tokenizer)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        if run_dir is None:
            raise TokenizerError("a BPE tokenizer lives in a run directory; pass run_dir")
        return load_bpe(Path(run_dir) / MODEL_FILENAME)
    _check_file_spec(kind)
    copy = run_copy(run_dir, kind) if run_dir is not None else None
    path = copy if copy is not None and copy.is_file() else kind
    tok = load_file(path, str(data_cfg.eod_token))
    if copy is not None and not copy.is_file():
        tok.save(copy)
    return tok

