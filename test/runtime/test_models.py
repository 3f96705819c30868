"""Model specs as users write them (node parameter, --model) resolve to models."""

import pytest

from da3_ros.runtime.models import ModelSettings, ModelUnavailable, make_window_model
from da3_ros.stream.interface import WindowModel
from da3_ros.stream.pipeline import Streamer


def test_auto_device_is_the_cpu_without_a_gpu():
    torch = pytest.importorskip("torch", reason="the DA3 network needs torch")
    model = make_window_model(ModelSettings("random:da3-small", device="auto", precision="auto", process_res=56))
    assert isinstance(model, WindowModel)
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "da3-small" in model.name


def test_oracle_specs(tmp_path):
    from da3_ros.synthetic.sequence import make_sequence, write_sequence

    write_sequence(make_sequence("forward", n_frames=3, width=32, height=24), tmp_path / "seq")
    exact = make_window_model(ModelSettings(f"oracle:{tmp_path / 'seq'}"))
    metric = make_window_model(ModelSettings(f"oracle-metric:{tmp_path / 'seq'}"))
    assert not exact.metric and metric.metric
    Streamer(exact)  # the node's path: a streamer over the model


def test_unknown_source_names_itself():
    with pytest.raises((ModelUnavailable, Exception)) as err:
        make_window_model(ModelSettings("no/such-model-id-anywhere", device="cpu"))
    assert "no/such-model-id-anywhere" in str(err.value)


def test_model_settings_reach_the_network():
    """ray_map, compile and the kernel switches are settings that reach the model
    (no environment variables): the staged fast path runs on the CPU."""
    pytest.importorskip("torch", reason="the DA3 network needs torch")
    from da3_ros.model.fast import Kernels

    model = make_window_model(ModelSettings("random:da3-small", device="cpu", process_res=56, pose_source="ray",
                                            ray_map="half", compile="staged", attention_kernel="math",
                                            head_channels_last=False, compile_dynamic=True,
                                            inductor_mode="max-autotune-no-cudagraphs"))
    assert model.ray_map == "half" and model.compile_mode == "staged" and model.pose_source == "ray"
    assert model._fast.kernels == Kernels("math", False, True, "max-autotune-no-cudagraphs")
    assert model._fast.tuner.force == "math"
    with pytest.raises(ValueError, match="attention kernel"):
        Kernels(attention="fastest")


def test_the_name_says_the_precision_in_use():
    """`precision: auto` resolves (fp32 on a CPU): the node's "model ready" line says what runs."""
    pytest.importorskip("torch", reason="the DA3 network needs torch")
    model = make_window_model(ModelSettings("random:da3-small", device="cpu", precision="auto", process_res=56))
    assert "(cpu, fp32, process_res=56," in model.name and "auto" not in model.name


def test_process_res_applied_or_refused(embedded_default):
    from da3_ros.runtime.models import SettingRefused

    with pytest.raises(SettingRefused, match="process_res 336.*embedded da3-tiny.*252"):
        make_window_model(ModelSettings("default", device="cpu", process_res=336))
    with pytest.raises(SettingRefused, match="process_res 20 is out of range: 56 to 1512"):
        make_window_model(ModelSettings("random:da3-small", device="cpu", process_res=20))
    assert make_window_model(ModelSettings("default", device="cpu", process_res=252)).process_res == 252
