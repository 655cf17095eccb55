"""Your own images and masks, read from the two formats people keep them in.

    COCO     an instance JSON ("images", "annotations"); each annotation's "segmentation" is a list of polygons
             or an RLE, with its counts compressed (COCO's string) or not (a list of run lengths)
    folder   images/ beside masks/: one PNG per instance named <image stem>_<k>.png, or one label-map PNG per
             image named <image stem>.png (0 is background, every other value one instance)

`load_dataset` reads either and checks everything it can before any training starts: a missing file, a mask
whose size differs from its image, an empty mask, a duplicated id. Each problem is a SamInputError that names
the file or argument, what was expected and what was found. Images and masks are read again from disk when a
sample is asked for, so a dataset of any size fits in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import SamInputError
from ..utils.images import as_rgb
from ..utils.amg import rle_to_mask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageRecord:
    """One image and where its instance masks come from.

    masks: ("coco", [segmentation, ...]) for COCO annotations, ("pngs", [path, ...]) for one PNG per instance,
    or ("labels", path) for a label map.
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
        `val_fraction` of the images (at least one, drawn with `seed`)."""
        n = len(self)
        if val_ids is not None:
            wanted = {str(v) for v in val_ids}
            names = [{r.image_id, r.path.name, r.path.stem} for r in self.records]
            unknown = sorted(v for v in wanted if not any(v in k for k in names))
            if unknown:
                raise SamInputError(f"val_ids: expected ids or file names of the dataset's images, got unknown {unknown[:5]}.")
            held = [i for i, k in enumerate(names) if k & wanted]
        else:
            if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
                raise SamInputError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}.")
            count = min(n - 1, max(1, round(val_fraction * n)))
            held = sorted(np.random.default_rng(seed).permutation(n)[:count].tolist())
        if not 0 < len(held) < n:
            raise SamInputError(f"val_ids: expected to hold out some but not all of the {n} images, got {len(held)}.")
        train = [i for i in range(n) if i not in set(held)]
        return self.subset(train), self.subset(held)


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------
def load_dataset(data: str | os.PathLike, images: str | os.PathLike | None = None) -> InstanceDataset:
    """A COCO instance JSON (`data`, with its images in `images`, default: beside the JSON) or a folder with
    images/ and masks/ (`data`). Everything is checked here; see the module docstring."""
    data = Path(data)
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
    image_dir = Path(images) if images is not None else path.parent
    if not image_dir.is_dir():
        raise SamInputError(f"images: expected the folder of the COCO file's images, got {str(image_dir)!r}, which is not a folder.")
    try:
        coco = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise SamInputError(f"data: expected a COCO instance JSON in {path}, got a file that is not JSON ({error}).") from error
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or not isinstance(coco.get("annotations"), list):
        raise SamInputError(f"data: expected a COCO instance JSON with 'images' and 'annotations' lists in {path}, got keys {sorted(coco)[:8] if isinstance(coco, dict) else type(coco).__name__}.")
    _no_duplicates([im.get("id") for im in coco["images"]], f"{path}: images[].id")
    _no_duplicates([a.get("id") for a in coco["annotations"] if "id" in a], f"{path}: annotations[].id")
    by_image: dict = {im.get("id"): [] for im in coco["images"]}
    for a in coco["annotations"]:
        if a.get("image_id") not in by_image:
            raise SamInputError(f"{path}: annotation {a.get('id')}: expected an image_id listed in 'images', got {a.get('image_id')!r}.")
        by_image[a["image_id"]].append(a.get("segmentation"))
    records = []
    for im in coco["images"]:
        file = image_dir / str(im.get("file_name"))
        size = _image_size(file)
        declared = (im.get("height"), im.get("width"))
        if None not in declared and tuple(declared) != size:
            raise SamInputError(f"{path}: image {im['id']}: expected height x width {size[0]}x{size[1]} (the size of {file}), got {declared[0]}x{declared[1]}.")
        if by_image[im["id"]]:  # images without annotations teach nothing
            records.append(ImageRecord(str(im["id"]), file, size, ("coco", by_image[im["id"]])))
    return _checked(records, {"format": "coco", "path": str(path), "images": str(image_dir)})


def load_folder(root: Path) -> InstanceDataset:
    images = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    _no_duplicates([p.stem for p in images], f"{root / 'images'}: image names (without suffix)")
    mask_files = sorted((root / "masks").glob("*.png"))
    records, used = [], set()
    for image in images:
        label_map = root / "masks" / f"{image.stem}.png"
        instances = [m for m in mask_files if m.stem.rsplit("_", 1)[0] == image.stem and m.stem.rsplit("_", 1)[-1].isdigit()]
        if label_map.exists() and instances:
            raise SamInputError(f"{root / 'masks'}: expected either {label_map.name} (a label map) or {image.stem}_<k>.png (one per instance), got both.")
        if not label_map.exists() and not instances:
            raise SamInputError(f"{root / 'masks'}: expected {image.stem}_<k>.png or {image.stem}.png for {image}, got no such file (missing masks).")
        size = _image_size(image)
        masks = ("labels", label_map) if label_map.exists() else ("pngs", tuple(instances))
        used.update([label_map] if label_map.exists() else instances)
        records.append(ImageRecord(image.stem, image, size, masks))
    strays = [m.name for m in mask_files if m not in used]
    if strays:
        raise SamInputError(f"{root / 'masks'}: expected every mask to belong to an image in images/, got {strays[:5]} without one (missing images).")
    return _checked(records, {"format": "folder", "path": str(root)})


def _checked(records: list[ImageRecord], source: dict) -> InstanceDataset:
    if not records:
        raise SamInputError(f"data: expected at least one image with instance masks in {source['path']}, got none.")
    for record in records:
        read_masks(record)  # raises on a wrong size or an empty mask
    return InstanceDataset(records, {**source, "num_images": len(records)})


def _no_duplicates(values: list, what: str) -> None:
    seen, repeated = set(), set()
    for value in values:
        (repeated if value in seen else seen).add(value)
    if repeated:
        raise SamInputError(f"{what}: expected unique ids, got duplicates {sorted(map(str, repeated))[:5]}.")


def _image_size(path: Path) -> tuple[int, int]:
    if not path.is_file():
        raise SamInputError(f"images: expected an image file at {path}, got no such file (missing file).")
    try:
        with Image.open(path) as picture:  # reads the header only
            return picture.height, picture.width
    except OSError as error:
        raise SamInputError(f"images: expected an image at {path}, got a file Pillow cannot read ({error}).") from error


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 in the stored orientation, as the masks are: any Pillow mode by its meaning (a 16-bit
    image is scaled, not clipped)."""
    with Image.open(path) as picture:
        return as_rgb(picture)


def read_masks(record: ImageRecord) -> np.ndarray:
    """(N, H, W) bool masks of one image, each checked: its size is the image's, and it is not empty."""
    kind, source = record.masks
    if kind == "labels":
        labels = _read_png(source, record)
        masks = [labels == v for v in np.unique(labels) if v != 0]
        names = [f"{source} (label {v})" for v in np.unique(labels) if v != 0]
        if not masks:
            raise SamInputError(f"{source}: expected a label map with at least one instance (a value other than 0), got only background (empty mask).")
    elif kind == "pngs":
        masks, names = [_read_png(p, record) > 0 for p in source], [str(p) for p in source]
    else:
        masks = [decode_segmentation(s, record.size, f"image {record.image_id}") for s in source]
        names = [f"image {record.image_id}, annotation {k}" for k in range(len(source))]
    for mask, name in zip(masks, names):
        if not mask.any():
            raise SamInputError(f"{name}: expected a mask with at least one pixel set, got an empty mask.")
    return np.stack(masks)


def _read_png(path: Path, record: ImageRecord) -> np.ndarray:
    with Image.open(path) as picture:
        values = np.asarray(picture.convert("L") if picture.mode not in ("L", "I", "I;16", "P", "1") else picture)
    if values.ndim != 2 or values.shape != record.size:
        raise SamInputError(f"{path}: expected a mask of {record.size[0]}x{record.size[1]} pixels (the size of {record.path}), got {values.shape[0]}x{values.shape[1]}.")
    return values


# ---------------------------------------------------------------------------------------------------------
# COCO segmentations: polygons and run-length encodings
# ---------------------------------------------------------------------------------------------------------
def decode_segmentation(segmentation, size: tuple[int, int], where: str) -> np.ndarray:
    """A COCO "segmentation" (polygons, or an RLE with compressed or uncompressed counts) -> (H, W) bool."""
    h, w = size
    if isinstance(segmentation, list):
        canvas = Image.new("L", (w, h), 0)
        for polygon in segmentation:
            if len(polygon) >= 6:  # at least three (x, y) vertices
                ImageDraw.Draw(canvas).polygon([float(v) for v in polygon], fill=1)
        return np.asarray(canvas, dtype=bool)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [h, w]:
            raise SamInputError(f"{where}: expected an RLE of size [{h}, {w}] (the image's), got {segmentation['size']}.")
        counts = segmentation["counts"]
        counts = decode_rle_counts(counts) if isinstance(counts, str) else list(counts)
        if sum(counts) != h * w:
            raise SamInputError(f"{where}: expected RLE counts that add up to {h * w} pixels, got {sum(counts)}.")
        return rle_to_mask({"size": [h, w], "counts": counts})
    raise SamInputError(f"{where}: expected a segmentation given as polygons (a list) or an RLE (size and counts), got {str(segmentation)[:60]}.")


def decode_rle_counts(text: str) -> list[int]:
    """COCO's compressed counts -> run lengths. Each number is 5 bits per character (offset by 48, bit 6 says
    "more follows"), sign-extended; from the third on, a count is stored as its difference to the one two back."""
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
    root/masks/NAME_k.png per instance. Returns root."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for name, image, masks in samples:
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        for k, mask in enumerate(masks):
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{name}_{k}.png")
    return root
