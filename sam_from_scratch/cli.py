"""The command line: `sam-from-scratch COMMAND ...`, or `python -m sam_from_scratch COMMAND ...`.

    demo         segment the sample photo from one click: Meta's vit_b, or offline the bundled small model
    download     fetch an official checkpoint into the cache, checked against its published SHA-256
    segment      segment an image from points and/or a box (the predictor)
    everything   segment everything in an image (the automatic mask generator)
    train-tiny   train the bundled small model from scratch
    finetune     fine-tune SAM on your own images and masks (COCO JSON, or images/ + masks/ folders)
    export-onnx  write the prompt encoder and mask decoder as an ONNX file (the `onnx` extra)

Building the parsers imports nothing heavy: torch, numpy and Pillow are imported by the command that runs,
so --help and --version answer at once. Existing outputs are never overwritten unless --force is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import warnings
from pathlib import Path

from .errors import SamInputError, check_box_corners, nearest_existing, renamed

PROG = "sam-from-scratch"  # the console script; `python -m sam_from_scratch` passes its own name

EXIT_CODES = """\
exit codes:
  0    done
  1    failed while running: a file could not be read or written, the model could not be loaded
       (a --model file that is not a checkpoint), a download failed or was refused, outputs already
       exist (without --force)
  2    bad arguments: an unknown option or value, an unknown --model name or a bad --device, prompts
       outside the image; or a missing optional package (export-onnx without the onnx extra, or on a
       torch older than 2.8)
  130  interrupted (Ctrl-C)"""

DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")  # device.DTYPE_CHOICES, without importing torch
TRAIN_TINY_OUT = "runs/train-tiny"
# train-tiny --quick: fewer steps for a worse model in about a ninth of the time (its figures: the card's "quick")
QUICK_STEPS, QUICK_OUT = 2000, "runs/train-tiny-quick"
# Training speed when the bundled card has no figure for the number of workers asked for: about 1.8 steps a
# second, measured with 2 workers on 2 idle AMD EPYC cores.
ESTIMATED_STEPS_PER_SECOND = 1.8
ONNX_MIN_OPSET = 18  # onnx_export.DEFAULT_OPSET, kept here so that --help imports no torch (a test compares them)
ONNX_MAX_OPSET = 25  # onnx_export.MAX_OPSET, the newest opset torch's exporter writes (compared by the same test)
ONNX_EXTRA = 'pip install "sam-from-scratch[onnx]"'
COORDINATE_OPTIONS = ("--point", "--negative", "--box")
MAX_IMAGE_PIXELS = 178_956_970  # Pillow's own limit for an error (twice its warning limit, 89,478,485)
LOSSLESS_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
DEMO_IMAGE, DEMO_POINT = "coffee", (280.0, 190.0)  # a click on the cup
DOWNLOAD_OPTIONS = {"cache_dir": "--cache-dir", "mirror": "--mirror"}  # download_checkpoint's arguments as options


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
        "train the small course model, fine-tune on your own images, export the prompt side to ONNX.",
        epilog=f"{EXIT_CODES}\n\n'{prog} COMMAND --help' describes a command, with an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(subparsers, prog)
    _add_download(subparsers, prog)
    _add_segment(subparsers, prog)
    _add_everything(subparsers, prog)
    _add_train_tiny(subparsers, prog)
    _add_finetune(subparsers, prog)
    _add_export_onnx(subparsers, prog)
    return parser


def _subcommand(subparsers, name: str, help_text: str, example: str, run) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n{example}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


def _add_download_options(parser: argparse.ArgumentParser) -> None:
    """--cache-dir and --mirror: where official checkpoints are kept, and where they are downloaded from."""
    from .download import CACHE_ENV, DEFAULT_CACHE_DIR, MIRROR_ENV, OFFICIAL_BASE_URL

    parser.add_argument("--cache-dir", type=_path_argument, default=None,
                        help=f"folder to keep checkpoints in (default: ${CACHE_ENV} or {DEFAULT_CACHE_DIR})")
    parser.add_argument("--mirror", default=None,
                        help=f"base URL serving the same file names (default: ${MIRROR_ENV} or {OFFICIAL_BASE_URL})")


def _add_demo(subparsers, prog: str) -> None:
    parser = _subcommand(
        subparsers, "demo", "segment the sample photo from one click, with Meta's vit_b when it can be had",
        f"  {prog} demo\n"
        "    downloads Meta's vit_b once (375 MB, checked against its SHA-256) and writes outputs/demo_mask.png and\n"
        "    outputs/demo_overlay.png; with no network it says so and uses the bundled small model instead",
        run_demo,
    )
    parser.add_argument("--out", type=_path_argument, default="outputs", metavar="DIR",
                        help="folder for demo_mask.png and demo_overlay.png (default: outputs)")
    parser.add_argument("--offline", action="store_true",
                        help="download nothing: Meta's vit_b if it is in the cache, else the small model")
    parser.add_argument("--timeout", type=_positive_float, default=5.0,
                        help="seconds to wait for the download host before using the small model (default 5)")
    _add_download_options(parser)
    parser.add_argument("--device", type=_device_argument, default="auto",
                        help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu (default: auto)")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                        help="the image encoder's precision; auto: bfloat16 on a recent GPU or a CPU with AMX or "
                        "AVX-512-BF16, float32 elsewhere (default: auto)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _add_download(subparsers, prog: str) -> None:
    from .download import ALIASES, CHECKPOINTS

    parser = _subcommand(
        subparsers, "download", "download an official checkpoint (checked against its SHA-256) into the cache",
        f"  {prog} download vit_b\n"
        f"  {prog} download vit_h --mirror https://my.mirror/sam/\n"
        "    prints where the file is; a file already in the cache is checked and used as it is",
        run_download,
    )
    parser.add_argument("name", choices=sorted([*CHECKPOINTS, *ALIASES]),
                        help="which official checkpoint (default is vit_h, as in segment_anything's registry)")
    _add_download_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=_path_argument,
                        metavar="IMAGE", help="the picture (any format Pillow reads: PNG, JPEG, ...)")
    parser.add_argument("--model", type=_model_argument, default=None,
                        help="tiny (bundled), vit_b, vit_l, vit_h (downloaded once; 'default' is vit_h, as in "
                        "segment_anything), or a checkpoint file / Hugging Face folder (default: vit_b if its "
                        "checkpoint is in the cache, else tiny)")
    parser.add_argument("--device", type=_device_argument, default="auto",
                        help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu (default: auto)")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                        help="the image encoder's precision; auto: bfloat16 on a recent GPU or a CPU with AMX or "
                        "AVX-512-BF16, float32 elsewhere (default: auto)")
    _add_download_options(parser)
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--allow-large-images", action="store_true",
                        help="read images above Pillow's safety limit against decompression bombs "
                        f"({MAX_IMAGE_PIXELS:,} pixels); only for files you trust")


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
    parser.add_argument("--out", type=_path_argument, required=True, metavar="OUT.png",
                        help="where to write the mask, as a lossless image: .png, .bmp or .tif (JPEG would blur its "
                        "edges); the overlay goes beside it as OUT_overlay.png")


def _add_everything(subparsers, prog: str) -> None:
    parser = _subcommand(
        subparsers, "everything", "segment everything in an image (the automatic mask generator)",
        f"  {prog} everything photo.jpg --out masks/\n"
        "    writes masks/overlay.png (every mask in its own colour) and masks/masks.json (one record per mask,\n"
        "    the mask as an uncompressed RLE: see sam_from_scratch.utils.amg.rle_to_mask)",
        run_everything,
    )
    _add_common(parser)
    parser.add_argument("--out", type=_path_argument,
                        required=True, metavar="DIR", help="folder for overlay.png and masks.json")
    parser.add_argument("--points-per-side", type=_positive_int, default=32, help="the point grid is N x N (default 32)")
    parser.add_argument("--points-per-batch", type=_positive_int, default=64,
                        help="points per decoder call (default 64)")
    parser.add_argument("--pred-iou-thresh", type=_threshold, default=None,
                        help="keep masks rated above this (0.88; the small model: its card's value)")
    parser.add_argument("--stability-score-thresh", type=_threshold, default=None,
                        help="keep stable masks (0.95; the small model: its card's value)")
    parser.add_argument("--crop-n-layers", type=_count, default=0, help="extra layers of overlapping crops (0)")
    parser.add_argument("--min-mask-region-area", type=_count, default=0,
                        help="fill holes and drop islands smaller than this many pixels (0: off)")


def _add_train_tiny(subparsers, prog: str) -> None:
    parser = _subcommand(
        subparsers, "train-tiny", "train the bundled small model from scratch, and measure it",
        f"  {prog} train-tiny --quick\n"
        f"    {QUICK_STEPS:,} steps (about 19 minutes on 2 idle cores): a worse model, in {QUICK_OUT}/; run it again\n"
        "    to resume\n"
        f"  {prog} train-tiny --replace-bundled\n"
        "    the full recipe, written over the model that ships with the package",
        run_train_tiny,
    )
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument("--steps", type=_positive_int, default=21600, help="optimizer steps (default 21600)")
    how_long.add_argument("--quick", action=_QuickRecipe,
                          help=f"the quick recipe: {QUICK_STEPS:,} steps (with the default 2 workers), written to "
                          f"{QUICK_OUT} unless --out is given; a worse model, in about a ninth of the time")
    parser.add_argument("--seed", type=_count, default=0, help="training seed (default 0)")
    parser.add_argument("--workers", type=_positive_int, default=2,
                        help="training processes, one CPU core each (default 2); with 1, training runs in this "
                        "process on --threads threads")
    parser.add_argument("--threads", type=_positive_int, default=2,
                        help="CPU threads for torch in this process: the evaluation, and the training with "
                        "--workers 1 (default 2)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=_path_argument, default=None, metavar="DIR",
                       help=f"folder for sam_tiny.pt and card.json (default: {TRAIN_TINY_OUT}; with --quick "
                       f"{QUICK_OUT})")
    where.add_argument("--replace-bundled", action="store_true",
                       help="write them to the bundled model's folder, sam_from_scratch/data/tiny, instead")
    parser.add_argument("--work-dir", type=_path_argument, default=None, metavar="DIR",
                        help=f"resumable state and loss log (default: OUT/state; with --replace-bundled "
                        f"{TRAIN_TINY_OUT}/state, outside the package)")
    parser.add_argument("--fresh", action="store_true", help="ignore a saved state and start from scratch")
    parser.add_argument("--eval-scenes", type=_positive_int, default=300,
                        help="held-out scenes for the card's figures (default 300)")
    parser.add_argument("--eval-only", action="store_true", help="only measure the figures of OUT/sam_tiny.pt again")


class _QuickRecipe(argparse.Action):
    """train-tiny --quick: sets the quick recipe's steps (and marks the run, for its default folder)."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        namespace.quick = True
        namespace.steps = QUICK_STEPS


def _add_finetune(subparsers, prog: str) -> None:
    parser = _subcommand(
        subparsers, "finetune", "fine-tune SAM's mask decoder on your own images and masks",
        f"  {prog} finetune --model vit_b --data coco.json --images dir/ --out run/\n"
        "    embeds every image once (cached in run/embeddings), trains the mask decoder, and writes\n"
        "    run/sam_vit_b_finetuned.pth (official format) and run/card.json (held-out mIoU before and after);\n"
        "    run it again to resume. Several GPUs: torchrun --nproc_per_node=N -m sam_from_scratch finetune ...",
        run_finetune,
    )
    parser.add_argument("--model", type=_model_argument, default="vit_b",
                        help="tiny (bundled), vit_b, vit_l, vit_h (downloaded once, or see `download`; 'default' is "
                        "vit_h), or a checkpoint file (default: vit_b)")
    parser.add_argument("--checkpoint", type=_path_argument, default=None, metavar="FILE",
                        help="weights for the --model variant instead of the bundled or official ones")
    parser.add_argument("--data", type=_path_argument, required=True, metavar="PATH",
                        help="a COCO instance JSON (polygons or RLE), or a folder holding images/ and masks/ (one PNG "
                        "per instance named <image>_<k>.png, or one single-channel label map <image>.png; 255 in a palette map is "
                        "a boundary, not an instance)")
    parser.add_argument("--images", type=_path_argument,
                        default=None, metavar="DIR", help="the COCO file's images (default: beside it)")
    parser.add_argument("--out", type=_path_argument, required=True, metavar="DIR",
                        help="the run folder: new or empty, or an earlier run with the same settings (it resumes)")
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument("--steps", type=_positive_int, default=None, help="optimizer steps")
    how_long.add_argument("--epochs", type=_positive_float, default=None,
                          help="passes over the training images (default 10)")
    parser.add_argument("--lr", type=_positive_float, default=1e-4, help="learning rate (default 1e-4)")
    parser.add_argument("--batch", type=_positive_int, default=4, help="images per step (default 4)")
    parser.add_argument("--device", type=_device_argument, default="auto",
                        help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu (default: auto)")
    parser.add_argument("--seed", type=_count, default=0, help="seed of the split, the order and the prompts (default 0)")
    held_out = parser.add_mutually_exclusive_group()
    held_out.add_argument("--val-fraction", type=_positive_float, default=0.1,
                          help="share of the images held out to measure mIoU before and after (default 0.1)")
    held_out.add_argument("--val-ids", type=_names, default=None, metavar="ID,ID,...",
                          help="the held-out images instead: their ids or file names, separated by commas")
    parser.add_argument("--lora-rank", type=_count, default=0,
                        help="also train rank-R adapters on the image encoder's attention (for GPUs; no embedding "
                        "cache then; default 0: off)")
    parser.add_argument("--train-prompt-encoder", action="store_true", help="train the prompt encoder as well")
    parser.add_argument("--replay", type=_path_argument, default=None, metavar="PATH",
                        help="a second dataset (same formats) whose images all join the training images: images of "
                        "the kinds the model already segments well, so that it does not forget them")
    parser.add_argument("--replay-images", type=_path_argument,
                        default=None, metavar="DIR", help="the --replay COCO file's images")
    parser.add_argument("--replay-fraction", type=float, default=None, metavar="F",
                        help="share of each step's images drawn from --replay (default: its share of all the images)")
    parser.add_argument("--distill", type=float, default=0.0, metavar="W",
                        help="on the --replay images, also keep the starting model's answers, with weight W (default 0)")
    _add_download_options(parser)


def _add_export_onnx(subparsers, prog: str) -> None:
    parser = _subcommand(
        subparsers, "export-onnx", "write the prompt encoder and mask decoder as an ONNX file (needs the onnx extra)",
        f"  {prog} export-onnx --model tiny --out decoder.onnx\n"
        "    writes decoder.onnx, which takes an image embedding (SamPredictor.get_image_embedding) and prompts;\n"
        "    with --quantize also decoder_int8.onnx, smaller, with masks close to the float32 file's",
        run_export_onnx,
    )
    parser.add_argument("--model", type=_model_argument, default="tiny",
                        help="tiny (bundled, the default), vit_b, vit_l, vit_h (downloaded once; 'default' is vit_h), or a "
                        "checkpoint file / Hugging Face folder")
    parser.add_argument("--checkpoint", type=_path_argument, default=None, metavar="FILE",
                        help="weights for the --model variant (e.g. --model vit_b --checkpoint my_vit_b.pth) instead "
                        "of the bundled or official ones")
    parser.add_argument("--out", type=_path_argument,
                        required=True, metavar="OUT.onnx", help="where to write the ONNX file")
    parser.add_argument("--quantize", action="store_true",
                        help="also write an int8 copy beside it, OUT_int8.onnx (onnxruntime's dynamic quantization)")
    parser.add_argument("--multimask", action="store_true",
                        help="output all four masks of each prompt, as Meta's script does without --return-single-mask "
                        "(by default one: the best of the three ambiguity masks for one click or a box alone, else the "
                        "single-mask output)")
    parser.add_argument("--use-stability-score", action="store_true",
                        help="scores are stability scores instead of predicted IoUs")
    parser.add_argument("--opset", type=_whole_number(ONNX_MIN_OPSET, ONNX_MAX_OPSET), default=ONNX_MIN_OPSET,
                        help=f"ONNX opset version, from {ONNX_MIN_OPSET} to {ONNX_MAX_OPSET} (default {ONNX_MIN_OPSET})")
    _add_download_options(parser)
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


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


def _whole_number(minimum: int, maximum: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum or (maximum is not None and value > maximum):
            wanted = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"expected a whole number {wanted}, got {text!r}")
        return value

    return parse


_positive_int, _count = _whole_number(1), _whole_number(0)


def _names(text: str) -> list[str]:
    """Ids or file names separated by commas, spaces around them ignored; none empty (an unset shell variable)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected ids or file names separated by commas, got {text!r}")
    return names


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _path_argument(text: str) -> str:
    """A path with a leading ~ expanded, as a shell does for a separate word (not after --out=); a ~user of no
    user here is refused, not taken as a folder of that name."""
    expanded = os.path.expanduser(text)  # (os.path keeps a trailing slash, which --out's checks read)
    if expanded.startswith("~"):
        raise argparse.ArgumentTypeError(f"{text!r}: {text.split(os.sep)[0]} names no home folder here; write the "
                                          "path out in full")
    return expanded


def _model_argument(text: str) -> str:
    from .download import ALIASES, CHECKPOINTS

    names = ["tiny", *CHECKPOINTS, *ALIASES]
    if text in names:
        return text
    path = _path_argument(text)
    if Path(path).exists():
        return path
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
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    args = build_parser(prog).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SamInputError as error:  # bad input a command did not put in its own words: still one line
        print(f"error: {error}", file=sys.stderr)
        return 2


def _join_negative_values(argv: list[str]) -> list[str]:
    """["--point", "-5,10"] -> ["--point=-5,10"]: argparse takes "-5,10" for an option, so a point left of the
    image would get "expected one argument" instead of being reported as outside the image."""
    joined = []
    for arg in argv:
        if joined and joined[-1] in COORDINATE_OPTIONS and re.fullmatch(r"-[\d.][\d.,eE+-]*", arg):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


def run_download(args: argparse.Namespace) -> int:
    from .download import DownloadError, download_checkpoint

    try:
        path = download_checkpoint(args.name, cache_dir=args.cache_dir, mirror=args.mirror,
                                   progress=not args.no_progress)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SamInputError as error:
        print(f"error: {renamed(error, DOWNLOAD_OPTIONS)}", file=sys.stderr)
        return 2
    print(path)
    return 0


def run_segment(args: argparse.Namespace) -> int:
    try:
        out = Path(args.out)
        overlay_path = out.with_name(f"{out.stem}_overlay{out.suffix}")
        if out.is_dir() or args.out.endswith(("/", os.sep)):
            raise CliError(f"--out: {args.out} is a folder; give the mask's file name, e.g. {out / 'mask.png'}", code=2)
        if out.suffix.lower() not in LOSSLESS_SUFFIXES:
            raise CliError(f"--out: {out} is not a lossless image file; a mask needs exact pixels, so give a .png, "
                           ".bmp or .tif name", code=2)
        _check_out_folder(out.parent, "--out")
        _refuse_to_overwrite_the_image({out: None, overlay_path: f"the overlay (named after {out})"}, args.image)
        _refuse_to_overwrite([out, overlay_path], args.force)
        if not (args.point or args.negative or args.box):
            raise CliError("give at least one prompt: --point X,Y, --negative X,Y or --box X1,Y1,X2,Y2", code=2)
        image = read_image(args.image, args.allow_large_images)
        _check_prompts_inside(args, image.shape[:2])
        model = _load_model(args.model, args.device, args.cache_dir, args.mirror)
        mask, iou = _segment_and_save(model, image, args.point, args.negative, args.box, out, overlay_path,
                                      args.dtype)
        print(f"wrote {out} ({int(mask.sum())} pixels, predicted IoU {iou:.3f}) and {overlay_path}")
        return 0
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code


def _segment_and_save(model, image, positives, negatives, box, out: Path, overlay_path: Path, dtype="auto"):
    """The predictor's mask for the prompts (from one click, the best rated of its three), saved with its overlay.
    Returns the mask and its predicted IoU."""
    import numpy as np

    from .predictor import SamPredictor

    try:  # the precision: --dtype, or $SAM_FROM_SCRATCH_DTYPE with --dtype auto
        predictor = SamPredictor(model, dtype=dtype)
    except SamInputError as error:
        raise CliError(str(error), code=2) from error
    _status(f"embedding the image ({image.shape[1]}x{image.shape[0]}) ...")
    try:
        predictor.set_image(image)
    except SamInputError as error:  # e.g. too thin to resize for this model: known only once it is loaded
        raise CliError(str(renamed(error, {"image": "IMAGE"})), code=2) from error
    points = list(positives) + list(negatives)
    labels = [1] * len(positives) + [0] * len(negatives)
    ambiguous = len(points) == 1 and box is None  # one click: let the model offer three masks
    try:
        masks, iou, _ = predictor.predict(
            point_coords=np.array(points) if points else None,
            point_labels=np.array(labels) if points else None,
            box=np.array(box) if box else None,
            multimask_output=ambiguous,
        )
    except SamInputError as error:
        raise CliError(f"bad prompt: {error}", code=2) from error
    best = int(np.argmax(iou))
    mask = masks[best]
    overlay = draw_prompt_overlay(image, mask, positives, negatives, box)  # drawn before either file is written
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(out, mask.astype(np.uint8) * 255)
    _save(overlay_path, overlay)
    return mask, float(iou[best])


def run_demo(args: argparse.Namespace) -> int:
    from .config import guess_variant
    from .download import DownloadError, download_checkpoint, find_checkpoint
    from .interactive.models import describe_model
    from .samples import load_sample_image

    try:
        out_dir = Path(args.out)
        mask_path, overlay_path = out_dir / "demo_mask.png", out_dir / "demo_overlay.png"
        _check_out_folder(out_dir, "--out")
        _refuse_to_overwrite([mask_path, overlay_path], args.force)
        try:
            checkpoint = find_checkpoint("vit_b", args.cache_dir)
            if checkpoint is None and not args.offline:
                _status("downloading Meta's vit_b checkpoint (once; it stays in the cache) ...")
                checkpoint = download_checkpoint("vit_b", cache_dir=args.cache_dir, mirror=args.mirror,
                                                 timeout=args.timeout)
        except SamInputError as error:  # --cache-dir, --mirror, --timeout or their variables, before any request
            raise CliError(str(renamed(error, DOWNLOAD_OPTIONS | {"timeout": "--timeout"})), code=2) from error
        except DownloadError as error:
            cause = type(error.__cause__).__name__ if error.__cause__ else ""
            if "SHA-256" in str(error):
                reason = "the file that arrived is not the published one"
            elif "Connection" in cause or "Timeout" in cause:
                reason = f"no network, or the host did not answer within {args.timeout:g} s"
            else:
                reason = cause or "the transfer failed"
            print(f"could not download Meta's vit_b ({reason}); using the bundled small model instead",
                  file=sys.stderr, flush=True)
        model = None
        if checkpoint is not None:
            try:
                model = _load_model(str(checkpoint), args.device)
            except CliError as error:  # a damaged or foreign file in the cache: the demo still runs
                if str(error).startswith("--device: "):
                    raise
                reason = str(error).removeprefix("--model/--device: ")
                print(f"could not load Meta's vit_b ({reason}); using the bundled small model instead",
                      file=sys.stderr, flush=True)
        if model is None:
            model = _load_model("tiny", args.device)
        image = load_sample_image(DEMO_IMAGE)
        _segment_and_save(model, image, [DEMO_POINT], [], None, mask_path, overlay_path, args.dtype)
        print(f"segmented the sample photo '{DEMO_IMAGE}' from one click with {describe_model(model)}; "
              f"wrote {mask_path} and {overlay_path}")
        if guess_variant(model.state_dict()) == "tiny":
            print("the small model learned generated scenes, not photographs: on this photo its mask is a rough "
                  "guess; for photographs, Meta's vit_b (the demo downloads it once when there is a network)")
        return 0
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code


def run_everything(args: argparse.Namespace) -> int:
    try:
        out_dir = Path(args.out)
        _check_out_folder(out_dir, "--out")
        overlay_path, json_path = out_dir / "overlay.png", out_dir / "masks.json"
        _refuse_to_overwrite_the_image({overlay_path: "the overlay", json_path: "the masks"}, args.image)
        _refuse_to_overwrite([overlay_path, json_path], args.force)
        image = read_image(args.image, args.allow_large_images)

        from .automatic_mask_generator import SamAutomaticMaskGenerator

        model = _load_model(args.model, args.device, args.cache_dir, args.mirror)
        try:
            generator = SamAutomaticMaskGenerator(
                model,
                points_per_side=args.points_per_side,
                points_per_batch=args.points_per_batch,
                **_filter_settings(model, args.pred_iou_thresh, args.stability_score_thresh),
                crop_n_layers=args.crop_n_layers,
                min_mask_region_area=args.min_mask_region_area,
                output_mode="uncompressed_rle",
                dtype=args.dtype,
            )
        except SamInputError as error:
            raise CliError(_in_options(str(error)), code=2) from error
        _status(f"segmenting everything in the image ({image.shape[1]}x{image.shape[0]}) ...")
        try:
            with warnings.catch_warnings():  # its advice is in the Python API's words: said below in options
                warnings.filterwarnings("ignore", message="no mask passed the quality filters")
                records = generator.generate(image, progress=_progress_bar())
        except SamInputError as error:  # settings this image cannot take (more crop layers than its pixels allow),
            raise CliError(_in_options(str(renamed(error, {"image": "IMAGE"}))), code=2) from error  # or the image

        if not records:
            _status(explain_no_masks(generator) + _card_filters_hint(generator))
        # both outputs made before either file is written
        overlay = draw_everything_overlay(image, records)
        text = json.dumps([_json_ready(record) for record in records], allow_nan=False)
        out_dir.mkdir(parents=True, exist_ok=True)
        _save(overlay_path, overlay)
        try:
            json_path.write_text(text)
        except OSError as error:
            raise CliError(f"cannot write {json_path}: {error}") from error
        print(f"wrote {len(records)} masks to {json_path} and {overlay_path}")
        return 0
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code


def _in_options(message: str) -> str:
    """The generator's message in the command line's words: --points-per-side for points_per_side, and no advice
    to raise its class limits (Python only)."""
    message = re.sub(r", or raise SamAutomaticMaskGenerator\.MAX_PLANNED_\w+\.", ".", message)
    for name in ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh", "crop_n_layers",
                 "min_mask_region_area"):
        message = message.replace(name, "--" + name.replace("_", "-"))
    return message


def _card_filters_hint(generator) -> str:
    """The generator's warning in options: the small model, given thresholds stricter than its card's, gets the
    card's without them."""
    from .automatic_mask_generator import generator_filters

    card, note = generator_filters(generator.predictor.model)
    if note is None:  # only a model with a card's filters
        return ""
    stricter = [name for name in ("pred_iou_thresh", "stability_score_thresh") if getattr(generator, name) > card[name]]
    if not stricter:
        return ""
    options = " and ".join("--" + name.replace("_", "-") for name in stricter)
    return f"; the small model rates its masks low: leave out {options} for the filters measured for it"


def explain_no_masks(generator) -> str:
    """One line from the generator's last_filter_counts: how many candidates there were and which filters
    removed them, each with its threshold, e.g. 'no masks: 48 candidates; pred_iou_thresh 0.88 removed 48'."""
    counts = dict(generator.last_filter_counts or {})
    candidates = counts.pop("candidates", 0)
    counts.pop("kept", None)
    removals = []
    for step, removed in counts.items():
        if removed:
            threshold = getattr(generator, step, None)  # crop_edge has none
            removals.append(f"{step} {threshold:g} removed {removed}" if threshold is not None
                            else f"{step} removed {removed}")
    return f"no masks: {candidates} candidates" + (f"; {', '.join(removals)}" if removals else "")


def run_train_tiny(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    from .config import TINY_CHECKPOINT
    from .training import TrainConfig, train_tiny
    from .training.loop import check_work_dir, check_workers
    from .training.tiny import check_run_folder

    if args.quick and args.replace_bundled:
        print("error: --quick trains a worse model than the bundled one: give --out (or no folder: "
              f"{QUICK_OUT}) instead of --replace-bundled", file=sys.stderr)
        return 2
    default_out = QUICK_OUT if args.quick else TRAIN_TINY_OUT
    out = TINY_CHECKPOINT.parent if args.replace_bundled else Path(args.out or default_out)
    # The resumable state never goes into the package: with --replace-bundled it stays in the run folder.
    work_dir = Path(args.work_dir) if args.work_dir else (Path(TRAIN_TINY_OUT) if args.replace_bundled else out) / "state"
    start = time.perf_counter()
    try:  # with progress=True it reports as it goes and prints the figures at the end
        if not args.eval_only:
            check_workers(TrainConfig(), args.workers)  # before saying how long a run it cannot do would take
            check_run_folder(out, work_dir)
            check_work_dir(work_dir, replace(TrainConfig(), steps=args.steps, seed=args.seed), "tiny",
                           resume=not args.fresh, start_over="--fresh")
            print(expected_training_time(args.steps, args.workers, args.eval_scenes), flush=True)
        train_tiny(
            out, steps=args.steps, seed=args.seed, workers=args.workers, threads=args.threads, work_dir=work_dir,
            fresh=args.fresh, eval_scenes=args.eval_scenes, eval_only=args.eval_only, progress=True,
        )
    except ValueError as error:  # its arguments' checks, e.g. workers that do not divide the images of a step
        print(f"error: {renamed(error, {'out': '--out', 'work_dir': '--work-dir'})}", file=sys.stderr)
        return 2
    except OSError as error:  # no checkpoint to measure, a folder that cannot be written
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"train-tiny took {_duration(time.perf_counter() - start)}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from .download import DownloadError
    from .training.finetune import finetune

    try:
        _check_out_folder(Path(args.out), "--out")
        finetune(
            args.model, args.data, args.images, args.out, checkpoint=args.checkpoint, steps=args.steps,
            epochs=args.epochs, lr=args.lr, batch=args.batch, device=args.device, seed=args.seed,
            val_fraction=args.val_fraction, val_ids=args.val_ids,
            lora_rank=args.lora_rank, train_prompt_encoder=args.train_prompt_encoder, replay=args.replay,
            replay_images=args.replay_images, replay_fraction=args.replay_fraction, distill=args.distill,
            cache_dir=args.cache_dir, mirror=args.mirror,
        )
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except SamInputError as error:  # bad data or arguments, a run folder that is not ours
        print(f"error: {renamed(error, FINETUNE_OPTIONS)}", file=sys.stderr)
        return 2
    except DownloadError as error:  # an official model not in the cache, and no network
        print(f"error: --model {args.model}: {error} Or give its file as --checkpoint FILE.", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:  # a checkpoint that cannot be read, a folder that cannot be written,
        names = {"device": "--device"} | ({"checkpoint": "--checkpoint"} if args.checkpoint else {})  # no CUDA here
        print(f"error: {renamed(error, names)}", file=sys.stderr)
        return 1
    return 0  # finetune said what it wrote (the lead process only, under torchrun)


# finetune's arguments as the command line names them, for its messages
FINETUNE_OPTIONS = {name: "--" + name.replace("_", "-") for name in (
    "model", "checkpoint", "data", "images", "out", "steps", "epochs", "lr", "batch", "device", "seed", "val_fraction",
    "val_ids", "lora_rank", "train_prompt_encoder", "replay", "replay_images", "replay_fraction", "distill",
    "cache_dir", "mirror")}


def expected_training_time(steps: int, workers: int, eval_scenes: int) -> str:
    """One line: how long `steps` steps should take with `workers` workers on an idle machine.

    The rate is the one measured for the bundled card with as many workers (the shipped recipe, or its "quick"
    entry); with another number of workers, ESTIMATED_STEPS_PER_SECOND, and the line says it is an estimate.
    A resumed run takes less: only its remaining steps are trained.
    """
    rate, recipe = _card_seconds_per_step(workers)
    workers_text = f"{workers} worker{'s' * (workers > 1)}"
    if rate is not None:
        source = f"{rate:.2f} s a step with {workers_text}, as measured for the bundled card's {recipe} recipe"
    else:
        rate = 1 / ESTIMATED_STEPS_PER_SECOND
        source = (f"an estimate for {workers_text} from about {ESTIMATED_STEPS_PER_SECOND:g} steps a second, "
                  "measured with 2 workers on 2 idle cores")
    return (f"expected time: about {_duration(steps * rate, about=True)} for {steps:,} steps on an idle machine "
            f"({source}), then the evaluation on {eval_scenes} held-out scenes")


def _card_seconds_per_step(workers: int) -> tuple[float | None, str | None]:
    """Seconds per training step with `workers` workers from the bundled card (wall time / steps of the shipped
    recipe or of its "quick" entry) and which recipe it is, or (None, None) when neither used that many workers."""
    from .config import TINY_CHECKPOINT

    try:
        card = json.loads((TINY_CHECKPOINT.parent / "card.json").read_text())
    except (OSError, ValueError):
        return None, None
    for recipe, run in (("shipped", card), ("quick", card.get("quick") or {})):
        timing = run.get("training_time") or {}
        if timing.get("workers") == workers and timing.get("wall_seconds") and run.get("steps"):
            return timing["wall_seconds"] / run["steps"], recipe
    return None, None


def _duration(seconds: float, about: bool = False) -> str:
    """'42 s', '12 min 5 s', '1 h 28 min'; `about`: whole minutes from a minute on ('12 min')."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min" if about else f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def run_export_onnx(args: argparse.Namespace) -> int:
    try:
        out = Path(args.out)
        if out.suffix.lower() != ".onnx":
            raise CliError(f"--out: expected a file name ending in .onnx, got {args.out}", code=2)
        int8_path = out.with_name(f"{out.stem}_int8{out.suffix}")
        _check_out_folder(out.parent, "--out")
        _refuse_to_overwrite([out, int8_path] if args.quantize else [out], args.force)
        _require_onnx_extra(args.quantize)
        model = _export_model(args)

        from .onnx_export import export_onnx, quantize_onnx

        _status(f"exporting the prompt encoder and mask decoder to ONNX (opset {args.opset}) ...")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)  # checked before the model was loaded
            export_onnx(model.float().cpu(), out, opset=args.opset, overwrite=args.force,
                        return_single_mask=not args.multimask, use_stability_score=args.use_stability_score)
            written = [out]
            if args.quantize:
                _status("writing the int8 copy ...")
                written.append(quantize_onnx(out, int8_path, overwrite=args.force))
        except ImportError as error:
            raise CliError(f"export-onnx needs the onnx extra ({error.name or error}): {ONNX_EXTRA}", code=2) from error
        except SamInputError as error:
            raise CliError(str(renamed(error, {"path": "--out"})), code=2) from error
        except OSError as error:
            raise CliError(f"cannot write {out}: {error}") from error
        sizes = " and ".join(f"{path} ({path.stat().st_size / 1e6:.1f} MB)" for path in written)
        print(f"wrote {sizes}: the image embedding goes in as image_embeddings "
              "(SamPredictor.get_image_embedding), the prompts as point_coords and point_labels")
        return 0
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code


def _require_onnx_extra(quantize: bool) -> None:
    """Say which package is missing before the model is loaded (the export would fail minutes later)."""
    import importlib.util

    needed = ("onnx", "onnxscript", "onnxruntime") if quantize else ("onnx", "onnxscript")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(f"export-onnx needs the onnx extra (missing: {', '.join(missing)}): {ONNX_EXTRA}", code=2)
    import torch

    from .onnx_export import OLDEST_TORCH, torch_version

    if torch_version() < OLDEST_TORCH:
        oldest = ".".join(map(str, OLDEST_TORCH))
        raise CliError(f"export-onnx needs torch {oldest} or newer (got {torch.__version__}): {ONNX_EXTRA}", code=2)


def _export_model(args: argparse.Namespace):
    """The model to export: --model as segment loads it, or the --model variant built with --checkpoint."""
    if args.checkpoint is None:
        return _load_model(args.model, "cpu", args.cache_dir, args.mirror)
    from .build import sam_model_registry

    if args.model not in sam_model_registry:
        raise CliError(f"--checkpoint: expected --model to name a variant ({', '.join(sam_model_registry)}) for "
                       f"its weights, got --model {args.model}", code=2)
    _status(f"building {args.model!r} with the weights of {args.checkpoint} ...")
    try:
        return sam_model_registry[args.model](checkpoint=args.checkpoint)
    except (ValueError, OSError) as error:  # a missing file, a damaged one, another variant's (SamInputError too)
        raise CliError(f"--checkpoint: {error}") from error


# ---- files, model, progress -----------------------------------------------------------------------------------


def read_image(path: str, allow_large: bool = False):
    """An image file as HxWx3 uint8 RGB, turned upright as its EXIF data says (as viewers show it).

    Every Pillow mode is read by its meaning: 16-bit, 32-bit integer and float greyscale are scaled to 0..255
    (Pillow's own conversion clips them, so a 16-bit PNG would read as white), palettes and CMYK become RGB,
    and transparency is dropped. Images above Pillow's decompression-bomb limit are refused unless
    `allow_large`.
    """
    from PIL import Image

    from .utils.images import read_image as read_file

    file = Path(path)
    if not file.is_file():
        raise CliError(f"IMAGE: {path} does not exist" if not file.exists() else f"IMAGE: {path} is not a file")
    limit = Image.MAX_IMAGE_PIXELS
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that: refuse above our limit, without warnings
    Image.MAX_IMAGE_PIXELS = None if allow_large else MAX_IMAGE_PIXELS // 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return read_file(file)
    except Image.DecompressionBombError as error:
        raise CliError(f"IMAGE: {path} is larger than {MAX_IMAGE_PIXELS:,} pixels, Pillow's limit against "
                       "decompression bombs; if you trust the file, add --allow-large-images", code=2) from error
    except SamInputError as error:  # read_file names its path; say what Pillow said
        raise CliError(f"IMAGE: cannot read {path} as an image ({error.__cause__})") from error
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _check_out_folder(folder: Path, option: str) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be created."""
    import os

    existing = nearest_existing(folder.absolute())
    if not existing.is_dir():
        what = "is a file" if existing == folder.absolute() else f"cannot be created: {existing} is a file"
        raise CliError(f"{option}: {folder} {what}; give a folder", code=2)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CliError(f"{option}: {folder} cannot be written: {existing} is not writable", code=2)


def _refuse_to_overwrite(paths, force: bool) -> None:
    """Outputs already there are kept unless `force`; one that is a folder is refused, --force or not, before
    any output is written (a folder cannot be written over, and the other files would be half a result)."""
    for path in paths:
        if path.is_dir():
            raise CliError(f"--out: {path} is a folder, where a file would be written; move it or choose another "
                           "--out (--force replaces files, never folders)", code=2)
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise CliError(f"{', '.join(existing)} already exist(s); add --force to overwrite")


def _refuse_to_overwrite_the_image(outputs: dict, image) -> None:
    """An output that would land on the input image is refused, --force or not: the photo would be lost.
    outputs: {path: what it is, or None for the file --out names}."""
    image = Path(image)
    for path, what in outputs.items():
        same = os.path.samefile(path, image) if path.exists() and image.exists() else path.resolve() == image.resolve()
        if same:
            named = f"{path} is" if what is None else f"{what} would be written to {path}, which is"
            raise CliError(f"--out: {named} the image being segmented, IMAGE; choose another --out (--force never "
                           "overwrites the input)", code=2)


def _check_prompts_inside(args, size) -> None:
    h, w = size
    for option, points in (("--point", args.point), ("--negative", args.negative)):
        for x, y in points:
            if not (0 <= x <= w and 0 <= y <= h):
                swapped = 0 <= y <= w and 0 <= x <= h  # the point fits as (y, x): the likeliest slip
                hint = f"; is it Y,X? {option} takes X,Y" if swapped else ""
                raise CliError(f"{option} {x:g},{y:g} lies outside the {w}x{h} image{hint}", code=2)
    if args.box:
        x1, y1, x2, y2 = args.box
        try:  # the predictor's own check, made before the model is loaded
            check_box_corners("--box", args.box, f"{x1:g},{y1:g},{x2:g},{y2:g}")
        except SamInputError as error:
            raise CliError(str(error), code=2) from error
        if x2 < 0 or y2 < 0 or x1 > w or y1 > h:
            raise CliError(f"--box {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {w}x{h} image", code=2)


def _load_model(name: str | None, device: str, cache_dir: str | None = None, mirror: str | None = None):
    """The model the widgets would use: `name`, or without one the best model here without a download.
    Official checkpoints not in the cache are downloaded (from `mirror` if given) into `cache_dir`."""
    from .build import from_pretrained
    from .download import CACHE_ENV, MIRROR_ENV, DownloadError, find_checkpoint

    from .interactive.models import load_default_model

    try:
        if name is None:
            name = "vit_b" if find_checkpoint("vit_b", cache_dir) is not None else "tiny"
            if name == "vit_b":
                why = "Meta's checkpoint is in the cache"
            else:
                why = "the bundled small model; `download vit_b` for Meta's"
            _status(f"loading the model {name!r} (no --model given: {why}) ...")
            return load_default_model(device, cache_dir, warn=_status)  # the cached file as it is: no download
        _status(f"loading the model {name!r} ...")
        return from_pretrained(name, device=device, cache_dir=cache_dir, mirror=mirror)
    except DownloadError as error:
        raise CliError(f"--model {name}: {error}") from error
    except (ValueError, FileNotFoundError, TypeError, OSError) as error:  # SamInputError is a ValueError
        message = str(renamed(error, {"device": "--device"} | DOWNLOAD_OPTIONS))
        # that option's own fault, or its environment variable's
        if message.startswith(("--device: ", "--mirror: ", "--cache-dir: ", f"${CACHE_ENV}: ", f"${MIRROR_ENV}: ")):
            raise CliError(message, code=2 if isinstance(error, SamInputError) else 1) from error
        raise CliError(f"--model/--device: {message}") from error


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
    """The generator's quality filters (the widgets' choice: the small model gets its card's), said aloud."""
    from .automatic_mask_generator import generator_filters

    settings, note = generator_filters(model, pred_iou_thresh, stability_score_thresh)
    if note:
        _status(f"{note}; set --pred-iou-thresh or --stability-score-thresh to change")
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
