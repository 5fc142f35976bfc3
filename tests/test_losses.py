import pytest
import torch
from torch.autograd import gradcheck

from spanetlib.evaluation.metrics import ssim
from spanetlib.training.losses import (
    L1Loss,
    SPANetLoss,
    SSIMLoss,
    attention_loss,
    l1_loss,
    ssim_loss,
)


def _images(seed=0, shape=(2, 3, 16, 16), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g, dtype=dtype)
    pred = (target + 0.1 * torch.randn(shape, generator=g, dtype=dtype)).clamp(0, 1)
    return pred, target


def test_l1_loss_values_and_reductions():
    pred, target = _images()
    diff = (pred - target).abs()
    assert l1_loss(pred, target).item() == pytest.approx(diff.mean().item())
    assert l1_loss(pred, target, "sum").item() == pytest.approx(diff.sum().item(), rel=1e-6)
    assert l1_loss(pred, target, "none").shape == pred.shape
    torch.testing.assert_close(
        l1_loss(pred, target), torch.nn.functional.l1_loss(pred, target)
    )
    assert L1Loss()(pred, target).item() == l1_loss(pred, target).item()
    assert l1_loss(pred, target).ndim == 0


def test_ssim_loss_identical_is_zero_and_reductions():
    pred, target = _images()
    assert ssim_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    value = ssim_loss(pred, target)
    assert value.ndim == 0 and 0.0 < value.item() < 1.0
    per_pixel = ssim_loss(pred, target, reduction="none")
    assert per_pixel.shape == pred.shape  # "same" padding keeps the size
    assert per_pixel.mean().item() == pytest.approx(value.item(), abs=1e-6)
    assert ssim_loss(pred, target, reduction="sum").item() == pytest.approx(
        per_pixel.sum().item(), rel=1e-5
    )
    valid = ssim_loss(pred, target, padding="valid", reduction="none")
    assert valid.shape == (2, 3, 6, 6)


def test_ssim_loss_valid_equals_standard_metric():
    pred, target = _images(seed=1, shape=(2, 3, 24, 20), dtype=torch.float64)
    per_image = ssim_loss(pred, target, padding="valid", reduction="none").flatten(1).mean(1)
    torch.testing.assert_close(1.0 - per_image, ssim(pred, target, "standard"))


def test_ssim_loss_same_padding_differs_from_valid():
    # the zero border is shared by both images, so border windows look more alike: the
    # authors' "same" SSIM loss differs from (here: is lower than) the "valid" one
    pred, target = _images(seed=2)
    same, valid = ssim_loss(pred, target).item(), ssim_loss(pred, target, padding="valid").item()
    assert abs(same - valid) > 1e-3


def test_ssim_module_agrees_with_function():
    pred, target = _images(seed=3)
    for padding in ("same", "valid"):
        for reduction in ("mean", "sum", "none"):
            module = SSIMLoss(padding=padding, reduction=reduction)
            torch.testing.assert_close(
                module(pred, target),
                ssim_loss(pred, target, padding=padding, reduction=reduction),
            )


def test_gradcheck_ssim_loss():
    pred, target = _images(seed=4, shape=(1, 3, 12, 12), dtype=torch.float64)
    pred.requires_grad_(True)
    assert gradcheck(lambda p: ssim_loss(p, target), (pred,))
    assert gradcheck(lambda p: ssim_loss(p, target, padding="valid"), (pred,))


def test_gradcheck_attention_loss():
    g = torch.Generator().manual_seed(5)
    attention = torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 1, 6, 6, generator=g) > 0.5
    assert gradcheck(lambda a: attention_loss(a, mask), (attention,))


def test_attention_loss_is_mse():
    g = torch.Generator().manual_seed(6)
    attention = torch.rand(2, 1, 8, 8, generator=g)
    mask = (torch.rand(2, 1, 8, 8, generator=g) > 0.7).float()
    expected = torch.nn.functional.mse_loss(attention, mask)
    torch.testing.assert_close(attention_loss(attention, mask), expected)
    # authors' layout: mask B x H x W, bool masks
    torch.testing.assert_close(attention_loss(attention, mask[:, 0]), expected)
    torch.testing.assert_close(attention_loss(attention, mask.bool()), expected)
    assert attention_loss(attention, mask, "none").shape == (2, 1, 8, 8)
    assert attention_loss(attention, mask, "sum").item() == pytest.approx(
        expected.item() * 128, rel=1e-6
    )
    assert attention_loss(mask, mask).item() == 0.0


def test_balanced_attention_loss_weighs_both_classes_equally():
    g = torch.Generator().manual_seed(11)
    attention = torch.rand(2, 1, 8, 8, generator=g)
    mask = torch.rand(2, 1, 8, 8, generator=g) > 0.9       # few rain pixels
    error = (attention - mask.float()).pow(2)
    expected = 0.5 * (error[mask].mean() + error[~mask].mean())
    torch.testing.assert_close(attention_loss(attention, mask, balanced=True), expected)
    torch.testing.assert_close(attention_loss(attention, mask[:, 0].float(), balanced=True),
                               expected)
    weighted = attention_loss(attention, mask, "none", balanced=True)
    assert weighted.shape == (2, 1, 8, 8)
    torch.testing.assert_close(weighted.mean(), expected)    # the weights have mean 1
    torch.testing.assert_close(attention_loss(attention, mask, "sum", balanced=True),
                               expected * 128)
    # A constant A: the plain MSE is smallest near the rain share, the balanced one at 0.5.
    share = mask.float().mean().item()
    levels = torch.linspace(0, 1, 101)
    plain = [attention_loss(torch.full_like(attention, v), mask).item() for v in levels]
    balanced = [attention_loss(torch.full_like(attention, v), mask, balanced=True).item()
                for v in levels]
    assert levels[int(torch.tensor(plain).argmin())].item() == pytest.approx(share, abs=0.01)
    assert levels[int(torch.tensor(balanced).argmin())].item() == pytest.approx(0.5)
    # At A = 0.5 the gradient on the rain pixels balances the one on the rest.
    half = torch.full_like(attention, 0.5, requires_grad=True)
    attention_loss(half, mask, balanced=True).backward()
    assert half.grad[mask].sum().item() == pytest.approx(-half.grad[~mask].sum().item())


def test_balanced_attention_loss_one_class_is_plain_mse():
    attention = torch.rand(1, 1, 6, 6)
    for mask in (torch.zeros(1, 1, 6, 6), torch.ones(1, 1, 6, 6)):
        torch.testing.assert_close(attention_loss(attention, mask, balanced=True),
                                   attention_loss(attention, mask))


def test_gradcheck_balanced_attention_loss():
    g = torch.Generator().manual_seed(12)
    attention = torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 1, 6, 6, generator=g) > 0.8
    assert gradcheck(lambda a: attention_loss(a, mask, balanced=True), (attention,))


def test_spanet_loss_attention_balanced():
    pred, target = _images(seed=13)
    attention = torch.rand(2, 1, 16, 16)
    mask = torch.rand(2, 1, 16, 16) > 0.9
    total, parts = SPANetLoss(attention_balanced=True)(pred, target, attention, mask)
    balanced = attention_loss(attention, mask, balanced=True)
    assert parts["attention"] == pytest.approx(balanced.item())
    torch.testing.assert_close(total, l1_loss(pred, target) + ssim_loss(pred, target) + balanced)
    assert "attention_balanced=True" in repr(SPANetLoss(attention_balanced=True))
    with pytest.raises(TypeError, match="attention_balanced: expected a bool, got str"):
        SPANetLoss(attention_balanced="yes")


def test_spanet_loss_total_and_parts():
    pred, target = _images(seed=7)
    pred.requires_grad_(True)
    g = torch.Generator().manual_seed(8)
    attention = torch.rand(2, 1, 16, 16, generator=g, requires_grad=True)
    mask = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    total, parts = SPANetLoss()(pred, target, attention, mask)
    l1 = l1_loss(pred, target)
    s = ssim_loss(pred, target)
    a = attention_loss(attention, mask)
    torch.testing.assert_close(total, l1 + s + a)  # Eq. 6 with unit weights
    assert parts == pytest.approx(
        {"l1": l1.item(), "ssim": s.item(), "attention": a.item(), "total": total.item()}
    )
    total.backward()
    assert pred.grad is not None and attention.grad is not None
    assert attention.grad.abs().sum() > 0


def test_spanet_loss_weights_and_skipping():
    pred, target = _images(seed=9)
    attention = torch.rand(2, 1, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    l1, s = l1_loss(pred, target), ssim_loss(pred, target)
    a = attention_loss(attention, mask)
    total, parts = SPANetLoss(l1_weight=2.0, ssim_weight=0.5, attention_weight=3.0)(
        pred, target, attention, mask
    )
    torch.testing.assert_close(total, 2 * l1 + 0.5 * s + 3 * a)
    assert parts["l1"] == pytest.approx(l1.item())  # parts are unweighted
    # attention None: no attention term
    total, parts = SPANetLoss()(pred, target)
    assert "attention" not in parts
    torch.testing.assert_close(total, l1 + s)
    # weight 0: skipped even without a mask
    total, parts = SPANetLoss(attention_weight=0.0)(pred, target, attention)
    assert "attention" not in parts
    torch.testing.assert_close(total, l1 + s)
    assert "attention_weight=1.0" in repr(SPANetLoss())


def test_errors():
    pred, target = _images()
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3, 16, 16\) and \(2, 3, 16, 8\)"):
        l1_loss(pred, target[..., :8])
    with pytest.raises(ValueError, match=r"pred: expected a B x C x H x W tensor, got shape \(3,"):
        ssim_loss(pred[0], target[0])
    with pytest.raises(TypeError, match="target: expected a floating-point torch.Tensor, got int"):
        l1_loss(pred, 3)
    with pytest.raises(ValueError, match=r"reduction: expected one of \('mean', 'sum', 'none'\)"):
        l1_loss(pred, target, "average")
    with pytest.raises(ValueError, match="reduction: expected one of"):
        SSIMLoss(reduction="batch")
    with pytest.raises(ValueError, match="padding: expected 'same' or 'valid', got 'reflect'"):
        SSIMLoss(padding="reflect")
    with pytest.raises(ValueError, match="window_size: expected an odd integer >= 1, got 8"):
        ssim_loss(pred, target, window_size=8)
    small = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim_loss(small, small, padding="valid")
    assert ssim_loss(small, small).item() == pytest.approx(0.0, abs=1e-6)  # "same" works
    attention = torch.rand(2, 1, 16, 16)
    with pytest.raises(
        ValueError, match=r"attention: expected a B x 1 x H x W tensor, got shape \(2, 3"
    ):
        attention_loss(pred, attention)
    with pytest.raises(ValueError, match=r"expected shape \(2, 1, 16, 16\).*got \(2, 1, 8, 8\)"):
        attention_loss(attention, attention[..., :8, :8])
    with pytest.raises(TypeError, match="mask: expected a torch.Tensor, got NoneType"):
        attention_loss(attention, None)
    with pytest.raises(TypeError, match="attention: expected a floating-point torch.Tensor"):
        attention_loss(attention.bool(), attention)
    with pytest.raises(ValueError, match="mask: expected .* attention_weight=1.0 > 0, got None"):
        SPANetLoss()(pred, target, attention)
    with pytest.raises(ValueError, match="ssim_weight: expected a weight >= 0, got -1"):
        SPANetLoss(ssim_weight=-1)
