"""The data pipeline, in the order a run uses it:

  sources      read documents from a corpus spec (embedded text, folders, JSONL, Parquet, TFDS)
  corpus       prepare a corpus once as a TFDS array_record dataset (train/validation split)
  tokenizer    byte, trained BPE, or an existing SentencePiece / Hugging Face tokenizer
  token_store  the tokenized splits, memory-mapped, built once per (corpus, tokenizer)
  batches      what training reads: a batch as a pure function of (seed, step), evaluation sets

Import the module you need (`from research.data import batches`); nothing is re-exported here.
"""
