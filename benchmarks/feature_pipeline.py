"""Tokenising SQuAD into training features: jaxqa (each distinct context and each question tokenised
once in a batched fast-tokenizer call, windows cut and labelled in NumPy) against a per-example reference
(one tokenizer call per example, offsets walked in Python to find the answer tokens, as the usual
per-example preprocessing does), rounds interleaved, medians reported. Both produce the same labels
(checked). Two selections: the first N training questions as SQuAD has them (several per paragraph),
and N questions of distinct paragraphs (nothing shared to save).

    python benchmarks/feature_pipeline.py [--examples 4000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxqa.data.examples import load_examples  # noqa: E402
from jaxqa.data.features import load_tokenizer, tokenize  # noqa: E402
from jaxqa.models.weights import packaged_model_dir  # noqa: E402

SETTINGS = dict(max_seq_length=384, doc_stride=128, max_query_length=64)


def per_example(examples, tokenizer) -> tuple[list[int], list[int]]:
    """(start, end) token labels of every window, one example at a time."""
    starts, ends = [], []
    for i in range(len(examples)):
        question = tokenizer.convert_tokens_to_string(
            tokenizer.tokenize(examples.questions[i].lstrip())[:SETTINGS["max_query_length"]])
        enc = tokenizer(question, examples.contexts[i], truncation="only_second", max_length=SETTINGS["max_seq_length"],
                        stride=SETTINGS["doc_stride"], return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding="max_length")
        answer_start = examples.answer_starts[i][0]
        answer_end = answer_start + len(examples.answer_texts[i][0])
        for w, offsets in enumerate(enc["offset_mapping"]):
            sequence_ids = enc.sequence_ids(w)
            first = sequence_ids.index(1)
            last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
            if not (offsets[first][0] <= answer_start and offsets[last][1] >= answer_end):
                starts.append(0)
                ends.append(0)
                continue
            s = first
            while s <= last and offsets[s][0] <= answer_start:
                s += 1
            e = last
            while e >= first and offsets[e][1] >= answer_end:
                e -= 1
            starts.append(s - 1)
            ends.append(e + 1)
    return starts, ends


def compare(examples, tokenizer, rounds: int) -> str:
    ours_t, ref_t = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        features = tokenize(examples, tokenizer, **SETTINGS)
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref_starts, ref_ends = per_example(examples, tokenizer)
        ref_t.append(time.perf_counter() - start)
    same = (np.array_equal(features.start_positions, ref_starts) and np.array_equal(features.end_positions, ref_ends))
    ours, ref = float(np.median(ours_t)), float(np.median(ref_t))
    return (f"{len(examples)} questions on {len(set(examples.contexts))} paragraphs -> {len(features)} windows\n"
            f"  jaxqa:                  {ours:6.2f} s  {len(examples) / ours:8.0f} examples/s\n"
            f"  per-example reference:  {ref:6.2f} s  {len(examples) / ref:8.0f} examples/s\n"
            f"  ratio {ref / ours:.1f}x; identical labels: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tokenizer = load_tokenizer(packaged_model_dir())
    examples = load_examples(ROOT.parent / "shared" / "data" / "squad_v1.1" / "train.json")
    first_of_paragraph = {}
    for i, context in enumerate(examples.contexts):
        first_of_paragraph.setdefault(context, i)
    print(f"SQuAD v1.1 train, windows of 384 (stride 128), medians of {args.rounds} rounds")
    print(compare(examples.select(range(args.examples)), tokenizer, args.rounds))
    print(compare(examples.select(sorted(first_of_paragraph.values())[: args.examples]), tokenizer, args.rounds))


if __name__ == "__main__":
    main()
