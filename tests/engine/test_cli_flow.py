"""sfumato generate with the flow-matching families: each model's recommended values when the options leave them
out, told from its file, its demo kind, or once loaded (a Hub id); the help's numbers come from the families' table."""

import pytest

from desktop import cli
from desktop.core import families
from desktop.core.backend import ModelDescriptor
from tests.support.fake_backend import FakeBackend


def test_a_flux_folder_gets_flux_values(tiny_models):
    assert cli.recommended_settings(str(tiny_models["flux1"].folder)) == families.spec("flux1").variant("dev")
    assert cli.recommended_settings("demo:sd3") == families.spec("sd3").variant("")
    assert cli.recommended_settings(str(tiny_models["sd1"].folder)).cfg_scale == 7


class HubSchnell(FakeBackend):
    """FLUX.1 [schnell] from the Hub: only loading it tells what it is."""

    def _ensure(self, ref, state):
        self.current = ModelDescriptor(ref, "flux1", "FLUX.1-schnell", "", variant="schnell")
        return self.current


@pytest.mark.parametrize("given, expected", [([], (4, 1.0, "Euler")),
                                             (["--steps", "6", "--cfg", "2"], (6, 2.0, "Euler"))])
def test_a_hub_id_gets_its_family_values_once_loaded(capsys, tmp_path, monkeypatch, given, expected):
    backend = HubSchnell()
    monkeypatch.setattr(cli, "start_backend", lambda args, progress: backend)
    code = cli.main(["--model", "black-forest-labs/FLUX.1-schnell", "--prompt", "a fox", "--width", "64",
                     "--height", "64", "--seed", "3", "--out", str(tmp_path), *given])
    assert code == 0, capsys.readouterr().err
    sampling = backend.jobs[0].request.sampling
    assert (sampling.steps, sampling.cfg_scale, sampling.sampler) == expected, "never SD's CFG 7 on FLUX.1"


def test_the_help_names_the_families_recommendations():
    text = " ".join(cli.build_parser().format_help().split())
    for variant in (families.spec("zimage").variant("turbo"), families.spec("flux1").variant("schnell")):
        assert f"{variant.steps} for" in text and variant.label in text
    assert "9 for Z-Image" not in text


def test_a_demo_name_that_is_not_one_is_a_sentence(capsys):
    assert cli.main(["--model", "demo:nope", "--prompt", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sfumato: --model demo:nope is not a demo model; the demo models are demo, ")
    assert err.endswith("demo:sd3.")


def test_a_downloaded_hub_id_gets_its_values_before_loading(tiny_models):
    """Already in Sfumato's Hub cache: told from its snapshot, so plots and batches get them too."""
    import shutil

    from desktop.core import model_sources

    repo = model_sources.hub_cache_dir() / "models--black-forest-labs--FLUX.1-dev"
    shutil.copytree(tiny_models["flux1"].folder, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd\n")
    assert cli.recommended_settings("black-forest-labs/FLUX.1-dev") == families.spec("flux1").variant("dev")
    assert cli.recommended_settings("black-forest-labs/FLUX.1-schnell").cfg_scale == 7, "not downloaded: told later"
