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

import inspect
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .errors import SamInputError, check_choice, check_int, check_number, input_error
from .utils.amg import (
    MaskData,
    _area_from_rle,
    _rle_to_mask,
    area_from_rle,
    batch_iterator,
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
from .modeling.sam import Sam
from .predictor import SamPredictor, as_rgb_uint8, check_sam_model

# The generator, and the names the official module imports from its own package (its users may import them from it)
__all__ = ["SamAutomaticMaskGenerator", "Sam", "SamPredictor", "MaskData", "area_from_rle", "batch_iterator",
           "batched_mask_to_box", "box_xyxy_to_xywh", "build_all_layer_point_grids", "calculate_stability_score",
           "coco_encode_rle", "generate_crop_boxes", "is_box_near_crop_edge", "mask_to_rle_pytorch",
           "remove_small_regions", "rle_to_mask", "uncrop_boxes_xyxy", "uncrop_masks", "uncrop_points"]

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
# last_filter_counts' keys: the candidates, what each step removed (in the order they run), what is kept
FILTER_COUNT_KEYS = ("candidates", "pred_iou_thresh", "stability_score_thresh", "crop_edge", "box_nms_thresh",
                     "crop_nms_thresh", "min_mask_region_area", "kept")


def _takes_two_arguments(function) -> bool:
    """Whether `function` can be called as function(done, total) (builtins without a signature count as yes)."""
    if not callable(function):
        return False
    try:
        inspect.signature(function).bind(0, 0)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): let the call tell
        pass
    return True


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
            (SciPy's connected-components labelling, no OpenCV needed).
        output_mode: "binary_mask" (HxW bool arrays), "uncompressed_rle" (our RLE dicts) or
            "coco_rle" (compressed, needs pycocotools).
        dtype: the image encoder's precision, as in ``SamPredictor`` ("auto": bfloat16 where the hardware
            computes in it, else the model's own).

    Every argument is checked here, before any work: a bad one raises ``SamInputError`` naming it. So is the
    size of the plan: every crop is one image-encoder pass and every batch one decoder pass, and a plan of more
    than ``MAX_PLANNED_CROPS`` crops or ``MAX_PLANNED_BATCHES`` batches is refused with its size (raise these
    class attributes to run one anyway).

    Attributes:
        last_filter_counts: after ``generate``, where the candidate masks went, as a dict of ints (None
            before the first run). ``candidates`` is every mask the decoder made (3 per point, per crop);
            each following key is how many of them one step removed, in the order the steps run:
            ``pred_iou_thresh``, ``stability_score_thresh``, ``crop_edge`` (cut by a crop's edge),
            ``box_nms_thresh`` (duplicates within a crop), ``crop_nms_thresh`` (duplicates between crops),
            ``min_mask_region_area`` (duplicates after the clean-up); ``kept`` is the number of records
            returned, ``candidates`` less all the removals. When no mask survives, the first non-zero
            removal says which threshold to lower.
    """

    MAX_PLANNED_CROPS = 1_365  # crop_n_layers=5: 1 + 4 + 16 + 64 + 256 + 1024 image-encoder passes
    MAX_PLANNED_BATCHES = 100_000  # decoder passes; the default grid on one crop is 16

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
        dtype="auto",
    ) -> None:
        check_sam_model("model", model)
        self.point_grids = self._check_settings(
            points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh, stability_score_offset,
            box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor,
            point_grids, min_mask_region_area, output_mode,
        )
        self._grids_made_for = (self.point_grids, crop_n_layers)  # which crop_n_layers the grids were made for

        self.predictor = SamPredictor(model, dtype=dtype)
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
        self.last_filter_counts: Optional[Dict[str, int]] = None
        self._counts: Dict[str, int] = {}

    def _check_settings(
        self, points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh, stability_score_offset,
        box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor,
        point_grids, min_mask_region_area, output_mode, grids_made_for: Optional[int] = None,
    ) -> List[np.ndarray]:
        """Check every setting but the model, before any work, and return the point grids (built from
        points_per_side, or point_grids as given). The constructor checks its arguments with it, and ``generate``
        the attributes as they are now (``grids_made_for``: the crop_n_layers that point_grids were made for, so
        that a changed crop_n_layers the grids no longer fit is named as the setting that changed)."""
        for name, value in (("pred_iou_thresh", pred_iou_thresh), ("stability_score_thresh", stability_score_thresh),
                            ("box_nms_thresh", box_nms_thresh), ("crop_nms_thresh", crop_nms_thresh)):
            check_number(name, value, 0.0, 1.0)
        check_number("stability_score_offset", stability_score_offset, 0.0)
        check_number("min_mask_region_area", min_mask_region_area, 0.0)
        # a ratio of 1 would make every tile as wide as the image and step by 0 pixels
        check_number("crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0, high_open=True)
        check_int("crop_n_layers", crop_n_layers, 0)
        check_int("crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1)
        check_int("points_per_batch", points_per_batch, 1)
        check_choice("output_mode", output_mode, OUTPUT_MODES)
        if (points_per_side is None) == (point_grids is None):
            raise SamInputError(
                "points_per_side, point_grids: expected exactly one of them, got "
                f"points_per_side={points_per_side!r} and point_grids={'None' if point_grids is None else 'a list'}."
            )
        self._check_crop_layers(crop_n_layers)
        if points_per_side is not None:
            check_int("points_per_side", points_per_side, 1)
            deepest = int(points_per_side / crop_n_points_downscale_factor**crop_n_layers)
            if deepest < 1:
                raise SamInputError(
                    f"points_per_side: expected at least {crop_n_points_downscale_factor**crop_n_layers} so that crop "
                    f"layer {crop_n_layers} still has one point per side, got {points_per_side!r}."
                )
            points_per_layer = [
                int(points_per_side / crop_n_points_downscale_factor**i) ** 2 for i in range(crop_n_layers + 1)
            ]
            grid_arguments = "points_per_side, points_per_batch"
        else:
            layers = len(point_grids) if isinstance(point_grids, (list, tuple)) else None
            changed = grids_made_for is not None and crop_n_layers != grids_made_for
            if changed and layers is not None and layers > crop_n_layers + 1:
                point_grids = point_grids[: crop_n_layers + 1]  # fewer crop layers than made for: the first grids serve
            elif changed and layers is not None and layers < crop_n_layers + 1:
                wanted = f"{crop_n_layers + 1} grid{'s' if crop_n_layers else ''}"
                raise SamInputError(
                    f"crop_n_layers: expected at most {layers - 1}, one less than the {layers} grid(s) in point_grids "
                    f"(one per crop layer, made for crop_n_layers={grids_made_for}), got {crop_n_layers}. Make a new "
                    f"generator with crop_n_layers={crop_n_layers}, or set point_grids to a list of {wanted} too."
                )
            point_grids = check_point_grids(point_grids, crop_n_layers)
            points_per_layer = [len(grid) for grid in point_grids]
            grid_arguments = "point_grids, points_per_batch"
        self._check_planned_work(points_per_layer, points_per_batch, grid_arguments)
        if output_mode == "coco_rle":
            coco_encode_rle({"size": [1, 1], "counts": [1]})  # fails early, with a hint, without pycocotools
        if points_per_side is not None:
            return build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        return point_grids

    def _check_current_settings(self) -> None:
        """The settings as they are now, checked as the constructor checked them: they are plain attributes, which
        a user may have changed since."""
        grids, layers = self._grids_made_for
        self._check_settings(
            None, self.points_per_batch, self.pred_iou_thresh, self.stability_score_thresh,
            self.stability_score_offset, self.box_nms_thresh, self.crop_n_layers, self.crop_nms_thresh,
            self.crop_overlap_ratio, self.crop_n_points_downscale_factor, self.point_grids, self.min_mask_region_area,
            self.output_mode, grids_made_for=layers if grids is self.point_grids else None,
        )

    def _check_crop_layers(self, crop_n_layers: int) -> None:
        """Refuse absurd depths before any per-layer arithmetic (crop_n_layers=10**9 would take forever)."""
        if crop_n_layers > 30:  # 4**30 crops: far beyond any limit
            raise SamInputError(
                f"crop_n_layers: expected at most {self.MAX_PLANNED_CROPS:,} crops in all (each one image-encoder "
                f"pass; layer i has 4**i of them), got crop_n_layers={crop_n_layers}, which plans more than "
                f"4**30 crops. Use crop_n_layers <= {_deepest_layer_within(self.MAX_PLANNED_CROPS)}."
            )

    def _check_planned_work(self, points_per_layer: List[int], points_per_batch: int, arguments: str) -> None:
        """Count the crops and decoder batches the arguments plan, and refuse a plan beyond the limits."""
        crop_n_layers = len(points_per_layer) - 1
        crops = sum(4**layer for layer in range(crop_n_layers + 1))
        batches = sum(4**layer * -(-points // points_per_batch) for layer, points in enumerate(points_per_layer))
        plan = (
            f"{sum(points_per_layer):,} points in the grids of its {crop_n_layers + 1} crop layer(s), {crops:,} "
            f"crop{'s' if crops > 1 else ''} and {batches:,} decoder batches of points_per_batch={points_per_batch}"
        )
        if crops > self.MAX_PLANNED_CROPS:
            raise SamInputError(
                f"crop_n_layers: expected at most {self.MAX_PLANNED_CROPS:,} crops in all (each one image-encoder "
                f"pass; layer i has 4**i of them), got crop_n_layers={crop_n_layers}, which plans {plan}. Use "
                f"crop_n_layers <= {_deepest_layer_within(self.MAX_PLANNED_CROPS)}, or raise "
                "SamAutomaticMaskGenerator.MAX_PLANNED_CROPS."
            )
        if batches > self.MAX_PLANNED_BATCHES:
            raise SamInputError(
                f"{arguments}: expected at most {self.MAX_PLANNED_BATCHES:,} decoder batches in all, got {plan}. "
                "Use fewer points or larger batches, or raise SamAutomaticMaskGenerator.MAX_PLANNED_BATCHES."
            )

    def _warn_when_the_filters_suit_another_model(self) -> None:
        """The bundled small model rates its masks far lower than Meta's models, so the official filters (the
        defaults) keep few of them, often none: then say which filters its card recommends instead of returning
        nothing silently."""
        from .config import guess_variant

        in_use = {name: getattr(self, name) for name in OFFICIAL_FILTERS}
        if in_use != OFFICIAL_FILTERS or guess_variant(self.predictor.model.state_dict()) != "tiny":
            return
        recommended, _ = generator_filters(self.predictor.model)
        warnings.warn(
            "no mask passed the quality filters: the bundled small model rates its masks lower than Meta's models, "
            "and the defaults are set for those. Its card recommends "
            + ", ".join(f"{name}={value}" for name, value in recommended.items())
            + " (what `python -m sam_from_scratch everything` uses).",
            UserWarning,
            stacklevel=4,  # the caller of generate (above it: generate, torch.no_grad's wrapper)
        )

    @torch.no_grad()
    def generate(
        self, image: np.ndarray, progress: Optional[Callable[[int, int], None]] = None
    ) -> List[Dict[str, Any]]:
        """Masks for everything in ``image``.

        Args:
            image: (H, W, 3) uint8 RGB array (grayscale and RGBA are converted, as in ``set_image``).
            progress: optional ``progress(done, total)``, called after each batch of points.

        Returns:
            one record per mask, best first within each crop (with ``min_mask_region_area`` > 0, the masks
            the clean-up changed come last, as in the official generator), with keys
            segmentation (HxW bool array, or an RLE dict), area (int, pixels), bbox ([x, y, w, h]),
            predicted_iou (float), point_coords ([[x, y]], the prompt), stability_score (float) and
            crop_box ([x, y, w, h] of the crop the mask came from).
            The types are the official generator's: bbox and crop_box hold ints, or the same values as floats
            as soon as one batch of points (bbox) or one crop (crop_box) kept no mask.

        Raises:
            SamInputError: a setting changed since the generator was made (``generator.points_per_batch = 0``) is
                one the constructor would refuse; ``image`` is not an image (see ``SamPredictor.set_image``), or
                is so thin that resizing its long side to the model's input size leaves its short side 0 pixels.

        Afterwards ``last_filter_counts`` says how many candidate masks each filter removed.
        """
        self._check_current_settings()
        if isinstance(image, torch.Tensor):  # the predictor's hint names set_torch_image, which a generator lacks
            raise input_error("image", "a numpy array of shape (H, W, 3) and dtype uint8", image, _tensor_hint(image))
        image = as_rgb_uint8(image)
        if progress is not None and not _takes_two_arguments(progress):
            raise input_error("progress", "a function progress(done, total) or None", progress)
        self.last_filter_counts = None
        self._counts = dict.fromkeys(FILTER_COUNT_KEYS, 0)
        mask_data = self._generate_masks(image, progress)
        if self.min_mask_region_area > 0:
            before = len(mask_data["rles"])
            mask_data = self.postprocess_small_regions(
                mask_data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
            self._counts["min_mask_region_area"] = before - len(mask_data["rles"])
        self._counts["kept"] = len(mask_data["rles"])
        self.last_filter_counts = self._counts
        if self._counts["kept"] == 0 and self._counts["candidates"] > 0:
            self._warn_when_the_filters_suit_another_model()

        if self.output_mode == "coco_rle":
            segmentations = [coco_encode_rle(rle) for rle in mask_data["rles"]]
        elif self.output_mode == "binary_mask":
            segmentations = [_rle_to_mask(rle) for rle in mask_data["rles"]]  # our own RLEs: no check
        else:
            segmentations = mask_data["rles"]

        return [
            {
                "segmentation": segmentation,
                "area": _area_from_rle(mask_data["rles"][i]),
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
        # Tiles of an image smaller than the tiling (1 x 1 pixels, two crops per side) can hold no pixel.
        with_pixels = [i for i, (x0, y0, x1, y1) in enumerate(crop_boxes) if x1 > x0 and y1 > y0]
        crop_boxes, layer_idxs = [crop_boxes[i] for i in with_pixels], [layer_idxs[i] for i in with_pixels]
        self._check_crops_resizable(image, crop_boxes, layer_idxs)  # before any crop is embedded
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
            self._counts["crop_nms_thresh"] += len(data["boxes"]) - len(keep)
            data.filter(keep)
        data.to_numpy()
        return data

    def _check_crops_resizable(self, image: np.ndarray, crop_boxes, layer_idxs) -> None:
        """Every crop is resized to the model's input size like an image: a crop so thin that its short side
        would become 0 pixels is refused up front (the whole image as the predictor refuses it, naming `image`;
        a smaller crop naming `crop_n_layers`)."""
        transform = self.predictor.transform
        transform.resized_shape(image, *image.shape[:2])
        for (x0, y0, x1, y1), layer in zip(crop_boxes, layer_idxs):
            if min(transform.get_preprocess_shape(y1 - y0, x1 - x0, transform.target_length)) > 0:
                continue
            raise SamInputError(
                f"crop_n_layers: expected crops that resizing to a long side of {transform.target_length} pixels "
                f"leaves at least one pixel across, got crop_n_layers={self.crop_n_layers}, whose layer-{layer} crops "
                f"of this {image.shape[1]}x{image.shape[0]} image are {x1 - x0}x{y1 - y0} pixels. Use fewer crop "
                "layers for so thin an image."
            )

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
        self._counts["box_nms_thresh"] += len(data["boxes"]) - len(keep)
        data.filter(keep)

        # Back to the full image's frame.
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        # An empty crop's column is float, as in the official generator: joined with the others, it turns
        # every crop box into floats, and the records' types stay the official ones.
        dtype = torch.float32 if len(data["rles"]) == 0 else torch.int64
        data["crop_boxes"] = torch.tensor(crop_box, dtype=dtype).repeat(len(data["rles"]), 1)  # (n, 4)
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
        self._counts["candidates"] += len(data["iou_preds"])

        if self.pred_iou_thresh > 0.0:
            self._filter_counted(data, data["iou_preds"] > self.pred_iou_thresh, "pred_iou_thresh")

        mask_threshold = self.predictor.model.mask_threshold
        data["stability_score"] = calculate_stability_score(data["masks"], mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            self._filter_counted(data, data["stability_score"] >= self.stability_score_thresh, "stability_score_thresh")

        data["masks"] = data["masks"] > mask_threshold
        data["boxes"] = batched_mask_to_box(data["masks"])  # (n, 4) in the crop's frame

        # A mask touching a crop edge (that is not an image edge) was probably cut: let another crop have it.
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            self._filter_counted(data, keep, "crop_edge")

        data["rles"] = mask_to_rle_pytorch(uncrop_masks(data["masks"], crop_box, orig_h, orig_w))
        del data["masks"]
        return data

    def _filter_counted(self, data: MaskData, keep: torch.Tensor, step: str) -> None:
        self._counts[step] += int((~keep).sum())
        data.filter(keep)

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


def _deepest_layer_within(max_crops: int) -> int:
    """The largest crop_n_layers whose 1 + 4 + ... + 4**n crops stay within max_crops."""
    layer = 0
    while sum(4**i for i in range(layer + 2)) <= max_crops:
        layer += 1
    return layer


def check_point_grids(point_grids, crop_n_layers: int) -> List[np.ndarray]:
    """point_grids must be a list of crop_n_layers + 1 arrays (N, 2) of numbers in [0, 1]."""
    layers = crop_n_layers + 1
    if not isinstance(point_grids, (list, tuple)) or len(point_grids) != layers:
        got = point_grids if not isinstance(point_grids, (list, tuple)) else f"{len(point_grids)}"
        expected = f"a list of {layers} grids (one per crop layer, crop_n_layers + 1)"
        if isinstance(point_grids, (list, tuple)):
            raise SamInputError(f"point_grids: expected {expected}, got {type(point_grids).__name__} of {got}.")
        raise input_error("point_grids", expected, point_grids, "Wrap a single grid in a list: [grid].")
    for layer, grid in enumerate(point_grids):
        argument = f"point_grids[{layer}]"
        if not isinstance(grid, np.ndarray):
            raise input_error(argument, "a numpy array of shape (N, 2), points (x, y) in [0, 1]", grid,
                              "Wrap it: np.array(...).")
        if grid.ndim != 2 or grid.shape[1] != 2 or grid.shape[0] == 0:
            raise input_error(argument, "shape (N, 2) with at least one point, (x, y) per row", grid)
        if grid.dtype.kind not in "iuf":
            raise input_error(argument, "numbers (x, y) in [0, 1]", grid)
        if not (np.isfinite(grid).all() and grid.min() >= 0 and grid.max() <= 1):
            outside = grid[~(np.isfinite(grid) & (grid >= 0) & (grid <= 1)).all(axis=1)]
            raise SamInputError(
                f"{argument}: expected coordinates in [0, 1] (fractions of the crop's width and height), got "
                f"{len(outside)} point(s) outside, e.g. {outside[0].tolist()}. Divide pixel coordinates by "
                "(width, height)."
            )
    return list(point_grids)


class _Progress:
    """Counts batches and reports them to an optional ``callback(done, total)``."""

    def __init__(self, callback, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def step(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


# The generator's quality filters at their defaults (the official ones, chosen for Meta's confident models).
OFFICIAL_FILTERS = {
    name: inspect.signature(SamAutomaticMaskGenerator).parameters[name].default
    for name in ("pred_iou_thresh", "stability_score_thresh", "stability_score_offset")
}


def generator_filters(model, pred_iou_thresh: Optional[float] = None,
                      stability_score_thresh: Optional[float] = None) -> Tuple[Dict[str, float], Optional[str]]:
    """The quality filters to use with `model`, and a sentence saying why when they are not the official ones.

    Meta's models get the official defaults. The small model rates its masks far lower, so the official
    thresholds keep few of them, often none: it starts from the filters recommended on its card, including the
    stability offset that suits its logits. A threshold the user sets replaces its own value only. The command
    line and the explorer widget choose with this.
    """
    import json

    from .config import TINY_CHECKPOINT, guess_variant

    settings, note = dict(OFFICIAL_FILTERS), None
    given = {"pred_iou_thresh": pred_iou_thresh, "stability_score_thresh": stability_score_thresh}
    if guess_variant(model.state_dict()) == "tiny":
        card = json.loads((TINY_CHECKPOINT.parent / "card.json").read_text())
        settings.update(card["generator_settings"])
        p, s, o = (settings[name] for name in ("pred_iou_thresh", "stability_score_thresh", "stability_score_offset"))
        if pred_iou_thresh is None and stability_score_thresh is None:
            mixed = f"using its card's filters (predicted IoU > {p}, stability >= {s} at offset {o})"
        elif stability_score_thresh is None:
            mixed = f"your predicted IoU > {pred_iou_thresh} with its card's stability >= {s} at offset {o}"
        elif pred_iou_thresh is None:
            mixed = (f"your stability >= {stability_score_thresh} at its card's offset {o}, with its card's "
                     f"predicted IoU > {p}")
        else:
            mixed = f"your thresholds, with the stability scores at its card's offset {o}"
        note = f"the small model rates its masks lower than Meta's: {mixed}"
    settings.update({name: value for name, value in given.items() if value is not None})
    return settings, note


def _tensor_hint(image: torch.Tensor) -> str:
    """How to turn a tensor image into what generate takes (it has no set_torch_image, unlike the predictor)."""
    scale = "" if image.dtype == torch.uint8 else " (as uint8 values 0..255)"
    if image.ndim == 3 and image.shape[-1] in (1, 3, 4):
        return f"Pass image.cpu().numpy() for an (H, W, C) tensor{scale}."
    if image.ndim == 3 and image.shape[0] in (1, 3, 4):
        return f"Pass image.permute(1, 2, 0).cpu().numpy() for a (C, H, W) tensor{scale}."
    if image.ndim == 2:
        return f"Pass image.cpu().numpy() for a grey (H, W) tensor{scale}."
    if image.ndim == 4 and image.shape[0] == 1:  # a batch of one
        return _tensor_hint(image[0]).replace("image.", "image[0].", 1)
    return "Pass a numpy array (H, W, 3)."
