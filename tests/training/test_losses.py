"""SAM's losses: focal + dice (20:1), IoU regression, and the minimum over the multimask outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sam_from_scratch.errors import SamInputError
from sam_from_scratch.training.losses import FOCAL_WEIGHT, dice_loss, mask_iou, sam_loss, sigmoid_focal_loss


def square_target(size: int = 16) -> torch.Tensor:
    target = torch.zeros(1, 1, size, size)
    target[..., 4:12, 4:12] = 1.0
    return target


def test_focal_loss_without_alpha_and_gamma_is_binary_cross_entropy():
    logits = torch.randn(2, 3, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    expected = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none").mean((2, 3))
    torch.testing.assert_close(sigmoid_focal_loss(logits, target, alpha=-1, gamma=0), expected)


def test_focal_loss_down_weights_easy_pixels():
    target = square_target()
    easy = (target * 2 - 1) * 4.0  # confident and right
    hard = (target * 2 - 1) * 0.5  # barely right
    ratio_focal = sigmoid_focal_loss(easy, target) / sigmoid_focal_loss(hard, target)
    ratio_bce = sigmoid_focal_loss(easy, target, alpha=-1, gamma=0) / sigmoid_focal_loss(hard, target, alpha=-1, gamma=0)
    assert ratio_focal < ratio_bce / 10


def test_dice_loss_is_near_zero_for_a_perfect_mask_and_near_one_for_a_disjoint_one():
    target = square_target()
    assert dice_loss((target * 2 - 1) * 20, target).item() < 0.01
    assert dice_loss((1 - target * 2) * 20, target).item() > 0.95


def test_mask_iou_of_binarised_logits():
    target = square_target()  # 64 pixels
    logits = -torch.ones(1, 2, 16, 16)
    logits[0, 0, 4:12, 4:8] = 1  # half the square
    logits[0, 1, 4:12, 4:16] = 1  # the square plus 32 extra pixels
    torch.testing.assert_close(mask_iou(logits, target), torch.tensor([[0.5, 64 / 96]]))


def test_the_loss_only_penalises_the_best_of_three_masks():
    target = square_target()
    good = (target * 2 - 1) * 10
    logits = torch.cat([good, torch.randn(1, 2, 16, 16)], dim=1)  # mask 0 right, masks 1-2 noise
    parts = sam_loss(logits.requires_grad_(), torch.zeros(1, 3), target)
    assert parts.best.tolist() == [0]
    parts.total.backward()
    mask_grad = logits.grad.abs().flatten(2).sum(-1)[0]
    assert mask_grad[0] > 0 and mask_grad[1] == 0 and mask_grad[2] == 0


def test_the_mask_loss_weighs_focal_twenty_to_one_against_dice():
    target = square_target()
    logits = torch.randn(1, 1, 16, 16)
    iou = mask_iou(logits, target)
    parts = sam_loss(logits, iou.clone(), target, focal_alpha=0.25)  # a perfect IoU guess: no IoU loss
    assert parts.iou_mse.item() == pytest.approx(0.0)
    assert FOCAL_WEIGHT == 20.0
    assert parts.total.item() == pytest.approx(20 * parts.focal.item() + parts.dice.item(), rel=1e-5)


def test_the_iou_head_is_trained_towards_the_true_iou_of_every_mask():
    target = square_target()
    logits = torch.randn(1, 3, 16, 16)
    iou_pred = torch.full((1, 3), 0.5, requires_grad=True)
    parts = sam_loss(logits, iou_pred, target)
    parts.total.backward()
    true = mask_iou(logits, target)
    torch.testing.assert_close(iou_pred.grad, 2 * (0.5 - true) / 3)


def test_targets_of_the_wrong_shape_are_rejected():
    with pytest.raises(SamInputError, match=r"^targets: expected shape \(2, 1, 8, 8\) to match mask_logits \(2, 3, 8, 8\), "
                                            r"got Tensor of shape \(2, 1, 16, 16\)"):
        sam_loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3), torch.zeros(2, 1, 16, 16))


def test_bool_targets_are_read_as_zero_and_one():
    logits, iou = torch.randn(2, 3, 8, 8), torch.rand(2, 3)
    target = torch.rand(2, 1, 8, 8) > 0.5
    expected = sam_loss(logits, iou, target.float())
    assert sam_loss(logits, iou, target).total.item() == pytest.approx(expected.total.item())
    torch.testing.assert_close(sigmoid_focal_loss(logits, target), sigmoid_focal_loss(logits, target.float()))
    torch.testing.assert_close(dice_loss(logits, target), dice_loss(logits, target.float()))


def test_integer_targets_and_values_outside_zero_to_one_are_refused_with_a_hint():
    logits, iou = torch.randn(2, 3, 8, 8), torch.rand(2, 3)
    target = torch.rand(2, 1, 8, 8) > 0.5
    with pytest.raises(SamInputError, match=r"^targets: expected bool or float masks in 0..1, got Tensor .*torch.uint8.*/ 255"):
        sam_loss(logits, iou, target.to(torch.uint8) * 255)
    with pytest.raises(SamInputError, match=r"^targets: expected values in \[0, 1\], got .*from 0 to 255.*divide by 255"):
        sam_loss(logits, iou, target.float() * 255)  # gave a loss of about -3.5e9
    with pytest.raises(SamInputError, match=r"^targets: expected values in \[0, 1\]"):
        sigmoid_focal_loss(logits, target.float() * 255)
    with pytest.raises(SamInputError, match=r"^targets: expected a torch.Tensor"):
        sam_loss(logits, iou, target.float().numpy())


def test_iou_predictions_and_logits_of_the_wrong_shape_are_refused():
    logits, target = torch.randn(2, 3, 8, 8), torch.zeros(2, 1, 8, 8)
    for iou in (torch.rand(2, 1), torch.rand(2)):  # (2, 1) only warned about broadcasting
        with pytest.raises(SamInputError, match=r"^iou_predictions: expected shape \(2, 3\) \(one per mask"):
            sam_loss(logits, iou, target)
    with pytest.raises(SamInputError, match=r"^mask_logits: expected a torch.Tensor of shape \(N, M, H, W\)"):
        sam_loss(logits[:, 0], torch.rand(2, 3), target)
