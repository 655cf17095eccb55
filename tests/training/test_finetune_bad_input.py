"""Fine-tuning refuses bad input with one clear sentence: a folder or COCO dataset that cannot be read one way
only, and `finetune` arguments of the wrong kind, all refused before the run folder is written.

The datasets are a few pixels each, written to disk; the one model that trains is the bundled small one.
"""

from __future__ import annotations

import importlib
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import star_dataset
from sam_from_scratch.cli import main
from sam_from_scratch.errors import SamInputError
from sam_from_scratch.training.datasets import load_dataset
from sam_from_scratch.training.finetune import finetune

# the module itself: sam_from_scratch.training exports the function `finetune` under the same name
ft = importlib.import_module("sam_from_scratch.training.finetune")

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


def with_alpha(mode, grey, alpha):
    """An instance PNG of `mode` (RGBA or LA) whose colour is `grey` everywhere and whose alpha is `alpha`."""
    bands = 4 if mode == "RGBA" else 2
    pixels = np.full((*alpha.shape, bands), grey, np.uint8)
    pixels[..., -1] = alpha
    return Image.fromarray(pixels, mode)


@pytest.mark.parametrize("mode, grey", [("RGBA", 255), ("RGBA", 0), ("LA", 255), ("LA", 0)])
def test_an_instance_drawn_in_the_alpha_channel_is_read_from_it(tmp_path, mode, grey):
    """White everywhere read as grey levels would be the whole image; black, an empty mask."""
    root = folder(tmp_path, {"c.png": IMAGE}, {"c_0.png": with_alpha(mode, grey, TOP)})
    _, masks = load_dataset(root)[0]
    assert masks.shape == (1, 8, 10) and (masks[0] == (TOP > 0)).all()


def test_an_instance_png_with_a_transparent_palette_entry_is_read_from_its_transparency(tmp_path):
    """The instance is entry 0 (opaque black), the rest entry 1 (transparent): not the entries above 0."""
    palette = Image.fromarray((TOP == 0).astype(np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 1
    root = folder(tmp_path, {"t.png": IMAGE}, {"t_0.png": palette})
    assert Image.open(root / "masks" / "t_0.png").info.get("transparency") == 1
    _, masks = load_dataset(root)[0]
    assert (masks[0] == (TOP > 0)).all()


def test_an_instance_png_under_an_even_alpha_is_read_from_its_grey_levels(tmp_path):
    root = folder(tmp_path, {"d.png": IMAGE}, {"d_0.png": Image.fromarray(np.stack([TOP] * 3 + [np.full_like(TOP, 255)], -1))})
    _, masks = load_dataset(root)[0]
    assert (masks[0] == (TOP > 0)).all()


def test_a_label_map_whose_alpha_varies_is_refused_and_an_even_alpha_is_read_through(tmp_path):
    labels = (TOP > 0).astype(np.uint8) * 2
    varying = np.stack([labels, TOP], -1)  # the labels, and an alpha that varies
    root = folder(tmp_path / "varying", {"e.png": IMAGE}, {"e.png": Image.fromarray(varying, "LA")})
    with pytest.raises(SamInputError, match=r"e\.png: expected a label map without transparency \(its values are the "
                                            r"labels\), got mode LA with an alpha channel that varies"):
        load_dataset(root)
    even = np.stack([labels, np.full_like(TOP, 255)], -1)
    root = folder(tmp_path / "even", {"e.png": IMAGE}, {"e.png": Image.fromarray(even, "LA")})
    _, masks = load_dataset(root)[0]
    assert masks.shape == (1, 8, 10) and (masks[0] == (labels == 2)).all()


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


def test_a_mask_of_another_format_beside_png_masks_is_refused(tmp_path):
    """Read without it, the image would train with one of its objects missing."""
    root = folder(tmp_path, {"g.png": IMAGE}, {"g_0.png": TOP, "g_1.jpg": TOP})
    with pytest.raises(SamInputError, match=r"masks: expected PNG masks only \(a mask must keep exact pixels\), got "
                                            r"\['g_1\.jpg'\] beside the PNG masks of g\.png\. Save them as \.png\.$"):
        load_dataset(root)


def test_hidden_files_are_neither_images_nor_masks(tmp_path):
    root = folder(tmp_path, {"g.png": IMAGE}, {"g_0.png": TOP})
    (root / "images" / "._g.png").write_bytes(b"a Mac's resource fork")
    (root / "masks" / "._g_0.png").write_bytes(b"a Mac's resource fork")
    assert load_dataset(root).image_ids == ["g"]


def test_an_image_turned_by_its_exif_tag_is_read_upright_and_a_mask_of_the_stored_size_is_explained(tmp_path):
    """A phone stores a portrait photo sideways with EXIF orientation 6; viewers, annotation tools and `segment`
    show it upright, so its masks are drawn upright."""
    stored = np.zeros((8, 10, 3), np.uint8)
    stored[:, :3] = 255  # the left columns as stored: the top rows once turned upright (orientation 6)
    root = tmp_path / "upright"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(root / "images" / "p.jpg", exif=exif, quality=100)
    upright = np.zeros((10, 8), np.uint8)
    upright[:3] = 255
    Image.fromarray(upright).save(root / "masks" / "p_0.png")
    image, masks = load_dataset(root)[0]
    assert image.shape == (10, 8, 3) and masks.shape == (1, 10, 8)
    assert image[:3].mean() > 200 and image[4:].mean() < 50  # the bright band is on top, as the mask says
    Image.fromarray(np.zeros((8, 10), np.uint8) + 255).save(root / "masks" / "p_0.png")  # drawn on the stored pixels
    with pytest.raises(SamInputError, match=r"p_0\.png: expected a mask of 8x10 pixels \(the size of .*p\.jpg\), got "
                                            r"10x8\. p\.jpg is stored turned and carries an EXIF orientation \(6\): it "
                                            r"is read upright, as viewers and the command line show it, so draw its "
                                            r"masks on the upright picture\.$"):
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


def test_ids_1_and_text_1_are_one_id_and_refused_as_duplicates(tmp_path):
    """Both become the image id "1": annotations of one would count as the other's."""
    images = [{"id": 1, "file_name": "a.png"}, {"id": "1", "file_name": "a.png"}]
    annotations = [{"id": 7, "image_id": 1, "segmentation": SQUARE}, {"id": 8, "image_id": "1", "segmentation": SQUARE}]
    with pytest.raises(SamInputError, match=r"coco\.json: images\[\]\.id: expected unique ids, got duplicates \['1'\] "
                                            r"\(1 and '1' are one id: ids are kept as text\)"):
        load_dataset(coco_file(tmp_path, images=images, annotations=annotations))


def test_two_coco_entries_naming_one_file_are_refused(tmp_path):
    """The masks of the second image would be learned on the picture of the first."""
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "./a.png"}]
    annotations = [{"id": 7, "image_id": 1, "segmentation": SQUARE}, {"id": 8, "image_id": 2, "segmentation": SQUARE}]
    with pytest.raises(SamInputError, match=r"coco\.json: images: expected one entry per file, got ids 1 and 2 both "
                                            r"naming '\./a\.png' \(the masks of one would be learned on the other's picture\)\.$"):
        load_dataset(coco_file(tmp_path, images=images, annotations=annotations))


def test_crowd_regions_are_left_out_and_counted(tmp_path):
    """A COCO crowd region (iscrowd 1) covers many objects: not one instance to learn."""
    Image.fromarray(IMAGE).save(tmp_path / "b.png")
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}, {"id": 3, "file_name": "b.png"}]
    annotations = [{"id": 7, "image_id": 1, "segmentation": SQUARE},
                   {"id": 8, "image_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3, 0, 3]], "iscrowd": 1},
                   {"id": 9, "image_id": 2, "segmentation": SQUARE, "iscrowd": 1}]
    with pytest.raises(SamInputError, match="expected one entry per file"):  # the same file twice: refused first
        load_dataset(coco_file(tmp_path, images=images, annotations=annotations))
    dataset = load_dataset(coco_file(tmp_path, images=images[:2], annotations=annotations))
    assert dataset.image_ids == ["1"] and dataset[0][1].shape == (1, 8, 10)  # image 2 had only a crowd region
    assert dataset.source["crowd_annotations_left_out"] == 2 and dataset.source["images_without_annotations"] == 1


def test_an_image_id_and_its_text_name_one_image(tmp_path):
    """Ids are kept as text: an annotation's image_id 1 names the image whose id is "1"."""
    images = [{"id": "1", "file_name": "a.png"}]
    dataset = load_dataset(coco_file(tmp_path, images=images, annotations=[{"id": 7, "image_id": 1, "segmentation": SQUARE}]))
    assert dataset.image_ids == ["1"]


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


def numbered_coco(tmp_path, file_names):
    """coco.json with ids 1, 2, ... for the images `file_names` (beside it or in subfolders), one square each."""
    for name in file_names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(IMAGE).save(tmp_path / name)
    images = [{"id": i + 1, "file_name": name} for i, name in enumerate(file_names)]
    annotations = [{"id": i + 1, "image_id": i + 1, "segmentation": SQUARE} for i in range(len(file_names))]
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return load_dataset(path)


def test_val_ids_name_an_image_by_its_id_before_its_file_name(tmp_path):
    """Ids 1..4 on files 0.png..3.png: 1 is the image of id 1 (0.png), not also the file 1.png."""
    data = numbered_coco(tmp_path, ["0.png", "1.png", "2.png", "3.png"])
    held = data.split(val_ids=[1])[1]
    assert held.image_ids == ["1"] and [r.path.name for r in held.records] == ["0.png"]
    assert data.split(val_ids=["3.png"])[1].image_ids == ["4"]  # no id 3.png: the file of that name
    with pytest.raises(SamInputError, match=r"^val_ids: expected ids or file names of the dataset's images, got "
                                            r"unknown \['5'\]"):
        data.split(val_ids=["5"])


def test_a_val_id_naming_several_images_is_refused_with_the_images(tmp_path):
    data = numbered_coco(tmp_path, ["day/x.png", "night/x.png", "x.jpg"])
    with pytest.raises(SamInputError, match=r"^val_ids: expected values that each name one image, got 'x\.png', the "
                                            r"file name of 2 images: \[.*day/x\.png', .*night/x\.png'\]\. Give their ids"):
        data.split(val_ids=["x.png"])
    with pytest.raises(SamInputError, match=r"^val_ids: .* got 'x', the file name without suffix of 3 images"):
        data.split(val_ids=["x"])
    assert data.split(val_ids=["x.jpg", 2])[1].image_ids == ["2", "3"]


def test_one_image_is_too_few_to_hold_one_out(tmp_path):
    root = folder(tmp_path, {"f.png": IMAGE}, {"f_0.png": TOP})
    with pytest.raises(SamInputError, match=r"^data: expected at least 2 images \(one is held out for validation\), "
                                            r"got 1\.$"):
        load_dataset(root).split()
    with pytest.raises(SamInputError, match=r"^data: expected at least 2 images"):
        finetune("tiny", root, out=tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}]  # b.png has no annotation
    Image.fromarray(IMAGE).save(tmp_path / "b.png")
    with pytest.raises(SamInputError, match=r"got 1 \(1 more listed in .*coco\.json have no annotation\)\.$"):
        load_dataset(coco_file(tmp_path, SQUARE, images=images)).split()


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
    ("val_fraction", 0.5, r"^val_fraction, val_ids: expected one of them, got both \(val_fraction=0\.5 and val_ids\)\.$"),
    ("lr", 0, r"^lr: expected a finite number > 0, got int 0"),
    ("lr", float("nan"), r"^lr: expected a finite number > 0, got float nan"),
    ("lr", float("inf"), r"^lr: expected a finite number > 0, got float inf"),
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


# ---- the run folder, and a run that cannot go on -------------------------------------------------------------------


@pytest.mark.parametrize("text, why", [
    ('["my experiment notes"]', r"a JSON list without the settings finetune records"),
    ('{"notes": 1}', r"a JSON dict without the settings finetune records"),
    ("not json", r"not readable as JSON: Expecting value"),
])
def test_a_run_json_finetune_did_not_write_is_refused_and_kept(stars, tmp_path, text, why):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(SamInputError, match=rf"^out: expected an empty folder or a fine-tuning run folder, got "
                                            rf"{re.escape(str(tmp_path))}, whose run\.json is not one finetune wrote "
                                            rf"\({why}.*\); fine-tuning never overwrites files it did not create\.$"):
        finetune(data=stars, out=tmp_path, **QUICK)
    assert (tmp_path / "run.json").read_text() == text and [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_truncated_image_is_named_when_it_is_read(tmp_path):
    """Reading the dataset reads each image's header only; the pixels are read when the image is embedded."""
    root = star_dataset(tmp_path / "stars", 3)
    Image.open(root / "images" / "star_2.png").convert("RGB").save(root / "images" / "star_2.jpg")
    (root / "images" / "star_2.png").unlink()
    whole = (root / "images" / "star_2.jpg").read_bytes()
    (root / "images" / "star_2.jpg").write_bytes(whole[: len(whole) // 2])
    jpeg = re.escape(str(root / "images" / "star_2.jpg"))
    with pytest.raises(SamInputError, match=rf"^{jpeg}: expected an image, got a file Pillow cannot read "
                                            r"\(image file is truncated"):
        finetune(data=root, out=tmp_path / "run", **QUICK)
    (root / "images" / "star_2.jpg").write_bytes(whole)  # mended: the same folder takes the run
    assert finetune(data=root, out=tmp_path / "run", **QUICK)["steps"] == 1


def test_a_diverging_run_stops_at_the_first_nan_loss_and_writes_no_checkpoint(stars, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(SamInputError, match=r"^lr: the loss became (NaN|infinite) at step \d+ \(lr 1e\+06\); try a "
                                            r"smaller lr, with another out \(no trained state was saved in .*run; "
                                            r"no checkpoint or card was written\)\.$"):
        finetune(data=stars, out=run, **{**QUICK, "steps": 20, "lr": 1e6})
    assert not (run / "card.json").exists() and not list(run.glob("*.pth"))
    assert not (run / "state.pt").exists()  # it diverged at once: there is no finite state to keep


def test_weights_that_become_nan_are_not_saved(stars, tmp_path, monkeypatch):
    """The loss of step 1 is still finite, but its update leaves a weight NaN: the state of step 1 stays."""
    real_step = ft.optimizer_step

    def spoiled(parts, params, optimizer, scheduler, cfg, world):
        params = list(params)
        figures = real_step(parts, params, optimizer, scheduler, cfg, world)
        if scheduler.last_epoch == 2:  # the update of step 1
            with torch.no_grad():
                params[0].fill_(float("nan"))
        return figures

    monkeypatch.setattr(ft, "optimizer_step", spoiled)
    run = tmp_path / "run"
    with pytest.raises(SamInputError, match=rf"^lr: the weights became NaN or infinite at step 1 \(lr 0\.0001\); try a "
                                            rf"smaller lr, with another out \({re.escape(str(run))} keeps its state "
                                            r"after 1 step\(s\); no checkpoint or card was written\)\.$"):
        finetune(data=stars, out=run, **{**QUICK, "steps": 4, "lr": 1e-4})
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["step"] == 1 and all(torch.isfinite(v).all() for v in state["trainable"].values())  # finite
    assert not (run / "card.json").exists() and not list(run.glob("*.pth"))


@pytest.mark.parametrize("content, got", [("[1, 2]", "a JSON array"), ('{"images": []}', "keys ['images']"),
                                          ("3", "a JSON number")])
def test_a_json_that_is_not_a_coco_object_says_what_it_holds(tmp_path, content, got):
    (tmp_path / "masks.json").write_text(content)
    with pytest.raises(SamInputError, match=re.escape(f"lists in {tmp_path / 'masks.json'}, got {got}.")):
        load_dataset(tmp_path / "masks.json")
