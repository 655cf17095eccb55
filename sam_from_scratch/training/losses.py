"""SAM's training losses.

The mask loss is a focal loss plus a dice loss, weighted 20:1 (focal is an average over pixels, so it is small;
the weight makes it count). Focal loss looks at pixels one by one and concentrates on the hard ones; dice looks
at the mask as a whole and does not care how big it is. For an ambiguous prompt the decoder gives three masks
and only the best of them is penalised ("minimum over the three"), so each output is free to specialise (part,
whole, ...). Separately, the IoU head learns by mean-squared error to predict how good each mask really is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import check_number, input_error, is_number

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def as_mask_targets(targets, argument: str = "targets") -> torch.Tensor:
    """`targets` as a float tensor in 0..1: bool masks become 0./1.; integer dtypes and values outside [0, 1]
    are refused (0/255 masks would give a huge negative loss instead of an error)."""
    if not isinstance(targets, torch.Tensor):
        raise input_error(argument, "a torch.Tensor of masks in 0..1", targets)
    if targets.dtype == torch.bool:
        return targets.float()
    if not targets.is_floating_point():
        raise input_error(
            argument, "bool or float masks in 0..1", targets,
            "For 0/255 masks pass targets > 0 (bool) or targets / 255.",
        )
    outside = (targets < 0) | (targets > 1) | targets.isnan()
    if bool(outside.any()):
        low, high = targets.min().item(), targets.max().item()
        raise input_error(
            argument, "values in [0, 1]", targets,
            f"Its values run from {low:g} to {high:g}{' (with NaN)' if bool(targets.isnan().any()) else ''}; "
            "for 0/255 masks divide by 255.",
        )
    return targets


def check_mask_shapes(logits, targets) -> None:
    """Logits (N, M, H, W) and targets (N, 1 or M, H, W): a target without its mask axis, (N, H, W), would be
    broadcast against the masks and pair target j with mask j, a silently wrong loss."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        raise input_error("logits", "a torch.Tensor of shape (N, M, H, W)", logits)
    n, m, h, w = logits.shape
    if not isinstance(targets, torch.Tensor):
        raise input_error("targets", "a torch.Tensor of masks in 0..1", targets)
    shape = tuple(targets.shape)
    if len(shape) != 4 or shape[0] != n or shape[1] not in (1, m) or shape[2:] != (h, w):
        hint = "Give each target its mask axis: targets[:, None]." if shape == (n, h, w) else ""
        raise input_error("targets", f"shape ({n}, 1 or {m}, {h}, {w}) to match logits {(n, m, h, w)}", targets, hint)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss averaged over pixels.

    Args:
        logits: (N, M, H, W) mask logits.
        targets: (N, 1 or M, H, W) in 0..1 (fractions are allowed: a pixel half covered by the object).
        alpha: weight of the positive pixels (1 - alpha for the negative ones); a negative value turns it off.
        gamma: how much easy pixels are down-weighted; 0 gives plain binary cross-entropy.

    Returns:
        (N, M) loss of each mask.
    """
    check_mask_shapes(logits, targets)
    check_number("gamma", gamma, 0.0)
    if not (is_number(alpha) and alpha <= 1):
        raise input_error("alpha", "a weight in [0, 1], or a negative number for no weighting", alpha)
    return _focal_loss(logits, as_mask_targets(targets), alpha, gamma)


def _focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """`sigmoid_focal_loss` for targets that `as_mask_targets` has already checked."""
    targets = targets.expand_as(logits)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)  # probability given to the right answer
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice coefficient: (N, M, H, W) logits, (N, 1 or M, H, W) targets -> (N, M)."""
    check_mask_shapes(logits, targets)
    check_number("eps", eps, 0.0)
    return _dice_loss(logits, as_mask_targets(targets), eps)


def _dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """`dice_loss` for targets that `as_mask_targets` has already checked."""
    prob = torch.sigmoid(logits).flatten(2)
    targets = targets.expand_as(logits).flatten(2)
    overlap = (prob * targets).sum(-1)
    return 1 - (2 * overlap + eps) / (prob.sum(-1) + targets.sum(-1) + eps)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """IoU of the binarised masks (logits > threshold) with targets > 0.5: (N, M, H, W), (N, 1|M, H, W) -> (N, M).

    An empty prediction of an empty target counts as IoU 1.
    """
    check_mask_shapes(logits, targets)
    pred = (logits > threshold).flatten(2)
    true = (targets > 0.5).expand_as(logits).flatten(2)
    intersection = (pred & true).sum(-1).float()
    union = (pred | true).sum(-1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


@dataclass
class SamLoss:
    """The pieces of the loss for one batch of prompts (all scalars except `best`)."""

    total: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou_mse: torch.Tensor
    best: torch.Tensor  # (N,) index of the mask that was penalised
    true_iou: torch.Tensor  # (N, M) IoU of every predicted mask with its target


def check_loss_inputs(mask_logits, iou_predictions, targets) -> None:
    """The shapes sam_loss needs: logits (N, M, H, W), IoU predictions (N, M), targets (N, 1, H, W)."""
    if not isinstance(mask_logits, torch.Tensor) or mask_logits.ndim != 4:
        raise input_error("mask_logits", "a torch.Tensor of shape (N, M, H, W)", mask_logits)
    n, m, h, w = mask_logits.shape
    if not isinstance(targets, torch.Tensor):
        raise input_error("targets", "a torch.Tensor of masks in 0..1", targets)
    if tuple(targets.shape) != (n, 1, h, w):
        raise input_error("targets", f"shape {(n, 1, h, w)} to match mask_logits {(n, m, h, w)}", targets)
    if not isinstance(iou_predictions, torch.Tensor) or tuple(iou_predictions.shape) != (n, m):
        raise input_error(
            "iou_predictions", f"shape {(n, m)} (one per mask of mask_logits {(n, m, h, w)})", iou_predictions
        )


def sam_loss(
    mask_logits: torch.Tensor,
    iou_predictions: torch.Tensor,
    targets: torch.Tensor,
    focal_alpha: float = 0.25,
) -> SamLoss:
    """SAM's loss for N prompts with M = 1 or 3 output masks each.

    Args:
        mask_logits: (N, M, H, W).
        iou_predictions: (N, M) the decoder's guess of each mask's IoU.
        targets: (N, 1, H, W) ground-truth masks in 0..1 (float, or bool) at the logits' resolution.
        focal_alpha: see `sigmoid_focal_loss`.

    Returns:
        SamLoss; `total` = mean over prompts of min over masks (20 * focal + dice) + MSE(IoU prediction, IoU).
    """
    check_loss_inputs(mask_logits, iou_predictions, targets)
    targets = as_mask_targets(targets)
    focal = _focal_loss(mask_logits, targets, alpha=focal_alpha)  # (N, M)
    dice = _dice_loss(mask_logits, targets)  # (N, M)
    per_mask = FOCAL_WEIGHT * focal + DICE_WEIGHT * dice
    best = per_mask.argmin(dim=1)  # (N,) only the best of an ambiguous prompt's masks is trained
    pick = best[:, None]
    with torch.no_grad():
        true_iou = mask_iou(mask_logits, targets)
    iou_mse = F.mse_loss(iou_predictions, true_iou)  # every mask learns to rate itself
    total = per_mask.gather(1, pick).mean() + IOU_WEIGHT * iou_mse
    return SamLoss(
        total=total,
        focal=focal.gather(1, pick).mean(),
        dice=dice.gather(1, pick).mean(),
        iou_mse=iou_mse,
        best=best,
        true_iou=true_iou,
    )
