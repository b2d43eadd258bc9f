"""Shared fixtures: the real data in ../shared/data, the packaged MiniLM, a tiny random BERT."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"the shared data is missing: expected {DATA} (see ../shared/data/README.md)")


def require(module: str):
    """`import module` for a test reference (torch, nbclient, ...): a skip, with the reason, where it is
    not installed, but a failure under CI (CI=true), where a skip would let the check silently not run."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        message = f"{module} is needed by this test and cannot be imported ({err}); pip install -e '.[test]'"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)


def primitives(jaxpr) -> set[str]:
    """Names of the primitives in `jaxpr` and in every program nested in it."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                    names |= primitives(getattr(sub, "jaxpr", sub))
    return names


def model_graphdef(model_config, **options):
    """The graphdef of an EncoderForQuestionAnswering of `model_config` built with `options` (e.g.
    attention_kernel="xla"), for the params `train_state.load_model` gives."""
    from flax import nnx

    from jaxqa.models.encoder import EncoderForQuestionAnswering

    return nnx.split(nnx.eval_shape(lambda: EncoderForQuestionAnswering(model_config, rngs=nnx.Rngs(params=0),
                                                                        **options)), nnx.Param)[0]


@contextlib.contextmanager
def dot_product_attention_calls(monkeypatch):
    """The query shapes of every `jax.nn.dot_product_attention` call made inside the block, so a test
    can check that the kernel it compares did run."""
    import jax

    calls, kernel = [], jax.nn.dot_product_attention

    def spy(query, *args, **kwargs):
        calls.append(query.shape)
        return kernel(query, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(jax.nn, "dot_product_attention", spy)
        yield calls


# JAX's cache locks each read and write of an entry once it has a size limit (its LRU eviction): with
# one, test workers and their run_qa.py processes can share one cache directory safely.
SHARED_CACHE_MAX_BYTES = 16 << 30


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """One JAX compilation cache for every run of the session, in-process or run_qa.py subprocesses,
    on every xdist worker (through the JAX_COMPILATION_CACHE_DIR default): a program that two tests
    compile is compiled once. Tests of compilation itself pass their own directory or 'none'."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        yield os.environ["JAX_COMPILATION_CACHE_DIR"]
        return
    import jax

    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "jax_cache"
    cache.mkdir(exist_ok=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_COMPILATION_CACHE_MAX_SIZE=str(SHARED_CACHE_MAX_BYTES))
    jax.config.update("jax_compilation_cache_max_size", SHARED_CACHE_MAX_BYTES)
    yield str(cache)
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    os.environ.pop("JAX_COMPILATION_CACHE_MAX_SIZE", None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from jaxqa.models.weights import packaged_model_dir

    return packaged_model_dir()


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir):
    from jaxqa.data.features import load_tokenizer

    return load_tokenizer(minilm_dir)


def once_per_session(tmp_path_factory, name: str, make) -> Path:
    """A directory filled by `make(directory)` once for the whole test session: under xdist the first
    worker that needs it makes it where every worker can read it, and the others wait on a file lock."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp(name)
        make(out)
        return out
    import filelock

    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this session
    out, done = root / name, root / f"{name}.done"
    with filelock.FileLock(str(root / f"{name}.lock")):
        if not done.exists():  # not made yet, or a worker failed making it: (re)make it
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            make(out)
            done.touch()
    return out


TINY_CONFIG = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=512, type_vocab_size=2,
                   hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def save_tiny_bert(out: Path, minilm_dir: Path, **overrides) -> Path:
    """A random BertForQuestionAnswering of TINY_CONFIG (+ overrides) saved by `transformers`
    (PyTorch) into `out`, with MiniLM's tokenizer."""
    torch = require("torch")
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(**{**TINY_CONFIG, **overrides}))
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    """A random tiny BertForQuestionAnswering saved by `transformers` (PyTorch) with MiniLM's tokenizer;
    one directory for every worker, so runs started by one can be resumed by another (same model path)."""
    return once_per_session(tmp_path_factory, "tiny_bert", lambda out: save_tiny_bert(out, minilm_dir))


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def family_tokenizers(data_dir, minilm_dir) -> dict:
    """Tokenizer per encoder family: BPE (RoBERTa) and Unigram (XLM-R, ALBERT) trained here on SQuAD
    text in about 2 s, MiniLM's WordPiece directory for the BERT-vocabulary families."""
    import tiny_tokenizers

    texts = tiny_tokenizers.corpus(data_dir)
    bpe = tiny_tokenizers.bpe_roberta(texts)
    return {"bert": minilm_dir, "electra": minilm_dir, "distilbert": minilm_dir, "roberta": bpe,
            "xlm-roberta": tiny_tokenizers.unigram_xlmr(texts), "albert": tiny_tokenizers.unigram_albert(texts)}


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory, family_tokenizers):
    """`tiny_family_dir(family)`: a random tiny `transformers` `*ForQuestionAnswering` of that family
    saved with its tokenizer (made once per session)."""
    require("torch")
    import tiny_tokenizers

    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            out = tmp_path_factory.mktemp(f"tiny_{family}")
            made[family] = tiny_tokenizers.save_tiny_model(out, family, family_tokenizers[family])
        return made[family]

    return get


# The reference training run of the checkpoint and fault-injection tests, and helpers to start, stop,
# resume and compare it.
SAVE_STEPS, TOTAL_STEPS = 10, 23  # 120 questions: 9 steps of 16 per epoch (length buckets)


def train_command(model_dir, data_dir, out: Path, *extra) -> list[str]:
    """A run of 23 steps with dropout over 2.5 epochs: step 10 is early in the second epoch."""
    args = ["--model_name_or_path", model_dir, "--train_file", data_dir / "squad_v1.1/train.json",
            "--max_train_samples", 120, "--do_train", "--max_seq_length", 256, "--doc_stride", 128,
            "--per_device_train_batch_size", 16, "--num_train_epochs", 2.5, "--learning_rate", 3e-4,
            "--warmup_ratio", 0.2, "--weight_decay", 0.01, "--seed", 7, "--logging_steps", 1,
            "--layerwise_lr_decay", 0.9, "--ema_decay", 0.9,  # resumed exactly too (the EMA is exported)
            "--save_steps", SAVE_STEPS, "--output_dir", out, "--accelerator", "cpu", *extra]
    return [sys.executable, str(ROOT / "run_qa.py"), *map(str, args)]


def logged_losses(out: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def final_weights(out: Path) -> dict[str, np.ndarray]:
    from jaxqa.models.weights import read_checkpoint

    return read_checkpoint(out / "model")


def start_run(cmd) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "TQDM_DISABLE": "1"})


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before the test could stop it: "
                        f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the run")
        time.sleep(0.005)


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory, tiny_bert_dir, data_dir) -> Path:
    """The reference run, never interrupted (made once per session: the tiny BERT is the same seeded
    model in every worker)."""
    def make(out: Path) -> None:
        proc = subprocess.run(train_command(tiny_bert_dir, data_dir, out), capture_output=True, text=True,
                              cwd=ROOT, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert max(logged_losses(out)) == TOTAL_STEPS

    return once_per_session(tmp_path_factory, "straight", make)


def resume_run(tiny_bert_dir, data_dir, out: Path, *extra) -> subprocess.CompletedProcess:
    proc = subprocess.run(train_command(tiny_bert_dir, data_dir, out, *extra, "--resume_from_checkpoint", "auto"),
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_same_run(out: Path, straight: Path) -> None:
    """Every logged loss and every final parameter bitwise equal to the reference run's."""
    expected, got = logged_losses(straight), logged_losses(out)
    assert sorted(got) == list(range(1, TOTAL_STEPS + 1))
    assert got == expected  # every step's loss, exactly (JSON floats round-trip)
    reference = final_weights(straight)
    for name, value in final_weights(out).items():
        np.testing.assert_array_equal(value, reference[name], err_msg=name)


def newest_checkpoint(out: Path) -> int:
    """Step of the newest finished checkpoint in `out` (Orbax renames a save into place when done), or 0."""
    steps = [int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit()]
    return max(steps, default=0)


def assert_outputs_whole(out: Path) -> list[str]:
    """Every visible file of `out` is complete (checkpoints and TensorBoard events aside: Orbax and the
    event writer keep their own); the model directory is absent or whole. Returns the files checked."""
    from safetensors.numpy import load_file

    checked = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if not path.is_file() or rel.parts[0] in ("checkpoints", "tensorboard") or \
                any(part.startswith(".") for part in rel.parts):
            continue
        data = path.read_bytes()
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        elif path.suffix == ".png":
            assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), rel
        elif path.suffix == ".safetensors":
            assert load_file(path), rel
        checked.append(str(rel))
    model = out / "model"
    if model.exists():
        names = {p.name for p in model.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names, names
    return checked
