"""Tokenizers round-trip any text exactly; the BPE model is saved and reloaded from a run dir."""

import numpy as np
import pytest

from research.data import tokenizer as tok

TRICKY = [
    "",
    "a",
    "plain ASCII text.",
    "two  spaces,   three, and a trailing space ",
    " leading space",
    "\ttabs\tinside\t\t",
    "line one\nline two\n\n\nafter blank lines\n",
    "windows\r\nline ends\r\n",
    "   \n \t \n",
    "ünïcödé, ßtraße, naïve café",
    "日本語のテキスト and 中文",
    "emoji 🙂🚀 and a ZWJ family 👨‍👩‍👧",
    "ﬁ ligature, ＦＵＬＬ width, e\u0301 combining, non\u00a0breaking",
    "digits 1234567890 and 3.14159",
    "<unk> </s> <s> look like specials",
]

WORDS = (
    "the king queen lord lady sword crown night day love death speak hear "
    "thou thee thy art hath doth shall would good noble gentle sweet fair"
).split()


def small_corpus(n_docs=40, seed=0):
    """Synthetic English-like documents with punctuation, newlines and numbers."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        lines = []
        for _ in range(int(rng.integers(10, 30))):
            words = rng.choice(WORDS, size=int(rng.integers(3, 12)))
            lines.append(" ".join(words).capitalize() + rng.choice([".", ",", "!", "?"]))
        lines.insert(int(rng.integers(0, len(lines))), f"ACT {int(rng.integers(1, 99))}.")
        docs.append("\n".join(lines) + "\n\n")
    return docs


@pytest.fixture(scope="module")
def bpe():
    return tok.train_bpe(small_corpus(), vocab_size=400)


def test_byte_tokenizer_is_utf8_bytes_and_round_trips():
    t = tok.ByteTokenizer()
    assert t.vocab_size == 256 and t.name == "byte"
    for text in TRICKY:
        ids = t.encode(text)
        assert list(ids) == list(text.encode("utf-8"))
        assert t.decode(ids) == text
        assert t.eod_id not in set(ids.tolist())  # 0xFF never occurs in UTF-8


def test_byte_decode_reads_document_boundary_as_blank_line():
    t = tok.ByteTokenizer()
    ids = np.concatenate([t.encode("first"), [t.eod_id], t.encode("second")])
    assert t.decode(ids) == "first\n\nsecond"
    with pytest.raises(ValueError, match="0, 255"):
        t.decode([256])


def test_bpe_round_trips_tricky_text_and_compresses(bpe):
    assert bpe.vocab_size == 400 and bpe.name.startswith("bpe400-")
    for text in TRICKY:
        ids = bpe.encode(text)
        assert all(0 <= i < bpe.vocab_size for i in ids)
        assert bpe.decode(ids) == text, repr(text)
    # On text like its training data it must beat bytes clearly (merges were learned).
    held_out = "".join(small_corpus(n_docs=3, seed=1))
    ids = bpe.encode(held_out)
    assert bpe.decode(ids) == held_out
    assert len(ids) < 0.5 * len(held_out.encode())
    assert bpe.eod_id not in set(ids.tolist())


def test_bpe_long_text_round_trips_across_encode_chunks(bpe):
    text = "".join(small_corpus(n_docs=10, seed=2)) + "x" * 20000 + " tail \n"
    assert len(text) > 3 * tok._ENCODE_CHUNK_CHARS
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_saved_in_run_dir_reloads_identically(bpe, tmp_path):
    class DataCfg:
        tokenizer = "bpe"

    with pytest.raises(tok.TokenizerError, match="no BPE tokenizer"):
        tok.load_tokenizer(tmp_path, DataCfg)
    bpe.save(tmp_path / tok.MODEL_FILENAME)
    again = tok.load_tokenizer(tmp_path, DataCfg)
    assert again.name == bpe.name and again.vocab_size == bpe.vocab_size
    text = TRICKY[6] + TRICKY[9]
    assert list(again.encode(text)) == list(bpe.encode(text))


def test_tokenizer_config_errors():
    class Unknown:
        tokenizer = "wordpiece"

    with pytest.raises(tok.TokenizerError, match="is not 'byte', 'bpe'"):
        tok.load_tokenizer(None, Unknown)
    with pytest.raises(tok.TokenizerError, match="too small"):
        tok.train_bpe(["some text"], vocab_size=100)
    with pytest.raises(tok.TokenizerError, match="bpe_vocab_size"):
        tok.train_bpe(["tiny corpus"], vocab_size=5000)


# ---------------------------------------------------------------- existing tokenizer files


def hf_json(tmp_path, special=("<|endoftext|>",)):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(small_corpus(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=list(special), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path / "tokenizer.json"
    t.save(str(path))
    return path


def test_tokenizer_json_loads_round_trips_and_pickles(tmp_path):
    import hashlib
    import pickle

    from tokenizers import Tokenizer

    path = hf_json(tmp_path)
    t = tok.load_file(path)
    reference = Tokenizer.from_file(str(path))  # the library itself is the truth
    assert t.vocab_size == reference.get_vocab_size() and t.eod_id == reference.token_to_id(
        "<|endoftext|>")
    assert t.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and t.name.startswith("hf")
    for text in TRICKY:
        ids = t.encode(text)
        assert ids.tolist() == reference.encode(text, add_special_tokens=False).ids
        assert t.decode(ids) == text
    assert [a.tolist() for a in t.encode_batch(TRICKY)] == [t.encode(x).tolist() for x in TRICKY]
    again = pickle.loads(pickle.dumps(t))
    assert again.sha256 == t.sha256 and again.encode("the king").tolist() == t.encode(
        "the king").tolist()


def test_tokenizer_file_errors_are_one_line(tmp_path):
    no_eod = hf_json(tmp_path, special=("<pad>",))
    with pytest.raises(tok.TokenizerError, match="data.eod_token") as info:
        tok.load_file(no_eod)
    assert "\n" not in str(info.value)
    assert tok.load_file(no_eod, eod_token="<pad>").eod_id == 0
    with pytest.raises(tok.TokenizerError, match="fix data.eod_token"):
        tok.load_file(no_eod, eod_token="<nope>")
    with pytest.raises(tok.TokenizerError, match="does not exist"):
        tok.load_file(tmp_path / "missing.model")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(tok.TokenizerError, match="not a SentencePiece model"):
        tok.load_file(tmp_path / "junk.model")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(tok.TokenizerError, match="not a Hugging Face tokenizer.json"):
        tok.load_file(tmp_path / "junk.json")


def test_sentencepiece_file_with_dummy_prefix_encodes_whole_texts(tmp_path, bpe):
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(small_corpus()), model_writer=model,
                                   vocab_size=100, minloglevel=2)  # library defaults
    (tmp_path / "sp.model").write_bytes(model.getvalue())
    t = tok.load_file(tmp_path / "sp.model")
    reference = spm.SentencePieceProcessor(model_proto=model.getvalue())
    long_text = "\n".join(small_corpus(5))  # longer than one encode chunk
    assert t.encode(long_text).tolist() == reference.encode(long_text)
    assert t.eod_id == reference.eos_id() and t.name.startswith("spm100-")
    # Our own BPE has no dummy prefix: its chunked encoding equals the library's whole-text one.
    own = spm.SentencePieceProcessor(model_proto=bpe.model_proto)
    assert bpe.encode(long_text * 3).tolist() == own.encode(long_text * 3)
