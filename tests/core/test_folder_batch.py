"""desktop/core/folder_batch.py: every picture of a folder, N variations each with their own seeds, names that keep
the stem, masks matched by name, a complete manifest, unreadable pictures listed, and a resume that skips what is
done. The resume after a SIGKILL of `sfumato batch` on the demo model is in tests/engine/test_cli_batch.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.core import credentials
from desktop.core.errors import Cancelled, InvalidRequest, SfumatoError
from desktop.core.folder_batch import FolderBatchRun, PostSettings
from desktop.core.progress import TaskState
from desktop.core.runs import RunContext, decode_run
from desktop.core.settings import Settings
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


def _context() -> RunContext:
    def nowhere(*args):
        raise AssertionError("a folder batch saves into its own folder, not the gallery")

    return RunContext(Settings(), nowhere, nowhere)


def _picture(path: Path, width: int = 80, height: int = 72, colour=(200, 40, 40), text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), colour)
    if text:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", text)
        image.save(path, pnginfo=info)
    else:
        image.save(path)
    return path


def _manifest(folder: Path) -> tuple[dict, list[dict]]:
    data = json.loads((folder / "manifest.json").read_text("utf-8"))
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as handle:
        return data, list(csv.DictReader(handle))


BASE = make_request(model="demo", prompt="a quay at dusk", steps=4, strength=0.5, seed=100)


def test_each_picture_gets_n_variations_with_distinct_seeds_named_after_its_stem(tmp_path):
    for name in ("cat.png", "dog.jpg"):
        _picture(tmp_path / "in" / name)
    (tmp_path / "in" / "notes.txt").write_text("not a picture")
    out = tmp_path / "out"
    backend, seen = FakeBackend(), []
    run = FolderBatchRun(tmp_path / "in", "img2img", out, BASE, variations=3).check()
    state = TaskState(on_step=lambda i, n, preview: seen.append((i, n)))
    outcome = run.run(backend, state, _context())
    assert sorted(p.name for p in out.glob("*.png")) == [f"{s}-{k:02d}.png" for s in ("cat", "dog") for k in range(3)]
    assert [job.request.sampling.seed for job in backend.jobs] == [100, 101, 102, 100, 101, 102]
    assert {(job.request.width, job.request.height) for job in backend.jobs} == {(80, 72)}  # its own size
    parameters = Image.open(out / "cat-01.png").text["parameters"]
    assert "Seed: 101" in parameters and "Denoising strength: 0.5" in parameters and "a quay at dusk" in parameters
    assert json.loads(Image.open(out / "cat-01.png").text["sfumato"])["request"]["sampling"]["seed"] == 101
    data, rows = _manifest(out)
    assert [(r["input"], r["output"], r["status"], r["seed"]) for r in rows] == [
        (s, f"{Path(s).stem}-{k:02d}.png", "done", str(100 + k)) for s in ("cat.png", "dog.jpg") for k in range(3)]
    assert rows[1]["parameters"] == parameters
    assert data["batch"]["seed"] == 100 and data["batch"]["variations"] == 3
    assert [e["status"] for e in data["inputs"]] == ["done", "done"]
    assert seen[-1] == (run.total_steps(), run.total_steps()) == (12, 12)  # one bar: 6 outputs x 2 steps
    assert outcome.summary == f"6 outputs; they and manifest.csv are in {out}"
    found = credentials.read(out / "cat-01.png")  # signed: its input picture opened, then edited
    assert (found.state, found.actions, found.ingredients) == (credentials.UNTRUSTED, ("c2pa.opened", "c2pa.edited"), 1)


def test_a_picture_that_cannot_be_read_is_listed_with_its_reason_and_the_batch_goes_on(tmp_path):
    _picture(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"not a png at all")
    _picture(tmp_path / "in" / "c.png")
    out = tmp_path / "out"
    outcome = FolderBatchRun(tmp_path / "in", "img2img", out, BASE, variations=2).check().run(
        FakeBackend(), TaskState(), _context())
    assert sorted(p.name for p in out.glob("*.png")) == ["a-00.png", "a-01.png", "c-00.png", "c-01.png"]
    data, rows = _manifest(out)
    broken = [r for r in rows if r["input"] == "b.png"]
    assert broken == [{"input": "b.png", "output": "", "status": "unreadable", "seed": "", "mask": "",
                       "parameters": "", "reason": broken[0]["reason"]}]
    assert broken[0]["reason"].startswith("b.png is not a picture Sfumato can read")
    assert outcome.summary == f"4 outputs, 1 unreadable: see manifest.csv in {out}"


def test_masks_are_matched_by_name_and_a_picture_without_one_is_listed(tmp_path):
    _picture(tmp_path / "in" / "cat.jpg")
    _picture(tmp_path / "in" / "dog.png")
    _picture(tmp_path / "in" / "owl.png")
    masks = tmp_path / "masks"
    mask = np.zeros((36, 40), np.uint8)
    mask[:, 20:] = 255  # the right half, at half the size: resized to the picture's
    Image.fromarray(mask).save(_picture(masks / "cat.png"))  # cat.jpg <-> cat.png: the same stem
    full = np.zeros((72, 80), np.uint8)
    full[:36] = 255  # the top half
    Image.fromarray(full).save(_picture(masks / "dog.png"))
    backend, out = FakeBackend(), tmp_path / "out"
    outcome = FolderBatchRun(tmp_path / "in", "inpaint", out, BASE, variations=1, mask_dir=masks).check().run(
        backend, TaskState(), _context())
    assert len(backend.jobs) == 2 and all(job.request.mode.value == "inpaint" for job in backend.jobs)
    cat, dog = (job.request.images.mask for job in backend.jobs)
    assert cat.shape == (72, 80) and cat[:, 42:].min() == 255 and cat[:, :38].max() == 0
    assert dog[:36].min() == 255 and dog[36:].max() == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["cat-00.png", "dog-00.png"]
    data, rows = _manifest(out)
    assert [(r["input"], r["mask"], r["status"]) for r in rows] == [
        ("cat.jpg", "cat.png", "done"), ("dog.png", "dog.png", "done"), ("owl.png", "", "failed")]
    assert rows[2]["reason"] == f"owl.png has no mask in {masks}: add one of the same name."
    assert outcome.summary == f"2 outputs, 1 failed: see manifest.csv in {out}"


def test_an_upscale_writes_one_picture_per_input_with_the_stem_and_extras_keys(tmp_path):
    _picture(tmp_path / "in" / "cat.png", text="a cat, Steps: 20, Seed: 5")
    _picture(tmp_path / "in" / "cat.jpg")  # shares the stem: both get their suffix
    out = tmp_path / "out"
    run = FolderBatchRun(tmp_path / "in", "upscale", out, post=PostSettings(scale=2.0), variations=4).check()
    assert run.variations == 1 and run.pictures() == 2
    outcome = run.run(FakeBackend(), TaskState(), _context())
    assert sorted(p.name for p in out.glob("*.png")) == ["cat-jpg.png", "cat-png.png"]
    assert Image.open(out / "cat-png.png").size == (160, 144)
    assert Image.open(out / "cat-png.png").text["parameters"] == (
        "a cat, Steps: 20, Seed: 5, Postprocess upscale by: 2, Postprocess upscaler: Demo upscaler (random weights)")
    assert outcome.summary.endswith("An upscale makes one picture of each; variations count only for img2img and "
                                    "inpaint.")


def test_a_second_run_skips_what_is_done_and_remakes_an_output_the_manifest_does_not_list(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _picture(tmp_path / "in" / name)
    out = tmp_path / "out"
    run = FolderBatchRun(tmp_path / "in", "img2img", out, BASE, variations=2)
    run.run(FakeBackend(), TaskState(), _context())
    data = json.loads((out / "manifest.json").read_text("utf-8"))  # as if killed after b-01.png was written but
    data["inputs"][1]["outputs"].pop()  # before the manifest listed it, and before c was started
    data["inputs"].pop()
    (out / "manifest.json").write_text(json.dumps(data), "utf-8")
    for name in ("c-00.png", "c-01.png"):
        (out / name).unlink()
    (out / ".c-00.png.0123456789.tmp").write_bytes(b"half a png")  # a write the kill cut short
    again = FakeBackend()
    outcome = FolderBatchRun.decode(run.encode()).run(again, TaskState(), _context())
    assert [(job.request.sampling.seed) for job in again.jobs] == [101, 100, 101]  # b-01, c-00, c-01
    assert sorted(p.name for p in out.iterdir()) == [
        "a-00.png", "a-01.png", "b-00.png", "b-01.png", "c-00.png", "c-01.png", "manifest.csv", "manifest.json"]
    _, rows = _manifest(out)
    assert [(r["output"], r["status"]) for r in rows] == [(f"{s}-{k:02d}.png", "done") for s in "abc" for k in (0, 1)]
    assert outcome.summary == f"3 outputs, 3 skipped (already done); they and manifest.csv are in {out}"


def test_a_picture_whose_outputs_were_all_listed_before_the_kill_reads_done_after_the_resume(tmp_path):
    _picture(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    run = FolderBatchRun(tmp_path / "in", "img2img", out, BASE, variations=2)
    run.run(FakeBackend(), TaskState(), _context())
    data = json.loads((out / "manifest.json").read_text("utf-8"))  # as if killed after the manifest listed both
    data["inputs"][0]["status"] = ""  # outputs but before it said the picture was done
    (out / "manifest.json").write_text(json.dumps(data), "utf-8")
    again = FakeBackend()
    FolderBatchRun.decode(run.encode()).run(again, TaskState(), _context())
    assert again.jobs == []
    data, rows = _manifest(out)
    assert [entry["status"] for entry in data["inputs"]] == ["done"]
    assert [r["status"] for r in rows] == ["done", "done"]


def test_a_random_seed_is_drawn_once_and_a_resume_keeps_it(tmp_path):
    for name in ("a.png", "b.png"):
        _picture(tmp_path / "in" / name)
    out = tmp_path / "out"
    first = FolderBatchRun(tmp_path / "in", "img2img", out, make_request(prompt="x", steps=2, seed=-1, strength=0.5))
    state = TaskState(on_step=lambda i, n, preview: state.cancel())  # a's one step done: b is cancelled
    with pytest.raises(Cancelled):
        first.run(FakeBackend(), state, _context())
    assert sorted(p.name for p in out.glob("*.png")) == ["a-00.png"]
    seed = json.loads((out / "manifest.json").read_text("utf-8"))["batch"]["seed"]
    second = FolderBatchRun(tmp_path / "in", "img2img", out, make_request(prompt="x", steps=2, seed=-1, strength=0.5))
    again = FakeBackend()
    second.run(again, TaskState(), _context())
    assert [job.request.sampling.seed for job in again.jobs] == [seed]
    _, rows = _manifest(out)
    assert [r["seed"] for r in rows] == [str(seed), str(seed)]


def test_a_folder_batch_comes_back_from_the_stored_queue(tmp_path):
    _picture(tmp_path / "in" / "a.png")
    run = FolderBatchRun(tmp_path / "in", "inpaint", tmp_path / "out", BASE, variations=3, mask_dir=tmp_path / "m")
    back = decode_run(json.loads(json.dumps(run.encode())))
    assert isinstance(back, FolderBatchRun) and back.encode() == run.encode()
    assert back.describe() == "Folder batch (inpaint): 1 pictures of in, 3 each"


@pytest.mark.parametrize("changes, field", [
    ({"variations": 0}, "variations"), ({"mode": "inpaint"}, "mask_dir"), ({"mode": "outpaint"}, "mode"),
    ({"output": "in"}, "output"), ({"input": "nowhere"}, "input"), ({"base": make_request(steps=0)}, "steps")])
def test_bad_settings_are_refused_before_any_work_naming_the_setting(tmp_path, changes, field):
    _picture(tmp_path / "in" / "a.png")
    settings = {"input": "in", "mode": "img2img", "output": "out", "base": BASE, "variations": 1, **changes}
    for key in ("input", "output"):
        settings[key] = tmp_path / settings[key]
    with pytest.raises(InvalidRequest) as refused:
        FolderBatchRun(**settings).check()
    assert refused.value.field == field


def test_the_prompt_s_variants_are_chosen_by_each_output_s_seed_and_recorded(tmp_path):
    _picture(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    base = make_request(prompt="a {red|green|blue|white|black} boat", steps=2, strength=0.5, seed=1)
    backend = FakeBackend()
    FolderBatchRun(tmp_path / "in", "img2img", out, base, variations=4).run(backend, TaskState(), _context())
    prompts = [job.request.conditioning.prompt for job in backend.jobs]
    assert all("{" not in p for p in prompts) and len(set(prompts)) > 1
    assert [Image.open(out / f"a-{k:02d}.png").text["parameters"].splitlines()[0] for k in range(4)] == prompts


def test_another_batch_is_refused_in_a_batch_s_folder_and_the_default_folder_becomes_a_fresh_one(tmp_path):
    for name in ("a.png", "b.png"):
        _picture(tmp_path / "shoot1" / "in" / name)
        _picture(tmp_path / "shoot2" / "in" / name, colour=(0, 0, 200))
    batches = tmp_path / "batches"
    quay = make_request(model="demo", prompt="a red quay", steps=4, strength=0.3, seed=5)
    forest = make_request(model="demo", prompt="a blue forest", steps=4, strength=0.8, seed=5)
    first = FolderBatchRun(tmp_path / "shoot1" / "in", "img2img", tmp_path, quay).into_default_folder(batches)
    assert first.output == batches / "in"
    first.check().run(FakeBackend(), TaskState(), _context())

    with pytest.raises(InvalidRequest) as refused:  # the same folder, named: refused, nothing made
        FolderBatchRun(tmp_path / "shoot1" / "in", "img2img", batches / "in", forest).check()
    assert str(refused.value) == (f"output: {batches / 'in'} holds another batch (its manifest.json has other "
                                  "settings); choose another output folder.")
    backend = FakeBackend()
    second = FolderBatchRun(tmp_path / "shoot1" / "in", "img2img", tmp_path, forest).into_default_folder(batches)
    outcome = second.check().run(backend, TaskState(), _context())
    assert second.output == batches / "in-2" and len(backend.jobs) == 2
    assert outcome.summary == f"2 outputs; they and manifest.csv are in {batches / 'in-2'}"
    assert _manifest(batches / "in")[0]["batch"]["request"]["conditioning"]["prompt"] == "a red quay"
    assert Image.open(batches / "in" / "a-00.png").text["parameters"].startswith("a red quay")

    other = FolderBatchRun(tmp_path / "shoot2" / "in", "img2img", tmp_path, quay).into_default_folder(batches)
    assert other.output == batches / "in-3"  # another folder of the same name is another batch
    again = FolderBatchRun(tmp_path / "shoot1" / "in", "img2img", tmp_path, quay).into_default_folder(batches)
    assert again.output == batches / "in"  # the same batch resumes in its folder
    assert again.check().run(FakeBackend(), TaskState(), _context()).summary == (
        f"0 outputs, 2 skipped (already done); they and manifest.csv are in {batches / 'in'}")


def test_a_new_batch_with_a_random_seed_does_not_take_up_another_batch_s_seed(tmp_path):
    _picture(tmp_path / "in" / "a.png")
    batches = tmp_path / "batches"
    for prompt in ("a quay", "a forest"):
        run = FolderBatchRun(tmp_path / "in", "img2img", tmp_path, make_request(prompt=prompt, steps=2, seed=-1))
        run.into_default_folder(batches).check().run(FakeBackend(), TaskState(), _context())
    seeds = [_manifest(batches / name)[0]["batch"]["seed"] for name in ("in", "in-2")]
    assert seeds[0] != seeds[1]


def test_a_picture_the_backend_fails_on_is_listed_and_the_batch_goes_on(tmp_path):
    for name, colour in (("a.png", (200, 0, 0)), ("b.png", (0, 0, 200)), ("c.png", (200, 0, 0))):
        _picture(tmp_path / "in" / name, colour=colour)
    out, tries = tmp_path / "out", []

    class OutOfMemory(FakeBackend):
        def run(self, job, state):
            tries.append(job.request.images.init[0, 0, 2])
            if job.request.images.init[0, 0, 2] == 200:  # b.png
                raise SfumatoError("The GPU ran out of memory.")
            return super().run(job, state)

    run = FolderBatchRun(tmp_path / "in", "img2img", out, BASE, variations=2)
    outcome = run.check().run(OutOfMemory(), TaskState(), _context())
    assert sorted(p.name for p in out.glob("*.png")) == ["a-00.png", "a-01.png", "c-00.png", "c-01.png"]
    data, rows = _manifest(out)
    assert [(r["input"], r["output"], r["status"], r["reason"]) for r in rows if r["input"] == "b.png"] == [
        ("b.png", "", "failed", "b.png: The GPU ran out of memory.")]
    assert outcome.summary == f"4 outputs, 1 failed: see manifest.csv in {out}"
    tries.clear()
    outcome = FolderBatchRun.decode(run.encode()).run(OutOfMemory(), TaskState(), _context())
    assert tries == [200] and outcome.summary.startswith("0 outputs, 4 skipped (already done), 1 failed")


def test_the_manifest_is_rewritten_every_few_seconds_not_after_every_output_and_when_cancelled(tmp_path,
                                                                                                monkeypatch):
    from desktop.core import folder_batch

    for k in range(6):
        _picture(tmp_path / "in" / f"p{k}.png")
    out, writes = tmp_path / "out", []
    write_text = folder_batch.atomic.write_text
    monkeypatch.setattr(folder_batch.atomic, "write_text",
                        lambda path, text, *a, **k: (writes.append(Path(path).name), write_text(path, text, *a, **k)))
    FolderBatchRun(tmp_path / "in", "img2img", out, BASE, variations=2).run(FakeBackend(), TaskState(), _context())
    assert writes.count("manifest.json") <= 3  # at the start, at the end, and at most one more
    assert len(_manifest(out)[1]) == 12
    writes.clear()
    steps = []
    state = TaskState(on_step=lambda i, n, preview: steps.append(i) or (len(steps) == 5 and state.cancel()))
    with pytest.raises(Cancelled):
        FolderBatchRun(tmp_path / "in", "img2img", tmp_path / "cut", BASE, variations=2).run(
            FakeBackend(), state, _context())
    assert writes.count("manifest.json") <= 3
    _, rows = _manifest(tmp_path / "cut")  # what was made before the cancel is listed
    assert [r["output"] for r in rows if r["output"]] == sorted(p.name for p in (tmp_path / "cut").glob("*.png")) != []


def test_the_mask_folder_is_read_once_not_once_per_picture(tmp_path, monkeypatch):
    from desktop.core import folder_batch

    for k in range(5):
        _picture(tmp_path / "in" / f"p{k}.jpg")
        _picture(tmp_path / "masks" / f"p{k}.png")  # matched by stem
    scans = []
    pictures_in = folder_batch.pictures_in
    monkeypatch.setattr(folder_batch, "pictures_in",
                        lambda folder: scans.append(Path(folder).name) or pictures_in(folder))
    backend = FakeBackend()
    FolderBatchRun(tmp_path / "in", "inpaint", tmp_path / "out", BASE, mask_dir=tmp_path / "masks").check().run(
        backend, TaskState(), _context())
    assert len(backend.jobs) == 5 and scans.count("masks") == 1


def test_a_mask_folder_that_is_the_pictures_folder_is_refused(tmp_path):
    _picture(tmp_path / "in" / "a.png")
    with pytest.raises(InvalidRequest) as refused:
        FolderBatchRun(tmp_path / "in", "inpaint", tmp_path / "out", BASE, mask_dir=tmp_path / "in" / ".").check()
    assert str(refused.value) == ("mask_dir: the masks are in the folder of the pictures, so each picture would be "
                                  "its own mask; choose a folder that holds only the masks.")


def test_a_stored_batch_whose_folder_is_gone_fails_with_its_sentence(tmp_path):
    _picture(tmp_path / "in" / "a.png")
    stored = FolderBatchRun(tmp_path / "in", "img2img", tmp_path / "out", BASE).check().encode()
    (tmp_path / "in" / "a.png").unlink()
    (tmp_path / "in").rmdir()
    with pytest.raises(InvalidRequest) as refused:
        FolderBatchRun.decode(stored).run(FakeBackend(), TaskState(), _context())
    assert str(refused.value) == f"input: {tmp_path / 'in'} is not a folder; choose the folder of the pictures."
