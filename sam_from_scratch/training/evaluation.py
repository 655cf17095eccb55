"""The model card's figures: how well a model segments held-out scenes from one click, more clicks, or a box."""

from __future__ import annotations

import torch

from ..errors import SamInputError, check_int, check_switch, input_error, is_int
from ..modeling.sam import Sam
from ..predictor import check_sam_model
from ..utils.amg import batched_mask_to_box
from .forward import decode, encode_images
from .losses import mask_iou
from .prompts import center_error_clicks, random_points_in, seeded_generator
from .scenes import HELDOUT_SEED, SceneConfig, make_scene


REPORTED_CLICKS = (1, 2, 3)  # the card has single_click, two_clicks and three_clicks figures


def check_evaluate_arguments(model, num_scenes, seed, scene_config, first_scene, clicks, progress) -> SceneConfig:
    """Refuse what evaluate cannot use; returns the scene config (the model's image size by default)."""
    check_sam_model("model", model)
    check_int("num_scenes", num_scenes, 1)
    check_int("seed", seed, 0)
    check_int("first_scene", first_scene, 0)
    if not is_int(clicks) or clicks not in REPORTED_CLICKS:
        raise input_error("clicks", "1, 2 or 3 (clicks per object; the figures go up to three_clicks_miou)", clicks)
    check_switch("progress", progress)
    S = model.image_encoder.img_size
    if scene_config is None:
        return SceneConfig(image_size=S)
    if not isinstance(scene_config, SceneConfig):
        raise input_error("scene_config", "a SceneConfig or None", scene_config)
    if scene_config.image_size != S:
        raise SamInputError(
            f"scene_config: expected image_size {S} (the model's image size), got image_size "
            f"{scene_config.image_size!r}. Pass SceneConfig(image_size={S}, ...), or leave scene_config out."
        )
    return scene_config


@torch.no_grad()
def evaluate(
    model: Sam,
    num_scenes: int = 200,
    seed: int = HELDOUT_SEED,
    scene_config: SceneConfig | None = None,
    first_scene: int = 0,
    clicks: int = 3,
    progress: bool = False,
) -> dict:
    """The model card's figures on held-out scenes, for every instance of every scene.

    single_click_miou: mIoU of the mask the model rates best (predicted IoU) after one random interior click;
    single_click_best_of_3_miou: of the best of its three masks; two/three_clicks_miou: after corrective clicks
    at the centre of the largest error (single-mask output, previous logits fed back); box_miou: from the tight
    box; iou_prediction_correlation: Pearson correlation of predicted and true IoU over the three masks.

    clicks is how many clicks each object gets (1, 2 or 3); figures for clicks it did not get are None.
    scene_config, if given, must have the model's image size. The model is evaluated in eval mode and left in the
    mode it came in.
    """
    scene_config = check_evaluate_arguments(model, num_scenes, seed, scene_config, first_scene, clicks, progress)
    was_training = model.training
    model.eval()
    try:
        return _figures(model, num_scenes, seed, scene_config, first_scene, clicks, progress)
    finally:
        model.train(was_training)  # the caller's mode, as it was (a training loop measures between steps)


def _figures(model, num_scenes, seed, scene_config, first_scene, clicks, progress) -> dict:
    """evaluate's figures, the model in eval mode."""
    from tqdm.auto import tqdm

    S = model.image_encoder.img_size
    results = {"single": [], "best": [], "clicks": [[] for _ in range(clicks)], "box": [], "pred": [], "true": []}
    for index in tqdm(range(first_scene, first_scene + num_scenes), disable=not progress, desc="evaluate"):
        scene = make_scene(seed, index, scene_config)
        generator = seeded_generator(seed * 1_000_003 + index)
        truth = torch.from_numpy(scene.masks)  # (N, S, S)
        n = len(truth)
        embeddings = encode_images(model, torch.from_numpy(scene.image)[None])
        image_index = torch.zeros(n, dtype=torch.long)

        def full_res(logits):  # on the CPU, beside the truth
            return model.postprocess_masks(logits, (S, S), (S, S)).cpu() > model.mask_threshold

        coords = random_points_in(truth, generator)[:, None]  # (N, 1, 2)
        labels = torch.ones(n, 1)
        logits, iou_pred = decode(model, embeddings, image_index, coords, labels, None, None, True)
        logits, iou_pred = logits.cpu(), iou_pred.cpu()
        ious = mask_iou(model.postprocess_masks(logits, (S, S), (S, S)), truth[:, None].float())  # (N, 3)
        chosen = iou_pred.argmax(1)
        results["single"].append(ious.gather(1, chosen[:, None])[:, 0])
        results["best"].append(ious.max(1).values)
        results["pred"].append(iou_pred.flatten())
        results["true"].append(ious.flatten())
        results["clicks"][0].append(results["single"][-1])
        previous = logits[torch.arange(n), chosen][:, None]  # (N, 1, low, low)
        for round_ in range(1, clicks):
            xy, new_labels = center_error_clicks(full_res(previous)[:, 0], truth)
            coords = torch.cat([coords, xy[:, None]], dim=1)
            labels = torch.cat([labels, new_labels[:, None]], dim=1)
            previous = decode(model, embeddings, image_index, coords, labels, None, previous, False)[0].cpu()
            results["clicks"][round_].append(mask_iou(model.postprocess_masks(previous, (S, S), (S, S)), truth[:, None].float())[:, 0])
        boxes = batched_mask_to_box(truth).float()  # (N, 4) tight, inclusive: every instance has pixels
        logits = decode(model, embeddings, image_index, None, None, boxes, None, False)[0].cpu()
        results["box"].append(mask_iou(model.postprocess_masks(logits, (S, S), (S, S)), truth[:, None].float())[:, 0])

    def mean(key):
        return round(float(torch.cat(results[key]).mean()), 4)

    pred, true = torch.cat(results["pred"]), torch.cat(results["true"])
    figures = {
        "single_click_miou": mean("single"),
        "single_click_best_of_3_miou": mean("best"),
        "two_clicks_miou": round(float(torch.cat(results["clicks"][1]).mean()), 4) if clicks > 1 else None,
        "three_clicks_miou": round(float(torch.cat(results["clicks"][2]).mean()), 4) if clicks > 2 else None,
        "box_miou": mean("box"),
        "iou_prediction_correlation": round(float(torch.corrcoef(torch.stack([pred, true]))[0, 1]), 4),
        "num_scenes": num_scenes,
        "num_instances": int(sum(len(x) for x in results["single"])),
        "heldout_seed": seed,
    }
    return figures
