"""The command line's inputs: image files of every Pillow mode, images too large to open, prompts outside the
image, output names and folders it cannot use, tiny images, and a download host that is not there.

Everything runs in-process through `main`, with the bundled small model where a model is needed; the refusals
happen before the model loads.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli as run
from sam_from_scratch import cli, download
from sam_from_scratch.cli import MAX_IMAGE_PIXELS, read_image
from sam_from_scratch.errors import SamInputError
from sam_from_scratch.utils import images


@pytest.fixture
def small_image(tmp_path):
    """A 20 x 10 RGB PNG."""
    path = tmp_path / "small.png"
    Image.fromarray(np.full((10, 20, 3), (30, 60, 90), np.uint8)).save(path)
    return str(path)


# ---- image files: every Pillow mode becomes HxWx3 uint8, by its meaning --------------------------------------------


def cmyk_image():
    image = Image.new("CMYK", (3, 1))
    for x, ink in enumerate([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)]):  # paper, cyan, black
        image.putpixel((x, 0), ink)
    return image


def palette_image():
    image = Image.fromarray(np.array([[0, 1, 2]], np.uint8)).convert("P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    return image


def rgba_image():
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 128], [70, 80, 90, 255]]], np.uint8)
    return Image.fromarray(rgba)


grey = lambda *values: [[[v, v, v] for v in values]]  # one row of grey pixels, as RGB

# mode, the image, the file format, the RGB pixels expected
MODES = [
    ("1", lambda: Image.fromarray(np.array([[0, 255, 0]], np.uint8)).convert("1"), "png", grey(0, 255, 0)),
    ("L", lambda: Image.fromarray(np.array([[0, 100, 255]], np.uint8)), "png", grey(0, 100, 255)),
    ("LA", lambda: Image.fromarray(np.array([[0, 100, 255]], np.uint8)).convert("LA"), "png", grey(0, 100, 255)),
    ("P", palette_image, "png", [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]),
    ("RGB", lambda: Image.fromarray(np.array([[[1, 2, 3], [250, 128, 0], [9, 9, 9]]], np.uint8)), "png",
     [[[1, 2, 3], [250, 128, 0], [9, 9, 9]]]),
    ("RGBA", rgba_image, "png", [[[10, 20, 30], [40, 50, 60], [70, 80, 90]]]),  # transparency dropped, colour kept
    ("I;16", lambda: Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)), "png", grey(0, 128, 255)),
    ("I", lambda: Image.fromarray(np.array([[0, 100, 255]], np.int32)), "tif", grey(0, 100, 255)),  # 8-bit values
    ("I", lambda: Image.fromarray(np.array([[0, 1000, 65535]], np.int32)), "tif", grey(0, 4, 255)),  # 16-bit values
    ("F", lambda: Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), "tif", grey(0, 128, 255)),  # in [0, 1]
    ("F", lambda: Image.fromarray(np.array([[-1.0, 0.0, 3.0]], np.float32)), "tif", grey(0, 64, 255)),  # stretched
    ("CMYK", cmyk_image, "tif", [[[255, 255, 255], [0, 255, 255], [0, 0, 0]]]),
]


@pytest.mark.parametrize("reader", [read_image, images.read_image], ids=["command line", "python"])
@pytest.mark.parametrize("mode, make, file_format, expected", MODES,
                         ids=[f"{mode}-{i}" for i, (mode, *_) in enumerate(MODES)])
def test_every_pillow_mode_reads_as_rgb_by_its_meaning(tmp_path, mode, make, file_format, expected, reader):
    path = tmp_path / f"image.{file_format}"
    make().save(path)
    assert Image.open(path).mode in ({mode, "I"} if mode == "I;16" else {mode})  # (Pillow < 10.3 opens I;16 PNGs as I)
    pixels = reader(str(path))
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 3, 3)
    assert pixels.tolist() == expected


@pytest.mark.parametrize("reader", [read_image, images.read_image], ids=["command line", "python"])
def test_a_photo_is_read_upright_as_its_exif_orientation_says(tmp_path, reader):
    # a camera held upright stores the picture on its side and says so: orientation 6, turn it 90 degrees clockwise
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = 255  # a white pixel in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    upright = reader(str(tmp_path / "phone.png"))
    assert upright.shape == (3, 2, 3)  # as viewers show it: 3 rows, 2 columns
    assert upright[0, 1].tolist() == [255, 255, 255]  # the corner turned to the top right
    assert np.asarray(Image.open(tmp_path / "phone.png")).shape == (2, 3, 3)  # Pillow alone leaves it on its side


def test_what_read_image_cannot_read_is_named_with_the_reason(tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    cases = [
        (None, r"^path: expected the path of an image file \(a str or a path\), got NoneType None\.$"),
        (tmp_path / "missing.png", rf"^path: expected an image file, got {re.escape(str(tmp_path))}/missing\.png, which does not exist\.$"),
        (tmp_path, rf"^path: expected an image file, got {re.escape(str(tmp_path))}, which is a folder\.$"),
        (tmp_path / "notes.txt", r"^path: expected an image file, got .*notes\.txt, which Pillow cannot read as an image \(cannot identify"),
    ]
    for path, message in cases:  # Pillow alone: AttributeError, FileNotFoundError, IsADirectoryError, UnidentifiedImageError
        with pytest.raises(SamInputError, match=message):
            images.read_image(path)


# ---- images too large to open ----------------------------------------------------------------------------------------


def png_claiming_size(path, width: int, height: int) -> None:
    """A small valid PNG whose header then says `width` x `height`: Pillow reads the size, allocates nothing."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"  # after the 8-byte signature and the chunk's 4-byte length
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the chunk's CRC covers its type and data
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("command, out", [("segment", "m.png"), ("everything", "result")])
def test_a_decompression_bomb_is_refused_with_the_option_that_allows_it(tmp_path, capsys, no_model, command, out):
    bomb = tmp_path / "bomb.png"
    png_claiming_size(bomb, 20000, 10000)  # 200,000,000 pixels: above the limit, below twice the limit
    assert 20000 * 10000 > MAX_IMAGE_PIXELS
    prompt = ["--point", "5,5"] if command == "segment" else []
    code, _, err = run(capsys, command, str(bomb), *prompt, "--out", str(tmp_path / out))
    assert code == 2, err
    assert f"IMAGE: {bomb} is larger than {MAX_IMAGE_PIXELS:,} pixels" in err and "--allow-large-images" in err
    assert err.count("\n") == 1 and "Warning" not in err
    assert not (tmp_path / out).exists()


def test_the_image_size_limit_is_put_back_afterwards(tmp_path):
    bomb = tmp_path / "bomb.png"
    png_claiming_size(bomb, 20000, 10000)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(cli.CliError):
        read_image(str(bomb))
    assert Image.MAX_IMAGE_PIXELS == before


# ---- prompts outside the image ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--point", "-5,3"], "--point -5,3 lies outside the 20x10 image"),
        (["--point=-5,3"], "--point -5,3 lies outside the 20x10 image"),
        (["--point", "4,-0.5"], "--point 4,-0.5 lies outside the 20x10 image"),
        (["--point", "4,4", "--negative", "-1,-1"], "--negative -1,-1 lies outside the 20x10 image"),
        (["--box", "-50,-40,-10,-5"], "--box -50,-40,-10,-5 lies outside the 20x10 image"),
        (["--box", "-8,2,-1,6"], "--box -8,2,-1,6 lies outside the 20x10 image"),
    ],
)
def test_negative_coordinates_are_reported_outside_the_image(small_image, tmp_path, capsys, no_model, args, message):
    code, _, err = run(capsys, "segment", small_image, *args, "--out", str(tmp_path / "m.png"))
    assert code == 2 and message in err and "expected one argument" not in err
    assert not (tmp_path / "m.png").exists()


def test_a_box_only_partly_outside_the_image_is_used(small_image, tmp_path, capsys):
    code, out, err = run(capsys, "segment", small_image, "--box", "-5,-5,12,8", "--model", "tiny", "--device", "cpu",
                         "--out", str(tmp_path / "m.png"))
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "m.png")).shape == (10, 20)


# ---- outputs it cannot use ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mask.jpg", "mask.JPEG", "mask.webp"])
def test_segment_refuses_a_lossy_mask_file(small_image, tmp_path, capsys, no_model, name):
    code, _, err = run(capsys, "segment", small_image, "--point", "5,5", "--out", str(tmp_path / name))
    assert code == 2 and f"--out: {tmp_path / name} is not a lossless image file" in err
    assert "exact pixels" in err and ".png" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "small.png"]


@pytest.mark.parametrize("command, out", [("segment", "not_a_folder/m.png"), ("everything", "not_a_folder/result"),
                                          ("everything", "not_a_folder")])
def test_an_output_folder_that_is_a_file_is_refused_before_the_model_loads(small_image, tmp_path, capsys, no_model,
                                                                            command, out):
    (tmp_path / "not_a_folder").write_text("a file")
    prompt = ["--point", "5,5"] if command == "segment" else []
    code, _, err = run(capsys, command, small_image, *prompt, "--out", str(tmp_path / out))
    assert code == 2 and "--out:" in err and "is a file; give a folder" in err
    assert (tmp_path / "not_a_folder").read_text() == "a file"


# every output is checked before any is written: with --force too, a folder in one output's place writes nothing
@pytest.mark.parametrize("command, out, folder", [
    ("segment", "m.png", "m_overlay.png"),
    ("segment", "m.png", "m.png/"),
    ("everything", "result", "result/masks.json"),
    ("everything", "result", "result/overlay.png"),
    ("export-onnx", "d.onnx", "d_int8.onnx"),
], ids=["segment's overlay", "segment's mask", "everything's masks.json", "everything's overlay", "export's int8 copy"])
def test_an_output_that_is_a_folder_is_refused_before_anything_is_written(small_image, tmp_path, capsys, no_model,
                                                                          command, out, folder):
    outputs = {"segment": ["m.png", "m_overlay.png"], "everything": ["result/overlay.png", "result/masks.json"],
               "export-onnx": ["d.onnx", "d_int8.onnx"]}[command]
    for name in outputs:  # an earlier run's files, which --force may replace, but only all together
        (tmp_path / name).parent.mkdir(exist_ok=True)
        if name != folder.rstrip("/"):
            (tmp_path / name).write_text("an earlier result")
    (tmp_path / folder).mkdir()
    args = {"segment": [small_image, "--point", "5,5"], "everything": [small_image], "export-onnx": ["--quantize"]}
    code, _, err = run(capsys, command, *args[command], "--out", str(tmp_path / out), "--force")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --out: "), err
    assert "is a folder" in err
    for name in outputs:
        path = tmp_path / name
        assert path.is_dir() if name == folder.rstrip("/") else path.read_text() == "an earlier result"


# ---- tiny images ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["segment", "everything"])
def test_an_image_too_thin_for_the_model_is_one_line_and_exit_code_2(tmp_path, capsys, command):
    # 1 x 300: the small model resizes its long side to 96 pixels, which leaves 0 rows. Known once it is loaded.
    thin = tmp_path / "thin.png"
    Image.fromarray(np.zeros((1, 300, 3), np.uint8)).save(thin)
    prompt = ["--point", "1,0"] if command == "segment" else []
    out = tmp_path / ("m.png" if command == "segment" else "result")
    code, _, err = run(capsys, command, str(thin), *prompt, "--model", "tiny", "--device", "cpu", "--out", str(out))
    assert code == 2, err
    (line,) = [line for line in err.splitlines() if "error" in line or "Traceback" in line]
    assert line.startswith("error: IMAGE: expected a long side at most 192 times the short side"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thin.png"]




def test_crops_of_a_one_pixel_image_do_not_crash(tmp_path, capsys):
    image = tmp_path / "dot.png"
    Image.fromarray(np.array([[[200, 10, 10]]], np.uint8)).save(image)
    code, _, err = run(capsys, "everything", str(image), "--model", "tiny", "--device", "cpu", "--points-per-side", "2",
                       "--crop-n-layers", "1", "--out", str(tmp_path / "result"))
    assert code == 0, err
    assert isinstance(json.loads((tmp_path / "result" / "masks.json").read_text()), list)
    assert np.asarray(Image.open(tmp_path / "result" / "overlay.png")).shape == (1, 1, 3)


# ---- a download host that is not there --------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once the probe closes: nothing listens there


def test_a_cache_folder_from_the_environment_is_named_and_not_needed_by_the_small_model(small_image, tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    monkeypatch.setenv(download.CACHE_ENV, str(a_file))
    code, _, err = run(capsys, "segment", small_image, "--point", "5,5", "--model", "tiny", "--device", "cpu",
                       "--out", str(tmp_path / "m.png"))
    assert code == 0, err  # the bundled model needs no cache: a cache variable it cannot use is no concern of it
    mirror = f"http://127.0.0.1:{closed_port()}/"
    message = (f"error: ${download.CACHE_ENV}: expected a folder to keep checkpoints in, got {a_file}, which is a "
               "file.\n")
    for args in (["segment", small_image, "--point", "5,5", "--model", "vit_b", "--out", str(tmp_path / "v.png")],
                 ["download", "vit_b"]):
        code, _, err = run(capsys, *args, "--mirror", mirror)
        assert code == 2 and err.endswith(message) and err.count("\n") <= 2, err  # not --cache-dir: it was not given
    assert a_file.read_text() == "mine" and not (tmp_path / "v.png").exists()


def test_a_mirror_that_does_not_answer_gives_one_line_and_exit_code_1(small_image, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    cache = tmp_path / "cache"
    mirror = f"http://127.0.0.1:{closed_port()}/"
    code, _, err = run(capsys, "segment", small_image, "--point", "5,5", "--model", "vit_b", "--mirror", mirror,
                       "--cache-dir", str(cache), "--out", str(tmp_path / "m.png"))
    assert code == 1, err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: --model vit_b: could not download vit_b from {mirror}")
    assert "Nothing was saved" in line
    assert not list(cache.glob("*.pth")) and not (tmp_path / "m.png").exists()
