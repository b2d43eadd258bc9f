"""Serving under load: `jaxqa serve` against `transformers` PyTorch behind the same HTTP stack, same run.

Both servers answer SQuAD v1.1 dev questions with their paragraphs from the same exported model, on
loopback: jaxqa serve (dynamic batching onto programs compiled at start-up) and a Starlette + uvicorn app
that runs `AutoModelForQuestionAnswering` per request in Starlette's thread pool (fp32,
`torch.inference_mode`), with the same windows and post-processing (`answer_latency.TorchAnswerer`:
overflowing windows, `jaxqa.scoring.decode`), what a transformers 5 user writes now that the
question-answering pipeline is gone. For each concurrency (closed loop: each client sends its next request
when answered) the same fixed requests go to one server, then the other; throughput and p50/p95/p99.

    python benchmarks/serve_load.py [--model_dir DIR] [--requests 256] [--concurrency 1 8 32] [--check 200]

--check N also compares, on N dev questions, the served answers with `QuestionAnswerer`'s in this process
(text and offsets) and their F1 (scored by `jaxqa.evaluate`) with a `run_qa.py --do_eval` of the same model
on the same questions, and measures how often the reader mode (the gold paragraph among 4 of its article)
picks the gold one. Without --model_dir a model is exported first by a short jaxqa run (`answer_latency`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEV = ROOT.parent / "shared/data/squad_v1.1/dev.json"


def torch_app(model_dir: str, threads: int | None = None, bf16: bool = False):
    """The PyTorch peer: one forward per request, off the event loop (Starlette's thread pool); `threads`:
    torch.set_num_threads (default: PyTorch's, one per core); `bf16`: under bf16 autocast."""
    from answer_latency import TorchAnswerer
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from jaxqa.models import weights

    settings = {"max_seq_length": 384, "doc_stride": 128, "max_answer_length": 30, **weights.saved_settings(model_dir)}
    stub = types.SimpleNamespace(settings=settings, n_best_size=20, predictor=types.SimpleNamespace(
        batch_size=32, max_answer_length=settings["max_answer_length"]))
    answerer = TorchAnswerer(Path(model_dir), stub, bf16=bf16)
    if threads:
        answerer.torch.set_num_threads(threads)

    async def answer(request):
        body = await request.json()
        found = await run_in_threadpool(answerer, [body["question"]], [body["context"]])
        return JSONResponse(found[0])

    async def health(_request):
        return JSONResponse({"status": "ready"})

    return Starlette(routes=[Route("/v1/answer", answer, methods=["POST"]), Route("/health", health)])


def start(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[:4]} ended (rc {proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used: what a request costs whatever share of the
    cores the machine's other jobs leave it (wall-clock throughput on a shared machine also measures that share)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def load(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float], list[dict]]:
    """Closed loop: `concurrency` clients take the next body when answered. Wall seconds, per-request latencies
    and the answers (in body order)."""
    import httpx

    latencies, answers, queue = [0.0] * len(bodies), [None] * len(bodies), list(range(len(bodies)))[::-1]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency), timeout=600) as client:
        async def worker():
            while queue:
                i = queue.pop()
                t0 = time.perf_counter()
                response = await client.post(url, json=bodies[i])
                latencies[i] = time.perf_counter() - t0
                response.raise_for_status()
                answers[i] = response.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies, answers


def dev_questions() -> list[dict]:
    articles = json.loads(DEV.read_text(encoding="utf-8"))["data"]
    return [{"id": q["id"], "question": q["question"], "context": p["context"], "article": a_i, "paragraph": p_i,
             "answers": q["answers"]} for a_i, a in enumerate(articles) for p_i, p in enumerate(a["paragraphs"])
            for q in p["qas"]]


def check(url: str, model_dir: Path, n: int, work: Path) -> None:
    """Served answers against QuestionAnswerer's and a run's evaluation on the same `n` questions; reader mode."""
    import jaxqa
    from jaxqa.scoring.answer import QuestionAnswerer

    questions = dev_questions()[:: max(1, len(dev_questions()) // n)][:n]
    _, _, served = asyncio.run(load(url, [{"question": q["question"], "context": q["context"]} for q in questions], 8))
    local = QuestionAnswerer.from_pretrained(model_dir).answer_batch([q["question"] for q in questions],
                                                                     [q["context"] for q in questions])
    same = sum((s["answer"], s["start"], s["end"]) == (a["answer"], a["start"], a["end"]) for s, a in zip(served, local))
    subset = work / "check_dev.json"
    subset.write_text(json.dumps({"version": "1.1", "data": [{"title": "check", "paragraphs": [
        {"context": q["context"], "qas": [{"id": q["id"], "question": q["question"], "answers": q["answers"]}]}
        for q in questions]}]}), encoding="utf-8")
    (work / "served_predictions.json").write_text(json.dumps({q["id"]: s["answer"] for q, s in zip(questions, served)}))
    served_scores = jaxqa.evaluate.evaluate_files(str(subset), str(work / "served_predictions.json"))
    subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", str(model_dir), "--validation_file",
                    str(subset), "--do_eval", "--output_dir", str(work / "check_eval"), "--overwrite_output_dir"],
                   check=True, capture_output=True)
    run_scores = json.loads((work / "check_eval/eval_results.json").read_text())
    run_predictions = json.loads((work / "check_eval/predictions.json").read_text())
    same_as_run = sum(run_predictions[q["id"]] == s["answer"] for q, s in zip(questions, served))
    print(f"\ncheck on {n} dev questions: served = QuestionAnswerer (text and offsets) on {same}/{n}; served = the "
          f"run's eval_predictions.json on {same_as_run}/{n}; F1 served {served_scores['f1']:.4f} (jaxqa.evaluate), "
          f"run_qa.py --do_eval {run_scores.get('eval_f1', run_scores.get('f1'))}; EM served "
          f"{served_scores['exact_match']:.4f}, run {run_scores.get('eval_exact_match', run_scores.get('exact_match'))}")
    reader(url, questions)


def reader(url: str, questions: list[dict]) -> None:
    """Reader mode: each question with its gold paragraph among 4 of its article (rotated); how often the
    best answer names the gold passage, against how often the lone gold paragraph's answer is right (F1 > 0)."""
    by_article: dict[int, list[str]] = {}
    for q in dev_questions():
        by_article.setdefault(q["article"], [])
        if q["context"] not in by_article[q["article"]]:
            by_article[q["article"]].append(q["context"])
    bodies, gold = [], []
    for i, q in enumerate(questions):
        others = [c for c in by_article[q["article"]] if c != q["context"]]
        passages = [others[(q["paragraph"] + k * 7) % len(others)] for k in range(3)]
        passages.insert(i % 4, q["context"])
        bodies.append({"question": q["question"], "contexts": passages})
        gold.append(i % 4)
    _, _, answers = asyncio.run(load(url, bodies, 8))
    picked = sum(a["passage"] == g for a, g in zip(answers, gold))
    print(f"reader mode (gold paragraph among 4 of its article): the answer names the gold passage on "
          f"{picked}/{len(bodies)} questions")


def table(rows: list[tuple]) -> None:
    print("\n| concurrency | server | requests/s | p50 ms | p95 ms | p99 ms | server CPU ms / request | throughput vs "
          "PyTorch | p50, p99 vs PyTorch | CPU per request vs PyTorch |\n|---|---|---|---|---|---|---|---|---|---|")
    peers = {c: (rate, p, cpu) for c, side, rate, p, cpu in rows if side == "PyTorch"}
    for c, side, rate, p, cpu in rows:
        peer_rate, peer_p, peer_cpu = peers[c]
        print(f"| {c} | {side} | {rate:.1f} | {p[0]:.0f} | {p[1]:.0f} | {p[2]:.0f} | {cpu:.0f} | {rate / peer_rate:.2f}x | "
              f"{p[0] / peer_p[0]:.2f}x, {p[2] / peer_p[2]:.2f}x | {cpu / peer_cpu:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", help="an exported QA model (default: export one by a short jaxqa run)")
    parser.add_argument("--work", default="outputs/answer_latency", help="where the exported model goes")
    parser.add_argument("--requests", type=int, default=256, help="requests per concurrency and server")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--max_wait_ms", type=float, default=5.0)
    parser.add_argument("--check", type=int, default=0, help="questions for the answer and F1 check (0: none)")
    parser.add_argument("--torch_threads", type=int, help="torch.set_num_threads in the PyTorch server (default: "
                                                            "PyTorch's own, one per core)")
    parser.add_argument("--torch_bf16", action="store_true", help="the PyTorch server under bf16 autocast (fp32 "
                                                                   "otherwise)")
    parser.add_argument("--torch_server", metavar="PORT", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_server:  # the PyTorch peer's process
        import uvicorn

        uvicorn.run(torch_app(args.model_dir, args.torch_threads, args.torch_bf16), host="127.0.0.1", port=args.torch_server, access_log=False,
                    log_level="warning")
        return
    from answer_latency import export_model

    work = Path(args.work)
    model_dir = Path(args.model_dir) if args.model_dir else export_model(work)
    env_cache = {"JAX_COMPILATION_CACHE_DIR": str((work / "jax_cache").resolve())}
    os.environ.update(env_cache)
    ports = {"jaxqa": free_port(), "PyTorch": free_port()}
    started = time.perf_counter()
    servers = {"jaxqa": start([sys.executable, "-m", "jaxqa", "serve", "--model", str(model_dir), "--port",
                               str(ports["jaxqa"]), "--max_batch_size", str(args.max_batch_size), "--max_wait_ms",
                               str(args.max_wait_ms)], ports["jaxqa"], work / "serve_jaxqa.log")}
    print(f"jaxqa serve ready in {time.perf_counter() - started:.1f} s (model load + compiling every bucket)")
    servers["PyTorch"] = start([sys.executable, __file__, "--model_dir", str(model_dir), "--torch_server",
                                str(ports["PyTorch"]), *(["--torch_threads", str(args.torch_threads)]
                                                         if args.torch_threads else []),
                                *(["--torch_bf16"] if args.torch_bf16 else [])],
                               ports["PyTorch"], work / "serve_torch.log")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"model {model_dir}; {cpu}, {os.cpu_count()} cores; PyTorch threads {args.torch_threads or 'default'}, "
          f"{'bf16 autocast' if args.torch_bf16 else 'fp32'}; "
          f"jaxqa --max_batch_size {args.max_batch_size} --max_wait_ms {args.max_wait_ms}; load average at the start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    questions = dev_questions()
    bodies = [{"question": q["question"], "context": q["context"]} for q in questions[:: 3][: args.requests]]
    rows, answers = [], {}
    try:
        for c in args.concurrency:
            for side, port in ports.items():
                url = f"http://127.0.0.1:{port}/v1/answer"
                asyncio.run(load(url, bodies[:16], min(c, 16)))  # warm
                cpu = cpu_seconds(servers[side].pid)
                wall, latencies, answers[side] = asyncio.run(load(url, bodies, c))
                cpu = 1000 * (cpu_seconds(servers[side].pid) - cpu) / len(bodies)
                rows.append((c, side, len(bodies) / wall, np.percentile(latencies, [50, 95, 99]) * 1000, cpu))
                print(f"concurrency {c:>2} {side:>7}: {len(bodies) / wall:6.1f} requests/s, p50 {rows[-1][3][0]:.0f} "
                      f"ms, p99 {rows[-1][3][2]:.0f} ms, server CPU {cpu:.0f} ms per request; load average "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
            same = sum(a["answer"] == b["answer"] and a["start"] == b["start"]
                       for a, b in zip(answers["jaxqa"], answers["PyTorch"]))
            print(f"  same answer (text and start) from both servers: {same}/{len(bodies)}")
        table(rows)
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.check:
            check(f"http://127.0.0.1:{ports['jaxqa']}/v1/answer", model_dir, args.check, work)
    finally:
        for proc in servers.values():
            proc.send_signal(signal.SIGTERM)
        print("exit codes after SIGTERM:", {side: proc.wait(timeout=120) for side, proc in servers.items()})


if __name__ == "__main__":
    main()
