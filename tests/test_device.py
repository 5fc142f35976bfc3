"""The checked CPU bf16 training path of `spanetlib.models.device` (more in test_inference)."""

import pytest
import torch

from spanetlib.models import device


@pytest.fixture(autouse=True)
def _fresh_check_cache():
    device._bf16_conv_gradients_ok.cache_clear()
    yield
    device._bf16_conv_gradients_ok.cache_clear()


def _net(in_channels: int, dilation: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 16, 3, padding=dilation,
                                               dilation=dilation))


def test_the_known_fault_is_refused_without_running_it(monkeypatch):
    def never(*args):
        raise AssertionError("the faulty convolution ran")

    monkeypatch.setattr(torch.nn.Conv2d, "forward", never)
    faults = device.bf16_training_faults(_net(24, 2), channels_last=True, batch=2, size=32)
    assert faults == ["0 (24 -> 16, kernel 3, dilation 2)"]


def test_right_gradients_pass_and_the_check_measures(monkeypatch):
    assert device.bf16_training_faults(_net(16, 1), channels_last=True, batch=2, size=32) == []
    assert device.bf16_training_faults(_net(24, 2), channels_last=False, batch=2, size=32) == []
    # bf16 differs from float32 by ~0.3 %: a tolerance below that fails every convolution.
    monkeypatch.setattr(device, "_BF16_CHECK_TOLERANCE", 1e-6)
    device._bf16_conv_gradients_ok.cache_clear()
    assert len(device.bf16_training_faults(_net(16, 1), channels_last=True, batch=2,
                                           size=32)) == 1


def test_each_distinct_convolution_is_reported_by_name():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1),
                              torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2),
                              torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2))
    faults = device.bf16_training_faults(net, channels_last=True, batch=1, size=24)
    assert faults == ["1 (8 -> 8, kernel 3, dilation 2)", "2 (8 -> 8, kernel 3, dilation 2)"]


def test_the_check_leaves_the_callers_random_state_alone():
    net = _net(16, 1)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert device.bf16_training_faults(net, channels_last=True, batch=2, size=24) == []
    assert torch.equal(torch.rand(4), expected)
