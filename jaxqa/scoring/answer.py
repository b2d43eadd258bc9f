"""One-shot question answering from Python: a question and a context of any length in, the answer
text, its character span, its score (start + end logit) and its probability (softmax over the n-best
spans and "no answer", as Hugging Face's pipeline reports) out.

    from jaxqa.scoring.answer import QuestionAnswerer
    qa = QuestionAnswerer.from_pretrained("out/model")       # a fine-tuned jaxqa/HF QA directory
    qa("Who won?", "The Broncos beat the Panthers 24-10.")   # {'answer': 'Broncos', 'start': 4, ...}

(that answer is the default job's model's: `python run_qa.py`, then "jaxqa_output/default_run/model")
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import jax
import numpy as np

from jaxqa import sharding
from jaxqa.data import batching
from jaxqa.data.examples import Examples
from jaxqa.data.features import Features, load_tokenizer, tokenize
from jaxqa.errors import ModelError
from jaxqa.models import loading, precision, weights
from jaxqa.scoring.evaluation import null_threshold
from jaxqa.scoring.inference import Predictor, program_rows, scatter_logits

log = logging.getLogger("jaxqa")
SAVED = object()  # `answers`' default threshold: the answerer's own (the model's saved one, if any)


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
                 null_score_diff_threshold: float | None = None, n_best_size: int = 20, mesh=None,
                 least_padding: bool = False):
        """`mesh`: where `params` live (a training run's mesh: `Trainer.answerer`); batches go there too.
        By default one device, the first. `least_padding`: batches planned for the fewest tokens computed
        (`inference.least_padding`; `jaxqa serve`) rather than one per length bucket."""
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
        # On CPU, programs of at most ~1,000 tokens (`program_rows`): faster per row, and a question's answer
        # is the same whatever it is batched with.
        min_rows = sharding.batch_size_multiplier(mesh)
        rows = program_rows(batch_size, max_seq_length, mesh.devices.flat[0].platform, min_rows)
        self.predictor = Predictor(forward, mesh, rows, max_seq_length, max_answer_length=max_answer_length,
                                   min_rows=min_rows, least_padding=least_padding)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, null_score_diff_threshold: float | None = None,
                        dtype: str = "auto", **settings) -> QuestionAnswerer:
        """The fine-tuned model in `model_dir` (a directory or Hub id); it abstains ("") above
        `null_score_diff_threshold`, by default the threshold saved with the model by its SQuAD v2.0
        evaluation, if any (else it never abstains). Window settings not given in `settings` are those the
        model was trained with, when its run saved them (`weights.SETTINGS_FILE`), else the defaults. A model
        without a QA head is refused: its answers would come from a random layer. `dtype`: the compute dtype
        as run_qa.py's --dtype takes it ("auto": bfloat16 where the device computes it natively); the
        parameters are float32 whichever it is."""
        if dtype not in loading.COMPUTE_DTYPES and dtype != "auto":
            raise ValueError(f"dtype {dtype!r}: use one of auto, {', '.join(loading.COMPUTE_DTYPES)}")
        mesh = settings.get("mesh")
        if dtype == "auto":
            dtype, why = precision.resolve_dtype(dtype, mesh.devices.flat[0] if mesh else jax.devices()[0], "dtype")
            log.info("compute dtype %s (%s)", dtype, why)
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
        graphdef, params, _ = loading.load_model(model_dir, dtype=dtype, mesh=mesh)
        return cls(graphdef, params, load_tokenizer(model_dir), null_score_diff_threshold=threshold.value,
                   **{**saved, **settings})

    def answer_batch(self, questions: list[str], contexts: list[str]) -> list[dict]:
        return [ranked[0] for ranked in self.answers(questions, contexts)]

    def answers(self, questions: list[str], contexts: list[str], *, top_k: int = 1, max_seq_length: int | None = None,
                doc_stride: int | None = None, max_query_length: int | None = None,
                max_answer_length: int | None = None, null_score_diff_threshold=SAVED) -> list[list[dict]]:
        """The `top_k` best distinct answers of each question, best first (the first is `answer_batch`'s), in
        windows and with a threshold other than the answerer's where given (None: never abstain). Windows up
        to the answerer's `max_seq_length` run its programs (padded to its length buckets); longer ones are
        refused."""
        return self.prepare(questions, contexts, top_k=top_k, max_seq_length=max_seq_length, doc_stride=doc_stride,
                            max_query_length=max_query_length, max_answer_length=max_answer_length,
                            null_score_diff_threshold=null_score_diff_threshold).launch().result()

    def prepare(self, questions: list[str], contexts: list[str], *, top_k: int = 1, max_seq_length: int | None = None,
                doc_stride: int | None = None, max_query_length: int | None = None,
                max_answer_length: int | None = None, null_score_diff_threshold=SAVED) -> PendingAnswers:
        """`answers` in three steps, for a caller that overlaps host and device work (`jaxqa serve`): this one
        on the host (checked, tokenised, batches planned; a request's error is raised here), then `launch`
        (the device starts) and `result` (waits for the device, decodes on the host)."""
        check_texts(questions, contexts)
        windows = {**self.settings, **{k: v for k, v in (("max_seq_length", max_seq_length), ("doc_stride", doc_stride),
                                                        ("max_query_length", max_query_length)) if v is not None}}
        if windows["max_seq_length"] > self.predictor.max_seq_length:
            raise ValueError(f"max_seq_length {windows['max_seq_length']} exceeds this answerer's "
                             f"{self.predictor.max_seq_length}")
        n = len(questions)
        examples = Examples([str(i) for i in range(n)], list(questions), list(contexts), [[] for _ in range(n)],
                            [[] for _ in range(n)], np.zeros(n, bool))
        features = widened(tokenize(examples, self.tokenizer, **windows), self.predictor.max_seq_length,
                           self.tokenizer.pad_token_id or 0)
        predictor = self.predictor if max_answer_length is None else \
            dataclasses.replace(self.predictor, max_answer_length=max_answer_length)
        threshold = self.null_score_diff_threshold if null_score_diff_threshold is SAVED else null_score_diff_threshold
        return PendingAnswers(self.params, predictor, list(contexts), features, predictor.plan(features), threshold,
                              max(self.n_best_size, top_k), top_k)

    def compile_programs(self) -> int:
        """Compile (or load from JAX's cache) the forward of every (rows, length) bucket, by running each once on
        filler windows, so that no later call waits on a compile (`jaxqa serve` does this before it is ready).
        Returns how many programs that is."""
        p = self.predictor
        lengths = np.unique(batching.bucket_lengths(np.arange(1, p.max_seq_length + 1), p.max_seq_length,
                                                    p.bucket_width))
        rows = sorted({batching.batch_rows(n, p.batch_size, p.min_rows or p.batch_size)
                       for n in range(1, p.batch_size + 1)})
        for length in lengths.tolist():
            for n in rows:
                p.logits(self.params, filler_windows(n, length, p.max_seq_length))
        return len(lengths) * len(rows)

    def __call__(self, question: str, context: str) -> dict:
        return self.answer_batch([question], [context])[0]


@dataclasses.dataclass
class PendingAnswers:
    """A batch of questions tokenised and planned (`QuestionAnswerer.prepare`), its forward not yet run or still
    running: `launch` dispatches it (returning at once), `wait` blocks until the device is done, `result` decodes."""

    params: object
    predictor: Predictor
    contexts: list[str]
    features: Features
    plan: list[batching.Batch]
    threshold: float | None  # None: never abstain
    n_best_size: int
    top_k: int
    outputs: list | None = None

    def launch(self) -> PendingAnswers:
        _, self.outputs = self.predictor.launch(self.params, self.features, self.plan)
        return self

    def wait(self) -> PendingAnswers:
        jax.block_until_ready(self.outputs)
        return self

    def result(self) -> list[list[dict]]:
        """The `top_k` best distinct answers of each question, best first."""
        logits = scatter_logits(self.features, self.plan, self.outputs, self.predictor.max_seq_length)
        # The null score is always decoded, so that "no answer" takes its share of the probability; with
        # no threshold it never wins (an infinite threshold).
        found = self.predictor.decoded(self.contexts, self.features, logits, n_best_size=self.n_best_size,
                                       null_score_diff_threshold=math.inf if self.threshold is None else self.threshold)
        best = [{"answer": text, "start": int(c0) if text else -1, "end": int(c0) + len(text) if text else -1,
                 "score": float(score), "probability": round(float(p), 6)}
                for text, c0, score, p in zip(found.texts, found.char_start, found.best_score, found.probability())]
        if self.top_k == 1:
            return [[answer] for answer in best]
        return [runners_up(first, entries, self.top_k)
                for first, entries in zip(best, found.nbest.lists(self.contexts))]


def runners_up(first: dict, entries: list[dict], top_k: int) -> list[dict]:
    """`first` (the chosen answer) and the next best distinct spans of the n-best `entries` (best first), up to
    `top_k` in all; a span found in several overlapping windows appears once, with its entries' probabilities
    added up (as `decode.Answers.probability` counts the first)."""
    out, where = [first], {(first["start"], first["end"])}
    merged: dict[tuple[int, int], dict] = {}
    for entry in entries:
        span = (entry["char_start"], entry["char_end"])
        if span[0] < 0 or span in where:
            continue
        if span in merged:
            merged[span]["probability"] += entry["probability"]
        elif len(merged) < top_k - 1:
            merged[span] = {"answer": entry["text"], "start": span[0], "end": span[1], "score": entry["score"],
                            "probability": entry["probability"]}
    return out + [{**answer, "probability": round(answer["probability"], 6)} for answer in merged.values()]


def widened(features: Features, length: int, pad_id: int) -> Features:
    """`features` padded on the right to `length` tokens (offsets -1: not context), so that windows cut shorter
    run the programs of the answerer's length buckets."""
    extra = length - features.input_ids.shape[1]
    if extra <= 0:
        return features
    pad = lambda a, value: np.pad(a, [(0, 0), (0, extra)] + [(0, 0)] * (a.ndim - 2), constant_values=value)  # noqa: E731
    return dataclasses.replace(features, input_ids=pad(features.input_ids, pad_id),
                               token_type_ids=pad(features.token_type_ids, 0),
                               attention_mask=pad(features.attention_mask, 0), offsets=pad(features.offsets, -1))


def filler_windows(rows: int, length: int, max_seq_length: int) -> Features:
    """`rows` windows of `length` tokens of nothing (ids 0, every token attended), for compiling a bucket."""
    ids = np.zeros((rows, max_seq_length), np.int32)
    mask = (np.arange(max_seq_length) < length).astype(np.int32)[None].repeat(rows, 0)
    zeros = np.zeros(rows, np.int32)
    return Features(ids, ids, mask, np.full((rows, max_seq_length, 2), -1, np.int32), np.arange(rows, dtype=np.int32),
                    zeros, zeros, zeros)
