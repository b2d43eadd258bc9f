"""--no_answer_window_share: the share of "no answer" windows among the training windows (issue 35)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxqa.config import RunConfig
from jaxqa.errors import ConfigError, DataError

# squad_v2_small.json (626 questions, 333 unanswerable) in windows of 128 tokens, stride 32: 1,080 windows,
# 320 answer-bearing, 184 "no answer" of answerable questions (the answer is in another window), 576 of
# unanswerable questions. Today's no-answer share: 760 / 1,080 = 0.704.
WINDOW = dict(max_seq_length=128, doc_stride=32)


def _train(tmp_path, tokenizer, data_dir, **flags):
    from jaxqa.training.run_setup import _load_splits

    config = RunConfig(train_file=str(data_dir / "fixtures/squad_v2_small.json"), do_train=True,
                       version_2_with_negative=True, feature_cache_dir="none", output_dir=str(tmp_path / "out"),
                       **WINDOW, **flags)
    return _load_splits(config, tokenizer)["train"]


def _kinds(train) -> tuple[int, int, int]:
    """(answer-bearing, no-answer of answerable questions, of unanswerable questions), from the labels."""
    f = train.features
    no_answer = (f.start_positions == 0) & (f.end_positions == 0)  # [CLS] is token 0 for BERT
    unanswerable = train.examples.is_impossible[f.example_index]
    return int((~no_answer).sum()), int((no_answer & ~unanswerable).sum()), int((no_answer & unanswerable).sum())


def _windows(train, mask=None) -> list[tuple]:
    f = train.features
    rows = range(len(f)) if mask is None else np.flatnonzero(mask)
    return sorted((int(f.example_index[i]), int(f.start_positions[i]), f.input_ids[i].tobytes()) for i in rows)


def test_no_answer_window_share_keeps_that_share_of_the_training_windows(tmp_path, minilm_tokenizer, data_dir):
    """0.65 of 320 answer windows kept whole: 594 no-answer windows (594/914 = 0.6499 is nearer 0.65 than
    593/913 or 595/915); the 166 dropped are all of answerable questions. 0.8, above today's share: the 760
    no-answer windows stay, 190 answer windows with them (760/950). The kept windows are today's, unchanged;
    the same seed keeps the same ones, another seed others, in the same counts."""
    today = _train(tmp_path, minilm_tokenizer, data_dir)
    assert _kinds(today) == (320, 184, 576)
    fewer = _train(tmp_path, minilm_tokenizer, data_dir, no_answer_window_share=0.65)
    assert _kinds(fewer) == (320, 18, 576) and len(fewer.features) == 914
    answer = today.features.start_positions != 0
    assert _windows(fewer, fewer.features.start_positions != 0) == _windows(today, answer)
    assert set(_windows(fewer)) <= set(_windows(today))
    more = _train(tmp_path, minilm_tokenizer, data_dir, no_answer_window_share=0.8)
    assert _kinds(more) == (190, 184, 576) and set(_windows(more)) <= set(_windows(today))
    again = _train(tmp_path, minilm_tokenizer, data_dir, no_answer_window_share=0.8)
    np.testing.assert_array_equal(again.features.input_ids, more.features.input_ids)
    other_seed = _train(tmp_path, minilm_tokenizer, data_dir, no_answer_window_share=0.8, seed=43)
    assert _kinds(other_seed) == (190, 184, 576) and _windows(other_seed) != _windows(more)
    from jaxqa.data.window_share import select_windows

    with pytest.raises(DataError, match="^--no_answer_window_share 0.5: the training windows hold no 'no answer' window"):
        select_windows(today.features.select(np.flatnonzero(answer)), today.examples.is_impossible, 0.5, seed=42)
    # Part of the run's identity: a resumed run with another share (or seed) is refused, not silently mixed.
    assert RunConfig(no_answer_window_share=0.8).identity() != RunConfig().identity()


def test_no_answer_window_share_needs_version_2_with_negative(tmp_path, data_dir, capsys):
    from jaxqa.cli import main

    train = str(data_dir / "fixtures/squad_v2_small.json")
    assert main(["--train_file", train, "--do_train", "--no_answer_window_share", "0.5",
                 "--output_dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "jaxqa: error: --no_answer_window_share 0.5 sets the share of unanswerable windows of SQuAD v2.0 "
        "training: pass --version_2_with_negative too (or leave the flag out)")
    with pytest.raises(ConfigError, match=r"^--no_answer_window_share must be between 0 and 1 \(exclusive\), got 1.0$"):
        RunConfig(train_file=train, do_train=True, version_2_with_negative=True, no_answer_window_share=1.0).validate()


def test_data_report_counts_the_windows_before_and_after(tmp_path, minilm_tokenizer, data_dir, caplog):
    with caplog.at_level("INFO", logger="jaxqa"):
        _train(tmp_path, minilm_tokenizer, data_dir, no_answer_window_share=0.5)
    report = json.loads((tmp_path / "out/data_report.json").read_text())
    assert report["no_answer_window_share"] == {
        "share": 0.5, "before": {"answer": 320, "no_answer_of_answerable": 184, "no_answer_of_unanswerable": 576},
        "after": {"answer": 320, "no_answer_of_answerable": 0, "no_answer_of_unanswerable": 320}}
    assert ("--no_answer_window_share 0.5: training windows 320 answer / 760 no answer (184 of answerable, 576 of "
            "unanswerable questions; share 0.704) -> 320 answer / 320 no answer (0 of answerable, 320 of unanswerable "
            "questions; share 0.500)") in [r.getMessage() for r in caplog.records]
