"""`sfumato restore`: a folder restored with a scale-1 model, what is done skipped, the source's parameters kept
with `Postprocess restore`, and an upscaler or a bad kind refused in one line."""

from PIL import Image

from desktop.__main__ import main as sfumato
from desktop.core.infotext import parse_infotext
from desktop.engine import tiny_upscaler

from .test_cli_upscale import pictures  # noqa: F401 - the fixture


def run(capsys, *args):
    code = sfumato(["restore", *args, "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_a_folder_is_restored_at_its_size_and_a_second_run_skips_what_is_done(capsys, tmp_path, pictures):  # noqa: F811
    out = tmp_path / "out"
    code, paths, err = run(capsys, "--input", str(pictures), "--kind", "jpeg", "--out", str(out))
    assert code == 0, err
    assert paths == [str(out / "a-jpeg.png"), str(out / "b-jpeg.png")]
    a = Image.open(out / "a-jpeg.png")
    assert a.size == (40, 30) and Image.open(out / "b-jpeg.png").size == (24, 20)
    info = parse_infotext(a.text["parameters"])
    assert info.prompt == "a lighthouse" and info.params["Seed"] == "3"
    assert info.params["Postprocess restore"] == "Demo restorer (random weights)"
    (out / "b-jpeg.png").unlink()
    code, paths, err = run(capsys, "--input", str(pictures), "--kind", "jpeg", "--out", str(out))
    assert code == 0 and paths == [str(out / "b-jpeg.png")] and "a.png: already done (a-jpeg.png)" in err


def test_a_named_restorer_file_is_used_and_an_upscaler_is_refused(capsys, tmp_path, pictures):  # noqa: F811
    restorer = tiny_upscaler.build_restorer(tmp_path / "1x-SCUNet-ish.safetensors")
    code, paths, err = run(capsys, "--input", str(pictures / "a.png"), "--model", str(restorer), "--out",
                           str(tmp_path / "out"))
    assert code == 0, err
    info = parse_infotext(Image.open(paths[0]).text["parameters"])
    assert info.params["Postprocess restore"] == "1x-SCUNet-ish"
    upscaler = tiny_upscaler.build(tmp_path / "4x-Tiny.safetensors")
    code, paths, err = run(capsys, "--input", str(pictures), "--model", str(upscaler), "--out", str(tmp_path / "o2"))
    assert code == 1 and paths == []
    assert "it is an x4 upscaler, not a restorer" in err and err.count("sfumato: a.png") == 1 and "b.jpg" not in err


def test_a_bad_kind_is_one_line(capsys, pictures):  # noqa: F811
    code, paths, err = run(capsys, "--input", str(pictures), "--kind", "faces")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--kind" in err
