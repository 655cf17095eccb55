"""Fine-tuning refuses bad input with one clear sentence: a folder or COCO dataset that cannot be read one way
only, and `finetune` arguments of the wrong kind, all refused before the run folder is written.

The datasets are a few pixels each, written to disk; the one model that trains is the bundled small one.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from conftest import star_dataset
from sam_from_scratch.cli import main
from sam_from_scratch.errors import SamInputError
from sam_from_scratch.training.datasets import load_dataset
from sam_from_scratch.training.finetune import finetune

IMAGE = np.full((8, 10, 3), 100, np.uint8)
TOP = np.zeros((8, 10), np.uint8)
TOP[:4] = 255
QUICK = dict(model="tiny", steps=1, batch=2, device="cpu", val_ids=["star_0"], prompts_per_image=1, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stars(tmp_path_factory):
    """Three star scenes as images/ + masks/."""
    return star_dataset(tmp_path_factory.mktemp("stars"), 3)


def folder(root, images, masks):
    """root/images and root/masks from {file name: array or Pillow image}; returns root."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, array in images.items():
        Image.fromarray(array).save(root / "images" / name)
    for name, mask in masks.items():
        (mask if isinstance(mask, Image.Image) else Image.fromarray(mask)).save(root / "masks" / name)
    return root


# ---- folder datasets -------------------------------------------------------------------------------------------------


def test_a_mask_name_that_reads_two_ways_is_refused(tmp_path):
    """masks/a_1.png is instance 1 of images/a.png and the label map of images/a_1.png."""
    root = folder(tmp_path, {"a.png": IMAGE, "a_1.png": IMAGE}, {"a_1.png": TOP})
    with pytest.raises(SamInputError, match=r"a_1\.png: expected the mask of one image, got a name with two "
                                            r"readings: the label map of a_1\.png and instance 1 of a\.png"):
        load_dataset(root)


def test_an_image_named_by_a_number_reads_its_label_map(tmp_path):
    labels = (TOP > 0).astype(np.uint8)
    root = folder(tmp_path, {"5.png": IMAGE}, {"5.png": labels})  # "5" looked like an instance number
    _, masks = load_dataset(root)[0]
    assert masks.shape == (1, 8, 10) and (masks[0] == (labels == 1)).all()


def test_a_colour_label_map_is_refused(tmp_path):
    """Grey levels would merge colours of equal brightness: (255, 0, 0) and (0, 130, 0) are both 76."""
    labels = np.zeros((8, 10, 3), np.uint8)
    labels[:4], labels[4:] = (255, 0, 0), (0, 130, 0)
    root = folder(tmp_path, {"b.png": IMAGE}, {"b.png": labels})
    with pytest.raises(SamInputError, match=r"b\.png: expected a single-channel label map \(mode L, P, I;16, I or 1\)"
                                            r", got mode RGB"):
        load_dataset(root)


def test_255_in_a_palette_label_map_marks_boundaries_not_an_instance(tmp_path):
    """VOC's label maps are palette images with 255 around each object; in a grey map 255 is an instance."""
    labels = np.where(TOP > 0, 1, 255).astype(np.uint8)
    labels[0] = 0
    palette = Image.fromarray(labels, mode="L").convert("P")
    palette.putpalette([0, 0, 0, 128, 0, 0] + [224, 224, 192] * 254)
    root = folder(tmp_path / "voc", {"k.png": IMAGE}, {"k.png": palette})
    _, masks = load_dataset(root)[0]
    assert masks.shape == (1, 8, 10) and (masks[0] == (labels == 1)).all()
    root = folder(tmp_path / "grey", {"k.png": IMAGE}, {"k.png": TOP})  # one object, 0 and 255
    _, masks = load_dataset(root)[0]
    assert masks.shape == (1, 8, 10) and (masks[0] == (TOP > 0)).all()


def test_a_mask_that_is_not_an_image_is_named(tmp_path):
    root = folder(tmp_path, {"i.png": IMAGE}, {})
    (root / "masks" / "i_0.png").write_text("not a picture")
    with pytest.raises(SamInputError, match=r"i_0\.png: expected a PNG mask, got a file Pillow cannot read"):
        load_dataset(root)


def test_a_mask_of_another_size_gives_both_sizes_as_width_x_height(tmp_path):
    """IMAGE is 10 pixels wide and 8 high; the mask, 5 wide and 4 high (as in "a 600x400 image")."""
    root = folder(tmp_path, {"w.png": IMAGE}, {"w_0.png": TOP[::2, ::2]})  # one PNG per instance
    with pytest.raises(SamInputError, match=rf"w_0\.png: expected a mask of 10x8 pixels \(the size of "
                                            rf"{re.escape(str(root / 'images' / 'w.png'))}\), got 5x4\.$"):
        load_dataset(root)
    labels = folder(tmp_path / "labels", {"v.png": IMAGE}, {"v.png": (TOP[:, :5] > 0).astype(np.uint8)})  # a label map
    with pytest.raises(SamInputError, match=r"v\.png: expected a mask of 10x8 pixels \(the size of .*v\.png\), got 5x8\.$"):
        load_dataset(labels)


def test_mask_suffixes_are_read_in_any_case_and_only_png_is_read(tmp_path):
    root = folder(tmp_path / "upper", {"h.png": IMAGE}, {"h_0.PNG": TOP})
    assert load_dataset(root)[0][1].shape == (1, 8, 10)
    root = folder(tmp_path / "jpeg", {"g.png": IMAGE}, {"g_0.jpg": TOP})
    with pytest.raises(SamInputError, match=r"\(missing masks\)\. Only \.png masks are read: got \['g_0\.jpg'\]"):
        load_dataset(root)


# ---- COCO datasets ---------------------------------------------------------------------------------------------------


def coco_file(tmp_path, segmentation=None, images=None, annotations=None):
    """coco.json beside a.png (8 x 10): one image and one annotation (id 7) unless given."""
    Image.fromarray(IMAGE).save(tmp_path / "a.png")
    images = images or [{"id": 1, "file_name": "a.png", "height": 8, "width": 10}]
    annotations = annotations or [{"id": 7, "image_id": 1, "segmentation": segmentation}]
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


@pytest.mark.parametrize("segmentation, message", [
    ([[1, 1, 8, 1, 8, 6, 1]], r"polygon 0: expected x, y pairs \(an even number of coordinates\), got 7"),
    ([1, 1, 8, 1, 8, 6, 1, 6], r"expected a list of polygons, each a list \[x1, y1, x2, y2, \.\.\.\], got one flat "
                               r"list of 8 numbers"),
    ([[1, 1, 8, 1, 8, float("nan"), 1, 6]], r"polygon 0: expected a list of finite numbers"),
    ([["1", "1", "8", "1", "8", "6"]], r"polygon 0: expected a list of finite numbers"),
    ({"size": [8, 10], "counts": 5}, r"expected RLE counts as a string \(compressed\) or a list of whole numbers "
                                     r"\(run lengths\), got int 5"),
    ({"size": [8, 10], "counts": [10.5, 69.5]}, r"expected RLE counts as a string .*, got list \[10\.5, 69\.5\]"),
    ({"size": [8, 10], "counts": [-10, 50, 40]}, r"expected RLE counts of 0 or more \(run lengths\), got -10"),
    ({"size": [8, 10], "counts": " "}, r"expected COCO's compressed RLE counts"),
    ({"size": 80, "counts": [80]}, r"expected an RLE of size \[8, 10\] \(the image's\), got 80"),
])
def test_a_bad_coco_segmentation_names_the_file_and_the_annotation(tmp_path, segmentation, message):
    with pytest.raises(SamInputError, match=r"coco\.json: annotation 7 \(image 1\): " + message):
        load_dataset(coco_file(tmp_path, segmentation))


SQUARE = [[1, 1, 8, 1, 8, 6, 1, 6]]


@pytest.mark.parametrize("images, annotations, message", [
    (None, [5], r"annotations\[0\]: expected an object with an image_id, a segmentation and an id .*, got int 5"),
    (None, [{"id": [7], "image_id": 1, "segmentation": SQUARE}], r"annotations\[0\]: expected an object .*\[7\]"),
    (None, [{"id": 7, "image_id": [1], "segmentation": SQUARE}],
     r"annotation 7: expected an image_id listed in 'images', got \[1\]"),
    (["a.png"], None, r"images\[0\]: expected an object with an id \(a number or a string\) and a file_name, "
                      r"got str 'a.png'"),
    ([{"id": [1], "file_name": "a.png"}], None, r"images\[0\]: expected an object with an id"),
    ([{"id": 1}], None, r"images\[0\]: expected an object with an id .* and a file_name, got dict \{'id': 1\}"),
    ([{"id": 1, "file_name": "a.png", "height": "8", "width": "10"}], None,
     r"image 1: expected height 8 and width 10 \(the size of .*a\.png\), got height '8' and width '10'"),
])
def test_a_bad_coco_entry_names_the_file_and_the_entry(tmp_path, images, annotations, message):
    annotations = annotations or [{"id": 7, "image_id": 1, "segmentation": SQUARE}]
    with pytest.raises(SamInputError, match=r"coco\.json: " + message):
        load_dataset(coco_file(tmp_path, images=images, annotations=annotations))


def test_the_command_names_the_annotation_of_a_bad_polygon(tmp_path, capsys):
    path = coco_file(tmp_path, [[1, 1, 8, 1, 8, 6, 1]])
    code = main(["finetune", "--model", "tiny", "--data", str(path), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 2 and "coco.json: annotation 7 (image 1): polygon 0: expected x, y pairs" in capsys.readouterr().err


# ---- the split -------------------------------------------------------------------------------------------------------


def test_val_ids_must_be_a_list(stars):
    data = load_dataset(stars)
    with pytest.raises(SamInputError, match=r"^val_ids: expected a list of image ids or file names, got str 'star_1'\. "
                                            r"For one image: \['star_1'\]"):
        data.split(val_ids="star_1")
    with pytest.raises(SamInputError, match=r"^val_ids: expected a list of image ids or file names, got int 1"):
        data.split(val_ids=1)


def test_one_image_is_too_few_to_hold_one_out(tmp_path):
    root = folder(tmp_path, {"f.png": IMAGE}, {"f_0.png": TOP})
    with pytest.raises(SamInputError, match=r"^data: expected at least 2 images \(one is held out for validation\), "
                                            r"got 1\.$"):
        load_dataset(root).split()
    with pytest.raises(SamInputError, match=r"^data: expected at least 2 images"):
        finetune("tiny", root, out=tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()


# ---- finetune's arguments --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argument, value, message", [
    ("train_prompt_encoder", "no", r"^train_prompt_encoder: expected True or False, got str 'no'"),
    ("progress", "yes", r"^progress: expected True or False, got str 'yes'"),
    ("seed", "x", r"^seed: expected an integer >= 0, got str 'x'"),
    ("seed", -1, r"^seed: expected an integer >= 0, got int -1"),
    ("data", None, r"^data: expected a COCO \.json file or a folder with images/ and masks/, got NoneType None"),
    ("data", "", r"^data: expected a COCO \.json file or a folder with images/ and masks/, got str ''"),
    ("images", 5, r"^images: expected the folder of the COCO file's images \(a path\) or None, got int 5"),
    ("out", None, r"^out: expected the run folder \(a path\), got NoneType None"),
    ("checkpoint", 5, r"^checkpoint: expected a checkpoint file \(a path\) or None, got int 5"),
    ("model", "vitb", r"^model: expected 'tiny', 'vit_b', 'vit_l', 'vit_h' or a path to a checkpoint, got 'vitb'"),
    ("model", 3, r"^model: expected tiny, vit_b, vit_l, vit_h, a checkpoint path or a Sam, got int"),
    ("epochs", 0, r"^epochs: expected a finite number > 0, got int 0"),
    ("val_fraction", "x", r"^val_fraction: expected a number in \(0, 1\), got str 'x'"),
    ("replay", 3, r"^replay: expected a COCO \.json file or a folder with images/ and masks/, got int 3"),
    ("replay_images", "photos", r"^replay_images: expected None without a replay dataset, got 'photos'"),
])
def test_a_bad_argument_is_refused_before_the_run_folder_is_written(stars, tmp_path, argument, value, message):
    arguments = {**QUICK, "out": tmp_path / "run", argument: value}
    if argument == "epochs":
        del arguments["steps"]
    with pytest.raises(SamInputError, match=message):
        finetune(data=arguments.pop("data", stars), **arguments)
    assert not (tmp_path / "run").exists()


def test_after_a_refused_argument_the_same_folder_takes_the_run(stars, tmp_path):
    """A bad switch used to fail inside torch after run.json was written, and the folder then refused the run."""
    with pytest.raises(SamInputError, match="^train_prompt_encoder"):
        finetune(data=stars, out=tmp_path / "run", **{**QUICK, "train_prompt_encoder": "no"})
    card = finetune(data=stars, out=tmp_path / "run", **{**QUICK, "train_prompt_encoder": 1})
    assert card["settings"]["train_prompt_encoder"] is True


def test_numpy_numbers_are_recorded_as_plain_ones(stars, tmp_path):
    arguments = {**QUICK, "steps": np.int64(1), "batch": np.int64(2), "seed": np.int64(3), "lr": np.float32(1e-3)}
    card = finetune(data=stars, out=tmp_path / "run", **arguments)
    assert card["settings"]["seed"] == 3 and card["settings"]["batch"] == 2 and card["steps"] == 1
    assert card["settings"]["lr"] == pytest.approx(1e-3)
