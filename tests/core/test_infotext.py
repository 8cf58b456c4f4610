import json
import re
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from desktop.core.infotext import (
    Infotext,
    InfotextError,
    format_infotext,
    from_request,
    parse_hashes,
    parse_infotext,
    parse_size,
)
from desktop.core.request import InpaintArea, Mode
from tests.support.requests import make_request

# -- round trip

# Pieces that hit the format's edges: the marker, params-looking text, quotes,
# brackets, escapes, line breaks of every kind, unicode and emoji.
TRICKY = st.sampled_from(
    ["Negative prompt:", "Negative prompt: ", "Steps: 20", "Seed: 1", ", ", ",", ": ", ":", "\n", "\r\n", "\r"]
    + ['"', '\\"', "\\", "{", "}", "[", "]", '{"prompt": "x"}', " ", "\t", "a", "Key", "é", "日本", "🎨", "\u2028"]
)
TEXT = st.one_of(st.text(), st.lists(st.one_of(TRICKY, st.text(max_size=3)), max_size=12).map("".join))
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# [A-Za-z][A-Za-z0-9 _-]* without a trailing space
KEYS = st.builds(
    lambda first, rest: (first + rest).rstrip(" "),
    st.sampled_from(_LETTERS),
    st.one_of(
        st.sampled_from(["", " prompt", "egative prompt", " hash", "  x_y-z"]),
        st.text(_LETTERS + "0123456789 _-", max_size=10),
    ),
)
# "Negative prompt" as the FIRST key cannot be written: the line would read as
# the negative prompt. format_infotext raises for it (tested below).
PARAMS = st.dictionaries(KEYS, TEXT, max_size=6).map(lambda p: {"Steps": "20", **p})


def breaks(text):
    return text.replace("\r\n", "\n").replace("\r", "\n")


def has_marker_line(text):
    return any(line.strip().startswith("Negative prompt:") for line in breaks(text).split("\n"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.builds(Infotext, TEXT, TEXT, PARAMS))
def test_round_trip(info):
    """Parameters come back exactly, in order; prompts stripped, with their line breaks as \\n."""
    back = parse_infotext(format_infotext(info))
    assert list(back.params.items()) == list(info.params.items())
    if not has_marker_line(info.prompt):
        expected = (breaks(info.prompt).strip(), breaks(info.negative_prompt).strip())
        assert (back.prompt, back.negative_prompt) == expected


@settings(max_examples=300)
@given(st.one_of(st.text(), TEXT))
@example("0:\nNegative prompt:")  # a prompt alone whose last line looks like parameters (found by hypothesis)
def test_anything_parses_and_what_was_read_writes_back_the_same(text):
    info = parse_infotext(text)
    assert isinstance(info.prompt, str) and isinstance(info.negative_prompt, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.params.items())
    if not text.strip().startswith("{"):  # Fooocus JSON may carry keys we cannot write
        assert parse_infotext(format_infotext(info)) == info


def test_plain_text_is_written_as_a1111_writes_it():
    info = Infotext("a cat,\nin a hat", "blurry", {"Steps": "20", "Sampler": "Euler a", "Lora hashes": "x: 12ab"})
    assert format_infotext(info) == (
        'a cat,\nin a hat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Lora hashes: "x: 12ab"'
    )
    assert format_infotext(Infotext("a cat", "", {"Steps": "20"})) == "a cat\nSteps: 20"
    assert format_infotext(Infotext("", "only negative")) == "Negative prompt: only negative"
    assert format_infotext(Infotext("")) == ""


@pytest.mark.parametrize(
    "info, text",
    [
        (Infotext(" padded ", "", {"Steps": "1"}), " padded \nSteps: 1"),
        (Infotext('"quoted"', "", {"Steps": "1"}), '"quoted"\nSteps: 1'),
        (Infotext("a\r\nb\rc", "n\n", {"Steps": "1"}), "a\nb\nc\nNegative prompt: n\n\nSteps: 1"),
        (Infotext("a", "", {"V": "[1]", "W": " x", "E": ""}), 'a\nV: "[1]", W: " x", E: '),
    ],
)
def test_prompts_are_raw_lines_and_values_are_quoted_when_needed(info, text):
    assert format_infotext(info) == text
    assert parse_infotext(text).params == info.params


# -- what AUTOMATIC1111 shows of what Sfumato writes
#
# A model of A1111's parse_generation_parameters, written from its documented behaviour: the text is stripped
# and split at \n; the last line is the parameters line when it holds 3 or more `key: value` pairs (a key is a
# word character and 1+ of word characters, spaces, - or /; a value is a "JSON string" or text up to a comma);
# every other line is stripped; a line starting "Negative prompt:" (that marker cut off) starts the negative
# prompt, and each later line belongs to it; lines are joined with \n, with no \n before the first.

A1111_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_reads(text):
    *lines, last = text.strip().split("\n")
    if len(A1111_PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        if in_negative:
            negative += ("\n" if negative else "") + line
        else:
            prompt += ("\n" if prompt else "") + line
    params = {k: json.loads(v) if len(v) > 1 and v[0] == v[-1] == '"' else v for k, v in A1111_PAIR.findall(last)}
    return prompt, negative, params


def a1111_writes(prompt, negative, params_line):
    """What A1111 itself writes for these prompts."""
    return (prompt + (f"\nNegative prompt: {negative}" if negative else "") + "\n" + params_line).strip()


def a1111_shows(typed):
    """What A1111 shows of a prompt typed into its box: line breaks as \\n, each line stripped, leading blank
    lines dropped (its own stripping)."""
    lines = [line.strip() for line in breaks(typed).split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


SFUMATO_PARAMS = from_request(make_request(prompt="x", seed=7, schedule="Karras"), 7, "dreamshaper_8").params

# What A1111 used to read wrongly (quotes and escapes in its boxes), and more.
TRICKY_PROMPTS = [
    ("  a cat in a hat  ", ""),
    ('"a quoted title"', '"no" quotes'),
    ("a cat\r\nin a hat", "blurry\rlowres"),
    ("\n\n", "ugly"),
    ("\n", "\n"),
    ("a sign\nNegative prompt: not really", "b"),
    ("a cat", "blurry\n"),
    ("a cat\n", "blurry, text\n\n"),
    ("line one\n\n  line three  ", " tabs\tand spaces "),
    ("Steps: 1, Seed: 2, Size: 3x3", "Steps: 1, Seed: 2, Size: 3x3"),
    ("a {json-like} [thing]: x, y", '{"prompt": "x"}'),
    ("emoji 🎨 and 日本\u2028sep", "é"),
]


@pytest.mark.parametrize("prompt, negative", TRICKY_PROMPTS)
def test_a1111_shows_what_was_typed(prompt, negative):
    text = format_infotext(Infotext(prompt, negative, SFUMATO_PARAMS))
    shown_prompt, shown_negative, params = a1111_reads(text)
    assert params == SFUMATO_PARAMS
    if has_marker_line(prompt):  # A1111 cannot hold such a prompt in its own pictures either: it reads the same
        assert (shown_prompt, shown_negative) == a1111_reads(a1111_writes(prompt, negative, text.split("\n")[-1]))[:2]
    else:
        assert (shown_prompt, shown_negative) == (a1111_shows(prompt), a1111_shows(negative))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT, TEXT)
def test_a1111_shows_any_prompt_as_it_shows_its_own(prompt, negative):
    text = format_infotext(Infotext(prompt, negative, SFUMATO_PARAMS))
    shown = a1111_reads(text)
    assert shown[2] == SFUMATO_PARAMS
    if has_marker_line(prompt) or has_marker_line(negative):
        assert shown == a1111_reads(a1111_writes(breaks(prompt), breaks(negative), text.split("\n")[-1]))
    else:
        assert shown[:2] == (a1111_shows(prompt), a1111_shows(negative))


@pytest.mark.parametrize(
    "params", [{"Negative prompt": "x"}, {"bad,key": "x"}, {"trailing ": "x"}, {" lead": "x"}, {"": "x"}, {"k": 1}]
)
def test_unwritable_params_raise(params):
    with pytest.raises(InfotextError):
        format_infotext(Infotext("p", "", params))


def test_negative_prompt_as_a_later_key_is_fine():
    info = Infotext("p", "", {"Steps": "1", "Negative prompt": "x"})
    assert parse_infotext(format_infotext(info)) == info


# -- what real tools write

A1111 = """\
girl with a beret, determined, blue eyes, (detailed:1.2)
Negative prompt: ugly, (deformed), [blurry], bad anatomy
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x768, \
Model hash: 45dee52b7f, Model: v1-5-pruned-emaonly, Version: v1.10.1"""

A1111_HIRES_LORA = """\
a castle on a hill, <lora:detail_tweaker:0.6>, golden hour
Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 42, Size: 512x768, Model hash: 6ce0161689, \
Model: dreamshaper_8, Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, Hires steps: 10, \
Hires upscaler: Latent (nearest-exact), Lora hashes: "detail_tweaker: e3f9c2b1a8d7, add_more: 0a1b2c3d4e5f", \
TI hashes: "easynegative: c74b4e810b03",Version: v1.6.0"""

ADETAILER = """\
masterpiece,best quality,1girl,
BREAK thighhighs,
Negative prompt: lowres,bad hands,
Steps: 8, Sampler: Euler a, CFG scale: 2, Seed: 3627297328, Size: 768x1024, ADetailer model: face_yolov8n.pt, \
ADetailer prompt: "black eyes, black hair, ", ADetailer dilate/erode: 4, ADetailer version: 24.5.1, \
ControlNet 0: "Module: none, Model: control_v11p_sd15_canny [d14c016b], Weight: 1", Mask blur: 4"""

FORGE_FLUX = """\
portrait of a woman in a yellow raincoat, neon reflections
<lora:flux_style:0.8>
Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 2961654875, \
Size: 896x1152, Model hash: d5d1e2a8b0, Model: flux1-dev-bnb-nf4-v2, Lora hashes: "flux_style: 1ba60a4cff60", \
Version: f2.0.1v1.10.1-previous-313-g8a042934, Diffusion in Low Bits: Automatic (fp16 LoRA), Module 1: ae, \
Module 2: clip_l"""

CIVITAI = """\
harmony, serenity,
(yin yang symbol), miniature beach scene, vivid colors \n\
Negative prompt:  negativeXL_D, greyscale
Steps: 22, Sampler: DPM++ 2M Karras, CFG scale: 3.8, Seed: 894409639, Size: 832x1216, Clip skip: 2, \
Created Date: 2024-09-23T06:17:42.9952795Z, Civitai resources: [{"type":"checkpoint","modelVersionId":128078,\
"modelName":"SD XL [base], v1","modelVersionName":"v1.0 VAE fix"},{"type":"lora","weight":0.85,"modelVersionId":210432,\
"modelName":"Double Exposure","modelVersionName":"Double Exposure"}], Civitai metadata: {"remixOfId":11111100000}"""

CIVITAI_HASHES = """\
very awa, 1girl, solo, (freckles, nose blush:1.2)
Negative prompt: censored, watermark
Steps: 20, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 832x1216, TI hashes: "", \
Hashes: {"model": "1704e50726", "lora:style, special": "235745af8d", "embed:neg": "x"}, Version: ComfyUI"""

FOOOCUS_A1111_SCHEME = """\
a red fox in the snow, intricate, highly detailed
Negative prompt: unrealistic, saturated
Steps: 30, Sampler: DPM++ 2M SDE Karras, Seed: 1234, Size: 1152x896, CFG scale: 4, Sharpness: 2, \
ADM Guidance: "(1.5, 0.8, 0.3)", Model: juggernautXL_v8Rundiffusion, Model hash: aeb7e9e689, Performance: Speed, \
Scheduler: karras, VAE: Default (model), Raw prompt: a red fox in the snow, Raw negative prompt: , \
Version: Fooocus v2.5.5"""

MULTILINE_NEGATIVE = """\
a lighthouse
at dusk
Negative prompt: blurry,
  lowres,
text: watermark
Steps: 30, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512"""

A1111_PARAMS = {
    "Steps": "20", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7", "Seed": "965400086",
    "Size": "512x768", "Model hash": "45dee52b7f", "Model": "v1-5-pruned-emaonly", "Version": "v1.10.1",
}


def test_a1111_with_negative():
    assert parse_infotext(A1111) == Infotext(
        "girl with a beret, determined, blue eyes, (detailed:1.2)",
        "ugly, (deformed), [blurry], bad anatomy",
        A1111_PARAMS,
    )


def test_a1111_crlf_and_trailing_newline():
    assert parse_infotext(A1111.replace("\n", "\r\n") + "\r\n") == parse_infotext(A1111)


def test_a1111_without_negative_hires_and_hashes():
    info = parse_infotext(A1111_HIRES_LORA)
    assert info.prompt == "a castle on a hill, <lora:detail_tweaker:0.6>, golden hour"
    assert info.negative_prompt == ""
    assert list(info.params) == [
        "Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "Denoising strength", "Clip skip",
        "Hires upscale", "Hires steps", "Hires upscaler", "Lora hashes", "TI hashes", "Version",
    ]
    assert info.params["Hires upscaler"] == "Latent (nearest-exact)"
    assert info.params["Lora hashes"] == "detail_tweaker: e3f9c2b1a8d7, add_more: 0a1b2c3d4e5f"
    assert info.params["TI hashes"] == "easynegative: c74b4e810b03"
    assert info.params["Version"] == "v1.6.0"
    assert parse_hashes(info.params["Lora hashes"]) == {"detail_tweaker": "e3f9c2b1a8d7", "add_more": "0a1b2c3d4e5f"}


def test_adetailer_and_controlnet_quoted_values():
    info = parse_infotext(ADETAILER)
    assert info.prompt == "masterpiece,best quality,1girl,\nBREAK thighhighs,"
    assert info.negative_prompt == "lowres,bad hands,"
    assert info.params["ADetailer prompt"] == "black eyes, black hair, "
    assert info.params["ADetailer dilate/erode"] == "4"
    assert info.params["ControlNet 0"] == "Module: none, Model: control_v11p_sd15_canny [d14c016b], Weight: 1"
    assert info.params["Mask blur"] == "4"
    assert len(info.params) == 11


def test_forge_flux():
    info = parse_infotext(FORGE_FLUX)
    assert info.prompt == "portrait of a woman in a yellow raincoat, neon reflections\n<lora:flux_style:0.8>"
    assert info.negative_prompt == ""
    assert info.params["Distilled CFG Scale"] == "3.5"
    assert info.params["Schedule type"] == "Simple"
    assert info.params["Diffusion in Low Bits"] == "Automatic (fp16 LoRA)"
    assert info.params["Module 2"] == "clip_l"
    assert list(info.params)[-3:] == ["Diffusion in Low Bits", "Module 1", "Module 2"]


def test_civitai_resources_stay_one_value():
    info = parse_infotext(CIVITAI)
    assert info.prompt == "harmony, serenity,\n(yin yang symbol), miniature beach scene, vivid colors"
    assert info.negative_prompt == "negativeXL_D, greyscale"
    assert info.params["Created Date"] == "2024-09-23T06:17:42.9952795Z"
    resources = json.loads(info.params["Civitai resources"])
    assert [r["modelVersionId"] for r in resources] == [128078, 210432]
    assert resources[0]["modelName"] == "SD XL [base], v1"
    assert info.params["Civitai metadata"] == '{"remixOfId":11111100000}'
    assert list(info.params) == [
        "Steps", "Sampler", "CFG scale", "Seed", "Size", "Clip skip", "Created Date", "Civitai resources",
        "Civitai metadata",
    ]


def test_civitai_hashes_json_object():
    info = parse_infotext(CIVITAI_HASHES)
    assert info.prompt == "very awa, 1girl, solo, (freckles, nose blush:1.2)"
    assert info.params["TI hashes"] == ""
    assert info.params["Hashes"] == '{"model": "1704e50726", "lora:style, special": "235745af8d", "embed:neg": "x"}'
    hashes = {"model": "1704e50726", "lora:style, special": "235745af8d", "embed:neg": "x"}
    assert parse_hashes(info.params["Hashes"]) == hashes
    assert info.params["Version"] == "ComfyUI"


def test_fooocus_a1111_scheme():
    info = parse_infotext(FOOOCUS_A1111_SCHEME)
    assert info.prompt == "a red fox in the snow, intricate, highly detailed"
    assert info.negative_prompt == "unrealistic, saturated"
    assert info.params["ADM Guidance"] == "(1.5, 0.8, 0.3)"
    assert info.params["Raw prompt"] == "a red fox in the snow"
    assert info.params["Raw negative prompt"] == ""
    assert info.params["VAE"] == "Default (model)"
    assert list(info.params) == [
        "Steps", "Sampler", "Seed", "Size", "CFG scale", "Sharpness", "ADM Guidance", "Model", "Model hash",
        "Performance", "Scheduler", "VAE", "Raw prompt", "Raw negative prompt", "Version",
    ]
    assert info.params["Version"] == "Fooocus v2.5.5"


def test_fooocus_json_scheme_maps_to_a1111_names():
    fooocus = {
        "adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion", "base_model_hash": "aeb7e9e689",
        "full_negative_prompt": ["unrealistic", "saturated"], "guidance_scale": 4,
        "loras": [["sd_xl_offset", 0.1, "4852686128"]], "metadata_scheme": "fooocus", "negative_prompt": "unrealistic",
        "performance": "Speed", "prompt": "a red fox\nin snow", "refiner_model": "None", "resolution": "(1152, 896)",
        "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras",
        "seed": "1234", "sharpness": 2.0, "steps": 30, "styles": "['Fooocus V2', 'Fooocus Enhance']",
        "vae": "Default (model)", "version": "Fooocus v2.5.5",
    }
    info = parse_infotext(json.dumps(fooocus, indent=1))
    assert info.prompt == "a red fox\nin snow"
    assert info.negative_prompt == "unrealistic"
    assert info.params == {
        "adm_guidance": "(1.5, 0.8, 0.3)", "Model": "juggernautXL_v8Rundiffusion", "Model hash": "aeb7e9e689",
        "full_negative_prompt": '["unrealistic", "saturated"]', "CFG scale": "4",
        "loras": '[["sd_xl_offset", 0.1, "4852686128"]]', "metadata_scheme": "fooocus", "performance": "Speed",
        "refiner_model": "None", "Size": "1152x896", "Sampler": "dpmpp_2m_sde_gpu", "Schedule type": "karras",
        "Seed": "1234", "sharpness": "2.0", "Steps": "30", "styles": "['Fooocus V2', 'Fooocus Enhance']",
        "VAE": "Default (model)", "Version": "Fooocus v2.5.5",
    }
    assert list(info.params)[:3] == ["adm_guidance", "Model", "Model hash"]  # JSON order kept


def test_multi_line_negative():
    info = parse_infotext(MULTILINE_NEGATIVE)
    assert info.prompt == "a lighthouse\nat dusk"
    assert info.negative_prompt == "blurry,\n  lowres,\ntext: watermark"
    assert info.params == {"Steps": "30", "Sampler": "Euler", "CFG scale": "7", "Seed": "1", "Size": "512x512"}


def test_prompt_with_params_like_text_in_the_middle():
    text = "a sign that reads\nSteps: 20, Sampler: Euler, Seed: 1\nin neon\nSteps: 5, Sampler: DDIM, Seed: 9, Size: 8x8"
    info = parse_infotext(text)
    assert info.prompt == "a sign that reads\nSteps: 20, Sampler: Euler, Seed: 1\nin neon"
    assert info.params == {"Steps": "5", "Sampler": "DDIM", "Seed": "9", "Size": "8x8"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", Infotext("")),
        ("  \r\n\n ", Infotext("")),
        ("a prompt, (with:1.2) weights\nover two lines", Infotext("a prompt, (with:1.2) weights\nover two lines")),
        ("Negative prompt: nothing above", Infotext("", "nothing above")),
        ("Negative prompt:", Infotext("")),
        ("\nNegative prompt: neg\nSteps: 1, Seed: 2", Infotext("", "neg", {"Steps": "1", "Seed": "2"})),
        ("Steps: 20, Sampler: Euler a, Seed: 1", Infotext("", "", {"Steps": "20", "Sampler": "Euler a", "Seed": "1"})),
        # three pairs make a parameters line even with stray segments (A1111's rule); they are dropped
        ("p\nSteps: 3, extra text, Seed: 4, CFG: 5,", Infotext("p", "", {"Steps": "3", "Seed": "4", "CFG": "5"})),
        # fewer than three pairs plus a stray segment: still prompt
        ("p\nmasterpiece, style: anime", Infotext("p\nmasterpiece, style: anime")),
        ('p\nA: "unterminated, B: 2', Infotext("p", "", {"A": '"unterminated', "B": "2"})),
        ("p\nA: [1, 2, B: 3, C: 4", Infotext("p", "", {"A": "[1", "B": "3", "C": "4"})),  # unbalanced: raw
        ('p\nA: "x" y, B: 2', Infotext("p", "", {"A": '"x" y', "B": "2"})),
        (", Negative prompt:", Infotext(", Negative prompt:")),  # would write back as the negative
        ("{not json", Infotext("{not json")),
        ('{"other": "json"}', Infotext('{"other": "json"}')),
        ('[1, 2]', Infotext("[1, 2]")),
        ("\x00\x01 garbage \ufffd", Infotext("\x00\x01 garbage \ufffd")),
    ],
)
def test_edge_inputs(text, expected):
    assert parse_infotext(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "x" * 100_000,
        "a, " * 33_000,
        "k: [, " * 16_000,
        'k: "x\\", ' * 10_000,
        "[" * 100_000,
        "{" * 100_000,
        "p\nk: " + "[" * 100_000,
        "\n" * 100_000,
        "Negative prompt: " * 6_000,
        "\\" * 100_000 + '"',
        "p\n" + ('a: ["' + ", b: [" * 20_000),
        ": " * 50_000,
        "a" * 50_000 + ":" + " " * 50_000,
        'k: ["", ' * 12_000,
        'k: {"a": "\\"}, ' * 8_000,
    ],
    ids=lambda text: f"{text[:12]!r}x{len(text)}",
)
def test_large_hostile_inputs_parse_quickly(text):
    start = time.perf_counter()
    info = parse_infotext(text)
    assert isinstance(info, Infotext)
    assert time.perf_counter() - start < 5  # linear: in practice a few ms


def test_large_real_looking_text():
    text = "prompt, " * 5_000 + "\nNegative prompt: " + "bad, " * 5_000 + "\n" + A1111.split("\n")[-1]
    info = parse_infotext(text)
    assert info.params == A1111_PARAMS
    assert info.negative_prompt == ("bad, " * 5_000).strip()


# -- helpers


def test_parse_size():
    assert parse_size("512x768") == (512, 768)
    assert parse_size(" 1024 x 576 ") == (1024, 576)
    for bad in ("512", "512x", "x768", "axb", "512x768x2", "", "1" * 20 + "x1"):
        with pytest.raises(InfotextError):
            parse_size(bad)


def test_parse_hashes():
    assert parse_hashes("") == {}
    assert parse_hashes("a: 1234, b:c: 5678, empty: ") == {"a": "1234", "b:c": "5678", "empty": ""}
    assert parse_hashes('{"model": "abc", "n": 3}') == {"model": "abc", "n": "3"}
    for bad in ("no colon here", '{"broken": ', "[1, 2]", ": 12"):
        with pytest.raises(InfotextError):
            parse_hashes(bad)


def test_from_request_txt2img():
    request = make_request(prompt="a cat", negative_prompt="dog", seed=5, cfg_scale=7.0, schedule="Karras")
    info = from_request(request, 5, "dreamshaper_8", "879db523c3")
    assert info == Infotext("a cat", "dog", {
        "Steps": "20", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7", "Seed": "5",
        "Size": "512x512", "Model hash": "879db523c3", "Model": "dreamshaper_8",
    })
    assert parse_infotext(format_infotext(info)) == info


def test_from_request_inpaint_only_masked():
    request = make_request(
        mode=Mode.INPAINT, prompt="p", schedule="Automatic", cfg_scale=6.5, strength=0.6,
        inpaint_area=InpaintArea.ONLY_MASKED, inpaint_padding=48,
    )
    params = from_request(request, 9, "", "").params
    assert "Schedule type" not in params and "Model" not in params and "Model hash" not in params
    assert params["CFG scale"] == "6.5"
    assert params["Denoising strength"] == "0.6"
    assert params["Mask blur"] == "4"
    assert params["Masked content"] == "original"
    assert params["Inpaint area"] == "Only masked"
    assert params["Masked area padding"] == "48"


def test_from_request_writes_clip_skip_as_a1111_does_only_when_a_layer_is_skipped():
    assert "Clip skip" not in from_request(make_request(clip_skip=1), 5, "m").params
    assert from_request(make_request(clip_skip=2), 5, "m").params["Clip skip"] == "2"
