"""Answer latency: jaxqa's `QuestionAnswerer` against `transformers` PyTorch on the same exported model.

Three workloads from SQuAD v1.1 dev: one question on one paragraph, one question on a ~3,000-word
context (dev paragraphs joined) and a batch of 256 dev questions with their paragraphs. Both sides
take the same windows (the answerer's max_seq_length / doc_stride, the same fast tokenizer) and the
same post-processing (`jaxqa.scoring.decode`: best valid span, n-best probabilities); PyTorch tokenises as
Hugging Face's QA examples do (overflowing windows, offsets, batches padded to their longest) and runs
`AutoModelForQuestionAnswering` under `torch.inference_mode` (and bf16 autocast). Calls are warm
(every program compiled first) and interleaved in one process; medians and p90 reported.

    python benchmarks/answer_latency.py [--model_dir DIR] [--calls 30] [--long_calls 10] [--batch_rounds 3]

Without --model_dir, a model is exported first by a short jaxqa run (MiniLM, 64 questions of the
bundled sample, windows of 256): latency does not depend on how well it is trained.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxqa.models.weights import packaged_model_dir  # noqa: E402
from jaxqa.scoring import decode  # noqa: E402
from jaxqa.scoring.answer import QuestionAnswerer  # noqa: E402

DEV = ROOT.parent / "shared/data/squad_v1.1/dev.json"


def export_model(work: Path) -> Path:
    """A model directory exported by a short jaxqa run (reused when already there)."""
    model = work / "run/model"
    if not (model / "config.json").exists():
        subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", str(packaged_model_dir()),
                        "--train_file", str(ROOT / "jaxqa/sample_data/squad_sample_train.json"), "--do_train",
                        "--max_train_samples", "64", "--max_seq_length", "256", "--doc_stride", "128",
                        "--output_dir", str(work / "run")], check=True)
    return model


def workloads(n_batch: int) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """(kind, name) -> (questions, contexts) from SQuAD v1.1 dev."""
    articles = json.loads(DEV.read_text(encoding="utf-8"))["data"]
    paragraphs = [p for a in articles for p in a["paragraphs"]]
    first = paragraphs[0]
    long_context, words = [], 0
    for p in paragraphs:
        if words >= 3000:
            break
        long_context.append(p["context"])
        words += len(p["context"].split())
    pairs = [(q["question"], p["context"]) for p in paragraphs for q in p["qas"]][:n_batch]
    return {("paragraph", "one paragraph"): ([first["qas"][0]["question"]], [first["context"]]),
            ("context", f"{words:,}-word context"): ([first["qas"][0]["question"]], ["\n".join(long_context)]),
            ("batch", f"batch of {len(pairs)}"): ([q for q, _ in pairs], [c for _, c in pairs])}


class TorchAnswerer:
    """The PyTorch side: the same windows and post-processing as `qa`, the forward in `transformers`."""

    def __init__(self, model_dir: Path, qa: QuestionAnswerer, bf16: bool = False):
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        self.torch, self.bf16 = torch, bf16
        self.model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.qa = qa
        self.max_len, self.stride = qa.settings["max_seq_length"], qa.settings["doc_stride"]
        self.batch = qa.predictor.batch_size

    def __call__(self, questions: list[str], contexts: list[str]) -> list[dict]:
        torch = self.torch
        enc = self.tokenizer(questions, contexts, truncation="only_second", max_length=self.max_len,
                             stride=self.stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                             padding="longest", return_tensors="np")
        n, seq = enc["input_ids"].shape
        offsets = enc["offset_mapping"].astype(np.int32)
        is_context = np.array([[s == 1 for s in enc.sequence_ids(i)] for i in range(n)])
        offsets[~is_context] = -1
        lengths = enc["attention_mask"].sum(1)
        start = np.full((n, seq), -np.inf, np.float32)
        end = np.full((n, seq), -np.inf, np.float32)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)
        with torch.inference_mode(), autocast:
            for lo in range(0, n, self.batch):  # batches padded to their longest window
                rows = slice(lo, lo + self.batch)
                width = int(lengths[rows].max())
                out = self.model(**{k: torch.from_numpy(enc[k][rows, :width].astype(np.int64))
                                    for k in ("input_ids", "token_type_ids", "attention_mask")})
                start[rows, :width] = out.start_logits.float().numpy()
                end[rows, :width] = out.end_logits.float().numpy()
        found = decode.decode(contexts, start, end, offsets, enc["overflow_to_sample_mapping"],
                              max_answer_length=self.qa.predictor.max_answer_length,
                              cls_index=np.zeros(n, np.int64), null_score_diff_threshold=np.inf,
                              n_best_size=self.qa.n_best_size)
        return [{"answer": t, "start": int(c0)} for t, c0 in zip(found.texts, found.char_start)]


def timed(fn, args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", help="an exported QA model (default: export one by a short jaxqa run)")
    parser.add_argument("--work", default="outputs/answer_latency", help="where the exported model goes")
    parser.add_argument("--calls", type=int, default=30, help="timed calls of one question on one paragraph, per side")
    parser.add_argument("--long_calls", type=int, default=10, help="timed calls of one question on the long context")
    parser.add_argument("--batch_rounds", type=int, default=3, help="timed calls of the 256-question batch")
    parser.add_argument("--batch_questions", type=int, default=256)
    parser.add_argument("--no_bf16", action="store_true", help="skip PyTorch bf16 autocast")
    parser.add_argument("--max_seq_length", type=int, help="window length (default: the model's, else 384)")
    parser.add_argument("--doc_stride", type=int, help="window overlap (default: the model's, else 128)")
    args = parser.parse_args()

    import torch

    model_dir = Path(args.model_dir) if args.model_dir else export_model(Path(args.work))
    windows = {k: v for k, v in (("max_seq_length", args.max_seq_length), ("doc_stride", args.doc_stride)) if v}
    qa = QuestionAnswerer.from_pretrained(model_dir, **windows)
    sides = {"jaxqa": qa.answer_batch, "PyTorch fp32": TorchAnswerer(model_dir, qa)}
    if not args.no_bf16:
        sides["PyTorch bf16 autocast"] = TorchAnswerer(model_dir, qa, bf16=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"model {model_dir}, windows {qa.settings}, batch {qa.predictor.batch_size}; {cpu}, {os.cpu_count()} "
          f"cores, torch {torch.__version__} ({torch.get_num_threads()} threads), load {os.getloadavg()[0]:.2f}")

    rows = []
    for (kind, name), work in workloads(args.batch_questions).items():
        answers = {side: fn(*work) for side, fn in sides.items()}  # warm: every program compiled
        same = sum(a["answer"] == b["answer"] and a["start"] == b["start"]
                   for a, b in zip(answers["jaxqa"], answers["PyTorch fp32"]))
        calls = {"paragraph": args.calls, "context": args.long_calls, "batch": args.batch_rounds}[kind]
        times: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(calls):  # interleaved: each side sees the same machine
            for side, fn in sides.items():
                times[side].append(timed(fn, work))
        rows.append((name, len(work[0]), times, same))

    print("\n| workload | side | median ms | p90 ms | questions/s | vs PyTorch fp32 |\n|---|---|---|---|---|---|")
    for name, n, times, same in rows:
        peer = statistics.median(times["PyTorch fp32"])
        for side, t in times.items():
            median, p90 = statistics.median(t), float(np.percentile(t, 90))
            print(f"| {name} | {side} | {1000 * median:,.1f} | {1000 * p90:,.1f} | {n / median:,.1f} | "
                  f"{median / peer:.2f}x |")
        print(f"| {name} | same answer (jaxqa = PyTorch fp32) | {same}/{n} | | | |")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
