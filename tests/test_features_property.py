"""Property test of the feature pipeline on generated text: mixed scripts, whitespace runs, combining
characters, emoji, CJK, zero-width characters. The labels are checked against an oracle built from
the context tokenised on its own: the answer's tokens are those whose character span overlaps it."""

from __future__ import annotations

import string

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxqa.data.examples import Examples
from jaxqa.data.features import tokenize

WORDS = ["The", "Broncos", "won", "Super", "Bowl", "50", "3.14", "naïve", "café", "Ærøskøbing", "straße", "İstanbul",
         "e\u0301te\u0301", "a\u0308\u0323", "\u0301", "ΣΟΦΙΑ", "σοφία", "жизнь", "Москва", "سلام", "שלום", "हिन्दी",
         "ภาษาไทย", "中文", "漢字", "東京都", "ひらがな", "한국어", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "x" * 120,
         "co-operate", "U.S.", "(1999)", "«quoted»", "—", "…", "\u200b", "\u00ad", "\ufeff", "ﬁne", "①", "Ⅻ"]
SPACES = ["", " ", " ", " ", "  ", "\t", "\n", "\n\n", "\u00a0", "\u3000", "\u2009", " \u200b "]

word = st.one_of(st.sampled_from(WORDS), st.text(string.ascii_letters + string.digits, min_size=1, max_size=14),
                 st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=4))


@st.composite
def passage(draw, min_words=1, max_words=40) -> str:
    words = draw(st.lists(word, min_size=min_words, max_size=max_words))
    gaps = draw(st.lists(st.sampled_from(SPACES), min_size=len(words), max_size=len(words)))
    return "".join(g + w for g, w in zip(gaps, words)) + draw(st.sampled_from(SPACES))


@st.composite
def example(draw):
    context = draw(passage())
    question = draw(passage(max_words=25))
    if draw(st.integers(0, 9)) == 0:  # unanswerable
        return question, context, None
    start = draw(st.integers(0, len(context) - 1))
    end = draw(st.integers(start + 1, min(len(context), start + draw(st.sampled_from([3, 20, 60, 400])))))
    return question, context, (start, end)


@st.composite
def case(draw):
    max_len = draw(st.sampled_from([24, 32, 48, 64]))
    max_query = draw(st.sampled_from([1, 4, 8, 16]))
    stride = draw(st.integers(0, max_len - max_query - 4))
    return draw(st.lists(example(), min_size=1, max_size=3)), max_len, stride, max_query


def _context_tokens(tokenizer, context: str) -> list[tuple[int, int, int]]:
    """(id, start, end) of every token of the context tokenised on its own."""
    enc = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    return [(i, s, e) for i, (s, e) in zip(enc["input_ids"], enc["offset_mapping"])]


def _normal(tokenizer, text: str) -> str:
    """Text as the tokenizer sees it (cleaned, accents stripped, lowercased), whitespace runs as one space."""
    return " ".join(tokenizer.backend_tokenizer.normalizer.normalize_str(text).split())


@settings(max_examples=300, deadline=None)
@given(case())
def test_labels_are_the_answer_tokens_or_cls(minilm_tokenizer, drawn):
    items, max_len, stride, max_query = drawn
    tok = minilm_tokenizer
    examples = Examples(ids=[str(i) for i in range(len(items))], questions=[q for q, _, _ in items],
                        contexts=[c for _, c, _ in items],
                        answer_texts=[[c[a[0]:a[1]]] if a else [] for _, c, a in items],
                        answer_starts=[[a[0]] if a else [] for _, _, a in items],
                        is_impossible=np.array([a is None for _, _, a in items]))
    feats = tokenize(examples, tok, max_seq_length=max_len, doc_stride=stride, max_query_length=max_query)
    assert (feats.input_ids[:, 0] == tok.cls_token_id).all() and (feats.cls_index == 0).all()
    for ex, (_question, context, answer) in enumerate(items):
        rows = np.flatnonzero(feats.example_index == ex)
        tokens = _context_tokens(tok, context)
        cover = [] if answer is None else [k for k, (_, s, e) in enumerate(tokens) if e > s and e > answer[0]
                                           and s < answer[1]]
        assert len(rows) >= 1 and (np.diff(rows) == 1).all()
        seen, room = set(), None
        for j, row in enumerate(rows):
            ctx = np.flatnonzero(feats.offsets[row, :, 0] >= 0)
            window = [(int(feats.input_ids[row, p]), *map(int, feats.offsets[row, p])) for p in ctx]
            # Context tokens are one contiguous run of the context's own tokens after a question of at most
            # max_query_length tokens; window j starts j * (room - doc_stride) tokens into the context.
            assert len(ctx) == 0 or (ctx == np.arange(ctx[0], ctx[0] + len(ctx))).all()
            assert len(ctx) == 0 or ctx[0] - 2 <= max_query
            room = room or len(window)
            first = j * (room - stride)
            assert tokens[first:first + len(window)] == window, (j, window, tokens)
            assert (first + len(window) == len(tokens)) == (j == len(rows) - 1)  # the last window ends it
            seen.update(range(first, first + len(window)))
            s, e = int(feats.start_positions[row]), int(feats.end_positions[row])
            holds = bool(cover) and first <= cover[0] and cover[-1] < first + len(window)
            if not holds:  # no answer, or not all of it in this window
                assert s == e == 0, (row, s, e, cover, first, len(window))
                continue
            # Exactly the smallest token span covering the answer's characters.
            assert (s, e) == (ctx[0] + cover[0] - first, ctx[0] + cover[-1] - first)
            gold = context[answer[0]:answer[1]]
            lo, hi = int(feats.offsets[row, s, 0]), int(feats.offsets[row, e, 1])
            decoded = context[lo:hi]
            if answer[0] <= lo and hi <= answer[1]:
                # Token-aligned: the decoded text is the gold text, less only characters no token holds.
                assert _normal(tok, decoded) == _normal(tok, gold), (decoded, gold)
            else:
                # The answer starts or ends inside a word: the decoded span adds only the rest of the
                # first and last tokens.
                assert lo <= answer[0] or tokens[cover[0]][1] == lo
                assert _normal(tok, gold) in _normal(tok, decoded), (decoded, gold)
        assert seen == set(range(len(tokens)))  # together the windows hold the whole context
