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
from typing import NamedTuple

import numpy as np

from jaxqa.data.examples import Examples
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
    question_cut: np.ndarray | None = None  # bool [n]: the window's question was cut to max_query_length
    # With all_answers (--train_on_all_answers): how many gold answers start / end at each position (`_answer_targets`)
    start_targets: np.ndarray | None = None  # int8 [n, seq]
    end_targets: np.ndarray | None = None  # int8 [n, seq]
    # With plausible (--plausible_answer_loss_weight): the auxiliary head's labels, the first gold answer or, for
    # an unanswerable question, its first plausible answer (`_plausible_labels`)
    plausible_start_positions: np.ndarray | None = None  # int32 [n]
    plausible_end_positions: np.ndarray | None = None  # int32 [n]

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
        optional = ("start_targets", "end_targets", "plausible_start_positions", "plausible_end_positions")
        return {**self.model_inputs(), "start_positions": self.start_positions, "end_positions": self.end_positions,
                **{name: getattr(self, name) for name in optional if getattr(self, name) is not None}}

    def select(self, rows: np.ndarray) -> Features:
        """These windows only, in the order given (example_index unchanged: it still points into the same Examples)."""
        return Features(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
                           for f in dataclasses.fields(self)})


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


def check_window(max_seq_length: int, doc_stride: int, max_query_length: int | None = None, tokenizer=None,
                 model_config=None) -> None:
    """Fail at start-up for what no data changes: a window longer than the tokenizer or the model's position
    table (`model_config`, if given) allows, or one with room for nothing but its special tokens.
    `doc_stride` and `max_query_length` are checked against the real questions as they are tokenised
    (`_check_room`): a worst-case question would refuse settings that Hugging Face runs on the same data."""
    limit = getattr(tokenizer, "model_max_length", None) or max_seq_length
    if model_config is not None:
        limit = min(limit, model_config.max_positions)
    if max_seq_length > limit:
        raise ConfigError(f"--max_seq_length {max_seq_length} exceeds the model's maximum of {limit}; lower it")
    # [CLS] q [SEP] c [SEP] for BERT, <s> q </s></s> c </s> for RoBERTa, ...
    special = tokenizer.num_special_tokens_to_add(pair=True) if tokenizer is not None else 3
    if max_seq_length <= special:
        raise ConfigError(f"--max_seq_length {max_seq_length} leaves no room for a question and its context: a "
                          f"window holds {special} special tokens; raise --max_seq_length")


def _check_room(room: np.ndarray, c_len: np.ndarray, q_len: np.ndarray, cut: np.ndarray, *, stride: int,
                max_length: int, n_special: int, max_query_length: int, ids: list[str] | None, source: str) -> None:
    """ConfigError unless every example's windows can be built: its context fits the `room` its question
    leaves (max_length - question - specials), or that room exceeds `stride` so that each next window
    advances (the tokenizer's own call refuses exactly the others). Names the example with the least room
    (the longest question): the fixes given for it hold for all."""
    stuck = (c_len > room) & (room <= stride)
    if not stuck.any():
        return
    worst = int(np.flatnonzero(stuck)[np.argmin(room[stuck])])
    q, r, c = int(q_len[worst]), int(room[worst]), int(c_len[worst])
    name = f"record {ids[worst]!r}" if ids is not None else f"example #{worst}"
    cut_note = f" (cut to --max_query_length {max_query_length})" if cut[worst] else ""
    window = f"a window of --max_seq_length {max_length} (with {n_special} special tokens)"
    if r > 0:
        problem = (f"which leaves {r} context tokens in {window}, not more than --doc_stride {stride}: the windows "
                   f"over its {c}-token context cannot advance")
    else:
        problem = f"which leaves no room for context in {window}: its {c}-token context fits in no window"
    fixes = [f"lower --doc_stride below {r}"] if r > 0 else []
    if max_length - n_special - stride - 1 >= 1:
        fixes.append(f"lower --max_query_length to {max_length - n_special - stride - 1}")
    fixes.append(f"raise --max_seq_length to {q + n_special + stride + 1}")
    n = int(stuck.sum())
    raise ConfigError(f"{source + ': ' if source else ''}{name} has a question of {q} tokens{cut_note}, {problem}; "
                      f"{', '.join(fixes[:-1])}{' or ' if len(fixes) > 1 else ''}{fixes[-1]}"
                      f"{f' [{n} such records]' if n > 1 else ''}")


def tokenize(examples: Examples, tokenizer, *, max_seq_length: int = 384, doc_stride: int = 128,
             max_query_length: int = 64, all_answers: bool = False, plausible: bool = False) -> Features:
    """Tokenise all examples into windows with labels (the first gold answer; with `all_answers` every gold
    answer, as `start_targets`/`end_targets`; with `plausible` the auxiliary labels `_plausible_labels`) and
    context offsets."""
    check_window(max_seq_length, doc_stride, max_query_length, tokenizer)
    # As Hugging Face's QA pipeline: a tokenizer that pads on the left (XLNet-style) wants the context
    # first and the question second. The arrays are padded on the right all the same: batching
    # trims windows to their length and the fused attention kernel masks by length.
    question_first = tokenizer.padding_side == "right"
    windows = _encode_windows(tokenizer, examples.questions, examples.contexts, question_first=question_first,
                              max_length=max_seq_length, stride=doc_stride, max_query_length=max_query_length,
                              ids=examples.ids, source=examples.source)
    # Context tokens: the context's sequence id, whatever the token types say (RoBERTa has none).
    is_context = windows.sequence_ids == (1 if question_first else 0)
    offsets = np.where(is_context[..., None], windows.offsets, -1).astype(np.int32)
    cls_index = _cls_index(windows.input_ids, tokenizer)
    label = _answer_targets if all_answers else _label_windows
    where = (windows.example_index, offsets, is_context, cls_index, windows.context_start)
    labels = label(examples, *where)
    targets = labels[2:] if all_answers else (None, None)
    return Features(windows.input_ids, windows.token_type_ids, windows.attention_mask, offsets, windows.example_index,
                    cls_index, *labels[:2], windows.question_cut, *targets,
                    *(_plausible_labels(examples, *where) if plausible else ()))


def _truncate_questions(questions: list[str], backend, max_query_length: int) -> tuple[list, list[int]]:
    """Question encodings of at most `max_query_length` tokens, and the indices of the questions cut. A
    longer question is cut where its first token past the limit starts and encoded again: a character that
    becomes several tokens (a Hangul syllable split into jamo, say) is kept whole or not at all."""
    questions = [q.lstrip() for q in questions]  # leading spaces only waste window room
    encodings = backend.encode_batch(questions, add_special_tokens=False)
    long = [i for i, e in enumerate(encodings) if len(e) > max_query_length]  # the few long ones
    cut = [questions[i][: encodings[i].offsets[max_query_length][0]] for i in long]
    for i, encoding in zip(long, backend.encode_batch(cut, add_special_tokens=False)):
        encoding.truncate(max_query_length)  # a cut that tokenises longer still
        encodings[i] = encoding
    return encodings, long


@contextlib.contextmanager
def _plain_backend(tokenizer):
    """The Rust tokenizer without truncation or padding for a block, its own settings restored after."""
    backend = tokenizer.backend_tokenizer
    saved_truncation, saved_padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        yield backend
    finally:
        if saved_truncation:
            backend.enable_truncation(**saved_truncation)
        if saved_padding:
            backend.enable_padding(**saved_padding)


@dataclasses.dataclass
class _PairTemplate:
    """The special tokens the tokenizer's post-processor puts around a pair (A, B): `ids`, `types` and
    `offsets` of all of them in order (the first `n_prefix` before A, the next `n_middle` between A
    and B, the rest after B), and the token types of A and B."""

    ids: np.ndarray
    types: np.ndarray
    offsets: np.ndarray
    n_prefix: int
    n_middle: int
    type_a: int
    type_b: int

    @classmethod
    def probe(cls, backend, name) -> _PairTemplate:
        encoding = backend.encode("a", "b", add_special_tokens=True)
        sequence = np.array([-1 if s is None else s for s in encoding.sequence_ids])
        in_a, in_b = np.flatnonzero(sequence == 0), np.flatnonzero(sequence == 1)
        if (not len(in_a) or not len(in_b) or in_a[-1] - in_a[0] + 1 != len(in_a)
                or in_b[-1] - in_b[0] + 1 != len(in_b) or in_a[-1] > in_b[0]):
            raise ModelError(f"{name}: the tokenizer's pair template is not [specials] A [specials] B [specials] "
                             f"(probe gave sequence ids {sequence.tolist()}); jaxqa cannot build windows for it")
        special = sequence < 0
        types = np.asarray(encoding.type_ids)
        return cls(np.asarray(encoding.ids)[special], types[special],
                   np.asarray(encoding.offsets).reshape(-1, 2)[special], int(in_a[0]), int(in_b[0] - in_a[-1] - 1),
                   int(types[in_a[0]]), int(types[in_b[0]]))

    @property
    def n_special(self) -> int:
        return len(self.ids)


class _Windows(NamedTuple):
    """Padded [windows, max_length] arrays of `_encode_windows`, and per-window facts."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    offsets: np.ndarray  # [.., 2]
    sequence_ids: np.ndarray  # 0 first text, 1 second, -1 special tokens and padding
    example_index: np.ndarray
    context_start: np.ndarray  # index of the window's first context token in the whole context
    question_cut: np.ndarray  # bool: the window's question was cut to max_query_length


class _Tokens(NamedTuple):
    """Token ids, offsets [.., 2] and lengths of several encodings, concatenated (`_flat_tokens`)."""

    ids: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray


def _flat_tokens(encodings) -> _Tokens:
    """Token ids, offsets [.., 2] and lengths of encodings, concatenated."""
    lengths = np.fromiter(map(len, encodings), np.int64, len(encodings))
    total = int(lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int32, total)
    offsets = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(e.offsets for e in encodings)),
                          np.int32, 2 * total).reshape(total, 2)
    return _Tokens(ids, offsets, lengths)


def _ragged_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of the ranges [start, start + length) without a Python loop."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]) if len(ends) else 0)


def _encode_windows(tokenizer, questions: list[str], contexts: list[str], *, question_first: bool,
                    max_length: int, stride: int, max_query_length: int, ids: list[str] | None = None,
                    source: str = "") -> _Windows:
    """All windows of all (question, context) pairs (`_Windows`).

    Each distinct context is tokenised once (SQuAD asks ~6 questions per paragraph), each question once;
    the windows are then cut and joined with the tokenizer's special tokens in NumPy. They equal what
    `tokenizer(question, context, truncation="only_second", stride=..., return_overflowing_tokens=True)`
    returns (a test holds them equal): a fast tokenizer encodes the two sequences of a pair apart and
    then slides a window of `room = max_length - question - specials` tokens over the context, each next
    window `room - stride` tokens further. Where that cannot be done, ConfigError names the example (its
    id in `ids` and the file `source`, if given)."""
    with _plain_backend(tokenizer) as backend:
        template = _PairTemplate.probe(backend, tokenizer.name_or_path)
        question_encodings, long = _truncate_questions(questions, backend, max_query_length)
        context_of, example_context = _distinct(contexts)
        context_encodings = backend.encode_batch(context_of, add_special_tokens=False)
    question, context = _flat_tokens(question_encodings), _flat_tokens(context_encodings)
    q_len, c_len = question.lengths, context.lengths[example_context]
    room = max_length - template.n_special - q_len
    cut = np.zeros(len(questions), dtype=bool)
    cut[long] = True
    _check_room(room, c_len, q_len, cut, stride=stride, max_length=max_length, n_special=template.n_special,
                max_query_length=max_query_length, ids=ids, source=source)
    step = np.maximum(room - stride, 1)
    n_windows = np.where(c_len > room, 1 + -(-(c_len - room) // step), 1)
    example_index = np.repeat(np.arange(len(questions), dtype=np.int32), n_windows)
    first_window = np.cumsum(n_windows) - n_windows
    context_start = (np.arange(len(example_index)) - first_window[example_index]) * step[example_index]
    context_len = np.minimum(room[example_index], c_len[example_index] - context_start)
    tokens = _window_tokens(template, question, context, example_context, example_index, context_start, context_len,
                            question_first=question_first, max_length=max_length,
                            pad_ids=(tokenizer.pad_token_id or 0, tokenizer.pad_token_type_id))
    return _Windows(*tokens, example_index, context_start, cut[example_index])


def _window_tokens(template: _PairTemplate, question: _Tokens, context: _Tokens, example_context, example_index,
                   context_start, context_len, *, question_first: bool, max_length: int, pad_ids: tuple[int, int]):
    """The windows' padded token arrays: input ids, token types, attention mask, offsets, sequence ids.

    One source table (specials, all question tokens, all distinct contexts' tokens); each window is five
    ranges of it: prefix, first sequence, middle, second sequence, suffix."""
    (q_ids, q_offsets, q_len), (c_ids, c_offsets, c_len_of) = question, context
    n_prefix, n_middle = template.n_prefix, template.n_middle
    n_suffix = template.n_special - n_prefix - n_middle
    q_source = template.n_special + np.cumsum(q_len) - q_len
    c_source = template.n_special + len(q_ids) + (np.cumsum(c_len_of) - c_len_of)[example_context]
    q_range = (q_source[example_index], q_len[example_index])
    c_range = (c_source[example_index] + context_start, context_len)
    first, second = (q_range, c_range) if question_first else (c_range, q_range)
    zeros = np.zeros_like(context_start)
    starts = np.stack([zeros, first[0], zeros + n_prefix, second[0], zeros + n_prefix + n_middle], axis=1)
    lengths = np.stack([zeros + n_prefix, first[1], zeros + n_middle, second[1], zeros + n_suffix], axis=1)
    tokens = _ragged_ranges(starts.ravel(), lengths.ravel())
    q_seq, c_seq = (0, 1) if question_first else (1, 0)
    q_type, c_type = (template.type_a, template.type_b) if question_first else (template.type_b, template.type_a)
    ids = np.concatenate([template.ids, q_ids, c_ids])
    types = np.concatenate([template.types, np.full(len(q_ids), q_type), np.full(len(c_ids), c_type)])
    offsets = np.concatenate([template.offsets, q_offsets, c_offsets])
    sequence_ids = np.concatenate([np.full(template.n_special, -1), np.full(len(q_ids), q_seq),
                                   np.full(len(c_ids), c_seq)])
    filled = np.arange(max_length) < lengths.sum(axis=1)[:, None]  # row-major order = the order of the tokens

    def padded(field, pad, dtype=np.int32):
        out = np.full((len(example_index), max_length) + field.shape[1:], pad, dtype)
        out[filled] = field[tokens]
        return out

    return padded(ids, pad_ids[0]), padded(types, pad_ids[1]), filled.astype(np.int32), padded(offsets, 0), \
        padded(sequence_ids, -1, np.int8)


def _distinct(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct texts in first-seen order, and each text's index among them."""
    index: dict[str, int] = {}
    of_text = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64, len(texts))
    return list(index), of_text


def _cls_index(input_ids: np.ndarray, tokenizer) -> np.ndarray:
    is_cls = input_ids == tokenizer.cls_token_id
    return np.where(is_cls.any(axis=1), is_cls.argmax(axis=1), 0).astype(np.int32)


def _answer_tokens(char_start, char_end, example_index, offsets, is_context, context_start):
    """Per window, the smallest token span covering one answer per example ([examples] character start and
    end, start -1 for none: the tokens overlapping its characters; characters no token holds, like spaces or
    stripped accents, count for nothing), and whether the window holds that whole span."""
    seq = offsets.shape[1]
    a_start, a_end = char_start[example_index, None], char_end[example_index, None]
    overlaps = (is_context & (a_start >= 0) & (offsets[..., 1] > a_start) & (offsets[..., 0] < a_end)
                & (offsets[..., 1] > offsets[..., 0]))
    positions = np.arange(seq)
    start_tok = np.where(overlaps, positions, seq).min(axis=1)
    end_tok = np.where(overlaps, positions, -1).max(axis=1)
    # Spans compare by token index in the example's whole context (`context_start` is that of each window's
    # first context token), not by offsets: the jamo of one Hangul syllable share its offsets, and a
    # window may start inside a character.
    shift = context_start - is_context.argmax(axis=1)
    found = overlaps.any(axis=1)
    first_global = np.where(found, start_tok + shift, np.iinfo(np.int64).max)
    last_global = np.where(found, end_tok + shift, -1)
    span_first = np.full(len(char_start), np.iinfo(np.int64).max)
    span_last = np.full(len(char_start), -1)
    np.minimum.at(span_first, example_index, first_global)
    np.maximum.at(span_last, example_index, last_global)
    inside = found & (first_global == span_first[example_index]) & (last_global == span_last[example_index])
    return start_tok, end_tok, inside


def _answer_chars(examples: Examples, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Character start and end of each example's k-th gold answer (-1, -1 where it has fewer)."""
    start = np.array([s[k] if len(s) > k else -1 for s in examples.answer_starts], dtype=np.int64)
    length = np.array([len(t[k]) if len(t) > k else 0 for t in examples.answer_texts], dtype=np.int64)
    return start, np.where(start >= 0, start + length, -1)


def _plausible_labels(examples: Examples, example_index, offsets, is_context, cls_index, context_start):
    """Token start/end per window of the span the auxiliary head learns: the first gold answer, or for an
    unanswerable question its first plausible answer (SQuAD v2.0's tempting span); CLS in windows that do not
    hold it whole and for questions with neither."""
    if examples.plausible_texts is None:
        raise DataError(f"{examples.source}: the plausible answers were not loaded (load_examples(plausible=True))")
    start, end = _answer_chars(examples, 0)
    tempting = np.array([s[0] if s else -1 for s in examples.plausible_starts], dtype=np.int64)
    tempting_end = tempting + np.array([len(t[0]) if t else 0 for t in examples.plausible_texts], dtype=np.int64)
    start, end = np.where(start >= 0, start, tempting), np.where(start >= 0, end, tempting_end)
    start_tok, end_tok, inside = _answer_tokens(start, end, example_index, offsets, is_context, context_start)
    return (np.where(inside, start_tok, cls_index).astype(np.int32),
            np.where(inside, end_tok, cls_index).astype(np.int32))


def _label_windows(examples: Examples, example_index, offsets, is_context, cls_index, context_start):
    """Token start/end of the first gold answer per window (`_answer_tokens`), in the windows that hold that
    whole span; CLS elsewhere and when unanswerable."""
    start_tok, end_tok, inside = _answer_tokens(*_answer_chars(examples, 0), example_index, offsets, is_context,
                                                context_start)
    return (np.where(inside, start_tok, cls_index).astype(np.int32),
            np.where(inside, end_tok, cls_index).astype(np.int32))


def _answer_targets(examples: Examples, example_index, offsets, is_context, cls_index, context_start):
    """Every gold answer as a training target: per window, how many of its example's answers start and end
    at each position ([windows, seq] int8, an answer counted where the window holds it whole, so that
    annotators who agree weigh more), CLS counted once where the window holds none; and as start/end labels
    the first answer the window holds (CLS where none), which say "no answer" exactly where the targets do."""
    rows = np.arange(len(offsets))
    starts, ends = np.zeros(offsets.shape[:2], np.int8), np.zeros(offsets.shape[:2], np.int8)
    first_start, first_end = np.full(len(rows), -1), np.full(len(rows), -1)
    for k in range(max(map(len, examples.answer_texts), default=0)):  # over answer slots: a handful
        start_tok, end_tok, inside = _answer_tokens(*_answer_chars(examples, k), example_index, offsets, is_context,
                                                    context_start)
        np.add.at(starts, (rows[inside], start_tok[inside]), 1)
        np.add.at(ends, (rows[inside], end_tok[inside]), 1)
        first = inside & (first_start < 0)
        first_start, first_end = np.where(first, start_tok, first_start), np.where(first, end_tok, first_end)
    none = first_start < 0
    starts[rows[none], cls_index[none]] = 1
    ends[rows[none], cls_index[none]] = 1
    return (np.where(none, cls_index, first_start).astype(np.int32),
            np.where(none, cls_index, first_end).astype(np.int32), starts, ends)


def checked_features(examples: Examples, tokenizer, *, training: bool, on_bad_record: str = "error",
                     tokenize_fn=None, **window) -> tuple[Examples, Features]:
    """`tokenize` plus the checks that need the tokenizer. A context without a single token (only
    whitespace, control or combining characters) is a bad record: DataError, or with `on_bad_record=
    "skip"` left out and added to `examples.skipped`. For training, answerable questions whose answer no
    window holds whole are listed in `examples.unlabelled` (they train as "no answer"), and a training
    set without one usable window is a DataError. Questions cut to `max_query_length` are listed in
    `examples.questions_cut`. `tokenize_fn` (default `tokenize`) may be a cached one."""
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
    cut = np.zeros(len(examples), dtype=bool)
    if features.question_cut is not None:
        np.logical_or.at(cut, features.example_index, features.question_cut)
    examples.questions_cut = [examples.ids[i] for i in np.flatnonzero(cut)]
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
