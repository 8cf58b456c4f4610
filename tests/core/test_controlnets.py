"""Where ControlNets are found, the name and hash A1111 writes for one, and its infotext key read back."""

import hashlib

from desktop.core import controlnets, paths
from desktop.core.infotext import Infotext, format_infotext, parse_infotext
from desktop.core.request import GenerationRequest
from desktop.core.infotext import from_request


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_controlnets_are_found_in_sfumato_a1111_and_comfyui_folders(tmp_path):
    own = touch(paths.models_dir() / "controlnet" / "own_canny.safetensors")
    a1111 = tmp_path / "webui" / "models"
    cn_a = touch(a1111 / "ControlNet" / "control_v11p_sd15_canny.pth")
    (a1111 / "Stable-diffusion").mkdir(parents=True)
    comfy = tmp_path / "ComfyUI" / "models"
    cn_c = touch(comfy / "controlnet" / "sdxl" / "depth.safetensors")  # one level of subfolders
    (comfy / "checkpoints").mkdir(parents=True)
    folder = comfy / "controlnet" / "union"
    touch(folder / "config.json", b"{}")
    touch(folder / "diffusion_pytorch_model.safetensors")
    touch(comfy / "controlnet" / "notes.txt")
    touch(a1111 / "ControlNet" / "ip-adapter_sd15_plus.pth")  # A1111 keeps IP-Adapters there too

    folders = [a1111 / "Stable-diffusion", comfy / "checkpoints"]
    assert controlnets.controlnet_folders(folders)[0] == paths.models_dir() / "controlnet"
    found = controlnets.list_controlnets(folders)
    assert found == {"own_canny": own, "control_v11p_sd15_canny": cn_a, "depth": cn_c, "union": folder}
    assert controlnets.find_controlnet("Control_V11P_SD15_Canny", folders) == cn_a
    assert controlnets.find_controlnet("depth.safetensors", folders) == cn_c
    assert controlnets.find_controlnet("missing", folders) is None


def test_the_name_in_the_infotext_is_the_stem_and_a1111s_old_hash(tmp_path):
    data = bytes(range(256)) * 8192  # 2 MiB
    path = touch(tmp_path / "control_canny.safetensors", data)
    expected = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert controlnets.infotext_name(path) == f"control_canny [{expected}]"
    folder = tmp_path / "cn"
    touch(folder / "config.json", b"{}")
    touch(folder / "diffusion_pytorch_model.safetensors", data)
    assert controlnets.infotext_name(folder) == f"cn [{expected}]"


def test_controlnet_keys_round_trip_through_the_infotext():
    values = {"ControlNet 0": "Module: canny, Model: control_canny [a1b2c3d4], Weight: 1, Guidance Start: 0, "
                              "Guidance End: 1",
              "ControlNet 1": "Module: none, Model: depth [00ff00ff], Weight: 0.5, Guidance Start: 0.2, "
                              "Guidance End: 0.8"}
    request = GenerationRequest().resolved()
    info = from_request(request, 1, "model", extra=tuple(values.items()))
    text = format_infotext(info)
    assert 'ControlNet 0: "Module: canny, Model: control_canny [a1b2c3d4], Weight: 1' in text
    read = parse_infotext(text).params
    assert {k: read[k] for k in values} == values
    assert read["Steps"] == str(request.sampling.steps)  # the keys after it are read as their own
