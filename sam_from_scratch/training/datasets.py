"""Your own images and masks, read from the two formats people keep them in.

    COCO     an instance JSON ("images", "annotations"); each annotation's "segmentation" is a list of polygons
             or an RLE, with its counts compressed (COCO's string) or not (a list of run lengths)
    folder   images/ beside masks/: one PNG per instance named <image stem>_<k>.png, or one label-map PNG per
             image named <image stem>.png: one channel (mode L, P, I;16, I or 1), 0 is background, every other
             value one instance, except 255 in a palette (P) map, which marks boundaries as in Pascal VOC.
             An instance PNG whose transparency varies (an alpha channel, or a transparent palette entry) is the
             instance where it is not fully transparent (alpha > 0); any other is the instance where its grey
             level is above 0. A label map's transparency must not vary: its values are the labels.

`load_dataset` reads either and checks everything it can before any training starts: a missing file, a mask
whose size differs from its image, an empty mask, a duplicated id, two COCO entries naming one file, a mask
that is not a PNG, a malformed polygon or RLE. Each problem is a SamInputError that names the file (and the
annotation) or argument, what was expected and what was found. Images are read upright by their EXIF
orientation, as viewers and annotation tools show them, so masks are drawn on the upright picture. COCO crowd
regions (iscrowd 1: many objects in one region) and images without annotations are left out, and counted in
the dataset's source (hence in the fine-tuned model's card). Hidden files (a name starting with ".") are skipped.
Images and masks are read again from disk when a sample is asked for, so a dataset of any size fits in memory.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from ..errors import SamInputError, check_int, describe, expand_user, input_error, is_int, is_number
from ..utils.images import as_rgb
from ..utils.amg import rle_to_mask
from ..utils.checks import check_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LABEL_MODES = ("L", "P", "I;16", "I", "1")  # Pillow's modes of one value per pixel


@dataclass(frozen=True)
class ImageRecord:
    """One image and where its instance masks come from.

    masks: ("coco", [(name, segmentation), ...]) for COCO annotations (name: the file and the annotation, for
    errors), ("pngs", [path, ...]) for one PNG per instance, or ("labels", path) for a label map.
    """

    image_id: str
    path: Path
    size: tuple[int, int]  # (H, W)
    masks: tuple


class InstanceDataset:
    """Images with instance masks: dataset[i] is (image (H, W, 3) uint8, masks (N, H, W) bool)."""

    def __init__(self, records: list[ImageRecord], source: dict) -> None:
        self.records, self.source = records, source

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        record = self.records[index]
        return read_rgb(record.path), read_masks(record)

    @property
    def image_ids(self) -> list[str]:
        return [record.image_id for record in self.records]

    def subset(self, indices) -> "InstanceDataset":
        return InstanceDataset([self.records[i] for i in indices], self.source)

    def split(self, val_fraction: float = 0.1, seed: int = 0, val_ids=None) -> tuple["InstanceDataset", "InstanceDataset"]:
        """(train, held-out): the held-out images are `val_ids` (ids or file names) if given, else a random
        `val_fraction` of the images (at least one, drawn with `seed`).

        Each value of `val_ids` names the image with that id; a value that is no image's id names the image of
        that file name, else of that file name without its suffix. A value naming several images is refused."""
        n = len(self)
        if n < 2:
            dropped = self.source.get("images_without_annotations")
            note = f" ({dropped} more listed in {self.source['path']} have no annotation)" if dropped else ""
            raise SamInputError(f"data: expected at least 2 images (one is held out for validation), got {n}{note}.")
        if val_ids is not None:
            if not isinstance(val_ids, (list, tuple, range, np.ndarray)):  # in order (a set has none: run.json keeps it)
                hint = f"For one image: [{val_ids!r}]." if isinstance(val_ids, str) else ""
                raise input_error("val_ids", "a list of image ids or file names", val_ids, hint)
            held = self._held_out(val_ids)
        else:
            check_val_fraction(val_fraction)
            check_int("seed", seed, 0)
            count = min(n - 1, max(1, round(val_fraction * n)))
            held = sorted(np.random.default_rng(seed).permutation(n)[:count].tolist())
        if not 0 < len(held) < n:
            raise SamInputError(f"val_ids: expected to hold out some but not all of the {n} images, got {len(held)}.")
        train = [i for i in range(n) if i not in set(held)]
        return self.subset(train), self.subset(held)

    def _held_out(self, val_ids) -> list[int]:
        """The indices of the images `val_ids` names (see split), in order."""
        held, unknown = set(), []
        for value in dict.fromkeys(str(v) for v in val_ids):
            what, matches = self._images_named(value)
            if len(matches) > 1:
                paths = [str(self.records[i].path) for i in matches]
                raise SamInputError(f"val_ids: expected values that each name one image, got {value!r}, the {what} of {len(matches)} images: {paths[:5]}. Give their ids instead.")
            held.update(matches)
            unknown += [] if matches else [value]
        if unknown:
            raise SamInputError(f"val_ids: expected ids or file names of the dataset's images, got unknown {sorted(unknown)[:5]}.")
        return sorted(held)

    def _images_named(self, value: str) -> tuple[str, list[int]]:
        """(how, indices): the images whose id is `value`; if none, whose file name is; if none, whose stem is."""
        for what, key in (("id", lambda r: r.image_id), ("file name", lambda r: r.path.name),
                          ("file name without suffix", lambda r: r.path.stem)):
            matches = [i for i, r in enumerate(self.records) if key(r) == value]
            if matches:
                return what, matches
        return "", []


def check_val_fraction(value) -> None:
    if not (is_number(value) and 0 < value < 1):
        raise input_error("val_fraction", "a number in (0, 1)", value)


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------
def load_dataset(data: str | os.PathLike, images: str | os.PathLike | None = None) -> InstanceDataset:
    """A COCO instance JSON (`data`, with its images in `images`, default: beside the JSON) or a folder with
    images/ and masks/ (`data`). Everything is checked here; see the module docstring."""
    check_path("data", data, "a COCO .json file or a folder with images/ and masks/")
    if images is not None and not isinstance(images, (str, os.PathLike)):
        raise input_error("images", "the folder of the COCO file's images (a path) or None", images)
    data = expand_user("data", data, "a COCO .json file or a folder with images/ and masks/")  # ~/data too
    if not data.exists():
        raise SamInputError(f"data: expected a COCO .json file or a folder with images/ and masks/, got {str(data)!r}, which does not exist.")
    if data.is_file() and data.suffix.lower() == ".json":
        return load_coco(data, images)
    if data.is_dir() and (data / "images").is_dir() and (data / "masks").is_dir():
        if images is not None:
            raise SamInputError(f"images: expected nothing for a folder dataset (its images are in {data / 'images'}), got {str(images)!r}.")
        return load_folder(data)
    raise SamInputError(
        f"data: expected a COCO instance .json file or a folder holding images/ and masks/, got {str(data)!r} "
        "(unknown format)."
    )


def load_coco(path: Path, images: str | os.PathLike | None = None) -> InstanceDataset:
    image_dir = expand_user("images", images, "the COCO file's images") if images is not None else path.parent
    if not image_dir.is_dir():
        raise SamInputError(f"images: expected the folder of the COCO file's images, got {str(image_dir)!r}, which is not a folder.")
    try:
        coco = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise SamInputError(f"data: expected a COCO instance JSON in {path}, got a file that is not JSON ({error}).") from error
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or not isinstance(coco.get("annotations"), list):
        kinds = {list: "a JSON array", str: "a JSON string", int: "a JSON number", float: "a JSON number",
                 bool: "true or false", type(None): "null"}
        got = f"keys {sorted(coco)[:8]}" if isinstance(coco, dict) else kinds.get(type(coco), type(coco).__name__)
        raise SamInputError(f"data: expected a COCO instance JSON with 'images' and 'annotations' lists in {path}, "
                            f"got {got}.")
    for index, im in enumerate(coco["images"]):
        if not (isinstance(im, dict) and _is_id(im.get("id")) and isinstance(im.get("file_name"), str)):
            raise SamInputError(f"{path}: images[{index}]: expected an object with an id (a number or a string) and a file_name, got {describe(im)}.")
    for index, a in enumerate(coco["annotations"]):
        if not (isinstance(a, dict) and ("id" not in a or _is_id(a["id"]))):
            raise SamInputError(f"{path}: annotations[{index}]: expected an object with an image_id, a segmentation and an id (a number or a string), got {describe(a)}.")
    _no_duplicates([im["id"] for im in coco["images"]], f"{path}: images[].id")
    _no_duplicates([a["id"] for a in coco["annotations"] if "id" in a], f"{path}: annotations[].id")
    _no_two_entries_for_one_file(coco["images"], image_dir, path)
    by_image: dict = {str(im["id"]): [] for im in coco["images"]}  # ids as text, as _no_duplicates compares them
    crowds = 0
    for index, a in enumerate(coco["annotations"]):
        name = f"{path}: annotation {a['id']}" if "id" in a else f"{path}: annotations[{index}]"
        if not _is_id(a.get("image_id")) or str(a["image_id"]) not in by_image:
            raise SamInputError(f"{name}: expected an image_id listed in 'images', got {a.get('image_id')!r}.")
        if a.get("iscrowd"):  # a region of many objects, not one: COCO's own tools leave these out of training
            crowds += 1
            continue
        by_image[str(a["image_id"])].append((f"{name} (image {a['image_id']})", a.get("segmentation")))
    records = []
    for im in coco["images"]:
        file = image_dir / im["file_name"]
        size = _image_size(file)
        declared = (im.get("height"), im.get("width"))
        if None not in declared and declared != size:
            raise SamInputError(f"{path}: image {im['id']}: expected height {size[0]} and width {size[1]} (the size of {file}), got height {declared[0]!r} and width {declared[1]!r}.{_rotation_note(file)}")
        if by_image[str(im["id"])]:  # images without annotations teach nothing
            records.append(ImageRecord(str(im["id"]), file, size, ("coco", by_image[str(im["id"])])))
    left_out = len(coco["images"]) - len(records)
    return _checked(records, {"format": "coco", "path": str(path), "images": str(image_dir),
                              "images_without_annotations": left_out, "crowd_annotations_left_out": crowds})


def _no_two_entries_for_one_file(entries: list, image_dir: Path, path: Path) -> None:
    """Two image entries naming one file would train the masks of one on the picture of the other."""
    first: dict = {}
    for im in entries:
        file = os.path.normcase(os.path.abspath(image_dir / im["file_name"]))
        if file in first:
            raise SamInputError(f"{path}: images: expected one entry per file, got ids {first[file]!r} and {im['id']!r} "
                                f"both naming {im['file_name']!r} (the masks of one would be learned on the other's picture).")
        first[file] = im["id"]


def load_folder(root: Path) -> InstanceDataset:
    # Hidden files (a Mac's ._photo.jpg beside photo.jpg) are neither images nor masks.
    images = sorted(p for p in (root / "images").iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    _no_duplicates([p.stem for p in images], f"{root / 'images'}: image names (without suffix)")
    files = sorted(p for p in (root / "masks").iterdir() if p.is_file() and not p.name.startswith("."))
    mask_files = [p for p in files if p.suffix.lower() == ".png"]
    _no_duplicates([p.stem for p in mask_files], f"{root / 'masks'}: mask names (without suffix)")
    image_names = {p.stem: p.name for p in images}
    for mask in mask_files:  # a_1.png: the label map of a_1.png, or instance 1 of a.png?
        if mask.stem in image_names and _instance_of(mask) in image_names:
            raise SamInputError(f"{mask}: expected the mask of one image, got a name with two readings: the label map of {image_names[mask.stem]} and instance {mask.stem.rpartition('_')[2]} of {image_names[_instance_of(mask)]}. Rename one of the images.")
    label_maps = {m.stem: m for m in mask_files}
    instances_of: dict[str, list[Path]] = {}  # image stem -> its instance masks
    for mask in mask_files:
        instances_of.setdefault(_instance_of(mask), []).append(mask)
    others_of: dict[str, list[str]] = {}  # image stem -> the names of its masks in other formats
    for other in files:
        if other.suffix.lower() != ".png":
            for stem in {other.stem, _instance_of(other)}:
                others_of.setdefault(stem, []).append(other.name)
    records, used = [], set()
    for image in images:
        label_map, instances = label_maps.get(image.stem), instances_of.get(image.stem, [])
        if label_map and instances:
            raise SamInputError(f"{root / 'masks'}: expected either {label_map.name} (a label map) or {image.stem}_<k>.png (one per instance), got both.")
        others = others_of.get(image.stem, [])
        if not label_map and not instances:
            note = f" Only .png masks are read: got {others[:5]}." if others else ""
            raise SamInputError(f"{root / 'masks'}: expected {image.stem}_<k>.png or {image.stem}.png for {image}, got no such file (missing masks).{note}")
        if others:  # read without them, the image would train with some of its objects missing
            raise SamInputError(f"{root / 'masks'}: expected PNG masks only (a mask must keep exact pixels), got {others[:5]} beside the PNG masks of {image.name}. Save them as .png.")
        size = _image_size(image)
        masks = ("labels", label_map) if label_map else ("pngs", tuple(instances))
        used.update([label_map] if label_map else instances)
        records.append(ImageRecord(image.stem, image, size, masks))
    strays = [m.name for m in mask_files if m not in used]
    if strays:
        raise SamInputError(f"{root / 'masks'}: expected every mask to belong to an image in images/, got {strays[:5]} without one (missing images).")
    return _checked(records, {"format": "folder", "path": str(root)})


def _instance_of(mask: Path) -> str | None:
    """The image stem of an instance mask named <stem>_<k>.png; None for a name without _<k>."""
    stem, _, k = mask.stem.rpartition("_")
    return stem if stem and k.isdigit() else None


def _checked(records: list[ImageRecord], source: dict) -> InstanceDataset:
    if not records:
        raise SamInputError(f"data: expected at least one image with instance masks in {source['path']}, got none.")
    for record in records:
        read_masks(record)  # raises on a wrong size or an empty mask
    return InstanceDataset(records, {**source, "num_images": len(records)})


def _is_id(value) -> bool:
    """A COCO id: a number or a string (not a bool, which would equal 0 or 1)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _no_duplicates(values: list, what: str) -> None:
    """Values are compared as text, as ids are kept: 1 and "1" are one id."""
    seen: dict[str, list] = {}
    for value in values:
        seen.setdefault(str(value), []).append(value)
    repeated = sorted(text for text, found in seen.items() if len(found) > 1)
    if repeated:
        alike = [" and ".join(map(repr, seen[text])) for text in repeated if len(set(map(repr, seen[text]))) > 1]
        note = f" ({alike[0]} are one id: ids are kept as text)" if alike else ""
        raise SamInputError(f"{what}: expected unique ids, got duplicates {repeated[:5]}{note}.")


EXIF_ORIENTATION = 0x0112  # the tag a phone sets instead of turning the pixels; 5 to 8 swap width and height


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of the image as it is shown (upright by its EXIF orientation), from its header."""
    if not path.is_file():
        raise SamInputError(f"{path}: expected an image file, got no such file (missing file).")
    try:
        with Image.open(path) as picture:  # reads the header only
            turned = picture.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
            return (picture.width, picture.height) if turned else (picture.height, picture.width)
    except OSError as error:
        raise SamInputError(f"{path}: expected an image, got a file Pillow cannot read ({error}).") from error


def _rotation_note(path: Path) -> str:
    """For a size mismatch: a sentence when the image is stored turned and shown upright by its EXIF tag."""
    try:
        with Image.open(path) as picture:
            orientation = picture.getexif().get(EXIF_ORIENTATION, 1)
    except OSError:
        return ""
    if orientation in (1, None):
        return ""
    return (f" {path.name} is stored turned and carries an EXIF orientation ({orientation}): it is read upright, "
            "as viewers and the command line show it, so draw its masks on the upright picture.")


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8, upright by the EXIF orientation (as viewers, annotation tools and `segment` show it):
    any Pillow mode by its meaning (a 16-bit image is scaled, not clipped)."""
    try:
        with Image.open(path) as picture:
            return as_rgb(ImageOps.exif_transpose(picture))
    except OSError as error:  # cut short, damaged, or gone since the dataset was read
        raise SamInputError(f"{path}: expected an image, got a file Pillow cannot read ({error}).") from error


def read_masks(record: ImageRecord) -> np.ndarray:
    """(N, H, W) bool masks of one image, each checked: its size is the image's, and it is not empty."""
    kind, source = record.masks
    if kind == "labels":
        labels = _read_png(source, record, label_map=True)
        masks = [labels == v for v in np.unique(labels) if v != 0]
        names = [f"{source} (label {v})" for v in np.unique(labels) if v != 0]
        if not masks:
            raise SamInputError(f"{source}: expected a label map with at least one instance (a value other than 0), got only background (empty mask).")
    elif kind == "pngs":
        masks, names = [_read_png(p, record) > 0 for p in source], [str(p) for p in source]
    else:
        masks = [decode_segmentation(segmentation, record.size, name) for name, segmentation in source]
        names = [name for name, _ in source]
    for mask, name in zip(masks, names):
        if not mask.any():
            raise SamInputError(f"{name}: expected a mask with at least one pixel set, got an empty mask.")
    return np.stack(masks)


def _read_png(path: Path, record: ImageRecord, label_map: bool = False) -> np.ndarray:
    """A mask's values (H, W). An instance PNG reads as its alpha where that varies (a shape drawn in the alpha
    channel), else as its grey levels; a label map must have one channel (grey levels would merge colours) and
    no varying alpha, and in a palette one 255 marks boundaries: read as 0."""
    try:
        with Image.open(path) as picture:
            mode = picture.mode
            values = _label_values(picture, path) if label_map else _instance_values(picture)
    except OSError as error:  # not an image, or a damaged one
        raise SamInputError(f"{path}: expected a PNG mask, got a file Pillow cannot read ({error}).") from error
    if label_map and mode in ("P", "PA"):
        values = np.where(values == 255, 0, values)
    if values.ndim != 2 or values.shape != record.size:  # sizes written width x height, as everywhere
        raise SamInputError(f"{path}: expected a mask of {record.size[1]}x{record.size[0]} pixels (the size of {record.path}), got {values.shape[1]}x{values.shape[0]}.{_rotation_note(record.path)}")
    return values


def _varying_alpha(picture: Image.Image) -> np.ndarray | None:
    """The picture's alpha (H, W) uint8 if it has transparency (an alpha channel, or a transparent palette entry
    or colour) that is not one value everywhere; else None."""
    if "A" in picture.getbands():
        alpha = np.asarray(picture.getchannel("A"))
    elif "transparency" in picture.info and picture.mode in ("P", "L", "RGB"):
        alpha = np.asarray(picture.convert("RGBA").getchannel("A"))
    else:
        return None
    return alpha if alpha.size and alpha.min() != alpha.max() else None


def _instance_values(picture: Image.Image) -> np.ndarray:
    """An instance PNG's values (H, W), above 0 on the instance: its alpha where that varies, else its grey levels."""
    alpha = _varying_alpha(picture)
    if alpha is not None:
        return alpha
    return np.asarray(picture if picture.mode in LABEL_MODES else picture.convert("L"))


def _label_values(picture: Image.Image, path: Path) -> np.ndarray:
    """A label map's values (H, W): one channel, or a grey level or palette index (LA, PA) under an alpha that
    is one value everywhere. A palette's transparent entry is only how it is shown: the indices are the labels."""
    mode = picture.mode
    if mode in ("LA", "PA", "RGBA") and _varying_alpha(picture) is not None:
        raise SamInputError(f"{path}: expected a label map without transparency (its values are the labels), got mode {mode} with an alpha channel that varies. Save it without alpha (mode L or P), or save one PNG per instance.")
    if mode in ("LA", "PA"):
        return np.asarray(picture.getchannel(0))
    if mode not in LABEL_MODES:
        raise SamInputError(f"{path}: expected a single-channel label map (mode L, P, I;16, I or 1), got mode {mode}. Store each instance as one value (1, 2, ...), not as a colour, or save one PNG per instance.")
    return np.asarray(picture)


# ---------------------------------------------------------------------------------------------------------
# COCO segmentations: polygons and run-length encodings
# ---------------------------------------------------------------------------------------------------------
def decode_segmentation(segmentation, size: tuple[int, int], where: str) -> np.ndarray:
    """A COCO "segmentation" (polygons, or an RLE with compressed or uncompressed counts) -> (H, W) bool."""
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, size, where)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        return rle_dict_to_mask(segmentation, size, where)
    raise SamInputError(f"{where}: expected a segmentation given as polygons (a list) or an RLE (size and counts), got {str(segmentation)[:60]}.")


def polygons_to_mask(polygons: list, size: tuple[int, int], where: str) -> np.ndarray:
    """[[x1, y1, x2, y2, ...], ...] -> (H, W) bool, each polygon filled; one of fewer than three vertices adds nothing."""
    if polygons and all(is_number(v) for v in polygons):
        raise SamInputError(f"{where}: expected a list of polygons, each a list [x1, y1, x2, y2, ...], got one flat list of {len(polygons)} numbers; wrap it in a list: [[x1, y1, ...]].")
    canvas = Image.new("L", (size[1], size[0]), 0)
    for k, polygon in enumerate(polygons):
        if not (isinstance(polygon, (list, tuple)) and all(is_number(v) and math.isfinite(v) for v in polygon)):
            raise SamInputError(f"{where}: polygon {k}: expected a list of finite numbers [x1, y1, x2, y2, ...], got {str(polygon)[:60]}.")
        if len(polygon) % 2:
            raise SamInputError(f"{where}: polygon {k}: expected x, y pairs (an even number of coordinates), got {len(polygon)}.")
        if len(polygon) >= 6:
            ImageDraw.Draw(canvas).polygon([float(v) for v in polygon], fill=1)
    return np.asarray(canvas, dtype=bool)


def rle_dict_to_mask(rle: dict, size: tuple[int, int], where: str) -> np.ndarray:
    """{"size": [H, W], "counts": compressed string or run lengths} -> (H, W) bool."""
    h, w = size
    if not isinstance(rle["size"], (list, tuple)) or list(rle["size"]) != [h, w]:
        raise SamInputError(f"{where}: expected an RLE of size [{h}, {w}] (the image's), got {rle['size']!r}.")
    counts = rle["counts"]
    if isinstance(counts, str):
        if not _is_compressed_rle(counts):
            raise SamInputError(f"{where}: expected COCO's compressed RLE counts (characters '0' to 'o', the last one below 'P'), got {counts[:20]!r}.")
        counts = decode_rle_counts(counts)
    elif not (isinstance(counts, list) and all(map(is_int, counts))):
        raise SamInputError(f"{where}: expected RLE counts as a string (compressed) or a list of whole numbers (run lengths), got {describe(counts)}.")
    if counts and min(counts) < 0:
        raise SamInputError(f"{where}: expected RLE counts of 0 or more (run lengths), got {min(counts)}.")
    if sum(counts) != h * w:
        raise SamInputError(f"{where}: expected RLE counts that add up to {h * w} pixels, got {sum(counts)}.")
    return rle_to_mask({"size": [h, w], "counts": counts})


def _is_compressed_rle(text: str) -> bool:
    """Each character carries 5 bits plus "more follows" (from 'P' on): in '0'..'o', the last one ending a number."""
    return all("0" <= c <= "o" for c in text) and (not text or text[-1] < "P")


def decode_rle_counts(text: str) -> list[int]:
    """COCO's compressed counts -> run lengths. Each number is 5 bits per character (offset by 48, bit 6 says
    "more follows"), sign-extended; from the fourth on, a count is stored as its difference to the one two back."""
    counts, p = [], 0
    while p < len(text):
        x, shift, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p, shift = p + 1, shift + 5
            if not more and c & 0x10:
                x |= -1 << shift
        counts.append(x + counts[-2] if len(counts) > 2 else x)
    return counts


def encode_rle(mask: np.ndarray, compressed: bool = True) -> dict:
    """(H, W) bool mask -> COCO RLE (column-major runs, starting with a run of zeros)."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise input_error("mask", "a numpy array of shape (H, W)", mask, "For N masks encode each: mask[i].")
    flat = np.asarray(mask, dtype=bool).T.ravel()
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    if not compressed:
        return {"size": list(mask.shape), "counts": counts}
    chars = []
    for i, x in enumerate(counts):
        x = x - counts[i - 2] if i > 2 else x
        more = True
        while more:
            c, x = x & 0x1F, x >> 5
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr((c | 0x20 if more else c) + 48))
    return {"size": list(mask.shape), "counts": "".join(chars)}


# ---------------------------------------------------------------------------------------------------------
# Writing (for examples and tests)
# ---------------------------------------------------------------------------------------------------------
def save_folder_dataset(root: str | os.PathLike, samples: list[tuple[str, np.ndarray, np.ndarray]]) -> Path:
    """Write (name, image (H, W, 3) uint8, masks (N, H, W) bool) samples as root/images/NAME.png and one
    root/masks/NAME_k.png per instance. Returns root.

    Every sample is checked before anything is written, and a file already there must hold what would be written
    (a notebook cell run again writes the same files): other files are never replaced."""
    check_path("root", root, "a folder path (a str or a Path)")
    root = expand_user("root", root, "a folder path")
    if isinstance(samples, (str, bytes)) or not hasattr(samples, "__iter__"):
        raise input_error("samples", "a list of (name, image, masks) triples", samples)
    samples = list(samples)
    names = set()
    for i, sample in enumerate(samples):
        _check_sample(i, sample, names)
    if root.exists() and not root.is_dir():
        raise SamInputError(f"root: expected a folder, got {root}, which is a file.")
    other = [path for path, png in _sample_files(root, samples, only_existing=True)
             if path.is_symlink() or not path.is_file() or path.read_bytes() != png()]
    if other:
        more = f" and {len(other) - 3} more" if len(other) > 3 else ""
        raise SamInputError(f"root: expected a folder without other files under the names to write, got {root}, "
                            f"which holds {', '.join(str(p.relative_to(root)) for p in other[:3])}{more}; nothing "
                            "was written. Pass a new folder.")
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for path, png in _sample_files(root, samples):
        path.write_bytes(png())
    return root


def _sample_files(root: Path, samples: list, only_existing: bool = False):
    """(path, a function giving its PNG's bytes) for each file of the samples; only_existing: those already there.
    The PNGs are encoded one at a time, when asked for: a large dataset is never held in memory twice."""
    for name, image, masks in samples:
        items = [(root / "images" / f"{name}.png", image, False)]
        items += [(root / "masks" / f"{name}_{k}.png", mask, True) for k, mask in enumerate(masks)]
        for path, pixels, is_mask in items:
            if not only_existing or path.exists() or path.is_symlink():
                yield path, functools.partial(_png_bytes, pixels, is_mask)


def _png_bytes(pixels: np.ndarray, is_mask: bool) -> bytes:
    """The PNG of an image, or of a mask as 0 / 255."""
    buffer = io.BytesIO()
    Image.fromarray((pixels != 0).astype(np.uint8) * 255 if is_mask else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _check_sample(i: int, sample, names: set) -> None:
    """samples[i]: a new name usable as a file name, an (H, W, 3) uint8 image, (N, H, W) masks of 0/1 or bool."""
    if not (isinstance(sample, (tuple, list)) and len(sample) == 3):
        raise input_error(f"samples[{i}]", "a triple (name, image, masks)", sample)
    name, image, masks = sample
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise input_error(f"samples[{i}] name", "a non-empty file name without / or \\", name)
    if name in names:
        raise SamInputError(f"samples[{i}] name: expected a name no other sample has, got {name!r} twice.")
    names.add(name)
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise input_error(f"samples[{i}] image", "an (H, W, 3) uint8 numpy array", image,
                          "For floats in 0..1 pass (image * 255).round().astype(np.uint8).")
    h, w = image.shape[:2]
    if not (isinstance(masks, np.ndarray) and masks.ndim == 3 and masks.shape[1:] == (h, w)):
        hint = ""
        if isinstance(masks, np.ndarray) and masks.shape == (h, w):
            hint = "For one mask pass it as mask[None]."
        elif isinstance(masks, (list, tuple)):
            hint = "For a list of (H, W) masks pass np.stack(masks)."
        raise input_error(f"samples[{i}] masks", f"a numpy array of shape (N, {h}, {w}), the image's size", masks,
                          hint)
    if masks.dtype != bool and not (masks.dtype.kind in "iuf" and np.isin(masks, (0, 1)).all()):
        raise input_error(f"samples[{i}] masks", "bool masks (or values 0 and 1)", masks, "For 0/255 pass masks > 0.")
