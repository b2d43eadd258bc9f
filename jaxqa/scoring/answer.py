"""One-shot question answering from Python: a question and a context of any length in, the answer
text, its character span, its score (start + end logit) and its probability (softmax over the n-best
spans and "no answer", as Hugging Face's pipeline reports) out.

    from jaxqa.scoring.answer import QuestionAnswerer
    qa = QuestionAnswerer.from_pretrained("out/model")       # a fine-tuned jaxqa/HF QA directory
    qa("Who won?", "The Broncos beat the Panthers 24-10.")   # {'answer': 'Broncos', 'start': 4, ...}

(that answer is the default job's model's: `python run_qa.py`, then "jaxqa_output/default_run/model")
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import jax
import numpy as np

from jaxqa import sharding
from jaxqa.data.examples import Examples
from jaxqa.data.features import load_tokenizer, tokenize
from jaxqa.errors import ModelError
from jaxqa.models import loading, weights
from jaxqa.scoring.evaluation import null_threshold
from jaxqa.scoring.inference import Predictor

log = logging.getLogger("jaxqa")


def check_texts(questions: list[str], contexts: list[str]) -> None:
    """A question or context that is empty (or blank) has no answer to look for: a ValueError naming it,
    rather than a made-up answer or a score of -inf."""
    if len(questions) != len(contexts):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts: give one context per question")
    for field, texts in (("question", questions), ("context", contexts)):
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{field} {i} is {'empty' if isinstance(text, str) else type(text).__name__}: "
                                 f"every {field} must be non-empty text")


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
        forward = sharding.jit(lambda p, batch: loading.forward(graphdef, p, batch), mesh,
                               out_shardings=sharding.replicated(mesh))
        # Batches sized to the request: one question runs a one-row program (per device of the mesh's batch
        # axes), not `batch_size` rows of filler; each (rows, length) program compiles once, on first use.
        self.predictor = Predictor(forward, mesh, batch_size, max_seq_length, max_answer_length=max_answer_length,
                                   min_rows=sharding.batch_size_multiplier(mesh))

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, null_score_diff_threshold: float | None = None,
                        **settings) -> QuestionAnswerer:
        """The fine-tuned model in `model_dir` (a directory or Hub id); it abstains ("") above
        `null_score_diff_threshold`, by default the threshold saved with the model by its SQuAD v2.0
        evaluation, if any (else it never abstains). Window settings not given in `settings` are those the
        model was trained with, when its run saved them (`weights.SETTINGS_FILE`), else the defaults. A model
        without a QA head is refused: its answers would come from a random layer."""
        model_dir = weights.resolve_model_dir(str(model_dir))
        if not weights.has_qa_head(model_dir):
            raise ModelError(f"{model_dir}: no QA head (qa_outputs) in this checkpoint, so its answers would come "
                             f"from a randomly initialised layer; fine-tune it first: python run_qa.py "
                             f"--model_name_or_path {model_dir} --train_file TRAIN.json --do_train --output_dir OUT, "
                             "then answer with OUT/model")
        saved = weights.saved_settings(model_dir)
        if saved:
            log.info("window settings saved with the model: %s%s", ", ".join(f"{k} {v}" for k, v in saved.items()),
                     f" (given: {', '.join(f'{k} {v}' for k, v in settings.items() if k in saved)})"
                     if saved.keys() & settings.keys() else "")
        threshold = null_threshold(null_score_diff_threshold, model_dir, default=None)
        log.info("%s", threshold)
        graphdef, params, _ = loading.load_model(model_dir)
        return cls(graphdef, params, load_tokenizer(model_dir), null_score_diff_threshold=threshold.value,
                   **{**saved, **settings})

    def answer_batch(self, questions: list[str], contexts: list[str]) -> list[dict]:
        check_texts(questions, contexts)
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
