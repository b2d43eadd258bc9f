"""Examples -> fixed-width int32 NumPy features, through one batched fast-tokenizer call.

Long contexts become several overlapping windows (`doc_stride` tokens of overlap, Hugging Face's
meaning). Labels are computed for all windows at once with array operations: a window that does
not hold the whole answer, and every unanswerable question, points at the CLS token.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxqa.data import Examples
from jaxqa.errors import ConfigError, ModelError


@dataclasses.dataclass
class Features:
    """One row per window. `offsets` are character spans of context tokens, -1 elsewhere."""

    input_ids: np.ndarray  # int32 [n, seq]
    token_type_ids: np.ndarray  # int32 [n, seq]
    attention_mask: np.ndarray  # int32 [n, seq]
    offsets: np.ndarray  # int32 [n, seq, 2]
    example_index: np.ndarray  # int32 [n]: row of the example in its Examples
    cls_index: np.ndarray  # int32 [n]: where "no answer" points
    start_positions: np.ndarray  # int32 [n]
    end_positions: np.ndarray  # int32 [n]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return self.attention_mask.sum(axis=1)

    def model_inputs(self) -> dict[str, np.ndarray]:
        """What the model reads (the eval batch fields)."""
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids,
                "attention_mask": self.attention_mask}

    def train_arrays(self) -> dict[str, np.ndarray]:
        """Model inputs plus labels (the train batch fields)."""
        return {**self.model_inputs(), "start_positions": self.start_positions, "end_positions": self.end_positions}


def load_tokenizer(name_or_dir: str | Path, cache_dir: str | None = None):
    """A Hugging Face *fast* tokenizer: offsets and batched overflow need the Rust implementation."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_dir), use_fast=True, cache_dir=cache_dir)
    except Exception as err:
        raise ModelError(f"{name_or_dir}: cannot load a tokenizer ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); the model directory needs "
                         "tokenizer.json or vocab.txt, or pass --tokenizer_name") from None
    # A bare tokenizer.json (no tokenizer_config.json) carries no special-token roles: take BERT's.
    vocab = tokenizer.get_vocab()
    for role, token in (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"), ("unk_token", "[UNK]")):
        if getattr(tokenizer, role, None) is None and token in vocab:
            setattr(tokenizer, role, token)
    if not tokenizer.is_fast:
        raise ModelError(f"{name_or_dir}: only a slow tokenizer is available; jaxqa needs a fast "
                         "(tokenizer.json) tokenizer for character offsets")
    return tokenizer


def check_window(max_seq_length: int, doc_stride: int, max_query_length: int, tokenizer=None,
                 model_config=None) -> None:
    """Fail at start-up, not mid-tokenisation, when the window cannot hold question + stride, or is
    longer than the tokenizer or the model's position table (`model_config`, if given) allows."""
    limit = getattr(tokenizer, "model_max_length", None) or max_seq_length
    if model_config is not None:
        limit = min(limit, model_config.max_positions)
    if max_seq_length > limit:
        raise ConfigError(f"--max_seq_length {max_seq_length} exceeds the model's maximum of {limit}; lower it")
    # [CLS] q [SEP] c [SEP] for BERT, <s> q </s></s> c </s> for RoBERTa, ...
    special = tokenizer.num_special_tokens_to_add(pair=True) if tokenizer is not None else 3
    context_room = max_seq_length - max_query_length - special
    if context_room <= doc_stride:
        raise ConfigError(
            f"--doc_stride {doc_stride} leaves no room to advance: a window of --max_seq_length "
            f"{max_seq_length} with a question of up to --max_query_length {max_query_length} tokens has "
            f"{context_room} context tokens; make doc_stride smaller than that"
        )


def _truncate_questions(questions: list[str], tokenizer, max_query_length: int) -> list[str]:
    """Cut questions to `max_query_length` tokens at a token boundary (one batched call)."""
    questions = [q.lstrip() for q in questions]  # leading spaces only waste window room
    enc = tokenizer(questions, add_special_tokens=False, truncation=True, max_length=max_query_length,
                    return_offsets_mapping=True, return_length=True)
    for i in np.flatnonzero(np.asarray(enc["length"]) >= max_query_length):  # the few long ones
        questions[i] = questions[i][: enc["offset_mapping"][i][-1][1]]
    return questions


def tokenize(examples: Examples, tokenizer, *, max_seq_length: int = 384, doc_stride: int = 128,
             max_query_length: int = 64) -> Features:
    """Tokenise all examples into windows with labels (first gold answer) and context offsets."""
    check_window(max_seq_length, doc_stride, max_query_length, tokenizer)
    # As Hugging Face's QA pipeline: a tokenizer that pads on the left (XLNet-style) wants the context
    # first and the question second. The arrays are padded on the right all the same: batching
    # trims windows to their length and the fused attention kernel masks by length.
    question_first = tokenizer.padding_side == "right"
    questions = _truncate_questions(examples.questions, tokenizer, max_query_length)
    pair = (questions, examples.contexts) if question_first else (examples.contexts, questions)
    enc = tokenizer(
        *pair, truncation="only_second" if question_first else "only_first", max_length=max_seq_length,
        stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
        return_token_type_ids=True, padding="max_length", padding_side="right",
    )
    input_ids = np.asarray(enc["input_ids"], dtype=np.int32)
    token_type_ids = np.asarray(enc["token_type_ids"], dtype=np.int32)
    attention_mask = np.asarray(enc["attention_mask"], dtype=np.int32)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int32)
    example_index = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int32)

    # Context tokens: the context's sequence id, whatever the token types say (RoBERTa has none).
    is_context = _sequence_ids(enc) == (1 if question_first else 0)
    offsets = np.where(is_context[..., None], offsets, -1).astype(np.int32)
    cls_index = _cls_index(input_ids, tokenizer)
    start_positions, end_positions = _label_windows(examples, example_index, offsets, is_context, cls_index)
    return Features(input_ids, token_type_ids, attention_mask, offsets, example_index, cls_index,
                    start_positions, end_positions)


def _sequence_ids(enc) -> np.ndarray:
    """[windows, seq] sequence id of every token: 0 first text, 1 second, -1 special tokens and padding.
    `tokenizers` has no batched accessor: one list per window, ~5% of the tokenizer call (SQuAD dev)."""
    ids = np.array([e.sequence_ids for e in enc.encodings], dtype=np.float32)  # None -> nan
    return np.nan_to_num(ids, nan=-1).astype(np.int8)


def _cls_index(input_ids: np.ndarray, tokenizer) -> np.ndarray:
    is_cls = input_ids == tokenizer.cls_token_id
    return np.where(is_cls.any(axis=1), is_cls.argmax(axis=1), 0).astype(np.int32)


def _label_windows(examples: Examples, example_index, offsets, is_context, cls_index):
    """Token start/end of the first gold answer per window, or CLS where it is not fully inside."""
    has_answer = np.array([bool(t) for t in examples.answer_texts], dtype=bool)
    char_start = np.array([s[0] if s else -1 for s in examples.answer_starts], dtype=np.int64)
    char_end = char_start + np.array([len(t[0]) if t else 0 for t in examples.answer_texts])
    a_start, a_end = char_start[example_index, None], char_end[example_index, None]
    positions = np.arange(offsets.shape[1])
    # Last context token starting at or before the answer; first one ending at or after it.
    start_tok = np.where(is_context & (offsets[..., 0] <= a_start), positions, -1).max(axis=1)
    end_tok = np.where(is_context & (offsets[..., 1] >= a_end), positions, offsets.shape[1]).min(axis=1)
    first_ctx = np.where(is_context, offsets[..., 0], np.iinfo(np.int32).max).min(axis=1)
    last_ctx = np.where(is_context, offsets[..., 1], -1).max(axis=1)
    inside = (has_answer[example_index] & (first_ctx <= a_start[:, 0]) & (last_ctx >= a_end[:, 0])
              & (start_tok >= 0) & (end_tok < offsets.shape[1]) & (start_tok <= end_tok))
    return (np.where(inside, start_tok, cls_index).astype(np.int32),
            np.where(inside, end_tok, cls_index).astype(np.int32))
