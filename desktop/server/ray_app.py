"""Sfumato's engine as a Ray Serve deployment: one replica per GPU, on as many machines as the Ray cluster has.

Each replica is the app of desktop/server/app.py around its own LocalBackend (one engine thread), so a replica
answers exactly what `sfumato serve` on one machine answers; Serve's proxy spreads the requests over the
replicas. A replica asks for one GPU when the cluster has GPUs (Ray then shows it only that one, and the engine
picks it), else one CPU. Its /health says how many replicas are running, so a client sends that many jobs at once.
When the client closes a job's stream (its cancel), Serve cancels the request's asyncio task and the stream's
cleanup sets the engine's cancel flag: the job stops within one step.

`sfumato serve --replicas N` / `--address` deploys it (desktop/cli_serve.py); operators who keep a cluster
running deploy it with `serve deploy resources/serving/serve_config.yaml`, which calls `build(args)`.
"""

from __future__ import annotations

import threading
import time

from ray import serve

from desktop.core import settings

APP_NAME = "sfumato"
DEPLOYMENT = "SfumatoEngine"
COUNT_FOR_S = 5.0  # how long a replica reuses the count of running replicas it last asked the controller for
ONGOING = 4  # requests a replica holds at once: its jobs wait for its one engine thread; /health and /models pass


@serve.deployment(name=DEPLOYMENT, max_ongoing_requests=ONGOING, health_check_period_s=5,
                  graceful_shutdown_timeout_s=5)
@serve.ingress()
class SfumatoEngine:
    def __init__(self, device: str = "auto", precision: str = "auto", token: str | None = None):
        self._device, self._precision, self._token = device, precision, token or None
        self._count, self._counted_at = 1, float("-inf")
        self._count_lock = threading.Lock()

    def __serve_build_asgi_app__(self):
        from desktop.server.app import create_app

        self._count = max(1, serve.get_replica_context().world_size)
        # named host:pid, as a lone server is: the process to look for in the machine's logs and process list
        return create_app(self._make_backend, token=self._token, replicas=self._running)

    def _make_backend(self):
        from desktop.engine.local import LocalBackend

        return LocalBackend(self._device, self._precision, settings.load(set_aside=False).models_folders)

    def _running(self) -> int:
        """The deployment's running replicas (asked of Serve's controller at most every COUNT_FOR_S)."""
        with self._count_lock:
            if time.monotonic() - self._counted_at < COUNT_FOR_S:
                return self._count
            context = serve.get_replica_context()
            try:
                deployment = serve.status().applications[context.app_name].deployments[context.deployment]
                self._count = max(1, int(deployment.replica_states.get("RUNNING", 0)))
            except Exception:  # noqa: BLE001 - the controller is busy or gone: the last count is good enough
                pass
            if self._count >= context.world_size:  # while replicas start (or restart), ask again next time
                self._counted_at = time.monotonic()
            return self._count


def deployment(replicas: int, gpus: bool, device: str = "auto", precision: str = "auto", token: str | None = None):
    """The bound application: `replicas` engines, each on one GPU (`gpus`) or one CPU."""
    options = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    return SfumatoEngine.options(num_replicas=replicas, ray_actor_options=options).bind(device, precision, token)


def build(args: dict):
    """`serve deploy`'s entry (resources/serving/serve_config.yaml): args replicas, gpus, device, precision,
    token; the config's own num_replicas and ray_actor_options, when given, win over these."""
    return deployment(int(args.get("replicas", 1)), bool(args.get("gpus", True)), str(args.get("device", "auto")),
                      str(args.get("precision", "auto")), args.get("token") or None)
