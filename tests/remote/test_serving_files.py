"""The operators' files (resources/serving) and `sfumato serve`'s Ray options, without starting Ray: the
configurations are what Ray Serve accepts, and a cluster too small for the replicas is one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from desktop.__main__ import main
from desktop.server import ray_app
from desktop.server.cluster import Refused, _check_room

SERVING = Path(__file__).parents[2] / "resources" / "serving"


@pytest.mark.parametrize("config", [
    yaml.safe_load((SERVING / "serve_config.yaml").read_text()),
    yaml.safe_load(yaml.safe_load((SERVING / "kuberay.yaml").read_text())["spec"]["serveConfigV2"]),
], ids=["serve_config", "kuberay"])
def test_the_serve_configurations_are_valid_and_name_the_engine(config):
    schema = ServeDeploySchema.model_validate(config)
    [app] = schema.applications
    assert app.import_path == "desktop.server.ray_app:build"
    assert [d.name for d in app.deployments] == [ray_app.DEPLOYMENT]
    built = ray_app.build(app.args)  # what `serve deploy` calls with the file's args
    assert built._bound_deployment.name == ray_app.DEPLOYMENT


def test_the_replicas_ask_for_one_gpu_each_or_one_cpu_each():
    on_gpus = ray_app.deployment(3, True)._bound_deployment
    on_cpus = ray_app.deployment(2, False)._bound_deployment
    assert (on_gpus.num_replicas, on_gpus.ray_actor_options["num_gpus"]) == (3, 1)
    assert (on_cpus.num_replicas, on_cpus.ray_actor_options["num_cpus"]) == (2, 1)


@pytest.mark.parametrize("count, gpus, cpus, device, sentence", [
    (4, 2, 16, "auto", "4 replicas want one GPU each and the Ray cluster has 2 free: ask for --replicas 2 or fewer, or "
                       "join machines with more GPUs (ray start --address ...)."),
    (3, 0, 2, "cpu", "3 replicas want one CPU each and the Ray cluster has 2 free: ask for --replicas 2 or fewer."),
    (1, 0, 8, "cuda", "--device cuda was asked for and the Ray cluster has no GPU: join a machine with one "
                      "(ray start --address ...), or leave --device out."),
])
def test_a_cluster_too_small_for_the_replicas_is_one_sentence(count, gpus, cpus, device, sentence):
    with pytest.raises(Refused) as refused:
        _check_room(count, gpus, cpus, device)
    assert str(refused.value) == sentence
    _check_room(2, 2, 0, "auto")  # room: nothing said
    _check_room(2, 0, 2, "cpu")


@pytest.mark.parametrize("given", ["0", "many", "-2", "257"])
def test_a_replica_count_that_is_no_count_is_one_sentence_and_exit_2(given, capsys):
    assert main(["serve", "--replicas", given]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"sfumato: argument --replicas: must be a whole number from 1 to 256, "
                                              f"got {given!r}"]
