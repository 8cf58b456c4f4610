import json

import pytest

from desktop.core import cpu_runtime, paths
from desktop.core.cpu_runtime import Measurement

pytestmark = pytest.mark.measures_cpu_runtime  # they measure, or read what was measured, themselves


def measured(pytorch_s=2.0, openvino_s=1.5, note="", precision="bf16"):
    return Measurement(cpu_runtime.this_cpu(), pytorch_s, openvino_s, note, cpu_runtime.versions(), precision)


def test_nothing_measured_yet():
    assert cpu_runtime.load() is None
    assert cpu_runtime.chosen("auto", None) == "pytorch"
    assert "Not measured" in cpu_runtime.describe(None)


def test_saved_in_the_data_folder_and_loaded_back():
    cpu_runtime.save(measured())
    assert (paths.data_dir() / "cpu_runtime.json").is_file()
    assert cpu_runtime.load() == measured()
    assert cpu_runtime.load(precision="bf16") == measured()


@pytest.mark.parametrize("text", ["{not json", "[]", '{"cpu": 1}', '{"cpu": "x", "pytorch_s": "fast"}',
                                  '{"cpu": "x", "pytorch_s": NaN, "openvino_s": 1}', ""])
def test_an_unreadable_file_is_ignored_so_the_cpu_is_measured_again(text):
    path = paths.data_dir() / "cpu_runtime.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert cpu_runtime.load() is None
    cpu_runtime.save(measured())  # and the new measurement replaces it
    assert cpu_runtime.load() == measured()


@pytest.mark.parametrize("change", [{"cpu": "Another CPU, 64 logical CPUs"}, {"versions": "torch 1.0, openvino none"}])
def test_a_measurement_made_on_another_cpu_or_with_other_versions_is_measured_again(change):
    data = json.loads(json.dumps(measured().__dict__))
    data.update(change)
    cpu_runtime.save(Measurement(**data))
    assert cpu_runtime.load() is None


def test_a_measurement_in_another_precision_is_measured_again_when_asked():
    cpu_runtime.save(measured(precision="fp32"))
    assert cpu_runtime.load(precision="bf16") is None
    assert cpu_runtime.load() is not None


def test_the_cpu_is_named_with_its_logical_cpu_count():
    cpu = cpu_runtime.this_cpu()
    assert cpu.startswith(cpu_runtime.cpu_name()) and "logical CPU" in cpu
    assert cpu_runtime.cpu_name().strip()
    assert cpu_runtime.versions().startswith("torch ")


def test_auto_takes_the_faster_runtime_and_a_choice_is_kept():
    assert cpu_runtime.chosen("auto", measured(2.0, 1.5)) == "openvino"
    assert cpu_runtime.chosen("auto", measured(1.5, 2.0)) == "pytorch"
    assert cpu_runtime.chosen("auto", measured(1.5, None, "OpenVINO is not installed.")) == "pytorch"
    assert cpu_runtime.chosen("pytorch", measured(2.0, 1.0)) == "pytorch"
    assert cpu_runtime.chosen("openvino", None) == "openvino"


def test_auto_takes_openvino_only_when_it_is_at_least_1_1x_faster():
    """A smaller gain is within the measurement's noise, and not worth minutes of conversion and 1.7 GB per model."""
    assert cpu_runtime.chosen("auto", measured(1.1, 1.0)) == "openvino"
    assert cpu_runtime.chosen("auto", measured(1.09, 1.0)) == "pytorch"
    assert cpu_runtime.chosen("auto", measured(1.05, 1.0)) == "pytorch"
    assert cpu_runtime.chosen("openvino", measured(1.05, 1.0)) == "openvino"
    assert cpu_runtime.describe(measured(1.05, 1.0)) == (
        f"OpenVINO was only 1.05x faster than PyTorch on this CPU ({cpu_runtime.this_cpu()}): too little to be worth "
        "converting each model, so PyTorch is used on Auto.")


def test_described_for_the_settings_window():
    cpu = cpu_runtime.this_cpu()
    assert cpu_runtime.describe(measured(2.1, 1.5)) == f"OpenVINO was 1.4x faster than PyTorch on this CPU ({cpu})."
    assert cpu_runtime.describe(measured(1.32, 1.0)) == f"OpenVINO was 1.32x faster than PyTorch on this CPU ({cpu})."
    assert cpu_runtime.describe(measured(1.0, 2.0)) == f"PyTorch was 2x faster than OpenVINO on this CPU ({cpu})."
    assert cpu_runtime.describe(measured(1.0, 1.001)) == f"OpenVINO and PyTorch were equally fast on this CPU ({cpu})."
    assert cpu_runtime.describe(measured(1.0, None, "OpenVINO is not installed.")) == (
        f"OpenVINO could not be measured on this CPU ({cpu}) (OpenVINO is not installed); PyTorch is used.")


def test_core_does_not_import_torch_or_openvino():
    import subprocess
    import sys

    code = ("import sys; from desktop.core import cpu_runtime; cpu_runtime.this_cpu(); cpu_runtime.versions(); "
            "assert not {'torch', 'openvino', 'PySide6'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
