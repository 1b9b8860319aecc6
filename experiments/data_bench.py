"""Data-path benchmark: python -m experiments.data_bench --size 20MB [--size 2GB] --out DIR.

For each size: generates a synthetic JSONL.zst corpus of that much UTF-8 text, then, each phase
in a fresh process so peak RSS is its own:
1. build: ingestion (source -> TFDS array_record) and tokenization (-> token store) throughput
   in MB/s of text, and the peak RSS of the build (the process and its tokenizer workers);
2. train, warm store (twice, --runs; the last is reported): a short run (--steps, 400 by default:
   3,200 random windows), timed from process start to the first finished training step, the
   time spent loading data, and the peak RSS of the training process.
Prints a table and writes DIR/data_bench.json. The "Done when" of issue 11: warm start-up does
not grow with corpus size, and peak training RSS stays within 10% across sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_WORDS = ("the of and to in is was for on with as by at from that this which be are his her "
          "scaling law compute tokens model loss data width depth learning rate warmup decay "
          "café naïve Straße εψιλον данные 数据 🙂").split()
_SHARD_BYTES = 256 << 20
# Training steps of batch 8: 3,200 random windows, enough that memory which grows with the
# windows read (file pages mapped by reading through a memory map) shows at every size.
STEPS = 400


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?B)", text.strip().upper())
    if not match:
        raise ValueError(f"--size {text!r} is not like 20MB or 2GB; fix it")
    return int(float(match.group(1)) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[match.group(2)])


def generate(folder: Path, size: int, seed: int = 0) -> tuple[int, int]:
    """JSONL.zst shards holding ~size bytes of text. Returns (documents, text bytes)."""
    import zstandard

    marker = folder / "done.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        return done["documents"], done["bytes"]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # Documents are drawn from a pool of sentences, so generation is cheap at any size.
    sentences = [" ".join(rng.choice(_WORDS, size=int(rng.integers(6, 30)))) + ".\n"
                 for _ in range(20_000)]
    n_docs = n_bytes = shard = 0
    compressor = zstandard.ZstdCompressor(level=1)
    while n_bytes < size:
        path = folder / f"shard-{shard:04d}.jsonl.zst"
        with open(path, "wb") as raw, compressor.stream_writer(raw) as out:
            shard_bytes = 0
            while shard_bytes < _SHARD_BYTES and n_bytes < size:
                picks = rng.integers(0, len(sentences), size=int(rng.integers(20, 100)))
                text = f"document {n_docs}\n" + "".join(sentences[i] for i in picks)
                line = json.dumps({"text": text}, ensure_ascii=False).encode() + b"\n"
                out.write(line)
                length = len(text.encode())
                shard_bytes += length
                n_bytes += length
                n_docs += 1
        shard += 1
    marker.write_text(json.dumps({"documents": n_docs, "bytes": n_bytes}))
    return n_docs, n_bytes


# The phases run in fresh interpreters: argv = [phase, corpus glob, data_dir, workdir, t0, steps].
_CHILD = r"""
import json, resource, sys, time
phase, corpus, data_dir, workdir, t0, steps = sys.argv[1:7]
from configs import gpt
from research import train as train_lib
from research.data import corpus as corpus_lib, batches as data_lib
c = gpt.get_config("tiny")
c.data.corpus, c.data.data_dir = corpus, data_dir
c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.context_length = 2, 64, 2, 128
c.train.batch_size, c.train.tokens = 8, 8 * 128 * int(steps)
c.train.eval_batches, c.train.eval_every, c.train.checkpoint_every, c.train.log_every = 1, 10**6, 10**6, 1
c.mesh.data = -1
from experiments import cli
c = cli.run_config(c)
out = {}
if phase == "build":
    start = time.time()
    corpus_lib.prepare_corpus(c.data)
    out["ingest_s"] = time.time() - start
    start = time.time()
    td = data_lib.load_token_data(c.data, progress=False)
    out["tokenize_s"] = time.time() - start
    out["text_bytes"] = td.info["train_bytes"] + td.info["validation_bytes"]
    out["tokens"] = td.info["train_tokens"] + td.info["validation_tokens"]
    out["documents"] = td.info["train_documents"] + td.info["validation_documents"]
    out["store"] = td.info["store"]
else:
    real = data_lib.load_token_data
    def timed(*a, **k):
        s = time.time(); r = real(*a, **k); out["data_load_s"] = time.time() - s; return r
    data_lib.load_token_data = timed
    build = train_lib.build_trainer
    def build_and_watch(*a, **k):
        trainer = build(*a, **k)
        step = trainer.train_step
        def first(*sa, **sk):
            r = step(*sa, **sk)
            if "first_step_s" not in out:
                import jax
                jax.block_until_ready(r)
                out["first_step_s"] = time.time() - float(t0)
            return r
        trainer.train_step = first
        return trainer
    train_lib.build_trainer = build_and_watch
    train_lib.train(c, workdir, progress=False)
status = dict(l.split(":", 1) for l in open("/proc/self/status") if l.startswith(("VmRSS", "RssFile")))
out["end_rss_mb"] = int(status["VmRSS"].split()[0]) / 1024  # after training, for what grew
out["end_rss_file_mb"] = int(status["RssFile"].split()[0]) / 1024  # mapped file pages among it
self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
out["peak_rss_mb"] = self / 1024
out["peak_rss_children_mb"] = kids / 1024
print("RESULT " + json.dumps(out))
"""


def _child(phase: str, corpus: str, data_dir: Path, workdir: Path, steps: int = 1) -> dict:
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", _CHILD, phase, corpus, str(data_dir),
                           str(workdir), repr(t0), str(steps)], capture_output=True, text=True,
                          env=env, cwd=repo)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"{phase} phase failed:\n{proc.stderr[-3000:]}")
    result = json.loads(line[len("RESULT "):])
    result["process_s"] = time.time() - t0
    print(f"  {phase}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def bench_size(size: int, out: Path, *, reuse: bool = False, steps: int = STEPS,
               runs: int = 2) -> dict:
    import shutil

    label = f"{size / 1e6:g}MB"
    root = out / label
    gen_start = time.time()
    n_docs, n_bytes = generate(root / "corpus", size)
    print(f"{label}: generated {n_docs} documents, {n_bytes / 1e6:.1f} MB of text",
          file=sys.stderr, flush=True)
    corpus = str(root / "corpus" / "shard-*.jsonl.zst")
    data_dir = root / "datasets"
    generate_s = time.time() - gen_start
    built = root / "build.json"
    if reuse and built.is_file():  # only the warm-store training phases are measured again
        build = json.loads(built.read_text())
    else:
        shutil.rmtree(data_dir, ignore_errors=True)  # a cold build
        build = _child("build", corpus, data_dir, root / "unused")
        built.write_text(json.dumps(build))
    mb = build["text_bytes"] / 1e6
    results = []
    for i in range(runs):  # the first warm run also fills the OS page cache and XLA's caches
        shutil.rmtree(root / f"run{i}", ignore_errors=True)
        results.append(_child("train", corpus, data_dir, root / f"run{i}", steps))
    train = results[-1]
    return {
        "size": label, "documents": n_docs, "text_mb": round(mb, 1), "generate_s": round(generate_s, 1),
        "ingest_mb_s": round(mb / build["ingest_s"], 2),
        "tokenize_mb_s": round(mb / build["tokenize_s"], 2),
        "build_peak_rss_mb": round(build["peak_rss_mb"], 1),
        "build_workers_peak_rss_mb": round(build["peak_rss_children_mb"], 1),
        "startup_to_first_step_s": round(train["first_step_s"], 2),
        "data_load_s": round(train["data_load_s"], 3),
        "train_peak_rss_mb": round(train["peak_rss_mb"], 1),
        "train_end_rss_mb": round(train.get("end_rss_mb", float("nan")), 1),
        "train_end_rss_file_mb": round(train.get("end_rss_file_mb", float("nan")), 1),
        "store_mb": round(sum(f.stat().st_size for f in Path(build["store"]).iterdir()) / 1e6, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.data_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", required=True, metavar="LIST",
                        help="comma-separated corpus sizes, e.g. 20MB,2GB")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a store built by an earlier run in --out (its build figures "
                        "are repeated) and measure the warm training phases only")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help="training steps (batch 8, context 128) of each warm run")
    parser.add_argument("--runs", type=int, default=2,
                        help="warm training runs per size, the last reported (1 when an "
                        "earlier run of the same model already filled the caches)")
    parser.add_argument("--out", default="/tmp/data_bench",
                        help="folder for the synthetic corpora, stores and data_bench.json")
    args = parser.parse_args(argv)
    try:
        sizes = [parse_size(s) for s in args.size.split(",") if s.strip()]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    rows = []
    for size in sizes:
        rows.append(bench_size(size, out, reuse=args.reuse, steps=args.steps,
                               runs=args.runs))
        print(json.dumps(rows[-1]), flush=True)
    report = {"rows": rows}
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        report["train_rss_ratio"] = round(large["train_peak_rss_mb"] / small["train_peak_rss_mb"], 3)
        report["startup_ratio"] = round(large["startup_to_first_step_s"]
                                        / small["startup_to_first_step_s"], 3)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_bench.json").write_text(json.dumps(report, indent=1))
    keys = list(rows[0])
    print("\n" + " | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))
    for key in ("train_rss_ratio", "startup_ratio"):
        if key in report:
            print(f"{key} (largest / smallest): {report[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
