"""The command line: `sam-from-scratch COMMAND ...`, or `python -m sam_from_scratch COMMAND ...`.

    download     fetch an official checkpoint into the cache, checked against its published SHA-256
    segment      segment an image from points and/or a box (the predictor)
    everything   segment everything in an image (the automatic mask generator)
    train-tiny   train the bundled small model from scratch

Building the parsers imports nothing heavy: torch, numpy and Pillow are imported by the command that runs,
so --help and --version answer at once. Existing outputs are never overwritten unless --force is given.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from .errors import SamInputError, check_box_corners

PROG = "sam-from-scratch"  # the console script; `python -m sam_from_scratch` passes its own name

EXIT_CODES = """\
exit codes:
  0    done
  1    failed while running: a file could not be read or written, the model could not be loaded,
       a download failed or was refused
  2    bad arguments: an unknown option or value, a bad --model or --device, prompts outside the image
  130  interrupted (Ctrl-C)"""

DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
TRAIN_TINY_OUT = "runs/train-tiny"


class CliError(Exception):
    """A problem to report in one line, with the exit code to return."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---- the parsers --------------------------------------------------------------------------------------------------


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Segment Anything, built from scratch: segment images, download the official checkpoints, "
        "train the small course model.",
        epilog=f"{EXIT_CODES}\n\n'{prog} COMMAND --help' describes a command, with an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_download(subparsers, prog)
    _add_segment(subparsers, prog)
    _add_everything(subparsers, prog)
    _add_train_tiny(subparsers, prog)
    return parser


def _subcommand(subparsers, name: str, help_text: str, example: str, run) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n{example}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


def _add_download(subparsers, prog: str) -> None:
    from .download import ALIASES, CACHE_ENV, CHECKPOINTS, DEFAULT_CACHE_DIR, MIRROR_ENV, OFFICIAL_BASE_URL

    parser = _subcommand(
        subparsers, "download", "download an official checkpoint (checked against its SHA-256) into the cache",
        f"  {prog} download vit_b\n"
        f"  {prog} download vit_h --mirror https://my.mirror/sam/\n"
        "    prints where the file is; a file already in the cache is checked and used as it is",
        run_download,
    )
    parser.add_argument("name", choices=sorted([*CHECKPOINTS, *ALIASES]), help="which official checkpoint")
    parser.add_argument("--cache-dir", default=None,
                        help=f"folder to keep checkpoints in (default: ${CACHE_ENV} or {DEFAULT_CACHE_DIR})")
    parser.add_argument("--mirror", default=None,
                        help=f"base URL serving the same file names (default: ${MIRROR_ENV} or {OFFICIAL_BASE_URL})")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="the picture (any format Pillow reads: PNG, JPEG, ...)")
    parser.add_argument("--model", type=_model_argument, default=None,
                        help="tiny (bundled), vit_b, vit_l, vit_h (downloaded once), or a checkpoint file / Hugging "
                        "Face folder (default: vit_b if its checkpoint is in the cache, else tiny)")
    parser.add_argument("--device", type=_device_argument, default="auto",
                        help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu (default: auto)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _add_segment(subparsers, prog: str) -> None:
    parser = _subcommand(
        subparsers, "segment", "segment an image from points and/or a box",
        f"  {prog} segment photo.jpg --point 120,80 --negative 200,40 --out mask.png\n"
        "    writes mask.png (white = object) and mask_overlay.png (the mask over the photo, with the prompts)",
        run_segment,
    )
    _add_common(parser)
    parser.add_argument("--point", action="append", default=[], type=_numbers(2, "X,Y"), metavar="X,Y",
                        help="a point on the object, in pixels (repeat for more)")
    parser.add_argument("--negative", action="append", default=[], type=_numbers(2, "X,Y"), metavar="X,Y",
                        help="a point NOT on the object (repeat for more)")
    parser.add_argument("--box", type=_numbers(4, "X1,Y1,X2,Y2"), metavar="X1,Y1,X2,Y2",
                        help="a box around the object: top-left and bottom-right corners")
    parser.add_argument("--out", required=True, metavar="OUT.png",
                        help="where to write the mask; the overlay goes beside it as OUT_overlay.png")


def _add_everything(subparsers, prog: str) -> None:
    parser = _subcommand(
        subparsers, "everything", "segment everything in an image (the automatic mask generator)",
        f"  {prog} everything photo.jpg --out masks/\n"
        "    writes masks/overlay.png (every mask in its own colour) and masks/masks.json (one record per mask,\n"
        "    the mask as an uncompressed RLE: see sam_from_scratch.utils.amg.rle_to_mask)",
        run_everything,
    )
    _add_common(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for overlay.png and masks.json")
    parser.add_argument("--points-per-side", type=int, default=32, help="the point grid is N x N (default 32)")
    parser.add_argument("--points-per-batch", type=int, default=64, help="points per decoder call (default 64)")
    parser.add_argument("--pred-iou-thresh", type=float, default=None,
                        help="keep masks rated above this (0.88; the small model: its card's value)")
    parser.add_argument("--stability-score-thresh", type=float, default=None,
                        help="keep stable masks (0.95; the small model: its card's value)")
    parser.add_argument("--crop-n-layers", type=int, default=0, help="extra layers of overlapping crops (0)")
    parser.add_argument("--min-mask-region-area", type=int, default=0,
                        help="fill holes and drop islands smaller than this many pixels (0: off)")


def _add_train_tiny(subparsers, prog: str) -> None:
    parser = _subcommand(
        subparsers, "train-tiny", "train the bundled small model from scratch, and measure it",
        f"  {prog} train-tiny --steps 200 --out runs/quick\n"
        f"    a short run: writes runs/quick/sam_tiny.pt and runs/quick/card.json; run it again to resume\n"
        f"  {prog} train-tiny --replace-bundled\n"
        "    the full recipe, written over the model that ships with the package",
        run_train_tiny,
    )
    parser.add_argument("--steps", type=_positive_int, default=5400, help="optimizer steps (default 5400)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--workers", type=_positive_int, default=2,
                        help="training processes, one CPU core each (default 2)")
    parser.add_argument("--threads", type=_positive_int, default=2,
                        help="CPU threads for torch outside the workers (default 2)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, metavar="DIR",
                       help=f"folder for sam_tiny.pt and card.json (default: {TRAIN_TINY_OUT})")
    where.add_argument("--replace-bundled", action="store_true",
                       help="write them to the bundled model's folder, sam_from_scratch/data/tiny, instead")
    parser.add_argument("--work-dir", default=None, metavar="DIR",
                        help="resumable state and loss log (default: OUT/state)")
    parser.add_argument("--fresh", action="store_true", help="ignore a saved state and start from scratch")
    parser.add_argument("--eval-scenes", type=_positive_int, default=300,
                        help="held-out scenes for the card's figures (default 300)")
    parser.add_argument("--eval-only", action="store_true", help="only measure the figures of OUT/sam_tiny.pt again")


# ---- argument types: a bad value is an argparse error (exit code 2) ----------------------------------------------


def _numbers(count: int, names: str):
    def parse(text: str):
        try:
            values = [float(p) for p in text.split(",")]
        except ValueError:
            values = []
        if len(values) != count or not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"expected {names} ({count} numbers separated by commas), got {text!r}")
        return tuple(values)

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _model_argument(text: str) -> str:
    from .download import ALIASES, CHECKPOINTS

    names = ["tiny", *CHECKPOINTS, *ALIASES]
    if text in names or Path(text).exists():
        return text
    raise argparse.ArgumentTypeError(
        f"expected {', '.join(repr(n) for n in names)} or the path of a checkpoint file or Hugging Face folder, "
        f"got {text!r} (no such name or file)"
    )


def _device_argument(text: str) -> str:
    if re.fullmatch(DEVICE_PATTERN, text):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, mps, cuda or cuda:N, got {text!r}")


# ---- the commands -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run_download(args: argparse.Namespace) -> int:
    from .download import DownloadError, download_checkpoint

    try:
        path = download_checkpoint(args.name, cache_dir=args.cache_dir, mirror=args.mirror,
                                   progress=not args.no_progress)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


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

        import numpy as np

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

        model = _load_model(args.model, args.device)
        try:
            generator = SamAutomaticMaskGenerator(
                model,
                points_per_side=args.points_per_side,
                points_per_batch=args.points_per_batch,
                **_filter_settings(model, args.pred_iou_thresh, args.stability_score_thresh),
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


def run_train_tiny(args: argparse.Namespace) -> int:
    from .config import TINY_CHECKPOINT
    from .training import train_tiny

    out = TINY_CHECKPOINT.parent if args.replace_bundled else Path(args.out or TRAIN_TINY_OUT)
    # The resumable state never goes into the package: with --replace-bundled it stays in the run folder.
    work_dir = Path(args.work_dir) if args.work_dir else (Path(TRAIN_TINY_OUT) if args.replace_bundled else out) / "state"
    try:  # with progress=True it reports as it goes and prints the figures at the end
        train_tiny(
            out, steps=args.steps, seed=args.seed, workers=args.workers, threads=args.threads, work_dir=work_dir,
            fresh=args.fresh, eval_scenes=args.eval_scenes, eval_only=args.eval_only, progress=True,
        )
    except ValueError as error:  # its arguments' checks, e.g. workers that do not divide the images of a step
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # no checkpoint to measure, a folder that cannot be written
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


# ---- files, model, progress -----------------------------------------------------------------------------------


def read_image(path: str):
    """An image file as HxWx3 uint8 RGB, turned upright as its EXIF data says (as viewers show it)."""
    import numpy as np
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
        try:  # the predictor's own check, made before the model is loaded
            check_box_corners("--box", args.box, f"{x1:g},{y1:g},{x2:g},{y2:g}")
        except SamInputError as error:
            raise CliError(str(error), code=2) from error
        if x2 < 0 or y2 < 0 or x1 > w or y1 > h:
            raise CliError(f"--box {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {w}x{h} image", code=2)


def _load_model(name: str | None, device: str):
    """The model the widgets would use: `name`, or without one the best model here without a download."""
    from .download import DownloadError
    from .interactive.models import default_model_name, load_model

    if name is None:
        name = default_model_name()
        if name == "vit_b":
            why = "Meta's checkpoint is in the cache"
        else:
            why = "the bundled small model; `download vit_b` for Meta's"
        _status(f"loading the model {name!r} (no --model given: {why}) ...")
    else:
        _status(f"loading the model {name!r} ...")
    try:
        return load_model(name, device)
    except (ValueError, FileNotFoundError, TypeError, OSError, DownloadError) as error:  # SamInputError is a ValueError
        raise CliError(f"--model/--device: {error}") from error


def _save(path: Path, array) -> None:
    from PIL import Image

    try:
        Image.fromarray(array).save(path)
    except (OSError, ValueError) as error:
        raise CliError(f"cannot write {path}: {error}") from error


def _json_ready(record: dict) -> dict:
    """NaN is not JSON: an empty mask's stability score (0 / 0, kept only without filters) becomes null."""
    return {key: None if isinstance(value, float) and value != value else value for key, value in record.items()}


def _filter_settings(model, pred_iou_thresh: float | None, stability_score_thresh: float | None) -> dict:
    """The generator's quality filters: the official defaults (chosen for Meta's confident models), or for the
    small model, which rates its masks far lower, the settings recommended on its card. What the user set wins."""
    from .config import TINY_CHECKPOINT, guess_variant

    settings = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95, "stability_score_offset": 1.0}
    if pred_iou_thresh is None and stability_score_thresh is None and guess_variant(model.state_dict()) == "tiny":
        card = json.loads((TINY_CHECKPOINT.parent / "card.json").read_text())
        settings.update(card["generator_settings"])
        _status("the small model rates its masks lower than Meta's: using its card's filters (predicted IoU > "
                f"{settings['pred_iou_thresh']}, stability > {settings['stability_score_thresh']} at offset "
                f"{settings['stability_score_offset']}); set --pred-iou-thresh or --stability-score-thresh to change")
    if pred_iou_thresh is not None:
        settings["pred_iou_thresh"] = pred_iou_thresh
    if stability_score_thresh is not None:
        settings["stability_score_thresh"] = stability_score_thresh
    return settings


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


# ---- pictures: drawn as the widgets draw (interactive.drawing) -------------------------------------------------


def draw_prompt_overlay(image, mask, positives, negatives, box):
    """The image with the mask tinted and outlined in the first object colour, positive points green, negative
    points red, the box yellow."""
    from .interactive.drawing import blend, draw_prompts, object_colors, outline_width

    tinted = blend(image, [(mask, object_colors(1)[0])], outline=outline_width(image.shape[1]))
    labels = [1] * len(positives) + [0] * len(negatives)
    return draw_prompts(tinted, [*positives, *negatives], labels, box)


def draw_everything_overlay(image, records):
    """The image with every mask tinted in its own colour; small masks are drawn last, so they stay visible."""
    from .interactive.drawing import blend, object_colors, outline_width
    from .utils.amg import rle_to_mask

    largest_first = sorted(records, key=lambda record: -record["area"])
    masks = [rle_to_mask(record["segmentation"]) for record in largest_first]
    return blend(image, list(zip(masks, object_colors(len(masks)))), outline=outline_width(image.shape[1]))
