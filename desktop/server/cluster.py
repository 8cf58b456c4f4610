"""`sfumato serve --replicas N` / `--address ADDR`: Sfumato's engine on a Ray cluster, and only what it started.

`deployed(...)` joins the cluster at `address` (machines joined with `ray start --address`, or a KubeRay head) or
starts one on this computer, starts Ray Serve's HTTP proxy on host:port when Serve is not running yet, and deploys
desktop/server/ray_app.py's engines; it yields the URL once every replica answers. Leaving it takes back exactly
what it added: the Sfumato application it deployed; Serve, when it started Serve; the local cluster, when it
started one. Anything else on the cluster is left alone (never `ray stop`, which stops every Ray process on a
machine), and an application already named "sfumato" there is refused, not replaced. Problems it can foresee
(not enough free GPUs or CPUs for the replicas, an address with no cluster, replicas that do not start) are a
Refused with one sentence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator

from desktop.core.errors import SfumatoError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEPLOY_LIMIT_S = 600  # replicas import torch and the engine, on a busy machine; longer is resources held elsewhere


class Refused(SfumatoError):
    """The cluster cannot serve what was asked; the sentence says what to change."""


@contextlib.contextmanager
def deployed(replicas: int | None, address: str | None, host: str, port: int, device: str, precision: str,
             token: str | None, say=print) -> Iterator[tuple[str, int]]:
    """Serve `replicas` engines (None: one per GPU of the cluster, at least one); yields (url, replicas)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray asks to send usage statistics otherwise
    import ray
    from ray import serve

    from desktop.server import ray_app

    options = {"logging_level": logging.WARNING, "log_to_driver": False, "configure_logging": True}
    if address:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise Refused(f"There is no Ray cluster at {address} ({_first_line(error)}): start one with `ray start "
                          "--head` on its first machine, then give that machine's address:port.") from None
    else:
        local = {"_node_ip_address": "127.0.0.1"} if host in LOOPBACK else {}
        ray.init(include_dashboard=False, **local, **options)
    started_serve = deployed_here = False
    try:
        free = ray.available_resources()  # what other work on the cluster does not hold now
        gpus = int(free.get("GPU", 0)) if device in ("auto", "cuda") else 0
        count = replicas or max(1, gpus)
        _check_room(count, gpus, int(free.get("CPU", 0)), device)
        started_serve = not _serve_running()
        if not started_serve and ray_app.APP_NAME in serve.status().applications:
            raise Refused(f"The Ray cluster at {address} already serves an application named "
                          f"{ray_app.APP_NAME!r} (another sfumato serve, or serve deploy): use that one, or stop it "
                          "first (serve shutdown, or Ctrl+C where it was started).")
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        http = serve.context._get_global_client().http_config
        if not started_serve and (http.host, http.port) != (host, port):
            say(f"sfumato: Ray Serve already runs on this cluster at {http.host}:{http.port}; Sfumato is served "
                "there too.")
        deployed_here = True
        _run_within(lambda: serve.run(ray_app.deployment(count, gpus > 0, device, precision, token),
                                      name=ray_app.APP_NAME, route_prefix="/", blocking=False), count, gpus > 0)
        yield f"http://{reachable(http.host, address)}:{http.port}", count
    finally:
        if deployed_here:  # never an application of the same name that was there before
            _quietly(serve.delete, ray_app.APP_NAME)
        if started_serve:
            _quietly(serve.shutdown)
        _quietly(ray.shutdown)  # stops the cluster it started; from a joined one, only this driver goes


def _run_within(deploy, count: int, gpus: bool) -> None:
    """Deploy, and wait at most DEPLOY_LIMIT_S for the replicas to run (Serve waits forever for resources that
    other work holds)."""
    done, failed = threading.Event(), []

    def run() -> None:
        try:
            deploy()
        except Exception as error:  # noqa: BLE001 - said below, in a sentence
            failed.append(error)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="sfumato-deploy").start()
    if not done.wait(DEPLOY_LIMIT_S):
        held = "GPUs" if gpus else "CPUs"
        raise Refused(f"The {count} replica(s) did not start within {DEPLOY_LIMIT_S / 60:g} minutes: the cluster's "
                      f"{held} may be held by other work (`ray status` shows what holds them); ask for fewer "
                      "--replicas, or try again when they are free.")
    if failed:
        raise Refused(f"Ray Serve could not start Sfumato's engines ({_first_line(failed[0])}); the replicas' "
                      "logs are in logs/serve of the head's Ray session folder (session_latest in the --temp-dir "
                      "that ray start was given).")


def reachable(host: str, address: str | None) -> str:
    """The address to give other computers: the head's (the proxy runs there) when listening on every network."""
    if host in ("0.0.0.0", "::", ""):
        host = address.rsplit(":", 1)[0] if address else socket.gethostname()
    return f"[{host}]" if ":" in host else host


def _check_room(count: int, gpus: int, cpus: int, device: str) -> None:
    if gpus:
        if count > gpus:
            raise Refused(f"{count} replicas want one GPU each and the Ray cluster has {gpus} free: ask for "
                          f"--replicas {gpus} or fewer, or join machines with more GPUs (ray start --address ...).")
        return
    if device == "cuda":
        raise Refused("--device cuda was asked for and the Ray cluster has no GPU: join a machine with one "
                      "(ray start --address ...), or leave --device out.")
    if count > cpus:
        raise Refused(f"{count} replicas want one CPU each and the Ray cluster has {cpus} free: ask for --replicas "
                      f"{max(1, cpus)} or fewer.")


def _serve_running() -> bool:
    from ray import serve

    return serve.context._get_global_client(raise_if_no_controller_running=False) is not None


def _quietly(call, *args) -> None:
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - already gone: the cluster went down first
        logging.getLogger(__name__).debug("while stopping", exc_info=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__

