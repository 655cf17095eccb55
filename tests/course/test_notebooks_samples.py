"""The sample photographs the notebooks use: small, real, licensed, loaded as H x W x 3 uint8."""

from pathlib import Path

import numpy as np
import pytest

from sam_from_scratch.errors import SamInputError
from sam_from_scratch.samples import IMAGES_DIR, list_sample_images, load_sample_image, sample_image_path

LICENSES = Path(IMAGES_DIR) / "LICENSES.md"


def test_there_are_a_few_sample_photographs():
    assert {"astronaut", "chelsea", "coffee", "rocket"} <= set(list_sample_images())


@pytest.mark.parametrize("name", list_sample_images())
def test_a_sample_loads_as_height_width_rgb_uint8(name):
    image = load_sample_image(name)
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 256
    assert image.std() > 10  # a photograph, not a blank file


@pytest.mark.parametrize("name", list_sample_images())
def test_every_sample_file_is_small_and_has_its_license_stated(name):
    path = sample_image_path(name)
    assert path.stat().st_size <= 1_000_000
    text = LICENSES.read_text()
    row = next((line for line in text.splitlines() if line.startswith(f"| `{path.name}`")), None)
    assert row is not None, f"{path.name} has no row in {LICENSES}"
    assert "Public domain" in row or "CC0" in row or "CC-BY" in row


def test_loading_returns_a_fresh_writable_copy():
    first = load_sample_image("coffee")
    first[:] = 0
    assert load_sample_image("coffee").any()


def test_an_unknown_name_is_a_clear_error_listing_the_choices():
    with pytest.raises(SamInputError, match=r"name: expected one of 'astronaut'.*got 'dog'"):
        load_sample_image("dog")
