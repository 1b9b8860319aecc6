"""Prompt/response and preference JSONL: reading with one-line errors that name the line, and
encoding into fixed-length token rows with a response mask.

Formats (one JSON object a line, blank lines ignored):
  SFT:        {"prompt": "...", "response": "..."}
  preference: {"prompt": "...", "chosen": "...", "rejected": "..."}
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from common import files
from research.errors import UserError

SFT_FIELDS = ("prompt", "response")
PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")


class RecordError(UserError):
    """A prompt/response or preference file cannot be used; the message names file and line."""


@dataclasses.dataclass(frozen=True)
class Record:
    fields: dict  # field name -> value (the required ones are strings)
    where: str  # "FILE:LINE", for errors

    def __getitem__(self, name):
        return self.fields[name]


def read_jsonl(path: str, fields=PREFERENCE_FIELDS) -> list[Record]:
    """Every record of `path`, each with the string `fields`; the prompt may be empty, a
    response may not."""
    if not os.path.isfile(path):
        raise RecordError(f"{path} does not exist; give a JSONL file with fields "
                          f"{', '.join(fields)}")
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{where}: not valid JSON ({e.msg}); write one JSON object "
                                  "per line") from None
            if not isinstance(row, dict):
                raise RecordError(f"{where}: a JSON {type(row).__name__}, not an object; write "
                                  f"{{{', '.join(repr(k) + ': ...' for k in fields)}}}")
            for name in fields:
                if name not in row:
                    raise RecordError(f"{where}: missing field {name!r}; every line needs "
                                      f"{', '.join(fields)}")
                if not isinstance(row[name], str):
                    raise RecordError(f"{where}: field {name!r} is a {type(row[name]).__name__},"
                                      " not a string")
                if name != "prompt" and not row[name].strip():
                    raise RecordError(f"{where}: field {name!r} is empty; drop the line or "
                                      "give a response")
            out.append(Record(row, where))  # extra fields (e.g. gold rewards) ride along
    if not out:
        raise RecordError(f"{path} holds no records; write one JSON object per line")
    return out


def write_jsonl(path: str, rows) -> None:
    """Rows (dicts) as JSONL, atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    files.write_atomic(path, text.encode("utf-8"))


@dataclasses.dataclass
class Encoded:
    """Rows of [prompt, response] tokens, padded to context + 1.

    inputs/targets [B, C]; target_mask 1 where the target is a response token; input_mask 1
    where the input is a response token (what a reward model pools over)."""
    inputs: np.ndarray
    targets: np.ndarray
    target_mask: np.ndarray
    input_mask: np.ndarray
    truncated: int  # responses cut to fit the context

    def widened(self, width: int) -> "Encoded":
        """The same rows padded (end-of-document tokens, mask 0) to `width` positions."""
        extra = width - self.inputs.shape[1]
        if extra <= 0:
            return self
        pad = lambda a, v: np.pad(a, ((0, 0), (0, extra)), constant_values=v)  # noqa: E731
        eod = int(self.inputs[0, 0])  # every row starts with the document boundary
        return Encoded(pad(self.inputs, eod), pad(self.targets, eod), pad(self.target_mask, 0),
                       pad(self.input_mask, 0), self.truncated)

    def rows(self, index) -> dict:
        return {"inputs": self.inputs[index], "targets": self.targets[index],
                "target_mask": self.target_mask[index], "input_mask": self.input_mask[index]}


def encode(tokenizer, records: list[Record], response_field: str, context_length: int) -> Encoded:
    """Token rows of prompt + response. A document boundary (the end-of-document token) starts
    every row, so an empty prompt is allowed. A prompt that leaves no room for a response is an
    error naming its line; a response longer than the room left is cut."""
    prompts = [np.asarray(tokenizer.encode(r["prompt"]), np.int32) for r in records]
    replies = [np.asarray(tokenizer.encode(r[response_field]), np.int32) for r in records]
    for record, reply in zip(records, replies):
        if len(reply) == 0:
            raise RecordError(f"{record.where}: field {response_field!r} encodes to no tokens; "
                              "give a response")
    return encode_ids(tokenizer.eod_id, prompts, replies, context_length,
                      [r.where for r in records])


def encode_ids(eod_id: int, prompts, replies, context_length: int, wheres=None) -> Encoded:
    """encode() on token ids: rows [eod, prompt..., response..., eod padding], as wide as the
    longest row needs (rounded up to a multiple of 16, to reuse compilations), at most the
    context + 1."""
    n = len(prompts)
    longest = max((1 + len(p) + len(r) for p, r in zip(prompts, replies)), default=2)
    width = min(-(-longest // 16) * 16 + 1, context_length + 1)
    tokens = np.full((n, width), eod_id, np.int32)
    response = np.zeros((n, width), bool)
    truncated = 0
    for i, (prompt, reply) in enumerate(zip(prompts, replies)):
        prompt = np.concatenate([[eod_id], np.asarray(prompt, np.int32)])
        if len(prompt) >= width:
            where = wheres[i] if wheres else f"row {i}"
            raise RecordError(
                f"{where}: the prompt is {len(prompt) - 1} tokens, but the context holds "
                f"{context_length} (one of them the document start) and a response needs at least "
                "one; shorten the prompt or use a model with a longer context")
        room = width - len(prompt)
        truncated += len(reply) > room
        reply = np.asarray(reply, np.int32)[:room]
        tokens[i, :len(prompt)] = prompt
        tokens[i, len(prompt):len(prompt) + len(reply)] = reply
        response[i, len(prompt):len(prompt) + len(reply)] = True
    return Encoded(tokens[:, :-1], tokens[:, 1:], response[:, 1:].astype(np.float32),
                   response[:, :-1].astype(np.float32), truncated)
