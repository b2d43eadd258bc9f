"""Examples -> fixed-width int32 NumPy features, through one batched fast-tokenizer call.

Long contexts become several overlapping windows (`doc_stride` tokens of overlap, Hugging Face's
meaning). Labels are computed for all windows at once with array operations: a window that does
not hold the whole answer, and every unanswerable question, points at the CLS token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from pathlib import Path

import numpy as np

from jaxqa.data import Examples
from jaxqa.errors import BadRecord, ConfigError, DataError, ModelError


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
    if context_room <= 0:
        raise ConfigError(f"--max_query_length {max_query_length} leaves no room for context: a window of "
                          f"--max_seq_length {max_seq_length} holds {special} special tokens, the question and the context; "
                          f"make max_query_length smaller than {max_seq_length - special - doc_stride}")
    if context_room <= doc_stride:
        raise ConfigError(
            f"--doc_stride {doc_stride} leaves no room to advance: a window of --max_seq_length "
            f"{max_seq_length} with a question of up to --max_query_length {max_query_length} tokens has "
            f"{context_room} context tokens; make doc_stride smaller than that"
        )


def _truncate_questions(questions: list[str], tokenizer, max_query_length: int) -> list[str]:
    """Cut questions to at most `max_query_length` tokens (one batched call). The cut goes where the first
    token past the limit starts: a character that becomes several tokens (a Hangul syllable split into
    jamo, say) is kept whole or not at all, so the cut question never tokenises longer."""
    questions = [q.lstrip() for q in questions]  # leading spaces only waste window room
    enc = tokenizer(questions, add_special_tokens=False, truncation=True, max_length=max_query_length + 1,
                    return_offsets_mapping=True, return_length=True)
    for i in np.flatnonzero(np.asarray(enc["length"]) > max_query_length):  # the few long ones
        questions[i] = questions[i][: enc["offset_mapping"][i][max_query_length][0]]
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
    windows = _encode_windows(tokenizer, *pair, truncate="only_second" if question_first else "only_first",
                              max_length=max_seq_length, stride=doc_stride)
    input_ids, token_type_ids, attention_mask, offsets, sequence_ids, example_index = windows
    # Context tokens: the context's sequence id, whatever the token types say (RoBERTa has none).
    is_context = sequence_ids == (1 if question_first else 0)
    offsets = np.where(is_context[..., None], offsets, -1).astype(np.int32)
    cls_index = _cls_index(input_ids, tokenizer)
    start_positions, end_positions = _label_windows(examples, example_index, offsets, is_context, cls_index,
                                                    doc_stride)
    return Features(input_ids, token_type_ids, attention_mask, offsets, example_index, cls_index,
                    start_positions, end_positions)


@contextlib.contextmanager
def _backend_settings(tokenizer, truncation: dict):
    """The Rust tokenizer with `truncation` and no padding for a block, its own settings restored after."""
    backend = tokenizer.backend_tokenizer
    saved_truncation, saved_padding = backend.truncation, backend.padding
    backend.enable_truncation(**truncation)
    backend.no_padding()
    try:
        yield backend
    finally:
        backend.enable_truncation(**saved_truncation) if saved_truncation else backend.no_truncation()
        backend.enable_padding(**saved_padding) if saved_padding else backend.no_padding()


def _encode_windows(tokenizer, first: list[str], second: list[str], *, truncate: str, max_length: int, stride: int):
    """All windows of all (first, second) pairs from one batched call of the Rust tokenizer, as padded
    [windows, max_length] arrays: ids, token types, attention mask, offsets [.., 2], sequence ids (-1 for
    special tokens and padding) and each window's example. The same encodings `tokenizer(...,
    return_overflowing_tokens=True)` makes (a test holds them equal), read straight from the Rust
    objects: `transformers` would first turn every window, padding included, into Python lists."""
    truncation = {"max_length": max_length, "stride": stride, "strategy": truncate,
                  "direction": tokenizer.truncation_side}
    with _backend_settings(tokenizer, truncation) as backend:
        encodings = backend.encode_batch(list(zip(first, second)), add_special_tokens=True)
    windows = list(itertools.chain.from_iterable([e, *e.overflowing] for e in encodings))
    example_index = np.repeat(np.arange(len(encodings), dtype=np.int32),
                              [1 + len(e.overflowing) for e in encodings])
    lengths = np.fromiter(map(len, windows), np.int64, len(windows))
    filled = np.arange(max_length) < lengths[:, None]  # row-major order = the order of the flat tokens
    total = int(lengths.sum())

    def padded(flat, pad, dtype=np.int32):
        out = np.full((len(windows), max_length) + flat.shape[1:], pad, dtype)
        out[filled] = flat
        return out

    def flat(field):
        return np.fromiter(itertools.chain.from_iterable(getattr(w, field) for w in windows), np.int32, total)

    input_ids = padded(flat("ids"), tokenizer.pad_token_id or 0)
    token_type_ids = padded(flat("type_ids"), tokenizer.pad_token_type_id)
    offsets = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(w.offsets for w in windows)),
                          np.int32, 2 * total).reshape(total, 2)
    sequence_ids = np.array(list(itertools.chain.from_iterable(w.sequence_ids for w in windows)),
                            dtype=np.float32)  # None (special tokens) -> nan
    sequence_ids = np.nan_to_num(sequence_ids, nan=-1).astype(np.int8)
    return (input_ids, token_type_ids, filled.astype(np.int32), padded(offsets, 0), padded(sequence_ids, -1, np.int8),
            example_index)


def _cls_index(input_ids: np.ndarray, tokenizer) -> np.ndarray:
    is_cls = input_ids == tokenizer.cls_token_id
    return np.where(is_cls.any(axis=1), is_cls.argmax(axis=1), 0).astype(np.int32)


def _label_windows(examples: Examples, example_index, offsets, is_context, cls_index, doc_stride: int):
    """Token start/end of the first gold answer per window: the smallest token span covering the answer's
    characters (the tokens overlapping it; characters no token holds, like spaces or stripped accents,
    count for nothing), in the windows that hold that whole span; CLS elsewhere and when unanswerable."""
    n_rows, seq = offsets.shape[:2]
    has_answer = np.array([bool(t) for t in examples.answer_texts], dtype=bool)
    char_start = np.array([s[0] if s else -1 for s in examples.answer_starts], dtype=np.int64)
    char_end = char_start + np.array([len(t[0]) if t else 0 for t in examples.answer_texts])
    a_start, a_end = char_start[example_index, None], char_end[example_index, None]
    overlaps = (is_context & has_answer[example_index, None] & (offsets[..., 1] > a_start)
                & (offsets[..., 0] < a_end) & (offsets[..., 1] > offsets[..., 0]))
    positions = np.arange(seq)
    start_tok = np.where(overlaps, positions, seq).min(axis=1)
    end_tok = np.where(overlaps, positions, -1).max(axis=1)
    # Index of each window's tokens in the example's whole context: window j starts j * (room - stride)
    # tokens in, where room is the first window's context length. Offsets cannot tell tokens apart
    # (the jamo of one Hangul syllable share its offsets) and a window may start inside a character.
    rows = np.arange(n_rows)
    first_row = np.searchsorted(example_index, example_index)  # windows of an example are consecutive
    context_start = is_context.argmax(axis=1)
    room = is_context.sum(axis=1)[first_row]
    shift = (rows - first_row) * np.maximum(room - doc_stride, 1) - context_start
    found = overlaps.any(axis=1)
    first_global = np.where(found, start_tok + shift, np.iinfo(np.int64).max)
    last_global = np.where(found, end_tok + shift, -1)
    span_first = np.full(len(examples), np.iinfo(np.int64).max)
    span_last = np.full(len(examples), -1)
    np.minimum.at(span_first, example_index, first_global)
    np.maximum.at(span_last, example_index, last_global)
    inside = found & (first_global == span_first[example_index]) & (last_global == span_last[example_index])
    return (np.where(inside, start_tok, cls_index).astype(np.int32),
            np.where(inside, end_tok, cls_index).astype(np.int32))


def checked_features(examples: Examples, tokenizer, *, training: bool, on_bad_record: str = "error",
                     tokenize_fn=None, **window) -> tuple[Examples, Features]:
    """`tokenize` plus the checks that need the tokenizer. A context without a single token (only
    whitespace, control or combining characters) is a bad record: DataError, or with `on_bad_record=
    "skip"` left out and added to `examples.skipped`. For training, answerable questions whose answer no
    window holds whole are listed in `examples.unlabelled` (they train as "no answer"), and a training
    set without one usable window is a DataError. `tokenize_fn` (default `tokenize`) may be a cached one."""
    tokenize_fn = tokenize_fn or tokenize
    features = tokenize_fn(examples, tokenizer, **window)
    has_context = np.zeros(len(examples), dtype=bool)
    np.logical_or.at(has_context, features.example_index, (features.offsets[..., 0] >= 0).any(axis=1))
    if not has_context.all():
        bad = [{"record": f"record {examples.ids[i]!r}", "id": examples.ids[i], "kind": "context_without_tokens",
                "problem": "its context has no token for this tokenizer (only whitespace, control or combining "
                           "characters); fix the record or remove it"} for i in np.flatnonzero(~has_context)]
        if on_bad_record != "skip" or has_context.sum() == 0:
            more = f" [{len(bad)} such records]" if len(bad) > 1 else ""
            skip = ", or pass --on_bad_record skip" if on_bad_record != "skip" else ""
            raise BadRecord(f"{examples.source}: {bad[0]['record']} has a context with no token for this tokenizer "
                            f"(only whitespace, control or combining characters); fix or remove the record{skip}{more}",
                            "context_without_tokens")
        examples = dataclasses.replace(examples.select(np.flatnonzero(has_context)), skipped=examples.skipped + bad)
        features = tokenize_fn(examples, tokenizer, **window)
    if training:
        labelled = np.zeros(len(examples), dtype=bool)
        np.logical_or.at(labelled, features.example_index, features.start_positions != features.cls_index)
        examples.unlabelled = [examples.ids[i] for i in np.flatnonzero(~labelled & ~examples.is_impossible)]
        if len(examples.unlabelled) == len(examples):
            raise DataError(
                f"{examples.source}: no usable training window: no window holds the whole answer of any of the "
                f"{len(examples)} questions (answers longer than a window's context room, or text the tokenizer "
                "drops); raise --max_seq_length or check the answers")
    return examples, features
