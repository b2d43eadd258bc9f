"""Checkpoints: a killed or preempted run resumes to the very same result; damage is survived."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import (
    ROOT,
    SAVE_STEPS,
    TOTAL_STEPS,
    assert_same_run,
    logged_losses,
    newest_checkpoint,
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
    # Frozen while the signal arrives, so the steps it had logged (each step's loss is logged, and
    # flushed, before the next starts) are known exactly: the run may finish the step in flight, not
    # start another after it.
    proc.send_signal(signal.SIGSTOP)
    logged_at_signal = max(logged_losses(out))
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    last = max(logged_losses(out))
    assert logged_at_signal <= last <= logged_at_signal + 1 and last < TOTAL_STEPS, (logged_at_signal, last)
    assert sorted(logged_losses(out)) == list(range(1, last + 1))
    assert newest_checkpoint(out) == last  # the state saved is that of the last step run
    assert f"jaxqa: stopped by SIGTERM at step {last}/{TOTAL_STEPS}; checkpoint saved in " in stderr
    assert "--resume_from_checkpoint auto" in stderr.splitlines()[-1]
    assert (out / f"checkpoints/{last}").is_dir()

    resumed = resume_run(tiny_bert_dir, data_dir, out)
    assert f"step {last} of {TOTAL_STEPS}" in resumed.stderr
    assert_same_run(out, straight_run)


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, tiny_bert_dir, caplog):
    import jax

    from jaxqa.config import RunConfig
    from jaxqa.training.checkpoint import Checkpointer
    from jaxqa.training.train_state import create_train_state

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
    from jaxqa.config import RunConfig
    from jaxqa.training.checkpoint import Checkpointer
    from jaxqa.training.train_state import create_train_state

    state = create_train_state(RunConfig(), tiny_bert_dir, total_steps=10)
    checkpointer = Checkpointer(tmp_path, keep=2, best_metric="f1")
    for step, f1 in [(1, 30.0), (2, 55.0), (3, 40.0), (4, None), (5, None)]:
        checkpointer.save(state, {"step": step}, metrics=None if f1 is None else {"f1": f1, "exact_match": 1.0})
    checkpointer.wait()
    assert checkpointer.steps() == [2, 4, 5] and checkpointer.best() == (2, 55.0)


def test_best_model_at_end_and_early_stopping_survive_a_resume(tmp_path, tiny_bert_dir, data_dir, monkeypatch):
    """Real training, checkpoints and export; only the in-loop F1 is scripted. Evaluations at steps 2, 4, 6,
    8: the best is step 4 (30.0), then two without a better one, so patience 2 stops the run at step 8.
    The exported model and the final evaluation are step 4's; a resumed run trains nothing more."""
    from jaxqa.config import RunConfig
    from jaxqa.models.loading import load_model
    from jaxqa.training.checkpoint import Checkpointer
    from jaxqa.training.trainer import Trainer

    scripted = {2: 10.0, 4: 30.0, 6: 20.0, 8: 30.0, 10: 99.0}
    real_evaluate = Trainer.evaluate

    def evaluate(self, split="eval", write_files=True):
        return real_evaluate(self, split, write_files) if write_files else {"f1": scripted[self.state_step]}

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    config = RunConfig(model_name_or_path=str(tiny_bert_dir), train_file=str(data_dir / "squad_v1.1/train.json"),
                       validation_file=str(data_dir / "squad_v1.1/dev.json"), max_train_samples=96,
                       max_eval_samples=16, do_train=True, do_eval=True, eval_steps=2, load_best_model_at_end=True,
                       early_stopping_patience=2, max_seq_length=128, doc_stride=64, pad_to_max_length=True,
                       per_device_train_batch_size=8, num_train_epochs=1.0, learning_rate=1e-3, save_total_limit=1,
                       logging_steps=1, output_dir=str(tmp_path / "run"), accelerator="cpu")
    trainer = Trainer(config)
    assert trainer.total_steps > 10
    trainer.fit()
    logged = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in logged if "loss" in r) == 8
    checkpoints = Checkpointer(tmp_path / "run", keep=None, best_metric=None)
    assert checkpoints.steps() == [4, 8]  # the newest and the best
    best, last = (checkpoints.restore(trainer.state, step)[0].params for step in (4, 8))
    _, exported, _ = load_model(tmp_path / "run/model")
    for got, want in zip(jax.tree.leaves(exported), jax.tree.leaves(best)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(last)))
    assert trainer.evaluate()["step"] == 4
    checkpoints.close()

    resumed = Trainer(dataclasses.replace(config, resume_from_checkpoint="auto"))
    assert resumed.state_step == 8 and resumed.parts.checkpoints.selection.stopped
    resumed.fit()
    assert resumed.state_step == 4
    _, again, _ = load_model(tmp_path / "run/model")
    for got, want in zip(jax.tree.leaves(again), jax.tree.leaves(best)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_bert_dir, data_dir):
    out = tmp_path / "diverged"
    cmd = train_command(tiny_bert_dir, data_dir, out, "--max_seq_length", 128, "--doc_stride", 32)  # (2 programs, not 4)
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


def test_resume_on_another_device_count_keeps_the_global_batch_or_refuses(tmp_path, straight_run, tiny_bert_dir,
                                                                           data_dir):
    """The straight run (1 device x 16 rows) resumed from its step-20 checkpoint on 2 devices: 2 x 16 rows
    would be another data order and schedule, so it is refused naming both batches; 2 x 8 rows resumes
    the same run (losses equal up to the two devices' summation order)."""
    out = tmp_path / "moved"
    shutil.copytree(straight_run, out, ignore=shutil.ignore_patterns("23", "model"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["20"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "TQDM_DISABLE": "1"}
    cmd = train_command(tiny_bert_dir, data_dir, out, "--resume_from_checkpoint", "auto")
    refused = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "that run's global batch was 16 rows per step, this one's is 32 rows per step " \
           "(--per_device_train_batch_size 16 x 2 device(s)" in refused.stderr.splitlines()[-1]
    assert "pass --per_device_train_batch_size 8 to keep it on this mesh" in refused.stderr.splitlines()[-1]

    per_device = cmd.index("--per_device_train_batch_size") + 1
    resumed = subprocess.run(cmd[:per_device] + ["8"] + cmd[per_device + 1:], capture_output=True, text=True,
                             cwd=ROOT, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"step 20 of {TOTAL_STEPS}" in resumed.stderr
    expected, got = logged_losses(straight_run), logged_losses(out)
    assert sorted(got) == list(range(1, TOTAL_STEPS + 1))
    assert max(abs(got[s] - expected[s]) for s in range(21, TOTAL_STEPS + 1)) < 1e-5, (got, expected)


def test_every_checkpoint_damaged_refuses_to_start_over_silently(tmp_path, straight_run, tiny_bert_dir, data_dir):
    """Both kept checkpoints (20, 23) cut in half: resuming names them and stops instead of training
    from step 0 as if none had been written."""
    out = tmp_path / "damaged"
    shutil.copytree(straight_run, out, ignore=shutil.ignore_patterns("model"))
    for step in (20, TOTAL_STEPS):
        files = sorted((out / f"checkpoints/{step}/state").rglob("d/*"), key=lambda f: f.stat().st_size)
        os.truncate(files[-1], files[-1].stat().st_size // 2)
    proc = subprocess.run(train_command(tiny_bert_dir, data_dir, out, "--resume_from_checkpoint", "auto"),
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    # The error line, not the last one: orbax-checkpoint 0.12.8's failed reads print "Event loop is closed"
    # tracebacks from their threads after it (noise on stderr; the refusal and exit status are ours).
    errors = [line for line in proc.stderr.splitlines() if line.startswith("jaxqa: error:")]
    assert len(errors) == 1 and f"is damaged or incomplete (step(s) 20, {TOTAL_STEPS}); nothing to resume from. " \
           "Pass --overwrite_output_dir" in errors[0], proc.stderr[-2000:]
    assert not (out / "model").exists() and max(logged_losses(out)) == TOTAL_STEPS  # nothing overwritten


def test_a_consumer_stopping_early_stops_and_joins_the_batch_producer():
    """A consumer of the prefetched batches that stops early (an error, a KeyboardInterrupt): the producer
    thread must stop and be joined, not be left inside a device transfer while the interpreter exits."""
    import threading

    from jaxqa.scoring.inference import prefetch

    produced, before = [], set(threading.enumerate())

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    batches = prefetch(items(), size=2)
    assert next(batches) == 0
    batches.close()
    assert set(threading.enumerate()) == before and len(produced) < 10


def test_sigterm_before_training_exits_cleanly_with_nothing_half_written(tmp_path, tiny_bert_dir, data_dir):
    """SIGTERM while evaluating before training (set-up done: run_config.json is written): a one-line
    message and the conventional exit status instead of a kill; no checkpoint, no partial output."""
    from conftest import assert_outputs_whole

    out = tmp_path / "early"
    proc = start_run(train_command(tiny_bert_dir, data_dir, out, "--do_eval", "--eval_before_training",
                                   "--validation_file", data_dir / "squad_v1.1/dev.json"))
    wait_for(lambda: (out / "run_config.json").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("jaxqa: stopped by SIGTERM outside the train loop (")
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
    assert not (out / "before_training_results.json").exists()
    assert sorted(assert_outputs_whole(out)) == ["run_config.json"]
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))]


STOPPED_MID_WRITE = """
import gc, os, signal, sys
from jaxqa import atomic, cli
out, signum = sys.argv[1], int(sys.argv[2])
with cli.stop_signals_end_the_process(), atomic.replacing(out + "/half.json") as tmp:  # as cli.main runs
    atomic.write_text(out + "/whole.json", "{}")
    open(tmp, "w").write('{"f1": 1')
    # the signal lands while the interpreter runs a garbage-collection callback (JAX registers one)
    gc.callbacks.append(lambda phase, info: os.kill(os.getpid(), signum) if phase == "start" else None)
    gc.collect()
    print("went on after the signal")
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_outside_the_train_loop_is_never_lost_and_leaves_no_temporary(tmp_path, signum):
    """Stopped mid-write by a SIGTERM or a Ctrl-C that arrives during a garbage-collection callback: the
    process exits at once with 128 + the signal and the one-line message; the file written before is whole,
    the one being written is absent, its temporary removed. (Raised as an exception from the handler, as
    Python's KeyboardInterrupt is, the signal was swallowed by the callback and the run went on to its end:
    seen in 2 of 20 runs of the test above.)"""
    proc = subprocess.run([sys.executable, "-c", STOPPED_MID_WRITE, str(tmp_path), str(int(signum))],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (proc.returncode, proc.stdout) == (128 + signum, ""), proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1].startswith(f"jaxqa: stopped by {signum.name} outside the train loop (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole.json"]


def _policy(tiny_bert_dir, out, **settings):
    """A CheckpointPolicy of `out` as a run with `settings` opens it, and that run's initial state."""
    from jaxqa.config import RunConfig
    from jaxqa.training.checkpoint import CheckpointPolicy, DataPosition
    from jaxqa.training.train_state import create_train_state

    config = RunConfig(model_name_or_path=str(tiny_bert_dir), output_dir=str(out), **settings)
    position = DataPosition(steps_per_epoch=5, global_batch=8, num_train_features=40, devices=1,
                            per_device_batch=8, accumulation=1)
    return CheckpointPolicy(config, out, position), create_train_state(config, tiny_bert_dir, total_steps=10)


def _save(policy, state, step: int) -> None:
    policy.save(step, state.replace(step=step), {"loss": np.float32(1.0), "params_finite": True}, None)
    policy.wait()


def test_resuming_another_run_into_an_output_dir_with_checkpoints_is_refused(tmp_path, tiny_bert_dir):
    """--resume_from_checkpoint other/checkpoints/3 --output_dir O, O holding checkpoints 2 and 4 of its own
    run: refused, naming O's newest step, and O's checkpoints are kept (they were deleted by
    --save_total_limit as the resumed run saved); --overwrite_output_dir deletes them and resumes."""
    from jaxqa.errors import ConfigError

    other, out = tmp_path / "other", tmp_path / "out"
    policy, state = _policy(tiny_bert_dir, other)
    _save(policy, state, 3)
    policy.checkpointer.close()
    policy, _ = _policy(tiny_bert_dir, out)
    for step in (2, 4):
        _save(policy, state, step)
    policy.checkpointer.close()

    source = str(other / "checkpoints/3")
    policy, _ = _policy(tiny_bert_dir, out, resume_from_checkpoint=source)
    with pytest.raises(ConfigError, match=re.escape(
            f"--output_dir {out} already holds checkpoints of a run (newest: step 4); resuming {source} there "
            "would mix the two runs: choose another --output_dir, pass --resume_from_checkpoint auto")):
        policy.open(state, 10)
    assert policy.checkpointer.steps() == [2, 4]
    policy.checkpointer.close()

    # --overwrite_output_dir with settings that the other run's checkpoint refuses: O's checkpoints stay
    policy, _ = _policy(tiny_bert_dir, out, resume_from_checkpoint=source, overwrite_output_dir=True,
                        layerwise_lr_decay=0.9)
    with pytest.raises(ConfigError, match="settings differ from that run .*choose a checkpoint of these settings"):
        policy.open(state, 10)
    assert policy.checkpointer.steps() == [2, 4]
    policy.checkpointer.close()

    policy, _ = _policy(tiny_bert_dir, out, resume_from_checkpoint=source, overwrite_output_dir=True)
    assert int(policy.open(state, 10).step) == 3 and policy.checkpointer.steps() == []
    policy.checkpointer.close()


def test_a_checkpoint_without_the_newer_identity_fields_resumes_with_their_defaults(tmp_path, tiny_bert_dir):
    """A checkpoint written before --on_eval_overlap, --layerwise_lr_decay, --ema_decay and
    --early_stopping_patience were recorded: that run had their defaults, so a resume with the defaults
    goes on, and one with another value is refused naming the default as the old setting."""
    from jaxqa.errors import ConfigError

    policy, state = _policy(tiny_bert_dir, tmp_path)
    _save(policy, state, 3)
    policy.checkpointer.close()
    newer = ("on_eval_overlap", "layerwise_lr_decay", "ema_decay", "early_stopping_patience")
    meta_file = tmp_path / "checkpoints/3/meta/metadata"  # Orbax's JSON item
    meta = json.loads(meta_file.read_text())
    assert all(name in meta["identity"] for name in newer)
    meta["identity"] = {k: v for k, v in meta["identity"].items() if k not in newer}
    meta_file.write_text(json.dumps(meta))

    policy, _ = _policy(tiny_bert_dir, tmp_path, resume_from_checkpoint="auto")
    assert int(policy.open(state, 10).step) == 3
    policy.checkpointer.close()
    policy, _ = _policy(tiny_bert_dir, tmp_path, resume_from_checkpoint="auto", layerwise_lr_decay=0.9)
    with pytest.raises(ConfigError, match=r"settings differ from that run \(--layerwise_lr_decay 1\.0 -> 0\.9\)"):
        policy.open(state, 10)
    policy.checkpointer.close()


def test_a_run_resumed_in_another_dtype_is_told_the_one_it_computed_in(tmp_path, tiny_bert_dir):
    """--dtype auto resolves by device: resumed where it resolves otherwise (another machine, a newer default),
    a float32 run is refused, the message naming the flag that resumes it."""
    from jaxqa.errors import ConfigError

    policy, state = _policy(tiny_bert_dir, tmp_path, dtype="float32")
    _save(policy, state, 3)
    policy.checkpointer.close()
    policy, _ = _policy(tiny_bert_dir, tmp_path, resume_from_checkpoint="auto", dtype="bfloat16")
    with pytest.raises(ConfigError, match=re.escape(
            "settings differ from that run (--dtype 'float32' -> 'bfloat16'); rerun with the same settings "
            "(--dtype float32: that run's compute dtype), or pass --overwrite_output_dir to start afresh")):
        policy.open(state, 10)
    policy.checkpointer.close()


def test_sigterm_during_an_evaluation_in_the_loop_saves_at_once_and_the_resumed_run_redoes_it(
        tmp_path, tiny_bert_dir, data_dir):
    """SIGTERM while the step-2 evaluation (30 batches) is under way: it is given up within two batches (a
    preemption's grace is shorter than an evaluation), the step-2 checkpoint is written and the run stops;
    the resumed run does that evaluation first. Its evaluations, kept checkpoints (newest and best) and
    final weights equal those of a run never stopped."""
    import signal as signals

    from jaxqa.config import RunConfig
    from jaxqa.errors import Interrupted
    from jaxqa.training.checkpoint import Checkpointer
    from jaxqa.training.trainer import Trainer

    def config(out, **more):
        return RunConfig(model_name_or_path=str(tiny_bert_dir), train_file=str(data_dir / "squad_v1.1/train.json"),
                         validation_file=str(data_dir / "squad_v1.1/dev.json"), max_train_samples=16,
                         max_eval_samples=24, per_device_eval_batch_size=2, do_train=True, do_eval=True,
                         eval_steps=2, max_seq_length=128, doc_stride=64, pad_to_max_length=True,
                         per_device_train_batch_size=8, num_train_epochs=1.0, learning_rate=1e-3,
                         save_total_limit=1, logging_steps=1, output_dir=str(out), accelerator="cpu", **more)

    def outcome(out, trainer):
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        evals = [{k: v for k, v in r["eval"].items() if k != "eval_seconds"} for r in records if "eval" in r]
        kept = Checkpointer(out, keep=None, best_metric=None)
        steps = {s: (kept.read_meta(s).get("metrics") or {}).get("f1") for s in kept.steps()}
        kept.close()
        return evals, steps, [np.asarray(x) for x in jax.tree.leaves(trainer.state.params)]

    straight = Trainer(config(tmp_path / "straight"))
    straight.fit()
    expected = outcome(tmp_path / "straight", straight)
    assert [e["step"] for e in expected[0]] == [2, 4] and sorted(expected[1]) == [4, 5]  # the best, the last

    out = tmp_path / "stopped"
    trainer, calls = Trainer(config(out)), []
    forward = trainer.parts.predictor.forward

    def forward_then_sigterm(weights, batch):
        calls.append(int(trainer.state.step))
        if len(calls) == 3:
            os.kill(os.getpid(), signals.SIGTERM)
        return forward(weights, batch)

    trainer.parts.predictor = dataclasses.replace(trainer.parts.predictor, forward=forward_then_sigterm)
    with pytest.raises(Interrupted, match=r"stopped by SIGTERM at step 2/\d+; checkpoint saved in "):
        trainer.fit()
    assert len(calls) <= 5 and set(calls) == {2}, calls  # of the 30 batches
    assert trainer.parts.checkpoints.checkpointer.steps() == [2]
    trainer.parts.checkpoints.checkpointer.close()
    trainer.reporter.run_log.close()

    resumed = Trainer(config(out, resume_from_checkpoint="auto"))
    assert resumed.state_step == 2
    resumed.fit()
    got = outcome(out, resumed)
    assert got[0] == expected[0] and got[1] == expected[1]
    for a, b in zip(got[2], expected[2]):
        np.testing.assert_array_equal(a, b)
