#!/usr/bin/env python3
"""Echo server used as the protected application in the local stack.

Answers every request, whatever the method, with 200 and a JSON description
of what it received, so that you can see which headers (x-connect-token,
cookie, ...) ingress-authz and Envoy let through. Standard library only.
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _read_body(self):
        # Envoy forwards HTTP/2 requests without a length as chunked HTTP/1.1.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _echo(self):
        body = self._read_body()
        payload = {
            "upstream": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": body.decode("utf-8", errors="replace"),
        }
        data = json.dumps(payload, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # BaseHTTPRequestHandler dispatches on do_<METHOD>; echo them all.
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._echo
        raise AttributeError(name)

    def log_message(self, fmt, *args):
        print(f"upstream: {self.address_string()} {fmt % args}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", default="demo", help="what the answers say this upstream is")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), EchoHandler)
    server.name = args.name
    print(f"demo upstream {args.name} listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
