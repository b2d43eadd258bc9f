"""Checkpoints: a killed or preempted run resumes to the very same result; damage is survived."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import (
    ROOT,
    SAVE_STEPS,
    TOTAL_STEPS,
    assert_same_run,
    logged_losses,
    resume_run,
    start_run,
    train_command,
    wait_for,
)


def test_sigkill_then_resume_is_bitwise_the_same_run(tmp_path, straight_run, tiny_bert_dir, data_dir):
    out = tmp_path / "killed"
    proc = start_run(train_command(tiny_bert_dir, data_dir, out))
    wait_for(lambda: (out / f"checkpoints/{SAVE_STEPS}").is_dir(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    logged = max(logged_losses(out))
    assert SAVE_STEPS <= logged < TOTAL_STEPS and not (out / "model").exists()

    # Without --resume_from_checkpoint the directory is protected.
    proc = subprocess.run(train_command(tiny_bert_dir, data_dir, out), capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 2
    assert f"already holds checkpoints of a run (newest: step {SAVE_STEPS}); pass --resume_from_checkpoint auto" \
        in proc.stderr.splitlines()[-1]

    resumed = resume_run(tiny_bert_dir, data_dir, out)
    assert f"step {SAVE_STEPS} of {TOTAL_STEPS}" in resumed.stderr
    assert_same_run(out, straight_run)


def test_sigterm_saves_exits_cleanly_and_resumes(tmp_path, straight_run, tiny_bert_dir, data_dir):
    out = tmp_path / "preempted"
    proc = start_run(train_command(tiny_bert_dir, data_dir, out))
    wait_for(lambda: (out / "metrics.jsonl").exists() and len(logged_losses(out)) >= 3, proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and time.monotonic() - sent < 10, stderr[-2000:]
    last = max(logged_losses(out))
    assert last < TOTAL_STEPS
    assert f"jaxqa: stopped by SIGTERM at step {last}/{TOTAL_STEPS}; checkpoint saved in " in stderr
    assert "--resume_from_checkpoint auto" in stderr.splitlines()[-1]
    assert (out / f"checkpoints/{last}").is_dir()

    resumed = resume_run(tiny_bert_dir, data_dir, out)
    assert f"step {last} of {TOTAL_STEPS}" in resumed.stderr
    assert_same_run(out, straight_run)


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, tiny_bert_dir, caplog):
    import jax

    from jaxqa.checkpoint import Checkpointer
    from jaxqa.config import RunConfig
    from jaxqa.train_state import create_train_state

    state = create_train_state(RunConfig(), tiny_bert_dir, total_steps=10)
    checkpointer, saved = Checkpointer(tmp_path, keep=3), {}
    for step in (1, 2):
        state = state.replace(step=state.step + 1, params=jax.tree.map(lambda x: x + 1, state.params))
        checkpointer.save(state, {"step": step})
        saved[step] = [np.array(x) for x in jax.tree.leaves(state.params)]
    checkpointer.wait()
    files = sorted((tmp_path / "checkpoints/2/state").rglob("d/*"), key=lambda f: f.stat().st_size)
    os.truncate(files[-1], files[-1].stat().st_size // 2)  # the biggest data file, cut in half

    restored, meta = Checkpointer(tmp_path, keep=3).restore(state)
    assert meta["step"] == 1 and int(restored.step) == 1
    for a, b in zip(jax.tree.leaves(restored.params), saved[1]):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert any("checkpoints/2 is damaged or incomplete" in r.getMessage() and "trying the previous one"
               in r.getMessage() for r in caplog.records)


def test_keeps_the_newest_plus_the_best(tmp_path, tiny_bert_dir):
    from jaxqa.checkpoint import Checkpointer
    from jaxqa.config import RunConfig
    from jaxqa.train_state import create_train_state

    state = create_train_state(RunConfig(), tiny_bert_dir, total_steps=10)
    checkpointer = Checkpointer(tmp_path, keep=2, best_metric="f1")
    for step, f1 in [(1, 30.0), (2, 55.0), (3, 40.0), (4, None), (5, None)]:
        checkpointer.save(state, {"step": step}, metrics=None if f1 is None else {"f1": f1, "exact_match": 1.0})
    checkpointer.wait()
    assert checkpointer.steps() == [2, 4, 5] and checkpointer.best() == (2, 55.0)


def test_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_bert_dir, data_dir):
    out = tmp_path / "diverged"
    cmd = train_command(tiny_bert_dir, data_dir, out)
    cmd[cmd.index("--learning_rate") + 1] = "1e30"
    cmd[cmd.index("--save_steps") + 1] = "1"
    cmd[cmd.index("--logging_steps") + 1] = "5"
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"jaxqa: error: step (\d+): the (loss is nan|parameters became NaN/inf); training stopped "
                         r"\(the last good checkpoint is (.+)/(\d+)\)\. Lower --learning_rate .*", last)
    assert match, last
    bad, good = int(match.group(1)), int(match.group(4))
    assert good < bad and max(int(p.name) for p in (out / "checkpoints").iterdir()) == good


def test_restore_onto_another_mesh(tmp_path, tiny_bert_dir):
    """Saved sharded over data=2,fsdp=2,tensor=2 (8 fake CPU devices), restored onto data=8: identical."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests/checkpoint_mesh_worker.py"), str(tiny_bert_dir),
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["all_equal"] and result["arrays"] > 50 and result["step"] == result["meta_step"] == 5
    assert result["saved_spec"] == "P('fsdp', 'tensor')" and result["restored_spec"] == "P(None, None)"
    assert result["restored_mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
