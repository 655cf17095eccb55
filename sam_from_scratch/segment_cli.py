"""`segment` and `everything`: the predictor and the automatic mask generator from the command line.

    python -m sam_from_scratch segment photo.jpg --point 120,80 --negative 200,40 --out mask.png
        writes mask.png (white = object) and mask_overlay.png (the mask over the photo, with the prompts)
    python -m sam_from_scratch everything photo.jpg --out masks/
        writes masks/overlay.png (every mask in its own colour) and masks/masks.json (one record per mask,
        the mask as an uncompressed RLE: see sam_from_scratch.mask_utils.rle_to_mask)

Existing outputs are never overwritten unless --force is given. Exit codes: 0 done, 1 could not read or
write a file or load the model, 2 bad arguments or prompts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MODEL_HELP = "tiny (bundled), vit_b, vit_l, vit_h (downloaded once), or a checkpoint file / Hugging Face folder"


class CliError(Exception):
    """A problem to report in one line, with the exit code to return."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---- argument types -------------------------------------------------------------------------------------------


def _numbers(count: int, names: str):
    def parse(text: str):
        parts = text.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != count or not all(np.isfinite(values)):
            raise argparse.ArgumentTypeError(f"expected {names} ({count} numbers separated by commas), got {text!r}")
        return tuple(values)

    return parse


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="the picture (any format Pillow reads: PNG, JPEG, ...)")
    parser.add_argument("--model", default="tiny", help=f"the model: {MODEL_HELP} (default: tiny)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


def add_arguments_segment(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--point", action="append", default=[], type=_numbers(2, "X,Y"), metavar="X,Y",
                        help="a point on the object, in pixels (repeat for more)")
    parser.add_argument("--negative", action="append", default=[], type=_numbers(2, "X,Y"), metavar="X,Y",
                        help="a point NOT on the object (repeat for more)")
    parser.add_argument("--box", type=_numbers(4, "X1,Y1,X2,Y2"), metavar="X1,Y1,X2,Y2",
                        help="a box around the object: top-left and bottom-right corners")
    parser.add_argument("--out", required=True, metavar="OUT.png",
                        help="where to write the mask; the overlay goes beside it as OUT_overlay.png")


def add_arguments_everything(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for overlay.png and masks.json")
    parser.add_argument("--points-per-side", type=int, default=32, help="the point grid is N x N (default 32)")
    parser.add_argument("--points-per-batch", type=int, default=64, help="points per decoder call (default 64)")
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88, help="keep masks rated above this (0.88)")
    parser.add_argument("--stability-score-thresh", type=float, default=0.95, help="keep stable masks (0.95)")
    parser.add_argument("--crop-n-layers", type=int, default=0, help="extra layers of overlapping crops (0)")
    parser.add_argument("--min-mask-region-area", type=int, default=0,
                        help="fill holes and drop islands smaller than this many pixels (0: off)")


# ---- the two commands ----------------------------------------------------------------------------------------


def run_segment(args: argparse.Namespace) -> int:
    try:
        out = Path(args.out)
        overlay_path = out.with_name(f"{out.stem}_overlay{out.suffix}")
        _check_image_suffix(out, "--out")
        _refuse_to_overwrite([out, overlay_path], args.force)
        if not (args.point or args.negative or args.box):
            raise CliError("give at least one prompt: --point X,Y, --negative X,Y or --box X1,Y1,X2,Y2", code=2)
        image = read_image(args.image)
        _check_prompts_inside(args, image.shape[:2])

        from .errors import SamInputError
        from .predictor import SamPredictor

        model = _load_model(args.model, args.device)
        _status(f"embedding the image ({image.shape[1]}x{image.shape[0]}) ...")
        predictor = SamPredictor(model)
        predictor.set_image(image)

        points = list(args.point) + list(args.negative)
        labels = [1] * len(args.point) + [0] * len(args.negative)
        ambiguous = len(points) == 1 and args.box is None  # one click: let the model offer three masks
        try:
            masks, iou, _ = predictor.predict(
                point_coords=np.array(points) if points else None,
                point_labels=np.array(labels) if points else None,
                box=np.array(args.box) if args.box else None,
                multimask_output=ambiguous,
            )
        except SamInputError as error:
            raise CliError(f"bad prompt: {error}", code=2) from error
        best = int(np.argmax(iou))
        mask = masks[best]

        out.parent.mkdir(parents=True, exist_ok=True)
        _save(out, mask.astype(np.uint8) * 255)
        _save(overlay_path, draw_prompt_overlay(image, mask, args.point, args.negative, args.box))
        print(f"wrote {out} ({int(mask.sum())} pixels, predicted IoU {iou[best]:.3f}) and {overlay_path}")
        return 0
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code


def run_everything(args: argparse.Namespace) -> int:
    try:
        out_dir = Path(args.out)
        if out_dir.exists() and not out_dir.is_dir():
            raise CliError(f"--out: {out_dir} is a file; give a folder for overlay.png and masks.json", code=2)
        overlay_path, json_path = out_dir / "overlay.png", out_dir / "masks.json"
        _refuse_to_overwrite([overlay_path, json_path], args.force)
        image = read_image(args.image)

        from .automatic_mask_generator import SamAutomaticMaskGenerator
        from .errors import SamInputError

        model = _load_model(args.model, args.device)
        try:
            generator = SamAutomaticMaskGenerator(
                model,
                points_per_side=args.points_per_side,
                points_per_batch=args.points_per_batch,
                pred_iou_thresh=args.pred_iou_thresh,
                stability_score_thresh=args.stability_score_thresh,
                crop_n_layers=args.crop_n_layers,
                min_mask_region_area=args.min_mask_region_area,
                output_mode="uncompressed_rle",
            )
        except SamInputError as error:
            raise CliError(str(error), code=2) from error
        _status(f"segmenting everything in the image ({image.shape[1]}x{image.shape[0]}) ...")
        records = generator.generate(image, progress=_progress_bar())

        out_dir.mkdir(parents=True, exist_ok=True)
        _save(overlay_path, draw_everything_overlay(image, records))
        json_path.write_text(json.dumps([_json_ready(record) for record in records], allow_nan=False))
        print(f"wrote {len(records)} masks to {json_path} and {overlay_path}")
        return 0
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code


# ---- files, model, progress -----------------------------------------------------------------------------------


def read_image(path: str) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB, turned upright as its EXIF data says (as viewers show it)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise CliError(f"IMAGE: {path} does not exist" if not file.exists() else f"IMAGE: {path} is not a file")
    try:
        with Image.open(file) as picture:
            picture = ImageOps.exif_transpose(picture)
            return np.asarray(picture.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise CliError(f"IMAGE: cannot read {path} as an image ({error})") from error


def _check_image_suffix(path: Path, option: str) -> None:
    from PIL import Image

    if path.suffix.lower() not in Image.registered_extensions():
        raise CliError(f"{option}: {path} needs an image extension such as .png", code=2)


def _refuse_to_overwrite(paths, force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise CliError(f"{', '.join(existing)} already exist(s); add --force to overwrite")


def _check_prompts_inside(args, size) -> None:
    h, w = size
    for option, points in (("--point", args.point), ("--negative", args.negative)):
        for x, y in points:
            if not (0 <= x <= w and 0 <= y <= h):
                raise CliError(f"{option} {x:g},{y:g} lies outside the {w}x{h} image", code=2)
    if args.box:
        x1, y1, x2, y2 = args.box
        if x2 < x1 or y2 < y1:
            raise CliError(f"--box {x1:g},{y1:g},{x2:g},{y2:g}: expected X1 <= X2 and Y1 <= Y2 (two corners)", code=2)
        if x2 < 0 or y2 < 0 or x1 > w or y1 > h:
            raise CliError(f"--box {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {w}x{h} image", code=2)


def _load_model(name: str, device: str):
    from .build import from_pretrained

    _status(f"loading the model {name!r} ...")
    try:
        return from_pretrained(name, device=device)
    except (ValueError, FileNotFoundError, TypeError, OSError) as error:  # SamInputError is a ValueError
        raise CliError(f"--model/--device: {error}") from error


def _save(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    try:
        Image.fromarray(array).save(path)
    except (OSError, ValueError) as error:
        raise CliError(f"cannot write {path}: {error}") from error


def _json_ready(record: dict) -> dict:
    """NaN is not JSON: an empty mask's stability score (0 / 0, kept only without filters) becomes null."""
    return {key: None if isinstance(value, float) and value != value else value for key, value in record.items()}


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress_bar():
    """A progress(done, total) callback drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="point batches", file=sys.stderr)
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


# ---- pictures ---------------------------------------------------------------------------------------------------


def draw_prompt_overlay(image, mask, positives, negatives, box) -> np.ndarray:
    """The image with the mask tinted blue, positive points green, negative points red, the box yellow."""
    from PIL import Image, ImageDraw

    tinted = image.astype(np.float32)
    tinted[mask] = 0.45 * tinted[mask] + 0.55 * np.array([30, 144, 255])
    picture = Image.fromarray(tinted.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    r = max(3, round(max(image.shape[:2]) / 150))
    for points, colour in ((positives, (0, 200, 0)), (negatives, (230, 0, 0))):
        for x, y in points:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=(255, 255, 255))
    if box:
        draw.rectangle(list(box), outline=(255, 215, 0), width=max(1, r // 2))
    return np.asarray(picture)


def draw_everything_overlay(image, records) -> np.ndarray:
    """The image with every mask tinted in its own colour; small masks are drawn last, so they stay visible."""
    from .utils.amg import rle_to_mask

    colours = np.random.default_rng(0).integers(40, 256, (len(records), 3))
    tinted = image.astype(np.float32)
    for record, colour in sorted(zip(records, colours), key=lambda rc: -rc[0]["area"]):
        mask = rle_to_mask(record["segmentation"])
        tinted[mask] = 0.4 * tinted[mask] + 0.6 * colour
    return tinted.round().astype(np.uint8)
