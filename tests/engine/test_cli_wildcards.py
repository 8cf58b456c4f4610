"""`sfumato generate` with wildcards: the PNGs record the prompt the seed chose; a missing file is one line."""

from PIL import Image

from desktop.cli import main
from desktop.core import paths
from desktop.core.infotext import parse_infotext
from desktop.core.wildcards import expand, wildcard_folders


def test_the_saved_parameters_hold_the_prompt_the_seed_chose(capsys, tmp_path, tiny_models):
    colors = paths.wildcards_dir() / "colors.txt"
    colors.parent.mkdir(parents=True)
    colors.write_text("red\ngreen\nblue\namber\n", encoding="utf-8")
    template = "a __colors__ {fox|owl|cat}, (fur:1.2) [snow|rain]"
    code = main(["--model", str(tiny_models["sd1"].folder), "--prompt", template, "--negative", "{blurry|dark}",
                 "--steps", "2", "--width", "64", "--height", "64", "--seed", "9", "--batch", "2",
                 "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    folders = wildcard_folders()
    prompt = expand(template, 9, folders)
    assert "__" not in prompt and prompt.endswith(", (fur:1.2) [snow|rain]")
    assert prompt != expand(template, 10, folders)
    seeds = []
    for path in out.splitlines():  # each seed of the batch with the prompt it chooses alone
        info = parse_infotext(Image.open(path).text["parameters"])
        seed = int(info.params["Seed"])
        seeds.append(seed)
        assert (info.prompt, info.negative_prompt) == (expand(template, seed, folders),
                                                        expand("{blurry|dark}", seed, folders, negative=True))
    assert seeds == [9, 10]


def test_a_missing_wildcard_file_exits_2_with_one_line(capsys):
    code = main(["--model", "demo", "--prompt", "a __nowhere__ fox", "--steps", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "__nowhere__" in err and str(paths.wildcards_dir()) in err
