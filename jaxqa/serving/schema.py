"""The body of `POST /v1/answer`, checked field by field: anything a client can get wrong is a `RequestError`
(a 4xx naming the field), never an exception deeper in.

    {"question": Q, "context": C}                   one passage
    {"question": Q, "contexts": [C1, C2, ...]}      a reader over several: the best answers across them
    [{...}, {...}]                                  several questions in one request
    {"inputs": {"question": Q, "context": C}, "parameters": {...}}   Hugging Face's inference API form

with the parameters as Hugging Face's question-answering API names them, next to the question or under
"parameters": top_k, max_answer_len, doc_stride, max_seq_len, max_question_len, handle_impossible_answer.
"""

from __future__ import annotations

import dataclasses
import json

TEXTS = ("question", "context", "contexts")
INTS = ("top_k", "max_answer_len", "doc_stride", "max_seq_len", "max_question_len")
PARAMETERS = (*INTS, "handle_impossible_answer")


class RequestError(Exception):
    """A bad request: its HTTP status, the field at fault and a one-line message saying what to send instead."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.status, self.field, self.kind = status, field, {400: "bad_json", 413: "too_large"}.get(status, "invalid")

    def body(self) -> dict:
        return {"error": str(self), "field": self.field}


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the server takes: its answerer's longest window and n-best size, how many passages a request
    may hold, the tokenizer's special tokens per window."""

    max_seq_length: int
    n_best_size: int
    max_passages: int
    special_tokens: int


@dataclasses.dataclass(frozen=True)
class Item:
    """One question with its passage(s). `key` is what the batcher groups by: requests with the same windows,
    answer length and no-answer rule run together."""

    question: str
    contexts: tuple[str, ...]
    several: bool  # given as "contexts": each answer names its passage
    top_k: int
    key: tuple  # (max_seq_length, doc_stride, max_query_length, max_answer_length, handle_impossible_answer)


@dataclasses.dataclass(frozen=True)
class Query:
    items: tuple[Item, ...]
    listed: bool  # the body was a list: the response is a list too

    @property
    def pairs(self) -> int:
        return sum(len(item.contexts) for item in self.items)


def parse(body: bytes, limits: Limits) -> Query:
    """The checked request, or a `RequestError` for the first thing wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, a 5,000-digit number, nesting too deep
        raise RequestError(400, "body", f"not JSON ({getattr(err, 'msg', type(err).__name__)}); send "
                                        '{"question": "...", "context": "..."}') from None
    listed = isinstance(data, list)
    if listed and not data:
        raise RequestError(422, "body", "an empty list; send at least one {\"question\", \"context\"} object")
    objects = data if listed else [data]
    items = tuple(_item(obj, f"[{i}]." if listed else "", limits) for i, obj in enumerate(objects))
    query = Query(items, listed)
    if query.pairs > limits.max_passages:
        raise RequestError(422, "contexts", f"{query.pairs} passages in one request, more than this server's "
                                            f"--max_passages {limits.max_passages}; send fewer per request")
    return query


def _item(obj, where: str, limits: Limits) -> Item:
    if not isinstance(obj, dict):
        raise RequestError(422, where.rstrip(".") or "body", f"a JSON {type(obj).__name__}, not an object "
                                                             '{"question": "...", "context": "..."}')
    obj = _flattened(obj, where)
    unknown = sorted(set(obj) - set(TEXTS) - set(PARAMETERS))
    if unknown:
        raise RequestError(422, where + unknown[0], f"unknown field; the fields are {', '.join(TEXTS)} and the "
                                                    f"parameters {', '.join(PARAMETERS)}")
    question = _text(obj.get("question"), where + "question")
    if ("context" in obj) == ("contexts" in obj):
        raise RequestError(422, where + "context", "give either \"context\" (one passage) or \"contexts\" (a list)")
    several = "contexts" in obj
    if several:
        passages = obj["contexts"]
        if not isinstance(passages, list) or not passages:
            raise RequestError(422, where + "contexts", "must be a non-empty list of passages (strings)")
        contexts = tuple(_text(c, f"{where}contexts[{i}]") for i, c in enumerate(passages))
    else:
        contexts = (_text(obj["context"], where + "context"),)
    return Item(question, contexts, several, obj.get("top_k", 1), _key(obj, where, limits))


def _flattened(obj: dict, where: str) -> dict:
    """Hugging Face's {"inputs": {...}, "parameters": {...}} as one flat object."""
    if "inputs" not in obj:
        return obj
    inputs, parameters = obj["inputs"], obj.get("parameters", {})
    if set(obj) - {"inputs", "parameters"}:
        raise RequestError(422, where + sorted(set(obj) - {"inputs", "parameters"})[0],
                           "beside \"inputs\" only \"parameters\" may be given")
    for name, value in (("inputs", inputs), ("parameters", parameters)):
        if not isinstance(value, dict):
            raise RequestError(422, where + name, f"must be an object, not a JSON {type(value).__name__}")
    clash = sorted(set(inputs) & set(parameters))
    if clash:
        raise RequestError(422, f"{where}parameters.{clash[0]}", "given in both inputs and parameters")
    return {**inputs, **parameters}


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise RequestError(422, field, "missing: it is required" if value is None else
                           f"must be a string, not a JSON {type(value).__name__}")
    if not value.strip():
        raise RequestError(422, field, "is empty; send the text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(422, field, "holds a lone surrogate (\\ud800-\\udfff escape): not text") from None
    return value


def _key(obj: dict, where: str, limits: Limits) -> tuple:
    """The parameters, each checked against its range: (window length, stride, question length, answer length,
    handle_impossible_answer), None where not given (the model's own)."""
    for name in INTS:
        value = obj.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RequestError(422, where + name, f"must be an integer, not a JSON {type(value).__name__}")
    seq = obj.get("max_seq_len")
    longest = seq or limits.max_seq_length
    ranges = {"top_k": (1, limits.n_best_size), "max_seq_len": (limits.special_tokens + 2, limits.max_seq_length),
              "max_answer_len": (1, longest), "doc_stride": (1, longest - limits.special_tokens - 2),
              "max_question_len": (1, longest - limits.special_tokens - 1)}
    for name, (low, high) in ranges.items():
        value = obj.get(name)
        if value is not None and not low <= value <= high:
            raise RequestError(422, where + name, f"{value} is out of range: between {low} and {high}"
                               + (" (this server's --max_seq_length)" if name == "max_seq_len" else ""))
    impossible = obj.get("handle_impossible_answer")
    if impossible is not None and not isinstance(impossible, bool):
        raise RequestError(422, where + "handle_impossible_answer", "must be true or false")
    return (seq, obj.get("doc_stride"), obj.get("max_question_len"), obj.get("max_answer_len"), impossible)
