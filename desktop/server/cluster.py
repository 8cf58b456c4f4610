"""`sfumato serve --replicas N` / `--address ADDR`: Sfumato's engine on a Ray cluster, and only what it started.

`deployed(...)` joins the cluster at `address` (machines joined with `ray start --address`, or a KubeRay head) or
starts one on this computer, starts Ray Serve's HTTP proxy on host:port when Serve is not running yet, and deploys
desktop/server/ray_app.py's engines; it yields the URL once every replica answers. Leaving it takes back exactly
what it added: the Sfumato application; Serve, when it started Serve; the local cluster, when it started one.
Anything else on the cluster is left alone (never `ray stop`, which stops every Ray process on a machine).
Problems it can foresee (not enough GPUs or CPUs for the replicas, an address with no cluster) are a Refused
with one sentence.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from desktop.core.errors import SfumatoError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
    started_serve = False
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if device in ("auto", "cuda") else 0
        count = replicas or max(1, gpus)
        _check_room(count, gpus, int(resources.get("CPU", 0)), device)
        started_serve = not _serve_running()
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        http = serve.context._get_global_client().http_config
        if not started_serve and (http.host, http.port) != (host, port):
            say(f"sfumato: Ray Serve already runs on this cluster at {http.host}:{http.port}; Sfumato is served "
                "there too.")
        serve.run(ray_app.deployment(count, gpus > 0, device, precision, token), name=ray_app.APP_NAME,
                  route_prefix="/", blocking=False)
        shown = f"[{http.host}]" if ":" in http.host else http.host
        yield f"http://{shown}:{http.port}", count
    finally:
        _quietly(serve.delete, ray_app.APP_NAME)
        if started_serve:
            _quietly(serve.shutdown)
        _quietly(ray.shutdown)  # stops the cluster it started; from a joined one, only this driver goes


def _check_room(count: int, gpus: int, cpus: int, device: str) -> None:
    if gpus:
        if count > gpus:
            raise Refused(f"{count} replicas want one GPU each and the Ray cluster has {gpus}: ask for "
                          f"--replicas {gpus} or fewer, or join machines with more GPUs (ray start --address ...).")
        return
    if device == "cuda":
        raise Refused("--device cuda was asked for and the Ray cluster has no GPU: join a machine with one "
                      "(ray start --address ...), or leave --device out.")
    if count > cpus:
        raise Refused(f"{count} replicas want one CPU each and the Ray cluster has {cpus}: ask for --replicas "
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

