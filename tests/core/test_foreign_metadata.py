"""Reading other tools' pictures: a corpus of small PNG, JPEG and WebP files, each written here in the layout its
tool writes (the text chunks, EXIF tags and comments documented or observed for it), read back as the gallery
reads them."""

import json

import pytest
from PIL import Image, PngImagePlugin

from desktop.core.gallery.metadata import UNKNOWN_JSON, encode_user_comment, read_image_meta, to_request
from desktop.core.infotext import parse_infotext

from tests.support.requests import make_request

EXIF_IFD, USER_COMMENT, IMAGE_DESCRIPTION, MAKE, MODEL = 0x8769, 0x9286, 0x010E, 0x010F, 0x0110


def write(path, fmt, *, text=None, tags=None, user_comment=None, comment=None):
    """A 16x8 picture with PNG text chunks, EXIF IFD0 tags, an EXIF UserComment (as bytes, or text that is
    written as A1111 writes it) or a JPEG comment."""
    extra = {}
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        extra["pnginfo"] = info
    if tags or user_comment is not None:
        exif = Image.Exif()
        for tag, value in (tags or {}).items():
            exif[tag] = value
        if user_comment is not None:
            raw = user_comment if isinstance(user_comment, bytes) else encode_user_comment(user_comment)
            exif.get_ifd(EXIF_IFD)[USER_COMMENT] = raw
        extra["exif"] = exif.tobytes()
    if comment is not None:
        extra["comment"] = comment
    Image.new("RGB", (16, 8), "teal").save(path, fmt, **extra)
    return path


# -- ComfyUI graphs (the API "prompt" a run records)

def text_node(text):
    return {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}}


def hires_graph():
    """A hires fix: a first pass previewed, upscaled in latent space, a second pass saved. Each pass has its own
    prompts and seed, so a reader that mixes them is caught."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/juggernautXL_v9.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
        "6": text_node("first pass prompt"), "7": text_node("first pass negative"),
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 111, "steps": 30, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "10": {"class_type": "LatentUpscale", "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact",
                                                         "width": 1248, "height": 1824, "crop": "disabled"}},
        "12": text_node("a lighthouse at dusk, oil painting"), "13": text_node("blurry, text"),
        "11": {"class_type": "KSampler", "inputs": {
            "seed": 222, "steps": 12, "cfg": 5.5, "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 0.5,
            "model": ["4", 0], "positive": ["12", 0], "negative": ["13", 0], "latent_image": ["10", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
        "14": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 2]}},
        "15": {"class_type": "SaveImage", "inputs": {"images": ["14", 0], "filename_prefix": "ComfyUI"}},
    }


HIRES = ("a lighthouse at dusk, oil painting", "blurry, text", 222, 12, 5.5, "DPM++ 2M", "Karras",
         "juggernautXL_v9", 1248, 1824, "comfyui")


def flux_graph():
    """Flux through SamplerCustomAdvanced: the seed, sampler, steps and prompt live in the nodes it links to."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in the snow", "clip": ["9", 0]}},
        "3": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["2", 0], "guidance": 3.5}},
        "4": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["3", 0]}},
        "5": {"class_type": "RandomNoise", "inputs": {"noise_seed": 98765}},
        "6": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "7": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 24,
                                                        "denoise": 1.0}},
        "8": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
        "9": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl.safetensors", "type": "flux"}},
        "10": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["5", 0], "guider": ["4", 0], "sampler": ["6", 0], "sigmas": ["7", 0], "latent_image": ["8", 0]}},
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["12", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["11", 0]}},
    }


def civitai_graph():
    """Civitai's generator: the graph as the JPEG's whole UserComment, with its own extra entries."""
    graph = {
        "resource-stack": {"class_type": "CheckpointLoaderSimple",
                           "inputs": {"ckpt_name": "urn:air:sdxl:checkpoint:civitai:133005@357609"}},
        "6": {"class_type": "smZ CLIPTextEncode", "inputs": {"text": "a cozy cabin in the woods, winter",
                                                             "clip": ["resource-stack", 1], "parser": "A1111"}},
        "7": {"class_type": "smZ CLIPTextEncode", "inputs": {"text": "lowres, watermark",
                                                             "clip": ["resource-stack", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
        "11": {"class_type": "KSampler", "inputs": {
            "seed": 1726379427, "steps": 25, "cfg": 4.0, "sampler_name": "euler_ancestral", "scheduler": "normal",
            "denoise": 1, "model": ["resource-stack", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "extra": {"airs": ["urn:air:sdxl:checkpoint:civitai:133005@357609"]},
        "extraMetadata": json.dumps({"prompt": "a cozy cabin in the woods, winter", "negativePrompt": "lowres",
                                     "cfgScale": 4, "sampler": "Euler a", "seed": 1726379427, "steps": 25,
                                     "width": 832, "height": 1216}),
    }
    return graph


def civitai_upscale_graph():
    """An upscale-only run: no sampler in the graph, the original request in extraMetadata."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "https://orchestration.civitai.com/x.jpeg"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
        "extra": {"airs": []},
        "extraMetadata": json.dumps({"prompt": "portrait of an old sailor", "negativePrompt": "cartoon",
                                     "cfgScale": 3.5, "sampler": "DPM++ 2M Karras", "seed": 31337, "steps": 28,
                                     "width": 768, "height": 1024, "transformations": [{"type": "upscale"}]}),
    }


def comfy_workflow():
    """The UI workflow (ComfyUI writes it next to the graph); widget values stand for inputs."""
    return {"nodes": [{"id": 3, "type": "KSampler", "widgets_values": [111, "fixed", 30, 7, "euler", "normal", 1]}],
            "links": []}


SWARM = {
    "sui_image_params": {
        "prompt": "a watercolor map of an island", "negativeprompt": "photo",
        "model": "OfficialStableDiffusion/sd_xl_base_1.0",
        "seed": 1468461442, "steps": 28, "cfgscale": 6.5, "aspectratio": "Custom", "width": 1152, "height": 896,
        "sampler": "dpmpp_2m", "scheduler": "karras", "swarm_version": "0.9.5.2", "date": "2025-01-05",
        "generation_time": "0.02 (prep) and 5.51 (gen) seconds",
    },
    "sui_extra_data": {"date": "2025-01-05", "prep_time": "0.02 sec", "generation_time": "5.51 sec"},
    "sui_models": [{"name": "sd_xl_base_1.0.safetensors", "param": "model", "hash": "0x31e35c80fc"}],
}
SWARM_EXPECTED = ("a watercolor map of an island", "photo", 1468461442, 28, 6.5, "DPM++ 2M", "Karras",
                  "sd_xl_base_1.0", 1152, 896, "swarmui")

RUINED = {
    "Prompt": "a tiny robot watering a bonsai", "Negative": "ugly, deformed", "steps": 30, "cfg": 8.0,
    "width": 1024, "height": 1024, "seed": 271828, "sampler_name": "dpmpp_2m_sde_gpu", "scheduler": "karras",
    "base_model_name": "sd_xl_base_1.0_0.9vae.safetensors", "base_model_hash": "e6bb9ea85b", "loras": [],
    "start_step": 0, "denoise": None, "clip_skip": 1, "software": "RuinedFooocus",
}
RUINED_EXPECTED = ("a tiny robot watering a bonsai", "ugly, deformed", 271828, 30, 8.0, "DPM++ 2M SDE", "Karras",
                   "sd_xl_base_1.0_0.9vae", 1024, 1024, "ruinedfooocus")

A1111 = ("a castle on a hill, golden hour\nNegative prompt: lowres\nSteps: 25, Sampler: DPM++ 2M, "
         "Schedule type: Karras, "
         "CFG scale: 6.5, Seed: 42, Size: 512x768, Model hash: 6ce0161689, Model: dreamshaper_8, Version: v1.10.1")
A1111_EXPECTED = ("a castle on a hill, golden hour", "lowres", 42, 25, 6.5, "DPM++ 2M", "Karras", "dreamshaper_8",
                  512, 768, "a1111")

DREAM = '"a cozy cabin in the woods [blurry, lowres] at night" -s 50 -S 2980747362 -W 512 -H 768 -C 7.5 -A k_euler_a'
DREAM_EXPECTED = ("a cozy cabin in the woods at night", "blurry, lowres", 2980747362, 50, 7.5, "Euler a", "", "",
                  512, 768, "invokeai")


def graph_text(graph):
    return json.dumps(graph)


CORPUS = [
    # (id, format, how it is written, expected
    #  (prompt, negative, seed, steps, cfg, sampler, schedule, model, width, height, source))
    ("a1111-png", "PNG", {"text": {"parameters": A1111}}, A1111_EXPECTED),
    ("a1111-jpeg", "JPEG", {"user_comment": A1111}, A1111_EXPECTED),
    ("a1111-webp", "WEBP", {"user_comment": A1111}, A1111_EXPECTED),
    ("cfg-capital-s", "PNG", {"text": {"parameters": "a fox\nSteps: 30, Sampler: Euler, CFG Scale: 5.5, Seed: 3, "
                                                     "Size: 512x512"}},
     ("a fox", "", 3, 30, 5.5, "Euler", "", "", 512, 512, "a1111")),
    ("comfyui-png-hires", "PNG", {"text": {"prompt": graph_text(hires_graph()),
                                           "workflow": json.dumps(comfy_workflow())}}, HIRES),
    ("comfyui-png-nodes-in-any-order", "PNG",
     {"text": {"prompt": json.dumps(dict(sorted(hires_graph().items(), key=lambda item: item[1]["class_type"])))}},
     HIRES),
    ("comfyui-webp-exif", "WEBP", {"tags": {MODEL: "prompt:" + graph_text(hires_graph()),
                                            MAKE: "workflow:" + json.dumps(comfy_workflow())}}, HIRES),
    ("comfyui-jpeg-extended", "JPEG", {"tags": {MAKE: "Prompt:" + graph_text(hires_graph()),
                                                IMAGE_DESCRIPTION: "Workflow:" + json.dumps(comfy_workflow())}}, HIRES),
    ("comfyui-jpeg-plain-json", "JPEG", {"tags": {IMAGE_DESCRIPTION: graph_text(hires_graph())}}, HIRES),
    ("comfyui-flux-custom-advanced", "PNG", {"text": {"prompt": graph_text(flux_graph())}},
     ("a red fox in the snow", "", 98765, 24, None, "Euler", "", "flux1-dev", 1024, 768, "comfyui")),
    ("civitai-jpeg-graph", "JPEG", {"user_comment": graph_text(civitai_graph())},
     ("a cozy cabin in the woods, winter", "lowres, watermark", 1726379427, 25, 4.0, "Euler a", "",
      "urn:air:sdxl:checkpoint:civitai:133005@357609", 832, 1216, "comfyui")),
    ("civitai-jpeg-upscale-only", "JPEG", {"user_comment": graph_text(civitai_upscale_graph())},
     ("portrait of an old sailor", "cartoon", 31337, 28, 3.5, "DPM++ 2M Karras", "", "", 768, 1024, "comfyui")),
    ("swarmui-png", "PNG", {"text": {"parameters": json.dumps(SWARM, indent=2)}}, SWARM_EXPECTED),
    ("swarmui-jpeg-usercomment", "JPEG", {"user_comment": json.dumps(SWARM)}, SWARM_EXPECTED),
    ("swarmui-jpeg-comment", "JPEG", {"comment": json.dumps(SWARM).encode()}, SWARM_EXPECTED),
    ("ruinedfooocus-png", "PNG", {"text": {"parameters": json.dumps(RUINED)}}, RUINED_EXPECTED),
    ("ruinedfooocus-png-json-in-a-string", "PNG", {"text": {"parameters": json.dumps(json.dumps(RUINED))}},
     RUINED_EXPECTED),
    ("invokeai-dream-png", "PNG", {"text": {"Dream": DREAM}}, DREAM_EXPECTED),
    ("invokeai-dream-joined-switches", "PNG",
     {"text": {"Dream": '"a \\"quoted\\" sign" -s25 -S 7 -C 6 -A k_lms -W 640 -H 512 -F'}},
     ('a "quoted" sign', "", 7, 25, 6.0, "LMS", "", "", 640, 512, "invokeai")),
]


@pytest.mark.parametrize("fmt, how, expected", [case[1:] for case in CORPUS], ids=[case[0] for case in CORPUS])
def test_other_tools_pictures_read_as_made(tmp_path, fmt, how, expected):
    path = write(tmp_path / f"picture.{fmt.lower()}", fmt, **how)
    meta, width, height = read_image_meta(path)
    assert (width, height) == (16, 8)
    assert (meta.prompt, meta.negative_prompt, meta.seed, meta.steps, meta.cfg_scale, meta.sampler, meta.schedule,
            meta.model, meta.width, meta.height, meta.source) == expected
    assert meta.notice == ""
    # Copy parameters gives A1111 text that says the same
    info = parse_infotext(meta.parameters)
    assert (info.prompt, info.negative_prompt) == expected[:2]
    assert info.params.get("Seed") == str(expected[2])


@pytest.mark.parametrize("text", [
    json.dumps({"some_tool": {"positive": "a cat"}, "version": 3}),
    json.dumps([{"prompt": "a cat"}]),
    json.dumps({"prompt": {"not": "text"}, "steps": 3}),
    json.dumps(json.dumps({"unknown": True})),
])
def test_json_nobody_knows_is_never_a_prompt(tmp_path, text):
    path = write(tmp_path / "odd.png", "PNG", text={"parameters": text})
    meta, _, _ = read_image_meta(path)
    assert (meta.prompt, meta.negative_prompt, meta.source) == ("", "", "")  # Use all parameters: the notice
    assert meta.notice == UNKNOWN_JSON and meta.parameters == text  # Copy parameters still gives what it says


@pytest.mark.parametrize("case", [c for c in CORPUS if c[3][0]], ids=[c[0] for c in CORPUS if c[3][0]])
def test_use_all_parameters_pastes_the_prompt_never_json(tmp_path, case):
    _, fmt, how, expected = case
    meta, _, _ = read_image_meta(write(tmp_path / f"p.{fmt.lower()}", fmt, **how))
    request = to_request(meta, make_request(prompt="old", negative_prompt="old", seed=1))
    assert (request.conditioning.prompt, request.conditioning.negative_prompt, request.sampling.seed) == expected[:3]
    assert not request.conditioning.prompt.lstrip().startswith(("{", "["))


def test_a_graph_without_an_output_node_reads_the_last_sampler():
    from desktop.core.gallery.metadata import meta_from_chunks

    graph = hires_graph()
    for key in ("8", "9", "14", "15"):
        del graph[key]
    meta = meta_from_chunks({"prompt": json.dumps(dict(reversed(list(graph.items()))))})
    assert (meta.prompt, meta.negative_prompt, meta.seed) == HIRES[:3]


def test_a_hostile_graph_is_read_quickly():
    import time

    from desktop.core.gallery.metadata import meta_from_chunks

    graph = {str(i): {"class_type": "KSampler" if i % 2 else "SaveImage", "inputs": {"x": [str(i - 1), 0]}}
             for i in range(1, 40_000)}
    start = time.perf_counter()
    meta = meta_from_chunks({"prompt": json.dumps(graph)})
    assert meta.source == "comfyui" and time.perf_counter() - start < 5  # about 1 s on a slow machine
