"""Fault injection: SIGKILL a real training run at random moments, resume each time, and get bitwise the
uninterrupted run; and kill runs in the middle of writing an output, which must never be left half-written."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    TOTAL_STEPS,
    assert_outputs_whole,
    assert_same_run,
    logged_losses,
    newest_checkpoint,
    resume_run,
    start_run,
    train_command,
)

pytestmark = pytest.mark.slow
SAVE_EVERY = 4  # checkpoints at 4, 8, ..., 20 and 23: kills land during saves too


def _last_logged(out: Path, since: float = 0.0) -> int:
    """Last step in metrics.jsonl if a run started at `since` or later wrote it (a resumed run first drops
    the records past its step), else 0."""
    log = out / "metrics.jsonl"
    if not log.exists() or log.stat().st_mtime < since:
        return 0
    return max(logged_losses(out), default=0)


def test_random_sigkills_then_resume_is_bitwise_the_same_run(tmp_path, straight_run, tiny_bert_dir, data_dir):
    rng = random.Random(20261126)
    out = tmp_path / "killed"
    kills = []
    # Each kill waits for its moment, then a seeded random delay; a run that ends first is not counted.
    for moment in ["start-up", "new checkpoint", "steps logged", "final checkpoint"]:
        restored = newest_checkpoint(out) if out.exists() else 0
        started = time.time()
        proc = start_run(train_command(tiny_bert_dir, data_dir, out, "--save_steps", SAVE_EVERY,
                                       "--resume_from_checkpoint", "auto"))
        if moment == "start-up":  # anywhere in loading, compiling or the first steps
            condition, delay = (lambda: True), rng.uniform(0.5, 5.0)
        elif moment == "new checkpoint":
            target = rng.choice([s for s in range(SAVE_EVERY, 17, SAVE_EVERY) if s > restored] or [TOTAL_STEPS])
            condition, delay = (lambda t=target: newest_checkpoint(out) >= t), rng.uniform(0, 0.3)
        elif moment == "steps logged":
            target = rng.randint(min(restored + 1, 16), 16)
            condition, delay = (lambda t=target, s=started: _last_logged(out, s) >= t), rng.uniform(0, 0.3)
        else:  # during the export that follows the last checkpoint
            condition, delay = (lambda: newest_checkpoint(out) == TOTAL_STEPS), rng.uniform(0, 0.5)
        deadline = time.monotonic() + 300
        while not condition() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills.append((moment, round(delay, 2), newest_checkpoint(out), _last_logged(out)))
        else:
            assert proc.returncode == 0, proc.stderr.read()[-2000:]
        proc.stdout.close()
        proc.stderr.close()
        assert_outputs_whole(out)
    assert len(kills) >= 3, kills

    resume_run(tiny_bert_dir, data_dir, out, "--save_steps", SAVE_EVERY)
    assert_same_run(out, straight_run)
    print(f"SIGKILLs (moment, delay s, newest checkpoint, last logged step): {kills}")


def _write_run(tiny_bert_dir, data_dir, out: Path, kill_at: int, cache: Path) -> subprocess.CompletedProcess:
    """A short run writing every kind of output (bad records skipped, before/after eval, model, predictions)
    in which the `kill_at`-th all-or-nothing write into `out` is cut off half-way by SIGKILL (0: none), with
    `cache` as its compilation cache (the first run fills it; writes there are not counted)."""
    bad = ROOT / "tests/data/bad/duplicate_ids.json"
    flat = data_dir / "fixtures/flat_sample.json"
    args = ["--model_name_or_path", tiny_bert_dir, "--train_file", bad, "--validation_file", flat, "--test_file", flat,
            "--on_bad_record", "skip", "--do_train", "--do_eval", "--do_predict", "--eval_before_training",
            "--max_seq_length", 96, "--max_query_length", 16, "--doc_stride", 32, "--num_train_epochs", 1, "--logging_steps", 1,
            "--output_dir", out, "--overwrite_output_dir", "--accelerator", "cpu",
            "--compilation_cache_dir", cache]
    return subprocess.run([sys.executable, str(ROOT / "tests/kill_during_write_worker.py"), str(kill_at),
                           *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_a_kill_during_any_write_leaves_no_half_written_file(tmp_path, tiny_bert_dir, data_dir):
    out, cache = tmp_path / "out", tmp_path / "jax_cache"
    whole = _write_run(tiny_bert_dir, data_dir, out, 0, cache)
    assert whole.returncode == 0, whole.stderr[-3000:]
    writes = json.loads(whole.stdout.strip().splitlines()[-1])["writes"]
    before = {name: (out / name).read_bytes() for name in assert_outputs_whole(out)}
    assert {"model/model.safetensors", "predictions.json", "predict_predictions.json", "skipped_records.jsonl",
            "data_report.json", "run_config.json", "training_curves.png", "model/null_threshold.json"} <= set(before)
    # The skipped records and the load report of the training file (two duplicate ids).
    report = json.loads((out / "data_report.json").read_text())[str(ROOT / "tests/data/bad/duplicate_ids.json")]
    assert report == {"examples": 2, "skipped": 2, "problems": {"duplicate_id": {"count": 2, "ids": ["b1", "ok1"]}}}
    skipped = [json.loads(line) for line in (out / "skipped_records.jsonl").read_text().splitlines()]
    assert [(s["id"], s["kind"], s["record"]) for s in skipped] == [("b1", "duplicate_id", "record 'b1' (record #2)"),
                                                                     ("ok1", "duplicate_id", "record 'ok1' (record #3)")]
    assert "skipped 2 bad record(s): 2 duplicate_id (b1, ok1)" in whole.stderr
    rng = random.Random(7)
    # Every kind of writer (model directory, plot, the log rewritten at start, JSON) and one at random.
    killed = {next(i for i, w in enumerate(writes, 1) if w.endswith(name))
              for name in ("/model", "/training_curves.png", "/metrics.jsonl", "/predict_predictions.json")}
    killed.add(rng.choice([i for i in range(1, len(writes) + 1) if i not in killed]))
    for kill_at in sorted(killed):
        proc = _write_run(tiny_bert_dir, data_dir, out, kill_at, cache)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        # The file being written keeps its previous content; no visible file is partial. The model directory
        # is replaced whole at export; its no-answer threshold follows after the final evaluation, so a kill
        # in between leaves the new model without one (a later run says it uses the default).
        assert set(assert_outputs_whole(out)) in (set(before), set(before) - {"model/null_threshold.json"}), \
            writes[kill_at - 1]
        victim = Path(writes[kill_at - 1]).relative_to(out)
        victims = [n for n in before if n == str(victim) or n.startswith(f"{victim}/")]
        assert victims and all((out / n).read_bytes() == before[n] for n in victims), victim
    print(f"{len(writes)} writes; killed during {[writes[k - 1] for k in sorted(killed)]}")
