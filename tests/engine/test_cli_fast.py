"""`sfumato generate` for fast pictures: --fast, --decoder, --runtime, and a few-step model's own defaults."""

from types import SimpleNamespace

import pytest
from PIL import Image

from desktop import cli
from desktop.core import settings as settings_store
from desktop.core.infotext import parse_infotext


def request(*argv: str):
    return cli.request_from_args(cli.build_parser().parse_args(["--prompt", "a lighthouse", *argv]))


def run_cli(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture
def lcm_model(tmp_path, tiny_models):
    """The tiny SD 1.x model under a name that says it is an LCM model."""
    linked = tmp_path / "dreamshaper_8_lcm"
    linked.symlink_to(tiny_models["sd1"].folder, target_is_directory=True)
    return str(linked)


@pytest.fixture
def plain_model(tmp_path, tiny_models):
    linked = tmp_path / "my_finetune"
    linked.symlink_to(tiny_models["sd1"].folder, target_is_directory=True)
    return str(linked)


def mark(name: str, kind: str) -> None:
    chosen = settings_store.load(set_aside=False)
    chosen.few_step_marks = {name: kind}
    settings_store.save(chosen)


def sampling(made):
    s = made.sampling
    return s.sampler, s.schedule, s.steps, s.cfg_scale


def test_a_few_step_model_gets_its_own_steps_cfg_and_sampler_unless_they_are_given(lcm_model):
    assert sampling(request("--model", lcm_model)) == ("LCM", "Automatic", 4, 1.0)
    assert sampling(request("--model", lcm_model, "--steps", "6", "--cfg", "1.5", "--sampler", "Euler")) == (
        "Euler", "Automatic", 6, 1.5)
    assert request("--model", lcm_model).decoder == "full"  # few-step defaults alone keep the full VAE


def test_the_persons_mark_decides_for_a_name_that_says_nothing_or_the_wrong_thing(lcm_model, plain_model):
    assert sampling(request("--model", plain_model))[:3] == ("DPM++ 2M", "Automatic", 20)
    mark("my_finetune", "lightning")
    assert sampling(request("--model", plain_model)) == ("Euler", "SGM Uniform", 4, 1.0)
    mark("dreamshaper_8_lcm", "none")
    assert sampling(request("--model", lcm_model))[:3] == ("DPM++ 2M", "Automatic", 20)


def test_fast_on_the_demo_model_uses_lcm_and_the_taesd_decoder_and_options_still_win():
    fast = request("--fast")
    assert sampling(fast) == ("LCM", "Automatic", 4, 1.0) and fast.decoder == "tiny"
    given = request("--fast", "--steps", "6", "--decoder", "full")
    assert given.sampling.steps == 6 and given.decoder == "full"


def test_fast_adds_the_best_few_step_lora_of_the_family_once(plain_model, monkeypatch):
    listed = [SimpleNamespace(name="lcm-lora-sdv1-5", few_step="lcm", family="sd1"),
              SimpleNamespace(name="Hyper-SDXL-8steps-lora", few_step="hyper", family="sdxl"),
              SimpleNamespace(name="detail_tweaker", few_step="", family="sd1")]
    monkeypatch.setattr(cli.addons, "list_addons", lambda kind, folders: listed)
    fast = request("--model", plain_model, "--fast")
    assert fast.conditioning.prompt == "a lighthouse, <lora:lcm-lora-sdv1-5:1>"
    assert sampling(fast) == ("LCM", "Automatic", 4, 1.0) and fast.decoder == "tiny"
    again = cli.request_from_args(cli.build_parser().parse_args(
        ["--prompt", "a lighthouse <lora:lcm-lora-sdv1-5:0.8>", "--model", plain_model, "--fast"]))
    assert again.conditioning.prompt == "a lighthouse <lora:lcm-lora-sdv1-5:0.8>"  # the person's own weight stays


def test_fast_without_a_few_step_path_says_what_to_add_in_one_line(capsys, plain_model, monkeypatch):
    monkeypatch.setattr(cli.addons, "list_addons", lambda kind, folders: [])
    code, paths, err = run_cli(capsys, "--model", plain_model, "--prompt", "a fox", "--fast")
    assert code == 2 and paths == []
    assert err.startswith("sfumato: SD 1.x has no few-step path here: put an LCM") and err.count("\n") == 1


def test_decoder_is_a_choice(capsys):
    assert request("--decoder", "tiny").decoder == "tiny" and request().decoder == "full"
    code, _paths, err = run_cli(capsys, "--prompt", "a fox", "--decoder", "huge")
    assert code == 2 and "--decoder" in err and err.count("\n") == 1


def test_runtime_overrides_the_setting_for_the_run_only(monkeypatch):
    from desktop.engine.local import LocalBackend

    chosen = settings_store.load(set_aside=False)
    chosen.cpu_runtime, chosen.cpu_threads = "pytorch", 3
    settings_store.save(chosen)
    given = []
    started = SimpleNamespace(start=lambda state: "CPU")
    monkeypatch.setattr(LocalBackend, "from_settings", classmethod(lambda cls, s: given.append(s) or started))
    args = cli.build_parser().parse_args(["--prompt", "a fox", "--runtime", "openvino", "--device", "cpu"])
    assert cli.start_backend(args, cli._Progress()) is started
    assert (given[0].cpu_runtime, given[0].cpu_threads, given[0].device) == ("openvino", 3, "cpu")
    assert settings_store.load(set_aside=False).cpu_runtime == "pytorch"  # the saved setting is untouched
    cli.start_backend(cli.build_parser().parse_args(["--prompt", "a fox"]), cli._Progress())
    assert given[1].cpu_runtime == "pytorch"  # no --runtime: the Settings window's


def test_runtime_is_the_servers_with_server(capsys):
    code, _paths, err = run_cli(capsys, "--prompt", "a fox", "--runtime", "openvino", "--server", "http://127.0.0.1:9")
    assert code == 2 and "--runtime" in err and err.count("\n") == 1


def test_a_fast_picture_says_how_it_was_made(capsys, tmp_path, lcm_model):
    code, paths, err = run_cli(capsys, "--model", lcm_model, "--prompt", "a fox", "--fast", "--decoder", "full",
                               "--steps", "2", "--width", "64", "--height", "64", "--seed", "5", "--runtime", "pytorch",
                               "--out", str(tmp_path / "out"))
    assert code == 0, err
    params = parse_infotext(Image.open(paths[0]).text["parameters"]).params
    assert (params["Sampler"], params["Steps"], params["CFG scale"]) == ("LCM", "2", "1")
    assert "Decoder" not in params  # the full VAE decoded it


def test_fast_on_a_servers_model_waits_for_it_to_load_to_know_its_kind():
    from desktop.core.backend import ModelDescriptor

    args = cli.build_parser().parse_args(["--prompt", "a fox", "--fast", "--server", "http://gpu-box:7862",
                                          "--model", "sdxl_lightning_4step"])
    before = cli.request_from_args(args)  # not known yet: no refusal, the TAESD decoder already
    assert before.decoder == "tiny"
    loaded = ModelDescriptor("sdxl_lightning_4step", "sdxl", "sdxl_lightning_4step", few_step="lightning")
    after = cli.request_from_args(args, cli.loaded_recommendation(args, loaded), loaded)
    assert sampling(after) == ("Euler", "SGM Uniform", 4, 1.0) and after.decoder == "tiny"
    plain = ModelDescriptor("xl", "sdxl", "xl")
    with pytest.raises(cli.fewstep.NoFastPath, match="SDXL has no few-step path here"):
        cli.request_from_args(args, None, plain)


def test_a_full_lcm_checkpoint_gets_cfg_8_by_default_and_with_fast(tmp_path):
    from tests.core.test_fewstep import write_guided_lcm_folder  # noqa: PLC0415

    folder = write_guided_lcm_folder(tmp_path / "dreamshaper-distilled")
    assert sampling(request("--model", str(folder))) == ("LCM", "Automatic", 4, 8.0)
    assert sampling(request("--model", str(folder), "--fast")) == ("LCM", "Automatic", 4, 8.0)
