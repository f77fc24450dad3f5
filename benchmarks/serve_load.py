"""Load and abuse `warmstart serve` on loopback: throughput and latency per concurrency, then malformed input.

It starts ``warmstart serve ARTIFACT`` in a subprocess on a free loopback port and:

1. for each concurrency level, sends ``--requests`` requests (each one text, or ``--texts-per-request``) from
   that many concurrent clients, stopping early at ``--max-seconds``; prints requests/s, rows/s, p50 and p99
   latency and the count of every status code (the target is zero 5xx);
2. sends a fixed list of malformed payloads (invalid JSON, wrong types, empty, too many texts, too long a text,
   a body over the limit declared or chunked, binary garbage, wrong content type, corrupt multipart) and
   checks that each gets a 4xx and the server stays healthy;
3. runs schemathesis (``pip install -e ".[bench]"``) against the server's OpenAPI schema for ``--fuzz-seconds``
   with every check, when it is installed.

    python benchmarks/serve_load.py --artifact runs/trec-lp_ft --data trec
    python benchmarks/serve_load.py --artifact runs/trec-lp_ft --data trec --concurrency 1,4,16,64

Results also go to ``--output`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from warmstart._io import atomic_write_json


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(artifact: str, port: int, extra: list[str]) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("warmstart")
    cmd = [str(exe), "serve", artifact, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become healthy in 180 s")


async def load_level(
    url: str, texts: list[str], concurrency: int, requests: int, max_s: float, per: int
) -> dict:
    latencies: list[float] = []
    in_model: list[float] = []  # the server's own time from queueing the rows to their probabilities
    statuses: dict[int, int] = {}
    sent = 0
    rng = np.random.default_rng(concurrency)
    start = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() - start < max_s:
            sent += 1
            body = {"texts": [texts[int(i)] for i in rng.integers(0, len(texts), per)]}
            t0 = time.perf_counter()
            try:
                r = await client.post(url + "/predict", json=body)
                code = r.status_code
                if code == 200:
                    in_model.append(r.json()["model_seconds"])
            except httpx.HTTPError:
                code = -1  # connection-level failure
            latencies.append(time.perf_counter() - t0)
            statuses[code] = statuses.get(code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "rows_per_request": per,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "rows_per_s": round(len(latencies) * per / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "server_queue_and_model_p50_ms": round(float(np.percentile(in_model, 50)) * 1000, 1)
        if in_model
        else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500 or k < 0),
    }


def malformed(url: str, max_inputs: int, max_chars: int, max_body: int) -> list[dict]:
    j = {"content-type": "application/json"}

    def chunked():
        for _ in range(max_body // 1000 + 2):
            yield b"[" * 1000

    cases = [
        ("invalid JSON", {"content": b"{not json", "headers": j}),
        ("binary garbage", {"content": os.urandom(512), "headers": j}),
        ("empty body", {"content": b"", "headers": j}),
        ("JSON null", {"json": None}),
        ("texts missing", {"json": {"text": ["a"]}}),
        ("texts a string", {"json": {"texts": "hello"}}),
        ("texts of numbers", {"json": {"texts": [1, 2.5, None]}}),
        ("nested lists", {"json": {"texts": [["a"], {"b": 1}]}}),
        ("empty list", {"json": {"texts": []}}),
        ("too many texts", {"json": {"texts": ["a"] * (max_inputs + 1)}}),
        ("too long a text", {"json": {"texts": ["x" * (max_chars + 1)]}}),
        ("body over the limit", {"content": b" " * (max_body + 1), "headers": j}),
        ("chunked body over the limit", {"content": chunked(), "headers": j}),
        ("deeply nested JSON", {"content": b"[" * 50_000 + b"]" * 50_000, "headers": j}),
        ("wrong content type", {"content": b"texts=a", "headers": {"content-type": "text/plain"}}),
        ("form upload to a JSON endpoint", {"files": {"files": ("a.png", b"\x89PNG\r\n", "image/png")}}),
    ]
    odd_but_valid = [  # valid JSON of the right shape: a 200 or a 4xx are both fine, a 5xx is not
        ("lone surrogate escapes", {"content": b'{"texts": ["\\ud800\\udfff\\ud800"]}', "headers": j}),
        ("NUL and control characters", {"json": {"texts": ["\x00\x01\x02 tab\t end"]}}),
        ("only whitespace", {"json": {"texts": ["   ", ""]}}),
        ("emoji and right-to-left text", {"json": {"texts": ["\U0001f600" * 500, "\u202e\u05d0\u05d1"]}}),
    ]
    out = []
    for name, kw, expect in [(n, k, "4xx") for n, k in cases] + [(n, k, "no 5xx") for n, k in odd_but_valid]:
        try:
            r = httpx.post(url + "/predict", timeout=60, **kw)
            code, detail = r.status_code, r.text[:120]
        except httpx.HTTPError as e:
            code, detail = -1, repr(e)[:120]
        healthy = httpx.get(url + "/health", timeout=10).status_code == 200
        ok = 400 <= code < 500 if expect == "4xx" else 0 < code < 500
        out.append(
            {
                "case": name,
                "expect": expect,
                "status": code,
                "ok": ok,
                "healthy_after": healthy,
                "detail": detail,
            }
        )
    return out


def fuzz(url: str, seconds: int) -> dict | None:
    exe = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    if not Path(exe).exists():
        return None
    # 413 is the right answer to a body or image over its limit; schemathesis's default list of rejections lacks it
    config = Path(tempfile.mkdtemp()) / "schemathesis.toml"
    config.write_text(
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]\n'
    )
    cmd = [exe, "--config-file", str(config), "run", f"{url}/openapi.json", "--checks", "all"]
    cmd += ["--max-time", str(seconds), "--workers", "2"]
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    text = p.stdout + p.stderr
    return {
        "command": " ".join(cmd[1:]),
        "exit_code": p.returncode,
        "seconds": round(time.perf_counter() - start, 1),
        "tail": text[-3000:],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", required=True, help="a text artifact folder")
    ap.add_argument("--data", default="trec", help="packaged data set whose test texts are sent")
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    ap.add_argument("--max-seconds", type=float, default=60, help="time bound per concurrency level")
    ap.add_argument("--texts-per-request", type=int, default=1)
    ap.add_argument("--fuzz-seconds", type=int, default=60)
    ap.add_argument(
        "--server-args", default="", help="extra `warmstart serve` options, e.g. '--batch-wait-ms 5'"
    )
    ap.add_argument("--output", default="runs/bench/serve_load.json")
    args = ap.parse_args(argv)

    from warmstart.data import load_packaged

    pk = load_packaged(args.data)
    texts = [str(t) for t in (pk.test or pk.train).inputs][:2000]
    max_inputs, max_chars, max_body = 64, 10_000, 2_000_000
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.artifact, port, args.server_args.split())
    results: dict = {
        "artifact": args.artifact,
        "data": args.data,
        "cpu_count": os.cpu_count(),
        "server_args": args.server_args,
    }
    try:
        httpx.post(url + "/predict", json={"texts": texts[:8]}, timeout=60)  # warm-up
        levels = []
        print(
            "| concurrency | requests | req/s | rows/s | p50 ms | p99 ms | batcher+model p50 ms | statuses |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for c in [int(v) for v in args.concurrency.split(",")]:
            r = asyncio.run(
                load_level(url, texts, c, args.requests, args.max_seconds, args.texts_per_request)
            )
            levels.append(r)
            print(
                f"| {c} | {r['requests']} | {r['requests_per_s']} | {r['rows_per_s']} | {r['p50_ms']} | "
                f"{r['p99_ms']} | {r['server_queue_and_model_p50_ms']} | {r['statuses']} |",
                flush=True,
            )
        results["load"] = levels
        info = httpx.get(url + "/info").json()
        results["batching"] = info["batching"]
        b = info["batching"]
        print(f"\nmodel batches: {b['batches']} for {b['rows']} rows, {b['model_seconds']} s in the model")
        bad = malformed(url, max_inputs, max_chars, max_body)
        results["malformed"] = bad
        print("\n| input | expected | status | healthy after |")
        print("|---|---|---|---|")
        for b in bad:
            print(f"| {b['case']} | {b['expect']} | {b['status']} | {b['healthy_after']} |")
        fz = fuzz(url, args.fuzz_seconds)
        results["schemathesis"] = fz
        if fz:
            print(f"\nschemathesis ({fz['seconds']} s): exit {fz['exit_code']}\n{fz['tail'][-1500:]}")
        else:
            print("\nschemathesis not installed; skipped")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    crashed = proc.returncode not in (0, -15)
    five = sum(r["server_errors"] for r in results["load"]) + sum(
        1 for b in results["malformed"] if b["status"] >= 500 or b["status"] < 0
    )
    four = all(b["ok"] and b["healthy_after"] for b in results["malformed"])
    fuzz_ok = results.get("schemathesis") is None or results["schemathesis"]["exit_code"] == 0
    results["summary"] = {
        "server_errors": five,
        "malformed_all_4xx": four,
        "server_exit": proc.returncode,
        "schemathesis_passed": None if results.get("schemathesis") is None else fuzz_ok,
    }
    atomic_write_json(Path(args.output), results)
    print(
        f"\n5xx or failed connections: {five}; every odd input got what was expected: {four}; "
        f"server exit code {proc.returncode}{' (crashed)' if crashed else ''}; schemathesis "
        f"{'skipped' if results.get('schemathesis') is None else ('passed' if fuzz_ok else 'FAILED')}"
    )
    return 0 if five == 0 and four and fuzz_ok and not crashed else 1


if __name__ == "__main__":
    sys.exit(main())
