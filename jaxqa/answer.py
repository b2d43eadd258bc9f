"""One-shot question answering from Python: a question and a context of any length in, the answer
text, its character span, its score (start + end logit) and its probability (softmax over the n-best
spans and "no answer", as Hugging Face's pipeline reports) out.

    from jaxqa.answer import QuestionAnswerer
    qa = QuestionAnswerer.from_pretrained("out/model")       # a fine-tuned jaxqa/HF QA directory
    qa("Who won?", "The Broncos beat the Panthers 24-10.")   # {'answer': 'The Broncos', 'start': 0, ...}
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import jax
import numpy as np

from jaxqa import sharding, steps
from jaxqa.data import Examples
from jaxqa.evaluation import null_threshold
from jaxqa.features import load_tokenizer, tokenize
from jaxqa.inference import Predictor

log = logging.getLogger("jaxqa")


class QuestionAnswerer:
    """A QA model ready to answer: parameters, tokenizer and the window/decoding settings."""

    def __init__(self, graphdef, params, tokenizer, *, max_seq_length: int = 384, doc_stride: int = 128,
                 max_query_length: int = 64, max_answer_length: int = 30, batch_size: int = 32,
                 null_score_diff_threshold: float | None = None, n_best_size: int = 20, mesh=None):
        """`mesh`: where `params` live (a training run's mesh: `Trainer.answerer`); batches go there too.
        By default one device, the first."""
        self.tokenizer = tokenizer
        self.settings = dict(max_seq_length=max_seq_length, doc_stride=doc_stride, max_query_length=max_query_length)
        self.null_score_diff_threshold, self.n_best_size = null_score_diff_threshold, n_best_size
        self.params = params
        mesh = mesh or sharding.make_mesh(jax.devices()[:1])
        # Logits whole on every process, as the run's evaluation has them: decoding is on the host.
        forward = sharding.jit(lambda p, batch: steps.forward(graphdef, p, batch), mesh,
                               out_shardings=sharding.replicated(mesh))
        self.predictor = Predictor(forward, mesh, batch_size, max_seq_length, max_answer_length=max_answer_length)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, null_score_diff_threshold: float | None = None,
                        **settings) -> QuestionAnswerer:
        """The model in `model_dir`; it abstains ("") above `null_score_diff_threshold`, by default the
        threshold saved with the model by its SQuAD v2.0 evaluation, if any (else it never abstains)."""
        from jaxqa.train_state import load_model

        threshold = null_threshold(null_score_diff_threshold, model_dir, default=None)
        log.info("%s", threshold)
        graphdef, params, _ = load_model(model_dir)
        return cls(graphdef, params, load_tokenizer(model_dir), null_score_diff_threshold=threshold.value, **settings)

    def answer_batch(self, questions: list[str], contexts: list[str]) -> list[dict]:
        n = len(questions)
        examples = Examples([str(i) for i in range(n)], list(questions), list(contexts), [[] for _ in range(n)],
                            [[] for _ in range(n)], np.zeros(n, bool))
        features = tokenize(examples, self.tokenizer, **self.settings)
        # The null score is always decoded, so that "no answer" takes its share of the probability; with
        # no threshold given it never wins (an infinite threshold).
        threshold = math.inf if self.null_score_diff_threshold is None else self.null_score_diff_threshold
        found = self.predictor.answers(self.params, list(contexts), features, null_score_diff_threshold=threshold,
                                       n_best_size=self.n_best_size)
        return [{"answer": text, "start": int(c0) if text else -1, "end": int(c0) + len(text) if text else -1,
                 "score": float(score), "probability": round(float(p), 6)}
                for text, c0, score, p in zip(found.texts, found.char_start, found.best_score, found.probability())]

    def __call__(self, question: str, context: str) -> dict:
        return self.answer_batch([question], [context])[0]
