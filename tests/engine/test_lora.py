"""LoRA / LyCORIS merging (desktop/engine/lora.py) on the tiny models, CPU fp32.

kohya, LoCon and PEFT files are checked against diffusers' own loader (load_lora_weights +
fuse_lora); DoRA, LoHa, LoKr and Tucker cores against the formulas written out here.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from desktop.core.errors import SfumatoError
from desktop.engine import lora, tiny_addons
from desktop.engine.lora import LoraPatcher, LoraUse

FAMILY = {"sd1": "sd1", "sdxl": "sdxl"}


def load(tiny_models, kind):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
    return cls.from_pretrained(tiny_models[kind].folder, local_files_only=True)


def components(pipe):
    return {"unet": pipe.unet, "text_encoder": pipe.text_encoder, "text_encoder_2": getattr(pipe, "text_encoder_2", None)}


def weights(pipe) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v.detach().clone() for c, m in components(pipe).items() if m is not None
            for k, v in m.state_dict().items()}  # fmt: skip


def changed(pipe, base) -> set[str]:
    return {k for k, v in weights(pipe).items() if not torch.equal(v, base[k])}


def assert_same(pipe, base):
    assert changed(pipe, base) == set()


@pytest.fixture(scope="module")
def sd1(tiny_models):
    """One SD 1.x pipeline and its patcher for the tests that put it back to base at the end."""
    pipe = load(tiny_models, "sd1")
    patcher = LoraPatcher(components(pipe), "sd1")
    base = weights(pipe)
    yield pipe, patcher, base
    patcher.apply([])


@pytest.fixture
def base_sd1(sd1):
    pipe, patcher, base = sd1
    patcher.apply([])
    assert_same(pipe, base)
    return sd1


# -- against diffusers' own loader ---------------------------------------------------------------

# diffusers (0.42 with transformers 5) drops the self-attention layers of a kohya text-encoder LoRA and cannot
# read a file whose only text-encoder layers are self-attention ones, so the comparison uses MLP layers there.
DIFFUSERS_TARGETS = tuple(t for t in tiny_addons.LORA_TARGETS if "self_attn" not in t) + (
    "text_encoder_2.*layers.0.mlp.fc2",
)


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
@pytest.mark.parametrize("layout", ["kohya", "locon", "peft"])
def test_merged_weights_equal_diffusers_fused_lora(tiny_models, tmp_path, kind, layout):
    ours, theirs = load(tiny_models, kind), load(tiny_models, kind)
    base = weights(ours)
    targets = None if layout == "peft" else DIFFUSERS_TARGETS + (tiny_addons.LORA_CONV_TARGETS if layout == "locon" else ())
    path = tiny_addons.build_lora(ours, layout, tmp_path / f"{layout}.safetensors", targets=targets)

    notes = LoraPatcher(components(ours), kind).apply([LoraUse(path, 0.7, 0.7)])
    theirs.load_lora_weights(str(path))
    theirs.fuse_lora(lora_scale=0.7)
    theirs.unload_lora_weights()

    ours_w, theirs_w = weights(ours), weights(theirs)
    touched = changed(ours, base)
    assert notes == []
    assert touched == changed(theirs, base)
    assert any(k.startswith("unet.") for k in touched) and any(k.startswith("text_encoder") for k in touched)
    if layout == "locon":
        assert "unet.down_blocks.0.resnets.0.conv1.weight" in touched  # a 3x3 convolution
    for key in ours_w:
        torch.testing.assert_close(ours_w[key], theirs_w[key], atol=1e-5, rtol=1e-5, msg=key)


# -- against the formulas ------------------------------------------------------------------------


def module(pipe, dotted):
    component, name = dotted.split(".", 1)
    return getattr(pipe, component).get_submodule(name)


def file_layers(path, pipe, kind):
    """kohya name in the file -> the dotted module name it means, from the builder's own naming."""
    names = tiny_addons._kohya_names(components(pipe), kind)
    return {v: f"{c}.{n}" for (c, n), v in names.items()}


def expected_delta(parts, weight):
    """Written out independently of lora.py: the change a LyCORIS trainer means, before the user's weight."""
    w = weight.float()
    if "lora_down.weight" in parts:
        down, up = parts["lora_down.weight"], parts["lora_up.weight"]
        rank = down.shape[0]
        if "lora_mid.weight" in parts:  # down (r,in,1,1) -> mid (r,r,k,k) -> up (out,r,1,1), a chain of convolutions
            mid = parts["lora_mid.weight"]
            d = torch.einsum("om,mnkl,ni->oikl", up[:, :, 0, 0], mid, down[:, :, 0, 0])
        else:
            d = (up.reshape(up.shape[0], -1) @ down.reshape(rank, -1)).reshape(w.shape)
    elif "hada_w1_a" in parts:
        rank = parts["hada_w1_b"].shape[0]
        halves = []
        for i in "12":
            a, b = parts[f"hada_w{i}_a"], parts[f"hada_w{i}_b"]
            if f"hada_t{i}" in parts:
                t = parts[f"hada_t{i}"]
                halves.append(torch.einsum("ijkl,io,jn->onkl", t, a, b))
            else:
                halves.append((a @ b).reshape(w.shape))
        d = halves[0] * halves[1]
    else:
        w1 = parts["lokr_w1"]
        rank = parts["lokr_w2_b"].shape[0]
        a, b = parts["lokr_w2_a"], parts["lokr_w2_b"]
        if "lokr_t2" in parts:
            w2 = torch.einsum("ijkl,io,jn->onkl", parts["lokr_t2"], a, b)
        else:
            w2 = (a @ b).reshape(a.shape[0], -1, *w.shape[2:])
        # Kronecker product over the output and input dims, the kernel from w2
        d = torch.einsum("ab,cd...->acbd...", w1, w2).reshape(w.shape)
    d = d * (float(parts["alpha"]) / rank)
    if "dora_scale" in parts:  # per input column: W' = (W + dW) * m / ||W + dW|| over all but dim 1
        merged = w + d
        dims = [i for i in range(w.ndim) if i != 1]
        d = merged * parts["dora_scale"] / torch.linalg.vector_norm(merged, dim=dims, keepdim=True) - w
    return d


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
@pytest.mark.parametrize("layout,tucker", [("loha", False), ("loha", True), ("lokr", False), ("lokr", True),
                                           ("dora", False), ("locon", True)])
def test_lycoris_layouts_merge_as_their_formula(tiny_models, tmp_path, kind, layout, tucker):
    pipe = load(tiny_models, kind)
    base = weights(pipe)
    path = tiny_addons.build_lora(pipe, layout, tmp_path / "x.safetensors", tucker=tucker)
    LoraPatcher(components(pipe), kind).apply([LoraUse(path, 0.8, 0.6)])

    state = load_file(path)
    names = file_layers(path, pipe, kind)
    stems = {k.split(".")[0] for k in state}
    for stem in stems:
        dotted = names[stem]
        parts = {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".")[0] == stem}
        before = base[dotted + ".weight"]
        weight = 0.8 if dotted.startswith("unet.") else 0.6
        expected = before + weight * expected_delta(parts, before)
        torch.testing.assert_close(module(pipe, dotted).weight.detach(), expected, atol=2e-5, rtol=1e-4, msg=dotted)
    assert len(changed(pipe, base)) == len(stems)


# -- exactness: weight 0, restore, switching, adding --------------------------------------------


def test_weight_zero_leaves_every_weight_bit_identical(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    path = tiny_addons.build_lora(pipe, "locon", tmp_path / "a.safetensors")
    patcher.apply([LoraUse(path, 0.0, 0.0)])
    assert_same(pipe, base)


def test_unet_and_text_weights_act_separately(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    path = tiny_addons.build_lora(pipe, "kohya", tmp_path / "a.safetensors")
    patcher.apply([LoraUse(path, unet=1.0, text=0.0)])
    unet_only = changed(pipe, base)
    patcher.apply([LoraUse(path, unet=0.0, text=1.0)])
    text_only = changed(pipe, base)
    assert unet_only and all(k.startswith("unet.") for k in unet_only)
    assert text_only and all(k.startswith("text_encoder.") for k in text_only)
    patcher.apply([LoraUse(path, unet=1.0, text=1.0)])
    assert changed(pipe, base) == unet_only | text_only


def test_removing_every_lora_restores_the_base_bit_for_bit(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    a = tiny_addons.build_lora(pipe, "locon", tmp_path / "a.safetensors")
    b = tiny_addons.build_lora(pipe, "loha", tmp_path / "b.safetensors", seed=1)
    patcher.apply([LoraUse(a, 1.3)])
    patcher.apply([LoraUse(a, 0.4), LoraUse(b, 0.9)])
    assert changed(pipe, base)
    patcher.apply([])
    assert_same(pipe, base)
    assert patcher.signature() == ()


def test_switching_sets_leaks_nothing_of_the_previous_one(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    a = tiny_addons.build_lora(pipe, "kohya", tmp_path / "a.safetensors")
    b = tiny_addons.build_lora(pipe, "lokr", tmp_path / "b.safetensors", seed=2)
    patcher.apply([LoraUse(b, 0.7)])
    b_alone = weights(pipe)
    patcher.apply([])
    patcher.apply([LoraUse(a, 1.0)])
    patcher.apply([LoraUse(b, 0.7)])
    assert changed(pipe, b_alone) == set()


def test_two_loras_add(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    a = tiny_addons.build_lora(pipe, "kohya", tmp_path / "a.safetensors")
    b = tiny_addons.build_lora(pipe, "kohya", tmp_path / "b.safetensors", seed=5)
    patcher.apply([LoraUse(a, 0.5)])
    with_a = weights(pipe)
    patcher.apply([LoraUse(b, 0.25)])
    with_b = weights(pipe)
    patcher.apply([LoraUse(a, 0.5), LoraUse(b, 0.25)])
    both = weights(pipe)
    for key in changed(pipe, base):
        torch.testing.assert_close(both[key] - base[key], (with_a[key] - base[key]) + (with_b[key] - base[key]),
                                   atol=1e-6, rtol=1e-5, msg=key)


def test_an_unchanged_set_does_nothing_and_a_changed_file_is_read_again(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    path = tmp_path / "a.safetensors"
    tiny_addons.build_lora(pipe, "kohya", path, seed=1)
    assert patcher.apply([LoraUse(path, 0.5)]) == []
    first = patcher.signature()
    layer = module(pipe, "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k")
    with torch.no_grad():
        layer.weight[0, 0] += 1.0  # were the set applied again, this would be undone
    tampered = weights(pipe)
    assert patcher.apply([LoraUse(path, 0.5)]) == []
    assert patcher.signature() == first
    assert changed(pipe, tampered) == set()
    with torch.no_grad():
        layer.weight[0, 0] -= 1.0

    patcher.apply([])
    tiny_addons.build_lora(pipe, "kohya", tmp_path / "other.safetensors", seed=2)
    patcher.apply([LoraUse(tmp_path / "other.safetensors", 0.5)])
    expected = weights(pipe)
    patcher.apply([LoraUse(path, 0.5)])
    (tmp_path / "other.safetensors").replace(path)  # the same name, another file
    patcher.apply([LoraUse(path, 0.5)])
    assert patcher.signature() != first
    assert changed(pipe, expected) == set()


def test_the_lora_changes_the_picture(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1

    def picture():
        return pipe("a red fox", num_inference_steps=2, height=64, width=64, output_type="np",
                    generator=torch.Generator().manual_seed(1)).images[0]

    plain = picture()
    patcher.apply([LoraUse(tiny_addons.build_lora(pipe, "kohya", tmp_path / "a.safetensors"), 1.0)])
    with_lora = picture()
    patcher.apply([])
    assert np.abs(with_lora - plain).mean() > 0.02
    assert np.array_equal(picture(), plain)


# -- files that cannot be used --------------------------------------------------------------------


@pytest.mark.parametrize("lora_kind,model_kind,says", [
    ("sdxl", "sd1", "is a LoRA for SDXL; the loaded model is SD 1.x. Choose an SD 1.x LoRA or an SDXL model."),
    ("sd1", "sdxl", "is a LoRA for SD 1.x or 2.x; the loaded model is SDXL."),
])  # fmt: skip
def test_a_lora_for_another_family_is_refused_naming_both(tiny_models, tmp_path, lora_kind, model_kind, says):
    other = load(tiny_models, lora_kind)
    path = tiny_addons.build_lora(other, "kohya", tmp_path / "detail.safetensors")
    pipe = load(tiny_models, model_kind)
    base = weights(pipe)
    with pytest.raises(SfumatoError) as error:
        LoraPatcher(components(pipe), model_kind).apply([LoraUse(path)])
    assert str(error.value).startswith("detail.safetensors " + says)
    assert_same(pipe, base)


def test_a_lora_for_a_transformer_model_is_refused_as_such(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    name = "lora_unet_double_blocks_0_img_attn_qkv"
    save_file({f"{name}.lora_down.weight": torch.zeros(4, 3072), f"{name}.lora_up.weight": torch.zeros(9216, 4)},
              str(tmp_path / "flux.safetensors"))
    with pytest.raises(SfumatoError, match=r"^flux\.safetensors is a LoRA for another kind of model \(such as Flux "
                                           r"or SD3\); the loaded model is SD 1\.x\. Choose an SD 1\.x LoRA\.$"):
        patcher.apply([LoraUse(tmp_path / "flux.safetensors")])
    assert lora.guess_families({}, {"modelspec.architecture": "flux-1-dev/lora"}) == {"other"}


def test_the_family_is_told_from_real_sizes_too():
    down = {"down": torch.zeros(4, 2048), "up": torch.zeros(320, 4)}
    groups = {"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k": down}
    assert lora.guess_families(groups, {}) == {"sdxl"}
    assert lora.guess_families({"lora_te_x_q_proj": {"down": torch.zeros(4, 1024)}}, {}) == {"sd2"}
    assert lora.guess_families({}, {"ss_base_model_version": "sd_v1"}) == {"sd1"}


def test_an_error_leaves_the_previous_set_in_place(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    good = tiny_addons.build_lora(pipe, "kohya", tmp_path / "good.safetensors")
    patcher.apply([LoraUse(good)])
    before, signature = weights(pipe), patcher.signature()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(SfumatoError, match=r"^broken\.safetensors .*truncated.*Download it again\.$"):
        patcher.apply([LoraUse(good), LoraUse(broken)])
    assert changed(pipe, before) == set()
    assert patcher.signature() == signature


def test_a_failure_while_merging_puts_the_model_back_to_base(base_sd1, tmp_path, monkeypatch):
    pipe, patcher, base = base_sd1
    path = tiny_addons.build_lora(pipe, "kohya", tmp_path / "a.safetensors")
    patcher.apply([LoraUse(path, 0.3)])
    calls = []
    real = lora._delta

    def failing(patch, weight):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(patch, weight)

    monkeypatch.setattr(lora, "_delta", failing)
    says = r"^a\.safetensors could not be merged into the model: its layer .* does not compute \(boom\)"
    with pytest.raises(SfumatoError, match=says):
        patcher.apply([LoraUse(path, 1.0)])
    assert_same(pipe, base)
    assert patcher.signature() == ()


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("content,says", [
    (b"not a model at all, just some text that is long enough", r"^x\.safetensors is not a valid model file: "),
    (b"", r"^x\.safetensors is not a valid model file: .*too short"),
])  # fmt: skip
def test_a_damaged_file_is_refused_in_a_sentence(base_sd1, tmp_path, content, says):
    pipe, patcher, base = base_sd1
    (tmp_path / "x.safetensors").write_bytes(content)
    with pytest.raises(SfumatoError, match=says):
        patcher.apply([LoraUse(tmp_path / "x.safetensors")])
    assert_same(pipe, base)


def test_a_pickle_with_code_is_not_opened(base_sd1, tmp_path, capsys):
    pipe, patcher, base = base_sd1
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"lora_unet_x.lora_down.weight": Payload()}, protocol=2))
    with pytest.raises(SfumatoError, match=r"^evil\.pt contains code, not only weights, so it was not opened\."):
        patcher.apply([LoraUse(path)])
    assert "this ran" not in capsys.readouterr().out
    assert_same(pipe, base)


def test_a_pickle_of_plain_weights_loads(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    pt = tiny_addons.build_lora(pipe, "kohya", tmp_path / "a.pt")
    st = tiny_addons.build_lora(pipe, "kohya", tmp_path / "a.safetensors")
    patcher.apply([LoraUse(st)])
    from_safetensors = weights(pipe)
    patcher.apply([LoraUse(pt)])
    assert changed(pipe, from_safetensors) == set()


@pytest.mark.parametrize("key,says", [
    ("lora_unet_x.oft_blocks", r"holds OFT weights, which Sfumato cannot merge yet"),
    ("lora_unet_x.something_new", r"holds weights Sfumato does not know how to merge \(such as 'lora_unet_x.something_new'\)"),
    ("emb_params", r"is a textual-inversion embedding, not a LoRA"),
    ("model.diffusion_model.out.2.weight", r"is a full model checkpoint, not a LoRA"),
])  # fmt: skip
def test_other_kinds_of_file_are_refused_naming_what_they_are(base_sd1, tmp_path, key, says):
    pipe, patcher, base = base_sd1
    path = tmp_path / "odd.safetensors"
    save_file({key: torch.zeros(2, 2)}, str(path))
    with pytest.raises(SfumatoError, match="^odd.safetensors " + says):
        patcher.apply([LoraUse(path)])
    assert_same(pipe, base)


def test_layers_the_model_lacks_are_reported(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    path = tiny_addons.build_lora(pipe, "kohya", tmp_path / "a.safetensors")
    state = load_file(path)
    state["lora_unet_no_such_layer.lora_down.weight"] = torch.zeros(4, 8)
    state["lora_unet_no_such_layer.lora_up.weight"] = torch.zeros(8, 4)
    save_file(state, str(path))
    notes = patcher.apply([LoraUse(path)])
    assert notes == ["a.safetensors: 1 of 9 layers match nothing in this model"]


@pytest.mark.parametrize("down,up,alpha", [
    (torch.zeros(4, 7), torch.zeros(64, 4), torch.tensor(4.0)),
    (torch.zeros(()), torch.zeros(64, 4), torch.tensor(4.0)),  # a factor without dimensions
    (torch.zeros(4, 64), torch.zeros(64), torch.tensor(4.0)),
    (torch.zeros(4, 64), torch.zeros(64, 4), torch.zeros(0)),  # an alpha without a value
], ids=["sizes", "scalar-factor", "flat-factor", "empty-alpha"])  # fmt: skip
def test_a_lora_of_the_right_family_with_wrong_sizes_is_refused(base_sd1, tmp_path, down, up, alpha):
    pipe, patcher, base = base_sd1
    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": alpha},
              str(tmp_path / "odd.safetensors"))
    with pytest.raises(SfumatoError, match=r"^odd\.safetensors does not fit the loaded SD 1\.x model: 1 of its 1 layers"):
        patcher.apply([LoraUse(tmp_path / "odd.safetensors")])
    assert_same(pipe, base)


def test_a_missing_file_is_named(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    with pytest.raises(SfumatoError, match=r"^The LoRA gone\.safetensors could not be read: it is no longer there\."):
        patcher.apply([LoraUse(tmp_path / "gone.safetensors")])


# -- other spellings of the same layers -----------------------------------------------------------


def _old_diffusers(key: str) -> str:
    key = re.sub(r"\.(attn[12])\.(to_[qkv])\.lora_A\.weight$", r".\1.processor.\2_lora.down.weight", key)
    key = re.sub(r"\.(attn[12])\.(to_[qkv])\.lora_B\.weight$", r".\1.processor.\2_lora.up.weight", key)
    key = re.sub(r"\.(attn[12])\.to_out\.0\.lora_A\.weight$", r".\1.processor.to_out_lora.down.weight", key)
    return re.sub(r"\.(attn[12])\.to_out\.0\.lora_B\.weight$", r".\1.processor.to_out_lora.up.weight", key)


@pytest.mark.parametrize("rename", [
    lambda k: k.removeprefix("unet."),  # diffusers takes keys without a component for the UNet's
    lambda k: k.replace(".lora_A.weight", ".lora.down.weight").replace(".lora_B.weight", ".lora.up.weight"),
    lambda k: k.replace(".lora_A.weight", ".lora_down.weight").replace(".lora_B.weight", ".lora_up.weight"),
    lambda k: k.replace("text_encoder.", "text_encoder.text_model.", 1),  # transformers 4 names the text model
    lambda k: "base_model.model." + k if k.startswith("unet.") else k,
    _old_diffusers,
], ids=["no-prefix", "lora.down", "lora_down", "text_model", "peft-base-model", "old-diffusers"])  # fmt: skip
def test_other_spellings_of_diffusers_keys_give_the_same_weights(base_sd1, tmp_path, rename):
    pipe, patcher, base = base_sd1
    path = tiny_addons.build_lora(pipe, "peft", tmp_path / "a.safetensors")
    patcher.apply([LoraUse(path, 0.9, 0.8)])
    expected = weights(pipe)
    state = load_file(path)
    renamed = {rename(k): v for k, v in state.items()}
    assert renamed.keys() != state.keys()
    save_file(renamed, str(tmp_path / "b.safetensors"))
    assert patcher.apply([LoraUse(tmp_path / "b.safetensors", 0.9, 0.8)]) == []
    assert changed(pipe, expected) == set()


def test_full_weight_and_bias_differences_merge_and_come_off(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    dotted = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0"
    layer = module(pipe, dotted)
    diff, diff_b = torch.randn(layer.weight.shape), torch.randn(layer.bias.shape)
    name = "lora_unet_" + dotted.removeprefix("unet.").replace(".", "_")
    save_file({f"{name}.diff": diff, f"{name}.diff_b": diff_b}, str(tmp_path / "full.safetensors"))
    patcher.apply([LoraUse(tmp_path / "full.safetensors", 0.5)])
    torch.testing.assert_close(layer.weight.detach(), base[dotted + ".weight"] + 0.5 * diff)
    torch.testing.assert_close(layer.bias.detach(), base[dotted + ".bias"] + 0.5 * diff_b)
    assert changed(pipe, base) == {dotted + ".weight", dotted + ".bias"}
    patcher.apply([])
    assert_same(pipe, base)


def test_dora_magnitudes_per_output_row_as_peft_and_lycoris_wd_on_out_store_them(base_sd1, tmp_path):
    pipe, patcher, base = base_sd1
    dotted = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # 64 x 32: rows and columns differ
    name = "lora_unet_" + dotted.removeprefix("unet.").replace(".", "_")
    w = base[dotted + ".weight"]
    down, up = torch.randn(4, w.shape[1]) * 0.2, torch.randn(w.shape[0], 4) * 0.2
    magnitude = torch.linalg.vector_norm(w, dim=1, keepdim=True) * 1.5  # (out, 1)
    save_file({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(2.0),
               f"{name}.dora_scale": magnitude}, str(tmp_path / "rows.safetensors"))
    patcher.apply([LoraUse(tmp_path / "rows.safetensors", 0.5)])
    merged = w + up @ down * (2.0 / 4)
    expected = w + 0.5 * (merged * magnitude / torch.linalg.vector_norm(merged, dim=1, keepdim=True) - w)
    torch.testing.assert_close(module(pipe, dotted).weight.detach(), expected)


def test_half_precision_weights_get_the_float32_sum_and_come_back_bit_for_bit(tiny_models, tmp_path):
    pipe = load(tiny_models, "sd1").to(torch.bfloat16)
    base = weights(pipe)
    path = tiny_addons.build_lora(pipe, "locon", tmp_path / "a.safetensors")
    patcher = LoraPatcher(components(pipe), "sd1")
    patcher.apply([LoraUse(path, 0.5)])
    dotted = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    name = "lora_unet_" + dotted.removeprefix("unet.").replace(".", "_")
    state = load_file(path)
    delta = state[f"{name}.lora_up.weight"].float() @ state[f"{name}.lora_down.weight"].float() * 0.5 * 0.5
    weight = module(pipe, dotted).weight
    assert weight.dtype == torch.bfloat16
    assert torch.equal(weight.detach(), (base[dotted + ".weight"].float() + delta).to(torch.bfloat16))
    patcher.apply([])
    assert_same(pipe, base)
