"""SamAutomaticMaskGenerator: "segment everything" by prompting SAM with a grid of points.

The recipe, step by step (each step is a function in ``utils.amg`` you can try on its own):

1. Cut the image into crops: the whole image, and optionally layers of overlapping tiles.
2. For each crop: compute the image embedding once, then prompt with a regular grid of single points,
   ``points_per_batch`` points at a time, asking for three masks per point.
3. Drop masks the model itself rates low (``pred_iou_thresh``) and masks that change a lot when the
   logit cut-off moves by ``stability_score_offset`` (``stability_score_thresh``).
4. Drop masks cut by a crop edge, then duplicates: box NMS within the crop, then across crops
   (preferring masks from smaller crops, which saw more detail).
5. Optionally fill small holes and remove small islands (``min_mask_region_area``), then NMS again.
6. Return one record per mask, with the mask as a binary array or a run-length encoding.

Same parameters, defaults and records as the official generator, so results can be compared one to one.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .errors import SamInputError, check_choice
from .utils.amg import (
    MaskData,
    area_from_rle,
    batched_mask_to_box,
    batched_nms,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    calculate_stability_score,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from .predictor import SamPredictor, as_rgb_uint8

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class SamAutomaticMaskGenerator:
    """Generate masks for everything in an image.

    Args:
        model: a ``Sam`` (ours or the official one).
        points_per_side: the grid has points_per_side**2 points; None to give ``point_grids`` instead.
        points_per_batch: how many points go through the decoder at once (memory vs. speed).
        pred_iou_thresh: keep masks whose predicted IoU is above this, in [0, 1].
        stability_score_thresh: keep masks whose stability score is at least this, in [0, 1].
        stability_score_offset: how far the logit cut-off moves for the stability score.
        box_nms_thresh: box IoU above which a lower-scored mask is a duplicate, within a crop.
        crop_n_layers: extra crop layers; layer i has (2**i)**2 tiles.
        crop_nms_thresh: box IoU for duplicates between crops.
        crop_overlap_ratio: how much tiles of the first layer overlap, as a fraction of the short side.
        crop_n_points_downscale_factor: layer i uses points_per_side / factor**i points per side.
        point_grids: explicit (N, 2) grids in [0, 1], one per layer; exclusive with points_per_side.
        min_mask_region_area: if > 0, fill holes and remove islands smaller than this many pixels
            (our own connected-components labelling, no OpenCV needed).
        output_mode: "binary_mask" (HxW bool arrays), "uncompressed_rle" (our RLE dicts) or
            "coco_rle" (compressed, needs pycocotools).
    """

    def __init__(
        self,
        model,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise SamInputError(
                "points_per_side, point_grids: expected exactly one of them, got "
                f"points_per_side={points_per_side!r} and point_grids={'None' if point_grids is None else 'a list'}."
            )
        if points_per_side is not None:
            deepest = int(points_per_side / crop_n_points_downscale_factor**crop_n_layers)
            if deepest < 1:
                raise SamInputError(
                    f"points_per_side: expected at least {crop_n_points_downscale_factor**crop_n_layers} so that crop "
                    f"layer {crop_n_layers} still has one point per side, got {points_per_side!r}."
                )
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            if len(point_grids) != crop_n_layers + 1:
                raise SamInputError(
                    f"point_grids: expected one grid per crop layer ({crop_n_layers + 1}), got {len(point_grids)}."
                )
            self.point_grids = point_grids
        if points_per_batch < 1:
            raise SamInputError(f"points_per_batch: expected a positive integer, got {points_per_batch!r}.")
        check_choice("output_mode", output_mode, OUTPUT_MODES)
        if output_mode == "coco_rle":
            coco_encode_rle({"size": [1, 1], "counts": [1]})  # fails early, with a hint, without pycocotools

        self.predictor = SamPredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    @torch.no_grad()
    def generate(
        self, image: np.ndarray, progress: Optional[Callable[[int, int], None]] = None
    ) -> List[Dict[str, Any]]:
        """Masks for everything in ``image``.

        Args:
            image: (H, W, 3) uint8 RGB array (grayscale and RGBA are converted, as in ``set_image``).
            progress: optional ``progress(done, total)``, called after each batch of points.

        Returns:
            one record per mask, best first within each crop, with keys
            segmentation (HxW bool array, or an RLE dict), area (int, pixels), bbox ([x, y, w, h]),
            predicted_iou (float), point_coords ([[x, y]], the prompt), stability_score (float) and
            crop_box ([x, y, w, h] of the crop the mask came from).
        """
        image = as_rgb_uint8(image)
        mask_data = self._generate_masks(image, progress)
        if self.min_mask_region_area > 0:
            mask_data = self.postprocess_small_regions(
                mask_data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )

        if self.output_mode == "coco_rle":
            segmentations = [coco_encode_rle(rle) for rle in mask_data["rles"]]
        elif self.output_mode == "binary_mask":
            segmentations = [rle_to_mask(rle) for rle in mask_data["rles"]]
        else:
            segmentations = mask_data["rles"]

        return [
            {
                "segmentation": segmentation,
                "area": area_from_rle(mask_data["rles"][i]),
                "bbox": box_xyxy_to_xywh(mask_data["boxes"][i]).tolist(),
                "predicted_iou": mask_data["iou_preds"][i].item(),
                "point_coords": [mask_data["points"][i].tolist()],
                "stability_score": mask_data["stability_score"][i].item(),
                "crop_box": box_xyxy_to_xywh(mask_data["crop_boxes"][i]).tolist(),
            }
            for i, segmentation in enumerate(segmentations)
        ]

    def _generate_masks(self, image: np.ndarray, progress=None) -> MaskData:
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        batches_per_crop = [-(-len(self.point_grids[layer]) // self.points_per_batch) for layer in layer_idxs]
        counter = _Progress(progress, total=sum(batches_per_crop))

        data = MaskData()
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
            data.cat(self._process_crop(image, crop_box, layer_idx, orig_size, counter))

        if len(crop_boxes) > 1:
            # Duplicates between crops: prefer the mask from the smaller crop (it saw more detail).
            scores = 1 / box_area(data["crop_boxes"])
            keep = batched_nms(
                data["boxes"].float(), scores.to(data["boxes"].device),
                torch.zeros(len(data["boxes"])), iou_threshold=self.crop_nms_thresh,
            )
            data.filter(keep)
        data.to_numpy()
        return data

    def _process_crop(
        self, image: np.ndarray, crop_box: List[int], crop_layer_idx: int, orig_size: Tuple[int, ...], counter
    ) -> MaskData:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        cropped_size = cropped.shape[:2]
        self.predictor.set_image(cropped)

        # the layer's grid, from [0, 1] to the crop's pixels: x scales with the width, y with the height
        points_for_image = self.point_grids[crop_layer_idx] * np.array(cropped_size)[None, ::-1]

        data = MaskData()
        for start in range(0, len(points_for_image), self.points_per_batch):
            points = points_for_image[start : start + self.points_per_batch]
            data.cat(self._process_batch(points, cropped_size, crop_box, orig_size))
            counter.step()
        self.predictor.reset_image()

        # Duplicates within this crop: keep the mask with the higher predicted IoU.
        keep = batched_nms(
            data["boxes"].float(), data["iou_preds"], torch.zeros(len(data["boxes"])),
            iou_threshold=self.box_nms_thresh,
        )
        data.filter(keep)

        # Back to the full image's frame.
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor(crop_box).repeat(len(data["rles"]), 1)  # (n, 4)
        return data

    def _process_batch(
        self, points: np.ndarray, im_size: Tuple[int, ...], crop_box: List[int], orig_size: Tuple[int, ...]
    ) -> MaskData:
        orig_h, orig_w = orig_size
        device = self.predictor.device

        # Prompt with each point alone: B prompts of one foreground point, three masks each.
        # float64 like the official generator (MPS has no float64, so float32 there).
        transformed = self.predictor.transform.apply_coords(points, im_size)  # (B, 2)
        dtype = torch.float32 if device.type == "mps" else None
        in_points = torch.as_tensor(transformed, dtype=dtype, device=device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=device)
        masks, iou_preds, _ = self.predictor.predict_torch(
            in_points[:, None, :], in_labels[:, None], multimask_output=True, return_logits=True
        )  # (B, 3, h, w) logits, (B, 3)

        data = MaskData(
            masks=masks.flatten(0, 1),  # (B*3, h, w)
            iou_preds=iou_preds.flatten(0, 1),  # (B*3,)
            points=torch.as_tensor(points.repeat(masks.shape[1], axis=0)),  # (B*3, 2): each point 3 times
        )
        del masks

        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)

        mask_threshold = self.predictor.model.mask_threshold
        data["stability_score"] = calculate_stability_score(data["masks"], mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)

        data["masks"] = data["masks"] > mask_threshold
        data["boxes"] = batched_mask_to_box(data["masks"])  # (n, 4) in the crop's frame

        # A mask touching a crop edge (that is not an image edge) was probably cut: let another crop have it.
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            data.filter(keep)

        data["rles"] = mask_to_rle_pytorch(uncrop_masks(data["masks"], crop_box, orig_h, orig_w))
        del data["masks"]
        return data

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """Fill holes and remove islands smaller than ``min_area`` in every mask, then NMS again.

        Masks that needed no change are preferred by the NMS (score 1 against 0). Edits ``mask_data``
        in place and returns it.
        """
        if len(mask_data["rles"]) == 0:
            return mask_data

        new_masks, scores = [], []
        for rle in mask_data["rles"]:
            mask = rle_to_mask(rle)
            mask, holes_changed = remove_small_regions(mask, min_area, mode="holes")
            mask, islands_changed = remove_small_regions(mask, min_area, mode="islands")
            new_masks.append(torch.as_tensor(mask))
            scores.append(0.0 if holes_changed or islands_changed else 1.0)

        masks = torch.stack(new_masks)  # (n, H, W)
        boxes = batched_mask_to_box(masks)
        keep = batched_nms(boxes.float(), torch.as_tensor(scores), torch.zeros(len(boxes)), iou_threshold=nms_thresh)

        for i in keep.tolist():
            if scores[i] == 0.0:  # changed: encode the new mask
                mask_data["rles"][i] = mask_to_rle_pytorch(masks[i : i + 1])[0]
                mask_data["boxes"][i] = boxes[i].numpy()
        mask_data.filter(keep)
        return mask_data


class _Progress:
    """Counts batches and reports them to an optional ``callback(done, total)``."""

    def __init__(self, callback, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def step(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)
