"""`sfumato serve ...`: this computer's engine served to other computers over HTTP (desktop/server/app.py).

One engine: one process (LocalBackend on --device/--precision, with the model folders the window uses), served
by uvicorn on --host:--port: `sfumato generate --server URL` runs on it, and writes the same files as a local
run. Several (--replicas N, or --address of a Ray cluster): Ray Serve runs one engine per GPU (else per CPU) on
every machine of the cluster behind the same URL (desktop/server/cluster.py, ray_app.py). It listens on 127.0.0.1 unless told otherwise; --token (or SFUMATO_TOKEN) makes every request carry it.
Ctrl+C stops it (a running job is cancelled) and exits 0; a port in use or an address it cannot listen on is
one sentence and exit 2. With Ray, Ctrl+C takes back what this command started, and nothing else.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading

from desktop.cli import UsageError, _Parser, _Progress, start_backend

LOOPBACK = ("127.0.0.1", "localhost", "::1")
GRACE_S = 1  # how long a Ctrl+C waits for a running job's stream before cancelling it


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sfumato serve",
                     description="Serve this computer's engine to other computers: `sfumato generate --server "
                                 "http://HOST:PORT` runs on it. One engine by default; --replicas or --address "
                                 "serve one engine per GPU through Ray Serve, on this computer or on every "
                                 "machine of a Ray cluster.")
    add = parser.add_argument
    add("--host", default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: this computer only); 0.0.0.0 for every network, "
             "best behind a firewall or a reverse proxy, with --token")
    add("--port", type=int, default=7862, help="default: 7862")
    add("--token", default=os.environ.get("SFUMATO_TOKEN") or None,
        help="a secret every request must carry (default: the SFUMATO_TOKEN environment variable)")
    add("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    add("--precision", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    add("--replicas", type=_replicas, default=None,
        help="how many engines to run through Ray Serve, one per GPU (else one per CPU core); default: one per GPU "
             "of the Ray cluster with --address, else one engine without Ray")
    add("--address", metavar="HOST:PORT",
        help="join the Ray cluster there (its head: `ray start --head` on one machine, `ray start --address "
             "HOST:PORT` on the others; or a KubeRay head) and serve one engine per GPU of the cluster")
    return parser


def _replicas(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 256:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 256, got {text!r}")
    return count


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port must be from 0 to 65535, got {args.port}")
    except UsageError as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from desktop.server.app import create_app
        from desktop.server.cluster import reachable
    except ImportError:
        print("sfumato: serving needs the server's packages; install them with pip install 'sfumato[server]'.",
              file=sys.stderr)
        return 2
    if args.address or (args.replicas or 1) > 1:
        return _serve_on_ray(args)
    try:
        sock = _listen(args.host, args.port)
    except OSError as error:
        print(f"sfumato: {_bind_problem(args.host, args.port, error)}", file=sys.stderr)
        return 2
    try:
        backend = start_backend(args, _Progress())
        if backend is None:
            return 2
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")  # the server's failures
        app = create_app(lambda: backend, token=args.token)
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=GRACE_S)
        host, port = sock.getsockname()[:2]
        _warn_if_open(args.host, port)
        print(f"Serving Sfumato's engine at http://{reachable(host, None)}:{port} (Ctrl+C stops it)", flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops on Ctrl+C, then raises it again for the caller
        pass
    finally:
        sock.close()
    print("sfumato: the server stopped.", file=sys.stderr)
    return 0


def _serve_on_ray(args: argparse.Namespace) -> int:
    try:
        from desktop.server.cluster import Refused, deployed
    except ImportError:
        print("sfumato: --replicas and --address need Ray Serve; install it with pip install 'sfumato[server]'.",
              file=sys.stderr)
        return 2
    if not args.address:  # the proxy listens here: say now that the port is taken, not after Ray has started
        try:
            _listen(args.host, args.port).close()
        except OSError as error:
            print(f"sfumato: {_bind_problem(args.host, args.port, error)}", file=sys.stderr)
            return 2
    _warn_if_open(args.host, args.port)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: take back what was started, as Ctrl+C
    try:
        with deployed(args.replicas, args.address, args.host, args.port, args.device, args.precision, args.token,
                      say=lambda text: print(text, file=sys.stderr)) as (url, count):
            print(f"Serving Sfumato's engine at {url} on {count} replica{'s' * (count != 1)} through Ray Serve "
                  "(Ctrl+C stops it)", flush=True)
            signal.pause() if hasattr(signal, "pause") else threading.Event().wait()
    except Refused as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    print("sfumato: the server stopped.", file=sys.stderr)
    return 0


def _interrupt(_signal, _frame) -> None:
    raise KeyboardInterrupt


def _warn_if_open(host: str, port: int) -> None:
    if host not in LOOPBACK:
        print(f"sfumato: listening on {host}: anyone who can reach port {port} can use this computer's GPU unless "
              "--token is set; keep it behind a firewall or a reverse proxy.", file=sys.stderr)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family)


def _bind_problem(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is in use (another sfumato serve?); stop that, or choose another port "
                "with --port.")
    if isinstance(error, socket.gaierror):
        return f"{host} is not an address of this computer; give one, or 0.0.0.0 for every network, with --host."
    if error.errno == errno.EACCES:
        return f"this user may not listen on port {port}; choose one above 1023 with --port."
    return f"cannot listen on {host} port {port} ({error.strerror or error}); choose another --host or --port."
