"""The window's engine finds LoRAs in the model folders as they are now, not as they were when it started."""

from diffusers import StableDiffusionPipeline

from desktop.core import settings as settings_store
from desktop.engine.tiny_addons import build_lora
from desktop.ui.main_window import local_backend
from desktop.ui.worker import GenerationWorker
from tests.support.requests import make_request

TIMEOUT = 120_000


def test_a_lora_in_a_model_folder_added_after_the_engine_started_is_found(qtbot, tiny_models, tmp_path):
    """The first start: the engine starts on the demo, then the person adds their A1111 folder (the welcome
    window and the Models window change the settings' folders in place) and names one of its LoRAs."""
    model = str(tiny_models["sd1"].folder)
    settings = settings_store.load()
    worker = GenerationWorker(settings, local_backend)
    try:
        request = make_request(model=model, prompt="a fox", width=64, height=64, steps=2, seed=3, sampler="Euler",
                               schedule="Automatic")
        with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
            worker.submit(request)
        webui = tmp_path / "webui"
        (webui / "models/Stable-diffusion").mkdir(parents=True)
        (webui / "models/Lora").mkdir()
        pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
        build_lora(pipe, "kohya", webui / "models/Lora/detail.safetensors")
        settings.models_folders = [str(webui / "models/Stable-diffusion")]
        outcome = []
        worker.job_finished.connect(lambda *_: outcome.append("finished"))
        worker.job_failed.connect(lambda _job, message: outcome.append(message))
        worker.submit(request.replace(conditioning=request.conditioning.replace(prompt="a fox <lora:detail:1>")))
        qtbot.waitUntil(lambda: bool(outcome), timeout=TIMEOUT)
        assert outcome == ["finished"]
    finally:
        assert worker.shutdown(10_000)
