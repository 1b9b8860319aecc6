"""Local document sources: which files a `data.corpus` (or eval set) names, and streaming readers.

A source is a folder of .txt files (one document per file, found recursively), a single file, or
a glob (`/data/shard-*.jsonl.zst`). File formats, by extension:
- `.txt`: the whole file is one document.
- `.jsonl`, `.jsonl.gz`, `.jsonl.zst`: one JSON object per line; the document is the string in
  field `data.text_feature`. Blank lines are ignored.
- `.parquet`: one document per row, from string (or binary UTF-8) column `data.text_feature`.

Readers stream: a JSONL line or a Parquet batch at a time, so memory does not grow with the file.
A bad record (malformed JSON, a missing or non-string field, invalid UTF-8) either fails the
build with a `BadRecordError` naming file and line/row, or is skipped and counted
(`data.bad_records = "fail" | "skip"`).
"""

from __future__ import annotations

import collections
import dataclasses
import glob as glob_lib
import gzip
import io
import json
import os
from pathlib import Path
from typing import Iterator

from research.errors import UserError
from common.files import write_json

TEXT_FORMATS = (".txt",)
RECORD_FORMATS = (".jsonl.zst", ".jsonl.gz", ".jsonl", ".parquet")
BAD_RECORD_MODES = ("fail", "skip")
_PARQUET_BATCH_ROWS = 1024


class CorpusError(UserError):
    """The corpus (or a source) cannot be found or prepared; the message names the fix."""


class BadRecordError(CorpusError):
    """One record of a source is unusable and data.bad_records='fail'."""


def format_of(path: str | os.PathLike) -> str | None:
    name = str(path).lower()
    return next((f for f in TEXT_FORMATS + RECORD_FORMATS if name.endswith(f)), None)


def strip_format(name: str) -> str:
    fmt = format_of(name)
    return name[: -len(fmt)] if fmt else name


@dataclasses.dataclass(frozen=True)
class Source:
    spec: str  # as given
    root: Path  # names are relative to it
    files: tuple[Path, ...]  # sorted by relative name
    records: bool  # JSONL/Parquet records (True) or one document per .txt file (False)

    def name_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def resolve(spec: str) -> Source:
    """The files a local source names. Raises CorpusError with the fix if there are none."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        root = path
    elif path.is_file():
        files, root = [path], path.parent
    elif glob_lib.has_magic(spec):
        files = sorted(Path(p) for p in glob_lib.glob(os.path.expanduser(spec), recursive=True)
                       if os.path.isfile(p))
        root = Path(os.path.commonpath([str(p.parent) for p in files])) if files else path.parent
    else:
        raise CorpusError(
            f"{spec!r} is neither 'shakespeare', 'tfds:NAME', an existing folder of .txt files, "
            "a file nor a glob; fix the path")
    if not files:
        raise CorpusError(f"{spec!r} matches no files; fix the path or glob")
    unknown = [p for p in files if format_of(p) is None]
    if unknown:
        raise CorpusError(
            f"{unknown[0]} has an unsupported format; use .txt, .jsonl, .jsonl.gz, .jsonl.zst "
            "or .parquet")
    kinds = {format_of(p) in RECORD_FORMATS for p in files}
    if len(kinds) > 1:
        raise CorpusError(f"{spec!r} mixes .txt files with JSONL/Parquet files; use one kind")
    files = sorted(files, key=lambda p: p.relative_to(root).as_posix())
    return Source(spec=spec, root=root, files=tuple(files), records=kinds.pop())


class BadRecords:
    """Skips or fails on bad records; counts skips by kind and keeps a few examples."""

    def __init__(self, mode: str):
        if mode not in BAD_RECORD_MODES:
            raise CorpusError(f"data.bad_records={mode!r}; use 'fail' or 'skip'")
        self.mode = mode
        self.counts: collections.Counter = collections.Counter()
        self.examples: list[str] = []

    def __call__(self, kind: str, where: str, problem: str) -> None:
        if self.mode == "fail":
            raise BadRecordError(
                f"{where}: {problem}; fix the record or set data.bad_records='skip'")
        self.counts[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {problem}")

    def report(self) -> dict:
        return {"skipped": sum(self.counts.values()), "by_kind": dict(self.counts),
                "examples": list(self.examples)}


def documents(source: Source, text_field: str, bad: BadRecords
              ) -> Iterator[tuple[str, str, float]]:
    """(name, text, position) of every good document, streaming, in file then record order.

    Record names are `<file without its format extension>/<line or row>`, so the same records
    stored as .jsonl.zst or .parquet get the same names. `position` in [0, 1) grows with the
    document's place in the source (bytes read so far over all files' sizes): the builder turns
    it into ordered keys spread over TFDS's key space, which keeps its sort buckets small.
    """
    sizes = [max(p.stat().st_size, 1) for p in source.files]
    total, base = float(sum(sizes)), 0
    for path, size in zip(source.files, sizes):
        name = source.name_of(path)
        fmt = format_of(path)
        where = lambda offset: min((base + min(offset, size)) / total, 1.0 - 1e-12)  # noqa: E731
        if fmt == ".txt":
            text = _decode(path.read_bytes(), str(path), bad)
            if text is not None:
                yield name, text, where(0)
        elif fmt == ".parquet":
            for doc, fraction in _parquet(path, strip_format(name), text_field, bad):
                yield doc[0], doc[1], where(fraction * size)
        else:
            for doc, offset in _jsonl(path, fmt, strip_format(name), text_field, bad):
                yield doc[0], doc[1], where(offset)
        base += size


def _decode(raw: bytes, where: str, bad: BadRecords) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad("invalid_utf8", where, f"invalid UTF-8 at byte {e.start}")
        return None


def _open_binary(path: Path, fmt: str):
    """(line stream, the underlying file whose tell() says how far we have read)."""
    raw = open(path, "rb")
    if fmt == ".jsonl.gz":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if fmt == ".jsonl.zst":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)
        return io.BufferedReader(reader), raw
    return raw, raw


def _jsonl(path: Path, fmt: str, stem: str, field: str, bad: BadRecords):
    """((name, text), compressed bytes read so far) per good record."""
    f, raw = _open_binary(path, fmt)
    with raw, f:
        for lineno, line_bytes in enumerate(f, start=1):
            if not line_bytes.strip():
                continue
            where = f"{path}:{lineno}"
            line = _decode(line_bytes, where, bad)
            if line is None:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                bad("malformed_json", where, f"malformed JSON ({e.msg} at column {e.colno})")
                continue
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                bad("missing_field", where, f"no string field {field!r} (set data.text_feature)")
                continue
            if not _encodable(text):
                bad("invalid_utf8", where, "text holds an unpaired surrogate (invalid UTF-8)")
                continue
            yield (f"{stem}/{lineno}", text), raw.tell()


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _parquet(path: Path, stem: str, column: str, bad: BadRecords):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise CorpusError(f"{path} is not a readable Parquet file ({e}); fix or remove it") from None
    if column not in pf.schema_arrow.names:
        raise CorpusError(
            f"{path} has no column {column!r} (it has {pf.schema_arrow.names}); set "
            "data.text_feature")
    row, n_rows = 0, max(pf.metadata.num_rows, 1)
    for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[column]):
        for value in batch.column(0).to_pylist():
            row += 1
            where = f"{path}: row {row}"
            if isinstance(value, bytes):
                value = _decode(value, where, bad)
                if value is None:
                    continue
            if not isinstance(value, str):
                bad("missing_field", where, f"column {column!r} is null or not text")
                continue
            yield (f"{stem}/{row}", value), (row - 1) / n_rows


def file_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of a file's bytes, cached by (path, size, mtime) so a warm start reads no data."""
    import hashlib

    st = path.stat()
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    entry = cache_dir / f"{key}.json"
    stamp = [st.st_size, st.st_mtime_ns]
    try:
        cached = json.loads(entry.read_text())
        if cached["stamp"] == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_json(entry, {"path": str(path), "stamp": stamp, "sha256": digest})
    return digest
