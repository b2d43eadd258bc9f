"""Windows, labels and offsets on real SQuAD data (English and Chinese)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from jaxqa.data.examples import load_examples
from jaxqa.data.features import load_tokenizer, tokenize
from jaxqa.errors import ConfigError, DataError


def _check_labels(examples, feats):
    """Every window holding the whole answer points at exactly its tokens; the rest point at CLS.

    Returns how many labelled answers do not start/end on a token boundary (e.g. gold "gold" inside
    the token "golden"): for those the label is the smallest token span covering the answer.
    """
    unaligned = 0
    for row in range(len(feats)):
        ex = feats.example_index[row]
        a_start = ex_start = examples.answer_starts[ex][0]
        gold = examples.answer_texts[ex][0]
        a_end = ex_start + len(gold)
        offs = feats.offsets[row]
        ctx = offs[:, 0] >= 0
        holds = offs[ctx, 0].min() <= a_start and offs[ctx, 1].max() >= a_end
        s, e = feats.start_positions[row], feats.end_positions[row]
        if not holds:
            assert s == e == 0, f"window {row} lacks the answer but is labelled {s}..{e}"
            continue
        assert 0 < s <= e and ctx[s] and ctx[e]
        text = examples.contexts[ex][offs[s, 0]:offs[e, 1]]
        aligned = (offs[ctx, 0] == a_start).any() and (offs[ctx, 1] == a_end).any()
        if aligned:
            assert text == gold, (row, text, gold)
        else:
            unaligned += 1
            assert offs[s, 0] <= a_start < offs[s, 1] and offs[e, 0] < a_end <= offs[e, 1], (row, text, gold)
            assert gold in text
    return unaligned


def _expected_windows(examples, tokenizer, max_len, stride, max_query):
    """Windows per example from the doc-stride arithmetic: room = max_len - question - specials tokens
    of context per window (3 for BERT, 4 for RoBERTa), each next window starting (room - stride) further."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    q_len = [min(len(ids), max_query) for ids in
             tokenizer([q.lstrip() for q in examples.questions], add_special_tokens=False)["input_ids"]]
    c_len = [len(ids) for ids in tokenizer(examples.contexts, add_special_tokens=False)["input_ids"]]
    counts = []
    for q, c in zip(q_len, c_len):
        room = max_len - q - specials
        counts.append(1 if c <= room else 1 + math.ceil((c - room) / (room - stride)))
    return np.array(counts)


def _transformers_windows(tokenizer, examples, max_length, stride):
    """(ids, types, mask, offsets, sequence ids, example) of every window of the tokenizer's own call, with
    the questions as jaxqa feeds them (leading spaces stripped; none here is cut)."""
    enc = tokenizer([q.lstrip() for q in examples.questions], examples.contexts, truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, return_token_type_ids=True, padding="max_length",
                    padding_side="right")
    sequence_ids = np.array([[-1 if s is None else s for s in e.sequence_ids] for e in enc.encodings])
    # tokenizers gives the context of every overflow window type id 1 even where the pair template says 0
    # (XLM-R, which has one token type); jaxqa keeps the template's type in every window.
    types = np.asarray(enc["token_type_ids"])
    types = np.where(sequence_ids == 1, types[0][sequence_ids[0] == 1][0], types)
    return (np.asarray(enc["input_ids"]), types, np.asarray(enc["attention_mask"]), np.asarray(enc["offset_mapping"]),
            sequence_ids, np.asarray(enc["overflow_to_sample_mapping"]))


@pytest.mark.parametrize("max_len,stride", [(384, 128), (256, 128), (160, 64)])
def test_squad_dev_windows_and_labels(data_dir, minilm_tokenizer, max_len, stride):
    examples = load_examples(data_dir / "squad_v1.1/dev.json")
    feats = tokenize(examples, minilm_tokenizer, max_seq_length=max_len, doc_stride=stride)
    for name in ("input_ids", "token_type_ids", "attention_mask", "offsets", "start_positions"):
        assert getattr(feats, name).dtype == np.int32
    assert feats.input_ids.shape == (len(feats), max_len)
    counts = np.bincount(feats.example_index, minlength=len(examples))
    np.testing.assert_array_equal(counts, _expected_windows(examples, minilm_tokenizer, max_len, stride, 64))
    assert counts.max() > 1  # long contexts really overflow
    unaligned = _check_labels(examples, feats)
    labelled = int((feats.start_positions > 0).sum())
    assert labelled > 0.9 * len(examples)
    # Four dev answers end inside a word ("successful" of "successfully", "Japan" of "Japanese", ...).
    assert unaligned <= 8, unaligned


def test_chinese_windows_and_labels(data_dir):
    tokenizer = load_tokenizer(data_dir / "vocab/bert-base-chinese")
    examples = load_examples(data_dir / "xquad/xquad.zh.json")
    feats = tokenize(examples, tokenizer, max_seq_length=256, doc_stride=64)
    counts = np.bincount(feats.example_index, minlength=len(examples))
    np.testing.assert_array_equal(counts, _expected_windows(examples, tokenizer, 256, 64, 64))
    unaligned = _check_labels(examples, feats)
    labelled = int((feats.start_positions > 0).sum())
    assert labelled > 0.9 * len(examples) and unaligned < 0.02 * labelled
    # Chinese characters are single tokens: the answer comes back character for character.
    row = int(np.flatnonzero(feats.start_positions > 0)[0])
    ex = feats.example_index[row]
    s, e = feats.start_positions[row], feats.end_positions[row]
    assert examples.contexts[ex][feats.offsets[row, s, 0]:feats.offsets[row, e, 1]] == examples.answer_texts[ex][0]


def test_unanswerable_points_at_cls(data_dir, minilm_tokenizer):
    examples = load_examples(data_dir / "fixtures/squad_v2_small.json")
    feats = tokenize(examples, minilm_tokenizer, max_seq_length=192, doc_stride=64)
    impossible = examples.is_impossible[feats.example_index]
    assert impossible.any()
    assert (feats.start_positions[impossible] == 0).all() and (feats.end_positions[impossible] == 0).all()
    assert (feats.input_ids[:, 0] == minilm_tokenizer.cls_token_id).all()


def test_long_questions_are_cut_to_max_query_length(minilm_tokenizer, data_dir):
    examples = load_examples(data_dir / "fixtures/flat_sample.json").select([0])
    examples.questions[0] = "why " * 100 + examples.questions[0]
    feats = tokenize(examples, minilm_tokenizer, max_seq_length=128, doc_stride=32, max_query_length=16)
    first_context = int(np.argmax(feats.offsets[0, :, 0] >= 0))
    assert first_context == 1 + 16 + 1  # [CLS] 16 question tokens [SEP]


def test_hugging_face_window_settings_are_accepted_on_squad(data_dir, minilm_tokenizer):
    """`--max_seq_length 128 --doc_stride 64` runs in Hugging Face: the stride is checked against the real
    questions (dev's longest has 29 tokens, 96 context tokens per window), not a worst-case 64-token one.
    The windows and labels are those of the tokenizer's own call."""
    examples = load_examples(data_dir / "squad_v1.1/dev.json")
    feats = tokenize(examples, minilm_tokenizer, max_seq_length=128, doc_stride=64)
    counts = np.bincount(feats.example_index, minlength=len(examples))
    np.testing.assert_array_equal(counts, _expected_windows(examples, minilm_tokenizer, 128, 64, 64))
    assert counts.max() > 1 and _check_labels(examples, feats) <= 8
    first = examples.select(range(100))
    ids, types, mask, offsets, sequence_ids, example = _transformers_windows(minilm_tokenizer, first, 128, 64)
    rows = len(ids)
    assert rows > len(first) and (feats.example_index[rows:] >= len(first)).all()
    for name, want in (("input_ids", ids), ("token_type_ids", types), ("attention_mask", mask),
                       ("example_index", example), ("offsets", np.where(sequence_ids[..., None] == 1, offsets, -1))):
        np.testing.assert_array_equal(getattr(feats, name)[:rows], want, err_msg=name)


def test_question_too_long_for_the_stride_is_refused_naming_it(data_dir, minilm_tokenizer):
    """A question that, cut to --max_query_length, leaves no more context room than --doc_stride stops the
    run, naming the record and the fixes, but only where its context needs a second window (as in the
    tokenizer's own call); the longest question names the fix for all."""
    path = data_dir / "squad_v1.1/dev.json"
    examples = load_examples(path)
    long_ids = [examples.ids[i] for i in (8, 10)]
    for i in (8, 10, 89):  # contexts of 88, 197 and 54 tokens; each question cut to 64 tokens: 61 of room
        examples.questions[i] = "why " * 80 + examples.questions[i]
    with pytest.raises(ConfigError) as err:
        tokenize(examples.select(range(12)), minilm_tokenizer, max_seq_length=128, doc_stride=64)
    assert str(err.value) == (
        f"{path}: record {long_ids[0]!r} has a question of 64 tokens (cut to --max_query_length 64), which leaves "
        "61 context tokens in a window of --max_seq_length 128 (with 3 special tokens), not more than --doc_stride "
        "64: the windows over its 88-token context cannot advance; lower --doc_stride below 61, lower "
        "--max_query_length to 60 or raise --max_seq_length to 132 [2 such records]")
    feats = tokenize(examples.select([89]), minilm_tokenizer, max_seq_length=128, doc_stride=64)
    assert len(feats) == 1 and (feats.offsets[0, :, 0] >= 0).sum() == 54  # one window holds its context whole


def test_feature_cache_returns_the_same_features_and_misses_on_any_change(tmp_path, minilm_tokenizer, data_dir):
    from jaxqa.data.feature_cache import cached_tokenize

    examples = load_examples(data_dir / "squad_v1.1/dev.json").select(range(50))
    settings = dict(max_seq_length=192, doc_stride=64)
    fresh, hit = cached_tokenize(examples, minilm_tokenizer, tmp_path, **settings)
    again, hit_again = cached_tokenize(examples, minilm_tokenizer, tmp_path, **settings)
    assert not hit and hit_again and len(list(tmp_path.glob("*.npz"))) == 1
    for name in fresh.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(fresh, name), getattr(again, name), err_msg=name)
    assert not cached_tokenize(examples, minilm_tokenizer, tmp_path, max_seq_length=192, doc_stride=32)[1]
    assert not cached_tokenize(examples.select(range(49)), minilm_tokenizer, tmp_path, **settings)[1]
    assert not cached_tokenize(examples, minilm_tokenizer, tmp_path, overwrite=True, **settings)[1]
    entry = next(tmp_path.glob("*.npz"))
    entry.write_bytes(b"not an npz")  # a damaged entry is rebuilt
    rebuilt, hit = cached_tokenize(examples, minilm_tokenizer, tmp_path, **settings)
    assert np.array_equal(rebuilt.input_ids, fresh.input_ids)


@pytest.mark.parametrize("kind", ["bert", "roberta", "xlm-roberta", "albert", "chinese"])
def test_windows_read_from_rust_equal_transformers_call(kind, family_tokenizers, data_dir):
    """The windows jaxqa cuts from each distinct context's tokens and joins with the pair template equal
    what `tokenizer(..., return_overflowing_tokens=True, padding="max_length")` returns, field by field,
    for every tokenizer kind (WordPiece, byte-level BPE, Unigram, Chinese), and the tokenizer's own
    truncation/padding settings are left as they were."""
    from jaxqa.data.features import _encode_windows

    if kind == "chinese":
        tokenizer, data = load_tokenizer(data_dir / "vocab/bert-base-chinese"), "xquad/xquad.zh.json"
    else:
        tokenizer, data = family_tokenizers[kind], "squad_v1.1/dev.json"
        tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, Path) else tokenizer
    examples = load_examples(data_dir / data).select(range(150))
    backend_before = (tokenizer.backend_tokenizer.truncation, tokenizer.backend_tokenizer.padding)
    ours = _encode_windows(tokenizer, examples.questions, examples.contexts, question_first=True,
                           max_length=192, stride=48, max_query_length=100)
    assert (tokenizer.backend_tokenizer.truncation, tokenizer.backend_tokenizer.padding) == backend_before
    expected = _transformers_windows(tokenizer, examples, 192, 48)
    assert len(ours[0]) > len(examples)  # some examples need several windows
    assert len(set(examples.contexts)) < len(examples) / 2  # contexts are shared: each is tokenised once
    for name, got, want in zip(("ids", "types", "mask", "offsets", "sequence ids", "example"), ours, expected):
        np.testing.assert_array_equal(got, np.asarray(want), err_msg=name)


def test_plausible_labels_point_at_the_span_an_unanswerable_question_tempts_with(data_dir, minilm_tokenizer, tmp_path):
    """SQuAD v2.0 train question 5ad5316b5b96ef001a10ab73 ("What branch of theoretical computer class deals with
    broadly classifying computational problems ...?") has no answer; its plausible answer is "Computational
    complexity theory". With `plausible` the auxiliary labels point at that span while the QA labels stay at
    [CLS]; an answerable question's auxiliary labels are its answer's. A plausible answer that does not match
    its context is a bad record, named, when they are loaded, and ignored when not."""
    examples = load_examples(data_dir / "squad_v2.0/train.json", plausible=True).select(range(40))
    plain = tokenize(examples, minilm_tokenizer, max_seq_length=192, doc_stride=64)
    aux = tokenize(examples, minilm_tokenizer, max_seq_length=192, doc_stride=64, plausible=True)
    assert plain.plausible_start_positions is None and "plausible_start_positions" not in plain.train_arrays()
    np.testing.assert_array_equal(aux.start_positions, plain.start_positions)
    answerable = ~examples.is_impossible[aux.example_index]
    assert 0 < answerable.sum() < len(aux)
    np.testing.assert_array_equal(aux.plausible_start_positions[answerable], aux.start_positions[answerable])
    np.testing.assert_array_equal(aux.plausible_end_positions[answerable], aux.end_positions[answerable])
    tempting = np.flatnonzero(~answerable & (aux.plausible_start_positions != aux.cls_index))
    assert (aux.start_positions[~answerable] == aux.cls_index[~answerable]).all() and len(tempting) > 10
    spans = {}
    for w in tempting:  # the smallest token span covering the plausible answer (mid-word ones included)
        i, (first, last) = aux.example_index[w], aux.offsets[w, [aux.plausible_start_positions[w],
                                                                  aux.plausible_end_positions[w]]]
        start, text = examples.plausible_starts[i][0], examples.plausible_texts[i][0]
        assert first[0] <= start < first[1] and last[0] < start + len(text) <= last[1], (examples.ids[i], text)
        spans[examples.ids[i]] = examples.contexts[i][first[0]:last[1]]
    assert spans["5ad5316b5b96ef001a10ab73"] == "Computational complexity theory"
    record = {"id": "q1", "question": "Who?", "context": "Ada wrote it.", "answers": [], "is_impossible": True,
              "plausible_answers": [{"text": "Ada", "answer_start": 4}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": record.pop("context"), "qas": [record]}]}]}))
    assert load_examples(path).is_impossible.tolist() == [True]
    with pytest.raises(DataError, match=r"bad.json: .*'q1'.* \(its plausible_answers\).*answer_start 4 does not match"):
        load_examples(path, plausible=True)


def test_all_answers_weigh_each_annotators_span_by_how_many_gave_it(data_dir, minilm_tokenizer):
    """SQuAD v1.1 dev question 56dde27d9a695914005b9652 ("What part of France were the Normans located?"):
    two annotators answered "north", one "the north". With `all_answers` the window's targets are those
    spans, counted; the labels of the first answer stay what they were."""
    examples = load_examples(data_dir / "squad_v1.1/dev.json").select([15])
    assert examples.ids == ["56dde27d9a695914005b9652"] and examples.answer_texts[0] == ["north", "the north", "north"]
    first = tokenize(examples, minilm_tokenizer, max_seq_length=192, doc_stride=64)
    every = tokenize(examples, minilm_tokenizer, max_seq_length=192, doc_stride=64, all_answers=True)
    assert first.start_targets is None and "start_targets" not in first.train_arrays()
    np.testing.assert_array_equal(every.start_positions, first.start_positions)
    context, offsets = examples.contexts[0], every.offsets
    holding = np.flatnonzero(every.start_positions != every.cls_index)
    assert len(holding) >= 1
    for w in holding:
        starts = {context[offsets[w, t, 0]:]: int(n) for t, n in enumerate(every.start_targets[w]) if n}
        ends = {context[: offsets[w, t, 1]]: int(n) for t, n in enumerate(every.end_targets[w]) if n}
        assert {text[:9]: n for text, n in starts.items()} == {"north of ": 2, "the north": 1}
        assert [(text[-9:], n) for text, n in ends.items()] == [("the north", 3)]
    for w in np.setdiff1d(np.arange(len(every)), holding):  # a window without the answer: "no answer", once
        assert every.start_targets[w].tolist() == every.end_targets[w].tolist() == [1] + [0] * 191
