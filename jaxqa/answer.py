"""One-shot question answering from Python: a question and a context of any length in, the answer
text, its character span and its score out.

    from jaxqa.answer import QuestionAnswerer
    qa = QuestionAnswerer.from_pretrained("out/model")       # a fine-tuned jaxqa/HF QA directory
    qa("Who won?", "The Broncos beat the Panthers 24-10.")   # {'answer': 'The Broncos', 'start': 0, ...}
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from jaxqa import batching, decode, steps
from jaxqa.data import Examples
from jaxqa.features import Features, load_tokenizer, tokenize


def scatter_logits(features: Features, plan: list[batching.Batch], outputs, max_seq_length: int):
    """Per-batch (start, end) logits back in window order, [windows, max_seq_length], -inf past
    each batch's length; filler rows are dropped."""
    start = np.full((len(features), max_seq_length), -np.inf, np.float32)
    end = np.full((len(features), max_seq_length), -np.inf, np.float32)
    for batch_plan, (s, e) in zip(plan, outputs):
        real = batch_plan.rows >= 0
        start[batch_plan.rows[real], : batch_plan.seq_len] = np.asarray(s)[real]
        end[batch_plan.rows[real], : batch_plan.seq_len] = np.asarray(e)[real]
    return start, end


class QuestionAnswerer:
    """A QA model ready to answer: parameters, tokenizer and the window/decoding settings."""

    def __init__(self, graphdef, params, tokenizer, *, max_seq_length: int = 384, doc_stride: int = 128,
                 max_query_length: int = 64, max_answer_length: int = 30, batch_size: int = 32,
                 null_score_diff_threshold: float | None = None):
        self.tokenizer = tokenizer
        self.settings = dict(max_seq_length=max_seq_length, doc_stride=doc_stride, max_query_length=max_query_length)
        self.max_answer_length, self.batch_size = max_answer_length, batch_size
        self.null_score_diff_threshold = null_score_diff_threshold
        self.params = params
        self._forward = jax.jit(lambda p, batch: steps.forward(graphdef, p, batch))

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, **settings) -> QuestionAnswerer:
        from jaxqa.train_state import load_model

        graphdef, params, _ = load_model(model_dir)
        return cls(graphdef, params, load_tokenizer(model_dir), **settings)

    def answer_batch(self, questions: list[str], contexts: list[str]) -> list[dict]:
        n = len(questions)
        examples = Examples([str(i) for i in range(n)], list(questions), list(contexts), [[] for _ in range(n)],
                            [[] for _ in range(n)], np.zeros(n, bool))
        features = tokenize(examples, self.tokenizer, **self.settings)
        plan = batching.plan_batches(features.lengths, self.batch_size,
                                     max_seq_length=self.settings["max_seq_length"])
        arrays = features.model_inputs()
        outputs = [self._forward(self.params, batching.gather(arrays, b)) for b in plan]
        start, end = scatter_logits(features, plan, outputs, self.settings["max_seq_length"])
        found = decode.decode(contexts, start, end, features.offsets, features.example_index,
                              max_answer_length=self.max_answer_length, cls_index=features.cls_index,
                              null_score_diff_threshold=self.null_score_diff_threshold)
        return [{"answer": text, "start": int(c0) if text else -1, "end": int(c0) + len(text) if text else -1,
                 "score": float(score)}
                for text, c0, score in zip(found.texts, found.char_start, found.best_score)]

    def __call__(self, question: str, context: str) -> dict:
        return self.answer_batch([question], [context])[0]
