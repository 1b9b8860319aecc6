"""Sources: .txt folders, JSONL (plain, gzip, zstd), Parquet and globs give the same documents;
bad records fail with file and line, or are skipped and counted."""

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from configs import gpt
from research.data import corpus as corpus_lib
from research.data import batches as data_lib
from research.data import sources


def make_docs(n=40, seed=1):
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "délta", "εψιλον", "zeta\t", "🙂", "eta  ", "θ\n", "{\"quoted\"}"]
    return [" ".join(rng.choice(words, size=int(rng.integers(20, 120)))) + f"\nend {i}\n"
            for i in range(n)]


def jsonl_bytes(docs, field="text"):
    return b"".join(json.dumps({"id": i, field: d}).encode() + b"\n" for i, d in enumerate(docs))


def write_jsonl(path: Path, docs, field="text"):
    raw = jsonl_bytes(docs, field)
    if path.name.endswith(".gz"):
        raw = gzip.compress(raw)
    elif path.name.endswith(".zst"):
        raw = zstandard.ZstdCompressor().compress(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def write_parquet(path: Path, docs, column="text", row_group_size=7):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: docs}), path, row_group_size=row_group_size)
    return path


def write_txt(folder: Path, docs):
    folder.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(docs):
        (folder / f"doc_{i:03d}.txt").write_text(d, encoding="utf-8")
    return folder


def cfg_for(corpus, data_dir, **overrides):
    cfg = gpt.base_config().data
    cfg.corpus, cfg.data_dir = str(corpus), str(data_dir)
    cfg.validation_fraction = 0.25
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def held_out(text, fraction=0.25):
    """Independent statement of the record hold-out rule: sha256(text) as a fraction of 2^256."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) / 2**256 < fraction


def test_txt_jsonl_zst_gz_and_parquet_give_the_same_tokens(tmp_path):
    docs = make_docs()
    specs = {
        "txt": write_txt(tmp_path / "txt", docs),
        "zst": write_jsonl(tmp_path / "c.jsonl.zst", docs),
        "gz": write_jsonl(tmp_path / "c.jsonl.gz", docs),
        "jsonl": write_jsonl(tmp_path / "plain" / "c.jsonl", docs),
        "parquet": write_parquet(tmp_path / "c.parquet", docs),
    }
    loaded = {k: data_lib.load_token_data(cfg_for(v, tmp_path / "d"), progress=False)
              for k, v in specs.items()}
    total_tokens = sum(len(d.encode()) + 1 for d in docs)  # bytes plus one eod per document
    for k, td in loaded.items():
        assert td.info["train_tokens"] + td.info["validation_tokens"] == total_tokens, k
        assert td.info["train_documents"] + td.info["validation_documents"] == len(docs), k
    # Records are held out by content, so every record format gives the same split and tokens.
    val_docs = [d for d in docs if held_out(d)]
    assert 0 < len(val_docs) < len(docs)
    expected_val = b"".join(d.encode() + b"\xff" for d in val_docs)
    for k in ("zst", "gz", "jsonl", "parquet"):
        assert loaded[k].val.tobytes() == expected_val, k
        np.testing.assert_array_equal(loaded[k].train, loaded["zst"].train)


def test_glob_of_shards_equals_one_file(tmp_path):
    docs = make_docs(30)
    one = write_jsonl(tmp_path / "one" / "all.jsonl.zst", docs)
    for i in range(3):
        write_jsonl(tmp_path / "shards" / f"part-{i}.jsonl.zst", docs[10 * i: 10 * (i + 1)])
    a = data_lib.load_token_data(cfg_for(one, tmp_path / "d"), progress=False)
    b = data_lib.load_token_data(cfg_for(tmp_path / "shards" / "part-*.jsonl.zst",
                                         tmp_path / "d"), progress=False)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    assert a.info["corpus_sha256"] != b.info["corpus_sha256"]  # different files, same text


def test_text_field_and_column_are_configurable(tmp_path):
    docs = make_docs(20)
    for path in (write_jsonl(tmp_path / "b.jsonl", docs, field="body"),
                 write_parquet(tmp_path / "b.parquet", docs, column="body")):
        td = data_lib.load_token_data(cfg_for(path, tmp_path / "d", text_feature="body"),
                                      progress=False)
        assert td.info["train_documents"] + td.info["validation_documents"] == 20
    with pytest.raises(corpus_lib.CorpusError, match=r"b\.parquet has no column 'text'.*text_feature"):
        data_lib.load_token_data(cfg_for(tmp_path / "b.parquet", tmp_path / "d"))


# ---------------------------------------------------------------- bad records


def one_line_error(cfg) -> str:
    with pytest.raises(corpus_lib.CorpusError) as info:
        data_lib.load_token_data(cfg, progress=False)
    message = str(info.value)
    assert "\n" not in message and "data.bad_records='skip'" in message
    return message


def bad_jsonl(path: Path, docs) -> Path:
    """Good records with three bad ones: line 3 malformed, 5 without 'text', 7 not UTF-8."""
    lines = [json.dumps({"text": d}).encode() for d in docs]
    lines[2] = b'{"text": "unterminated'
    lines[4] = json.dumps({"body": "no text field"}).encode()
    lines[6] = b'{"text": "caf\xe9 latin-1"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_each_bad_jsonl_record_fails_with_file_and_line(tmp_path):
    docs = make_docs(12)
    cases = {
        3: ("malformed JSON", b'{"text": "unterminated'),
        5: ("no string field 'text'", json.dumps({"body": "x"}).encode()),
        7: ("invalid UTF-8", b'{"text": "caf\xe9"}'),
    }
    for line, (problem, record) in cases.items():
        lines = [json.dumps({"text": d}).encode() for d in docs]
        lines[line - 1] = record
        path = tmp_path / f"bad{line}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        message = one_line_error(cfg_for(path, tmp_path / "d"))
        assert message.startswith(f"{path}:{line}: {problem}"), message


def test_bad_records_are_skipped_and_counted(tmp_path):
    docs = make_docs(12)
    path = bad_jsonl(tmp_path / "mixed.jsonl", docs)
    td = data_lib.load_token_data(cfg_for(path, tmp_path / "d", bad_records="skip"),
                                  progress=False)
    good = [d for i, d in enumerate(docs) if i not in (2, 4, 6)]
    assert td.info["train_documents"] + td.info["validation_documents"] == len(good)
    report = td.info["bad_records"]
    assert report["skipped"] == 3
    assert report["by_kind"] == {"malformed_json": 1, "missing_field": 1, "invalid_utf8": 1}
    assert report["examples"][0].startswith(f"{path}:3:")
    corpus = corpus_lib.prepare_corpus(cfg_for(path, tmp_path / "d", bad_records="skip"))
    assert json.loads((Path(corpus.dataset_dir) / "build_report.json").read_text()) == report


def test_bad_parquet_rows_and_txt_files(tmp_path):
    docs = make_docs(10)
    table = pa.table({"text": pa.array([d.encode() for d in docs[:4]] + [None, b"\xff\xfe"]
                                       + [d.encode() for d in docs[4:]], type=pa.binary())})
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    assert one_line_error(cfg_for(path, tmp_path / "d")).startswith(
        f"{path}: row 5: column 'text' is null")
    td = data_lib.load_token_data(cfg_for(path, tmp_path / "d", bad_records="skip"),
                                  progress=False)
    assert td.info["bad_records"]["by_kind"] == {"missing_field": 1, "invalid_utf8": 1}
    assert td.info["train_documents"] + td.info["validation_documents"] == len(docs)

    folder = write_txt(tmp_path / "txt", docs)
    (folder / "latin1.txt").write_bytes("café".encode("latin-1"))
    assert one_line_error(cfg_for(folder, tmp_path / "d")).startswith(
        f"{folder / 'latin1.txt'}: invalid UTF-8 at byte 3")
    td = data_lib.load_token_data(cfg_for(folder, tmp_path / "d", bad_records="skip"),
                                  progress=False)
    assert td.info["bad_records"]["skipped"] == 1


def test_source_spec_errors(tmp_path):
    with pytest.raises(corpus_lib.CorpusError, match="matches no files"):
        sources.resolve(str(tmp_path / "none-*.jsonl"))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(corpus_lib.CorpusError, match="unsupported format"):
        sources.resolve(str(tmp_path / "x.csv"))
    write_txt(tmp_path / "mix", ["a"])
    write_jsonl(tmp_path / "mix" / "b.jsonl", ["b"])
    with pytest.raises(corpus_lib.CorpusError, match="mixes"):
        sources.resolve(str(tmp_path / "mix" / "*"))
    with pytest.raises(corpus_lib.CorpusError, match="bad_records"):
        data_lib.load_token_data(cfg_for(write_jsonl(tmp_path / "ok.jsonl", ["a", "b"]),
                                         tmp_path / "d", bad_records="ignore"))


def test_file_hashes_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "c.jsonl", ["some text"])
    first = sources.file_sha256(path, tmp_path / "cache")
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    real_open = open

    def no_data_reads(file, *args, **kwargs):
        assert Path(file) != path, "a warm start re-read the corpus"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_data_reads)
    assert sources.file_sha256(path, tmp_path / "cache") == first
    monkeypatch.undo()
    write_jsonl(path, ["other text, longer"])
    assert sources.file_sha256(path, tmp_path / "cache") != first


def test_spilled_build_keeps_source_order(tmp_path, monkeypatch):
    """Past its memory buffer TFDS sorts through on-disk buckets: same documents, same order."""
    docs = make_docs(60)
    path = write_jsonl(tmp_path / "c.jsonl.zst", docs)
    monkeypatch.setattr(corpus_lib, "BUILD_BUFFER_BYTES", 2000)  # spill almost at once
    corpus = corpus_lib.prepare_corpus(cfg_for(path, tmp_path / "d", validation_fraction=0.2))
    train = [t for _, t in corpus.documents("train")]
    val = [t for _, t in corpus.documents("validation")]
    assert train == [d for d in docs if not held_out(d, 0.2)]
    assert val == [d for d in docs if held_out(d, 0.2)]
    from tensorflow_datasets.core import shuffle
    assert shuffle.MAX_MEM_BUFFER_SIZE == 1000 << 20  # restored after the build


def test_a_source_with_no_good_records_is_a_one_line_error(tmp_path):
    path = tmp_path / "allbad.jsonl"
    path.write_bytes(b"not json\n{\"body\": 1}\n")
    with pytest.raises(corpus_lib.CorpusError, match="split with no documents") as info:
        data_lib.load_token_data(cfg_for(path, tmp_path / "d", bad_records="skip"))
    assert "\n" not in str(info.value)
