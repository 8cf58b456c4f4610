"""The infotext of fast pictures: "Decoder: TAESD" reads back into the request's decoder, "Runtime: OpenVINO" is
kept and shown as a record, and the remote protocol carries the decoder and a model's few-step kind."""

import json

import pytest

from desktop.core import remote_protocol as protocol
from desktop.core.backend import GenerationJob, ModelDescriptor
from desktop.core.errors import InvalidRequest
from desktop.core.gallery.metadata import meta_from_chunks, to_request
from desktop.core.infotext import format_infotext, from_request, parse_infotext, read_decoder
from desktop.core.request import GenerationRequest
from tests.support.requests import make_request

A1111 = "a lighthouse at dusk\nSteps: 4, Sampler: LCM, CFG scale: 1, Seed: 9, Size: 512x512, Model: dreamshaper_lcm"


def test_decoder_taesd_reads_as_the_tiny_decoder_and_no_decoder_as_the_full_vae():
    assert read_decoder({"Decoder": "TAESD"}) == "tiny"
    assert read_decoder({"decoder": " taesd "}) == "tiny"  # keys and values in any case, as other tools write
    assert read_decoder({}) == "full"
    assert read_decoder({"Decoder": "something else"}) == "full"


def test_use_all_parameters_takes_the_decoder_from_an_a1111_text():
    tiny = meta_from_chunks({"parameters": A1111 + ", Decoder: TAESD"})
    assert to_request(tiny, make_request()).decoder == "tiny"
    full = meta_from_chunks({"parameters": A1111})  # no Decoder: the model's own VAE, whatever the panel had
    assert to_request(full, make_request().replace(decoder="tiny")).decoder == "full"


def test_a_sfumato_picture_keeps_its_decoder_in_its_own_record():
    request = make_request().replace(decoder="tiny")
    chunks = {"sfumato": json.dumps({"request": request.to_dict()}),
              "parameters": A1111 + ", Decoder: TAESD"}
    assert to_request(meta_from_chunks(chunks), make_request()).decoder == "tiny"


def test_runtime_openvino_is_kept_and_shown_never_an_error():
    text = A1111 + ", Decoder: TAESD, Runtime: OpenVINO"
    meta = meta_from_chunks({"parameters": text})
    assert meta.parameters == text  # what Copy parameters and the gallery's details show
    assert parse_infotext(meta.parameters).params["Runtime"] == "OpenVINO"
    request = to_request(meta, make_request())
    assert request.sampling.sampler == "LCM" and request.sampling.steps == 4 and request.decoder == "tiny"
    request.validate()  # the runtime is a record of how it ran, not a request value


def test_the_engines_params_are_written_after_the_request_values_and_read_back():
    request = make_request(prompt="a fox").replace(decoder="tiny")
    info = from_request(request, 9, "tiny-sd1", extra=(("Decoder", "TAESD"), ("Runtime", "OpenVINO")))
    params = parse_infotext(format_infotext(info)).params
    assert (params["Decoder"], params["Runtime"]) == ("TAESD", "OpenVINO")
    assert read_decoder(params) == "tiny"


def test_the_remote_protocol_carries_the_decoder():
    body = json.loads(protocol.encode_job(GenerationJob(GenerationRequest(decoder="tiny"), "approximate", 1)))
    assert body["request"]["decoder"] == "tiny"
    assert protocol.decode_job(body, lambda name, kind: name).request.decoder == "tiny"
    del body["request"]["decoder"]  # a client from before the decoder: the full VAE
    assert protocol.decode_job(body, lambda name, kind: name).request.decoder == "full"


def test_the_server_refuses_an_unknown_decoder_before_the_job_waits():
    body = json.loads(protocol.encode_job(GenerationJob(GenerationRequest(), "approximate", 1)))
    body["request"]["decoder"] = "huge"
    with pytest.raises(InvalidRequest) as refused:
        protocol.decode_job(body, lambda name, kind: name)
    assert refused.value.field == "decoder" and "full, tiny" in str(refused.value)


def test_a_servers_model_list_says_which_models_are_few_step():
    described = protocol.describe_model(ModelDescriptor("m", "sdxl", "sdxl_lightning_4step", few_step="lightning"),
                                        "sdxl_lightning_4step")
    assert protocol.read_model(json.loads(json.dumps(described))).few_step == "lightning"
    older = {key: value for key, value in described.items() if key != "few_step"}  # a server before few-step models
    assert protocol.read_model(older).few_step == ""
