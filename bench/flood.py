#!/usr/bin/env python3
"""A wrong-password flood against a bcrypt-12 route while another route's
bearer checks run at a fixed rate, through Envoy (SPEC 13.2).

For each flood rate N (wrong passwords per second, each from the next of
`--addresses` loopback source addresses, throttle off so that only the
bounded hash pool protects the other route), the bearer route is driven
open-loop at a fixed rate, interleaved with the same run without a flood.
Reported: the bearer rate achieved and its p50/p99 against the no-flood run,
the flood's answers (401/429/5xx), ingress-authz's RSS, and the CPU of
Envoy and ingress-authz per flood request.

    scripts/bench-flood [--rates 10 100 1000] [--duration 10] [--bearer-rate R]

Run from scripts/bench-flood, which builds the release binary first.
"""

import argparse
import asyncio
import base64
import ipaddress
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # noqa: E402  (bench/run.py: processes, Envoy, CPU, RSS)

ROOT = Path(__file__).resolve().parent.parent
# bcrypt cost 12 of `flood-bench-pass`: benchmark credentials only.
BCRYPT_12 = "$2b$12$gepXXJL7mvd/8CKzMSQt8.4y1c8yogzkLqzKe9TyddqrRq7DWAM8S"
BEARER = "flood-bench-bearer-0123456789"

CONFIG = f"""authz:
  login_throttle: {{enabled: false}}
rules:
  - host: flood.bench
    backend:
      service:
        name: app
        auth:
          type: basic
          basic:
            users:
              - username: admin
                password: '{BCRYPT_12}'
  - host: bearer.bench
    backend:
      service:
        name: app
        auth:
          type: bearer
          bearer:
            tokens: [{BEARER}]
"""


def source(n):
    """The n-th client address: 127.0.2.1 upwards (all of 127/8 is local)."""
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("127.0.2.1")) + n))


async def one_request(port, host, authorization, local=None):
    """One HTTP/1.1 GET on a new connection; (status, seconds)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0) if local else None)
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    line = await reader.readline()
    status = int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    await reader.read()
    writer.close()
    return status, time.perf_counter() - started


async def keepalive_client(port, host, authorization, queue, latencies, statuses):
    """Sends requests as the scheduler queues their intended start times;
    latency counts from the intended start (open loop: no coordinated omission)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n\r\n").encode()
    while True:
        intended = await queue.get()
        if intended is None:
            break
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
        length = 0
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b""):
                break
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
        if length:
            await reader.readexactly(length)
        statuses.append(int(line.split()[1]) if line.startswith(b"HTTP/") else 0)
        latencies.append(time.perf_counter() - intended)
    writer.close()


async def fixed_rate(port, rate, duration, connections=32):
    queue = asyncio.Queue()
    latencies, statuses = [], []
    clients = [
        asyncio.create_task(keepalive_client(port, "bearer.bench", f"Bearer {BEARER}", queue, latencies, statuses))
        for _ in range(connections)
    ]
    start = time.perf_counter()
    total = int(rate * duration)
    for i in range(total):
        intended = start + i / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(intended)
    for _ in clients:
        queue.put_nowait(None)
    await asyncio.gather(*clients)
    elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {
        "target_rps": rate,
        "achieved_rps": len(statuses) / elapsed,
        "ok": sum(1 for s in statuses if s == 200),
        "not_ok": sum(1 for s in statuses if s != 200),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
    }


async def flood(port, rate, duration, addresses, answers):
    start = time.perf_counter()
    tasks = []
    for i in range(int(rate * duration)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        local = source(i % addresses)

        async def one(i=i, local=local):
            try:
                wrong = base64.b64encode(f"admin:wrong-{i}".encode()).decode()
                status, _ = await one_request(port, "flood.bench", f"Basic {wrong}", local)
            except OSError:
                status = 0
            answers[status] = answers.get(status, 0) + 1

        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)


async def measure(port, bearer_rate, flood_rate, duration, addresses):
    answers = {}
    jobs = [fixed_rate(port, bearer_rate, duration)]
    if flood_rate:
        jobs.append(flood(port, flood_rate, duration, addresses, answers))
    results = await asyncio.gather(*jobs)
    out = results[0]
    out["flood_answers"] = {str(k): v for k, v in sorted(answers.items())}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--addresses", type=int, default=1000)
    ap.add_argument(
        "--bearer-rate", type=int, help="fixed bearer rate (default: half of what a saturated wrk run achieves)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "flood.json")
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    authz_bin = Path(os.environ.get("AUTHZ_BIN", target / "release" / "ingress-authz"))
    envoy_bin = Path(os.environ.get("ENVOY_BIN", ROOT / ".venv" / "bin" / "envoy"))
    workdir = target / "bench" / ("flood-" + time.strftime("%Y%m%d-%H%M%S"))
    workdir.mkdir(parents=True, exist_ok=True)
    procs = harness.Processes(workdir)
    config = workdir / "authz.yaml"
    config.write_text(CONFIG)
    try:
        authz_proc, grpc, http_addr = harness.start_authz(procs, "authz", authz_bin, config)
        case = harness.Case("x", "flood", "ext_authz", "bearer.bench", {}, None, cluster="authz")
        envoy_config = {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {
                "listeners": [harness.listener("flood", [harness.auth_filter(case)])],
                "clusters": [harness.grpc_cluster("authz", grpc)],
            },
        }
        envoy, ports = harness.start_envoy(procs, envoy_bin, envoy_config, workdir, os.cpu_count())
        port = ports["flood"]
        bearer_rate = args.bearer_rate
        if not bearer_rate:
            case.port = port
            case.headers = {"Authorization": f"Bearer {BEARER}"}
            saturated = harness.wrk(case, 5, 32, 2, {})
            bearer_rate = int(saturated["rps"] / 2)
            print(f"flood: saturated bearer {saturated['rps']:.0f} req/s; fixed rate {bearer_rate}", flush=True)
        results = {"bearer_rate": bearer_rate, "addresses": args.addresses, "runs": []}
        for flood_rate in args.rates:
            for label, rate in (("without", 0), ("with", flood_rate)):
                cpu = {n: harness.cpu_seconds(p) for n, p in (("envoy", envoy.pid), ("authz", authz_proc.pid))}
                r = asyncio.run(measure(port, bearer_rate, rate, args.duration, args.addresses))
                used = {
                    n: harness.cpu_seconds(p) - cpu[n] for n, p in (("envoy", envoy.pid), ("authz", authz_proc.pid))
                }
                r.update(
                    flood_rate=flood_rate,
                    flood=label == "with",
                    rss_mb=harness.rss_kib(authz_proc.pid) / 1024,
                    envoy_cpu_s=used["envoy"],
                    authz_cpu_s=used["authz"],
                )
                results["runs"].append(r)
                print(json.dumps(r), flush=True)
        print(report(results))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    except harness.HarnessError as e:
        print(f"flood: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    return 0


def report(results):
    lines = [
        f"bearer at {results['bearer_rate']} req/s, flood from {results['addresses']} addresses",
        "| flood/s | achieved (× without) | p99 ms with / without | flood answers | RSS MB "
        "| CPU ms per flood request (Envoy + authz) |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    runs = results["runs"]
    for without, with_ in zip(runs[::2], runs[1::2], strict=False):
        n = with_["flood_rate"]
        flood_requests = max(sum(with_["flood_answers"].values()), 1)
        extra_cpu = (with_["envoy_cpu_s"] + with_["authz_cpu_s"]) - (without["envoy_cpu_s"] + without["authz_cpu_s"])
        lines.append(
            f"| {n} | {with_['achieved_rps']:.0f} ({with_['achieved_rps'] / without['achieved_rps']:.3f}×) "
            f"| {with_['p99_ms']:.2f} / {without['p99_ms']:.2f} | {with_['flood_answers']} "
            f"| {with_['rss_mb']:.1f} | {extra_cpu * 1000 / flood_requests:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
