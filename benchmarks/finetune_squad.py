"""Fine-tune MiniLM on SQuAD v1.1 (shared train split), score dev, and time the PyTorch peer.

Settings are the reference recipe: max_seq_length 256, doc_stride 128, batch 16, AdamW lr 5e-5,
10% linear warmup then linear decay, weight decay 0.01, clip 1.0, 1 epoch. The peer is
`transformers`' PyTorch BertForQuestionAnswering on the same MiniLM and the same windows padded to
256 (what Hugging Face's run_qa does), timed in the same process on the same machine: by default
over `--peer_steps` steps and projected to the epoch, or over the whole epoch and scored with
`--peer_full`.

    python benchmarks/finetune_squad.py [--epochs 1] [--peer_steps 30] [--peer_full] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "squad_v1.1"
sys.path.insert(0, str(ROOT))

from jaxqa.config import RunConfig  # noqa: E402
from jaxqa.errors import JaxqaError  # noqa: E402
from jaxqa.scoring import decode, metrics  # noqa: E402
from jaxqa.training.trainer import Trainer  # noqa: E402


def run_jaxqa(args) -> dict:
    config = RunConfig(
        train_file=str(DATA / "train.json"), validation_file=str(DATA / "dev.json"), do_train=True, do_eval=True,
        max_seq_length=256, doc_stride=128, per_device_train_batch_size=16, per_device_eval_batch_size=64,
        learning_rate=args.lr, warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0,
        num_train_epochs=args.epochs, seed=42, logging_steps=50, pad_to_max_length=args.pad,
        output_dir=str(Path(args.out) / "jaxqa"),
    )
    trainer = Trainer(config)
    trainer.fit()
    result = trainer.evaluate()
    return {"steps": trainer.total_steps, "train_seconds": trainer.train_seconds, **result, "config": dataclasses.asdict(config)}


def run_peer(trainer_features, examples, eval_examples, eval_features, steps: int, full: bool, total_steps: int) -> dict:
    """transformers PyTorch, HF-style: every window padded to 256, shuffled, AdamW + linear schedule."""
    import torch
    from transformers import BertForQuestionAnswering, get_linear_schedule_with_warmup

    from jaxqa.models.weights import packaged_model_dir

    torch.manual_seed(42)
    model = BertForQuestionAnswering.from_pretrained(str(packaged_model_dir()))
    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=5e-5, eps=1e-8)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * total_steps), total_steps)
    order = np.random.default_rng(42).permutation(len(trainer_features))
    run_steps = total_steps if full else steps
    times = []
    model.train()
    for step in range(run_steps):
        rows = order[step * 16:(step + 1) * 16]
        batch = {k: torch.tensor(v[rows]).long() for k, v in trainer_features.train_arrays().items()}
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - t0)
    step_time = float(np.median(times[1:]))
    out = {"steps_timed": run_steps, "median_step_seconds": step_time,
           "projected_epoch_seconds": step_time * total_steps, "measured_seconds": float(sum(times))}
    if full:
        model.eval()
        starts, ends = [], []
        with torch.no_grad():
            for lo in range(0, len(eval_features), 64):
                batch = {k: torch.tensor(v[lo:lo + 64]).long() for k, v in eval_features.model_inputs().items()}
                o = model(**batch)
                starts.append(o.start_logits.numpy())
                ends.append(o.end_logits.numpy())
        texts = decode.decode(eval_examples.contexts, np.concatenate(starts), np.concatenate(ends),
                              eval_features.offsets, eval_features.example_index, max_answer_length=30).texts
        out.update(metrics.squad_v1(dict(zip(eval_examples.ids, texts)),
                                    dict(zip(eval_examples.ids, eval_examples.answer_texts))))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--pad", action="store_true", help="jaxqa pads every window to 256 (no length buckets)")
    parser.add_argument("--peer_steps", type=int, default=30, help="0 skips the PyTorch peer")
    parser.add_argument("--peer_full", action="store_true", help="train and score the peer for the whole epoch")
    parser.add_argument("--out", default="outputs/bench_finetune")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        report = {"jaxqa": run_jaxqa(args)}
    except JaxqaError as err:  # a bad --out or data: the message names the fix, as run_qa.py prints it
        print(f"finetune_squad.py: error: {err}", file=sys.stderr)
        return 2
    j = report["jaxqa"]
    print(f"jaxqa: {j['steps']} steps in {j['train_seconds']:.0f}s of training; dev EM {j['exact_match']:.2f} "
          f"F1 {j['f1']:.2f}", flush=True)
    if args.peer_steps or args.peer_full:
        from jaxqa.data.examples import load_examples
        from jaxqa.data.features import load_tokenizer, tokenize
        from jaxqa.models.weights import packaged_model_dir

        tok = load_tokenizer(packaged_model_dir())
        train_ex, dev_ex = load_examples(DATA / "train.json"), load_examples(DATA / "dev.json")
        train_f = tokenize(train_ex, tok, max_seq_length=256, doc_stride=128)
        dev_f = tokenize(dev_ex, tok, max_seq_length=256, doc_stride=128)
        total = int(np.ceil(len(train_f) / 16 * args.epochs))
        peer = run_peer(train_f, train_ex, dev_ex, dev_f, args.peer_steps, args.peer_full, total)
        report["pytorch_peer"] = peer
        epoch_peer = peer["measured_seconds"] if args.peer_full else peer["projected_epoch_seconds"]
        report["train_time_ratio_peer_over_jaxqa"] = epoch_peer / j["train_seconds"]
        print(f"pytorch peer: {peer['median_step_seconds']:.2f}s/step (median of {peer['steps_timed']}), "
              f"{'measured' if args.peer_full else 'projected'} epoch {epoch_peer:.0f}s"
              + (f"; dev EM {peer['exact_match']:.2f} F1 {peer['f1']:.2f}" if args.peer_full else ""))
        print(f"training time ratio (peer / jaxqa): {report['train_time_ratio_peer_over_jaxqa']:.2f}x")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
