"""`jaxqa serve` (issue 33): the real server process on a free loopback port, spoken to over HTTP with httpx.
One server (the tiny BERT, windows of 128) is shared by the module; the SIGTERM test starts its own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, require

httpx = require("httpx")
require("starlette")
require("uvicorn")

WINDOWS = {"max_seq_length": 128, "doc_stride": 32, "max_query_length": 32}
FLAGS = ["--max_seq_length", "128", "--doc_stride", "32", "--max_query_length", "32", "--max_batch_size", "8",
         "--max_request_bytes", "20000"]


class Server:
    """A `python -m jaxqa serve` process on 127.0.0.1 (`ready()` waits for its programs to be compiled)."""

    def __init__(self, model: Path, log: Path, *flags: str):
        with socket.socket() as probe:  # a free port, given back for the server to take
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url, self.log = f"http://127.0.0.1:{self.port}", log
        with open(log, "w") as out:
            # float32 (as the answerer below): a row's scores then match to float32 rounding whatever batch it
            # ran in; bf16 rounds a row differently in batches of other shapes (~1e-3 relative).
            self.proc = subprocess.Popen([sys.executable, "-m", "jaxqa", "serve", "--model", str(model), "--host",
                                          "127.0.0.1", "--port", str(self.port), "--dtype", "float32", *flags],
                                         cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def ready(self) -> Server:
        deadline = time.monotonic() + 300
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"jaxqa serve did not become ready (rc {self.proc.returncode}):\n"
                            f"{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def post(self, body, client=httpx, **kwargs) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.post(f"{self.url}/v1/answer", content=content, timeout=60, **kwargs)

    def metrics(self) -> dict[str, float]:
        lines = httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines()
        return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines if line[:1] != "#")}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def servers(tiny_bert_dir, tmp_path_factory, request):
    """Both servers of the module, started together (each compiles its programs while the other does, and while
    this process loads the in-process answerer): the shared one, and the one the SIGTERM test stops, whose
    batches of up to 64 wait up to 10 s for a request that is arriving (windows of 64: 7 programs)."""
    logs = tmp_path_factory.mktemp("serve")
    started = {"shared": Server(tiny_bert_dir, logs / "shared.log", *FLAGS),
               "draining": Server(tiny_bert_dir, logs / "draining.log", "--max_seq_length", "64", "--doc_stride", "16",
                                  "--max_query_length", "16", "--max_batch_size", "64", "--max_wait_ms", "10000")}
    request.getfixturevalue("answerer")
    yield started
    for serving in started.values():
        assert serving.stop() == 0, serving.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def server(servers):
    return servers["shared"].ready()


@pytest.fixture(scope="module")
def answerer(tiny_bert_dir):
    from jaxqa.scoring.answer import QuestionAnswerer

    return QuestionAnswerer.from_pretrained(tiny_bert_dir, batch_size=8, dtype="float32", **WINDOWS)


@pytest.fixture(scope="module")
def dev(data_dir) -> list[dict]:
    """SQuAD v1.1 dev questions with their paragraphs (many longer than one 128-token window)."""
    articles = json.loads((data_dir / "squad_v1.1/dev.json").read_text(encoding="utf-8"))["data"]
    return [{"question": q["question"], "context": p["context"]} for a in articles for p in a["paragraphs"]
            for q in p["qas"][:1]]


def same_answers(served, expected) -> None:
    """Text and character offsets exactly; score and probability to float32 rounding (a row's logits may
    differ in the last bits with the batch it ran in)."""
    served, expected = (x if isinstance(x, list) else [x] for x in (served, expected))
    assert [(a["answer"], a["start"], a["end"]) for a in served] == \
        [(a["answer"], a["start"], a["end"]) for a in expected]
    for a, b in zip(served, expected):
        assert a["score"] == pytest.approx(b["score"], rel=1e-4, abs=1e-4)
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)


def test_served_answers_equal_the_answerers_in_process(server, answerer, dev):
    """24 dev questions from 8 clients at once, then a list of 6 in one request, then each parameter: the same
    answers as `QuestionAnswerer` in this process with the same settings (top_k: distinct spans, each once)."""
    pairs = dev[:24]
    expected = answerer.answer_batch([p["question"] for p in pairs], [p["context"] for p in pairs])
    with ThreadPoolExecutor(8) as pool:
        served = list(pool.map(server.post, pairs))
    assert [r.status_code for r in served] == [200] * 24
    for response, answer in zip(served, expected):
        same_answers(response.json(), answer)
    listed = server.post(pairs[:6])
    assert listed.status_code == 200 and len(listed.json()) == 6
    for answer, want in zip(listed.json(), expected[:6]):
        same_answers(answer, want)
    q, c = pairs[1]["question"], pairs[1]["context"]
    for parameters, settings in (({"top_k": 5}, {"top_k": 5}), ({"max_answer_len": 3}, {"max_answer_length": 3}),
                                 ({"max_seq_len": 64, "doc_stride": 16, "max_question_len": 16},
                                  {"max_seq_length": 64, "doc_stride": 16, "max_query_length": 16}),
                                 ({"handle_impossible_answer": True, "top_k": 2},
                                  {"null_score_diff_threshold": 0.0, "top_k": 2})):
        response = server.post({"question": q, "context": c, **parameters})
        assert response.status_code == 200, response.text
        want = answerer.answers([q], [c], **settings)[0]
        same_answers(response.json(), want if parameters.get("top_k", 1) > 1 else want[0])
        if "top_k" in parameters:
            spans = [(a["start"], a["end"]) for a in response.json()]
            assert len(spans) == len(set(spans)) == parameters["top_k"]
    hf_form = server.post({"inputs": {"question": q, "context": c}, "parameters": {"max_answer_len": 3}})
    same_answers(hf_form.json(), answerer.answers([q], [c], max_answer_length=3)[0][0])


def test_reader_mode_answers_from_the_passage_with_the_best_span(server, answerer, dev):
    """"contexts": the best span over all passages (by score), naming its passage; with top_k, the best spans
    across them in score order. Expected: each passage answered alone in this process."""
    question, passages = dev[3]["question"], [dev[i]["context"] for i in (7, 3, 11, 5)]
    alone = answerer.answers([question] * 4, passages, top_k=3)
    best = max(range(4), key=lambda p: alone[p][0]["score"])
    response = server.post({"question": question, "contexts": passages})
    assert response.status_code == 200, response.text
    assert response.json()["passage"] == best
    same_answers(response.json(), alone[best][0])
    assert passages[best][response.json()["start"]:response.json()["end"]] == response.json()["answer"]
    ranked = server.post({"question": question, "contexts": passages, "top_k": 3}).json()
    everything = sorted(((a["score"], p, a) for p, answers in enumerate(alone) for a in answers),
                        key=lambda t: -t[0])[:3]
    assert [a["passage"] for a in ranked] == [p for _, p, _ in everything]
    same_answers(ranked, [a for _, _, a in everything])


BAD = {  # body -> (status, field named)
    b'{"question": "Who?"': (400, "body"),
    b"\xff\xfe not utf-8": (400, "body"),
    b"[]": (422, "body"),
    b'"just text"': (422, "body"),
    b'{"context": "The Broncos won."}': (422, "question"),
    b'{"question": 7, "context": "The Broncos won."}': (422, "question"),
    b'{"question": "  ", "context": "The Broncos won."}': (422, "question"),
    b'{"question": "Who?"}': (422, "context"),
    b'{"question": "Who?", "context": ""}': (422, "context"),
    b'{"question": "Who?", "context": "a", "contexts": ["b"]}': (422, "context"),
    b'{"question": "Who?", "contexts": []}': (422, "contexts"),
    b'{"question": "Who?", "contexts": ["a", 3]}': (422, "contexts[1]"),
    json.dumps({"question": "Who?", "contexts": ["The Broncos won."] * 65}).encode(): (422, "contexts"),
    b'{"question": "Who?", "context": "a", "topk": 2}': (422, "topk"),
    b'{"question": "Who?", "context": "a", "top_k": 0}': (422, "top_k"),
    b'{"question": "Who?", "context": "a", "top_k": true}': (422, "top_k"),
    b'{"question": "Who?", "context": "a", "max_seq_len": 512}': (422, "max_seq_len"),
    b'{"question": "Who?", "context": "a", "doc_stride": "32"}': (422, "doc_stride"),
    b'{"question": "Who?", "context": "a", "handle_impossible_answer": "yes"}': (422, "handle_impossible_answer"),
    b'[{"question": "Who?", "context": "a"}, {"question": "Who?"}]': (422, "[1].context"),
    b'{"inputs": "Who?"}': (422, "inputs"),
    json.dumps({"question": "Who?", "context": "word " * 5000}).encode(): (413, "body"),
}


@pytest.mark.parametrize("body", BAD, ids=lambda b: b[:48].decode("utf-8", "replace"))
def test_a_bad_request_gets_a_4xx_with_one_line_naming_the_field(server, body):
    status, field = BAD[body]
    response = server.post(body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field and error["error"].startswith(f"{field}: ") and "\n" not in error["error"]


def test_fuzzed_bodies_get_no_5xx_and_the_server_answers_after(server):
    """500 random bodies: JSON values of every shape (with and without the right field names), raw bytes, and
    valid requests cut short; none gets a 5xx, and a valid request is still answered."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = st.sampled_from(["question", "context", "contexts", "top_k", "max_seq_len", "doc_stride", "inputs",
                             "parameters", "handle_impossible_answer", "max_answer_len", "x"])
    values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=30),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=5),
                          max_leaves=12)
    valid = json.dumps({"question": "Who won?", "context": "The Broncos beat the Panthers."}).encode()
    bodies = (values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200)
              | st.integers(0, len(valid)).map(lambda n: valid[:n]))
    statuses = []

    @settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def send(body):
        statuses.append(server.post(body, client=client).status_code)
        assert statuses[-1] < 500, body

    with httpx.Client() as client:
        send()
    assert len(statuses) >= 500 and {s // 100 for s in statuses} <= {2, 4}
    assert server.post(valid).json()["answer"]
    assert 'jaxqa_serve_errors_total{kind="internal"}' not in server.metrics()


def test_concurrent_clients_are_all_answered_in_shared_batches(server, answerer, dev):
    """32 clients, 3 requests each: every one answered, with its own answer, and the worker ran batches of more
    than one request (the batch-size histogram in /metrics)."""
    before = server.metrics()
    pairs = dev[24:120]
    expected = answerer.answer_batch([p["question"] for p in pairs], [p["context"] for p in pairs])

    def client(k: int) -> list:
        with httpx.Client() as session:
            return [server.post(pairs[i], client=session) for i in range(k, len(pairs), 32)]

    with ThreadPoolExecutor(32) as pool:
        served = {i: r for k, responses in enumerate(pool.map(client, range(32)))
                  for i, r in zip(range(k, len(pairs), 32), responses)}
    assert sorted(served) == list(range(96)) and {r.status_code for r in served.values()} == {200}
    for i, answer in enumerate(expected):
        same_answers(served[i].json(), answer)
    after = server.metrics()
    count = "jaxqa_serve_batch_requests_count"
    batches, single = after[count] - before[count], (after['jaxqa_serve_batch_requests_bucket{le="1.0"}']
                                                     - before['jaxqa_serve_batch_requests_bucket{le="1.0"}'])
    assert after["jaxqa_serve_requests_total"] - before["jaxqa_serve_requests_total"] == 96
    assert batches - single >= 1 and batches < 96  # some batches held several requests


def test_the_worker_prepares_the_next_batch_and_decodes_the_last_while_one_runs(answerer, dev, monkeypatch):
    """In process, 6 requests queued before the worker starts, batches of 2: while batch N is on the device the
    host tokenises N+1 and, once N+1 is launched, decodes N; a batch is launched only after the device is done
    with the one before (never two at once); every answer is the answerer's own."""
    from jaxqa.scoring.answer import PendingAnswers
    from jaxqa.serving import schema
    from jaxqa.serving.batcher import Batcher
    from jaxqa.serving.metrics import Metrics

    events, names = [], {}
    prepare = answerer.prepare

    def prepared(questions, contexts, **settings):
        pending = prepare(questions, contexts, **settings)
        names[id(pending)] = [p["question"] for p in dev].index(questions[0])
        events.append(("prepare", names[id(pending)]))
        return pending

    def recorded(step):
        method = getattr(PendingAnswers, step)
        return lambda pending: (events.append((step, names[id(pending)])), method(pending))[1]

    monkeypatch.setattr(answerer, "prepare", prepared)
    for step in ("launch", "wait", "result"):
        monkeypatch.setattr(PendingAnswers, step, recorded(step))
    batcher = Batcher(answerer, Metrics(), max_batch_size=2, max_wait_ms=0)
    limits = schema.Limits(max_seq_length=128, n_best_size=20, max_passages=8, special_tokens=3)
    batcher.ready.set()
    batcher.arriving = 6
    futures = [batcher.submit(schema.parse(json.dumps(pair).encode(), limits)) for pair in dev[:6]]
    batcher.start()
    served = [future.result(timeout=120) for future in futures]
    batcher.close()
    assert events == [("prepare", 0), ("launch", 0),
                      ("prepare", 2), ("wait", 0), ("launch", 2), ("result", 0),
                      ("prepare", 4), ("wait", 2), ("launch", 4), ("result", 2),
                      ("wait", 4), ("result", 4)]
    monkeypatch.undo()
    for answer, expected in zip(served, answerer.answer_batch([p["question"] for p in dev[:6]],
                                                              [p["context"] for p in dev[:6]])):
        same_answers(answer, expected)


def test_sigterm_answers_every_accepted_request_then_exits_0(servers, answerer, dev):
    """SIGTERM while 32 clients' requests wait in the queue and a 33rd is still sending its body (the worker
    waits for a request that is arriving, up to --max_wait_ms 10 s): all 33 are answered (200, each its own
    answer), new connections are refused, and the process exits 0."""
    serving = servers["draining"].ready()
    pairs = dev[:33]
    slow = json.dumps(pairs[32]).encode()
    with socket.create_connection(("127.0.0.1", serving.port), timeout=60) as uploading, ThreadPoolExecutor(32) as pool:
        uploading.sendall(b"POST /v1/answer HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: "
                          + str(len(slow)).encode() + b"\r\n\r\n" + slow[:10])
        pending = [pool.submit(serving.post, pair) for pair in pairs[:32]]
        deadline = time.monotonic() + 60
        while serving.metrics()["jaxqa_serve_queue_depth"] < 32 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert serving.metrics()["jaxqa_serve_requests_in_progress"] == 33  # all received, none answered yet
        serving.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the signal handled: the listening socket closed
        uploading.sendall(slow[10:])
        reply = b"".join(iter(lambda: uploading.recv(65536), b""))
        served = [f.result().json() for f in pending if f.result().status_code == 200]
    assert serving.proc.wait(timeout=60) == 0, serving.log.read_text()[-3000:]
    assert reply.startswith(b"HTTP/1.1 200 ") and len(served) == 32
    served.append(json.loads(reply.split(b"\r\n\r\n", 1)[1]))
    expected = answerer.answers([p["question"] for p in pairs], [p["context"] for p in pairs], max_seq_length=64,
                                doc_stride=16, max_query_length=16)
    for answer, want in zip(served, expected):
        same_answers(answer, want[0])
    with pytest.raises(httpx.ConnectError):
        serving.post(pairs[0])


def test_serve_without_its_extra_says_how_to_install_it(monkeypatch, capsys):
    from jaxqa.cli import main

    monkeypatch.delitem(sys.modules, "jaxqa.serving.app", raising=False)
    monkeypatch.setitem(sys.modules, "starlette", None)
    assert main(["serve", "--model", "OUT/model"]) == 2
    assert capsys.readouterr().err == ("jaxqa: error: serve needs the serve extra (starlette is not installed): "
                                       "pip install 'jaxqa[serve]'\n")


def test_serve_batches_plan_the_fewest_tokens_on_the_compiled_programs():
    """A batch of requests of mixed lengths (5 windows of 100 tokens, 11 of 150; buckets of 64 up to 256, rows
    1, 2, 4, ..., 32): 4 x 128 + 4 x 192 + 8 x 192 (2,816 tokens; one 100-token window rides in a 192 batch),
    where a batch per length bucket computes 8 x 128 + 16 x 192 (4,096); every window exactly once."""
    import numpy as np

    from jaxqa.data import batching
    from jaxqa.scoring.inference import least_padding

    lengths = np.array([150, 100] * 5 + [150] * 6)
    by_bucket = batching.plan_batches(lengths, 32, max_seq_length=256, min_rows=1)
    assert sorted((len(b.rows), b.seq_len) for b in by_bucket) == [(8, 128), (16, 192)]
    plan = least_padding(lengths, 32, max_seq_length=256, bucket_width=64, min_rows=1)
    assert [(len(b.rows), b.seq_len) for b in plan] == [(4, 128), (4, 192), (8, 192)]
    assert sorted(np.concatenate([b.rows for b in plan]).tolist()) == list(range(16))
    longer = least_padding(np.arange(1, 41) * 6, 32, max_seq_length=256, bucket_width=64, min_rows=1)
    rows = np.concatenate([b.rows for b in longer])
    assert sorted(rows[rows >= 0].tolist()) == list(range(40))
    assert all(len(b.rows) in (1, 2, 4, 8, 16, 32) and b.seq_len in (64, 128, 192, 256) for b in longer)
