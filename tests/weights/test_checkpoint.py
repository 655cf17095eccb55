"""Loading checkpoints: the good path, every way a checkpoint can be wrong, and safety.

Most tests use the small `tiny` config (a few MB); the official sizes are built on the meta device, which
costs no memory, when only their shapes matter.
"""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
import torch

from sam_from_scratch import CONFIGS, from_pretrained, sam_model_registry
from sam_from_scratch.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    guess_variant,
    load_into,
    read_state_dict,
)
from sam_from_scratch.errors import SamInputError


@pytest.fixture(scope="module")
def tiny_state():
    """A tiny SAM's state dict with random weights."""
    torch.manual_seed(0)
    return sam_model_registry["tiny"]().state_dict()


@pytest.fixture
def tiny_file(tiny_state, tmp_path):
    path = tmp_path / "sam_tiny_random.pth"
    torch.save(tiny_state, path)
    return path


def meta_state(name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return sam_model_registry[name]().state_dict()


# --- the good path ---------------------------------------------------------------------------------------
def test_official_format_file_loads_every_tensor(tiny_state, tiny_file):
    model = sam_model_registry["tiny"](checkpoint=tiny_file)
    loaded = model.state_dict()
    assert loaded.keys() == tiny_state.keys()
    assert all(torch.equal(loaded[k], tiny_state[k]) for k in tiny_state)


def test_training_checkpoint_with_a_model_entry_loads(tiny_state, tmp_path):
    path = tmp_path / "wrapped.pt"
    torch.save({"model": tiny_state, "epoch": 3, "note": "from notebook 11"}, path)
    model = sam_model_registry["tiny"](checkpoint=path)
    assert torch.equal(model.mask_decoder.iou_token.weight, tiny_state["mask_decoder.iou_token.weight"])


def test_state_dict_in_memory_loads(tiny_state):
    model = sam_model_registry["tiny"]()
    load_into(model, tiny_state, "tiny")
    assert torch.equal(model.image_encoder.pos_embed, tiny_state["image_encoder.pos_embed"])


def test_model_on_meta_device_gets_real_tensors(tiny_state):
    with torch.device("meta"):
        model = sam_model_registry["tiny"]()
    load_into(model, tiny_state, "tiny")
    assert not any(p.is_meta for p in model.parameters())
    assert torch.equal(model.prompt_encoder.no_mask_embed.weight, tiny_state["prompt_encoder.no_mask_embed.weight"])


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h", "tiny"])
def test_variant_is_recognised_from_shapes(name):
    assert guess_variant(meta_state(name)) == name


def test_non_sam_state_dict_is_no_variant():
    assert guess_variant(torch.nn.Linear(2, 3).state_dict()) is None


# --- missing and broken files ----------------------------------------------------------------------------
def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "sam_vit_b_01ec64.pth"
    with pytest.raises(CheckpointNotFoundError, match=re.escape(str(path))) as error:
        sam_model_registry["tiny"](checkpoint=path)
    assert isinstance(error.value, FileNotFoundError)
    assert "ships with the package" in str(error.value)  # the small model is never downloaded


@pytest.mark.parametrize("variant, command", [("vit_l", "download vit_l"), (None, "download vit_b")])
def test_missing_file_says_which_checkpoint_to_download(tmp_path, variant, command):
    with pytest.raises(CheckpointNotFoundError, match=command):
        read_state_dict(tmp_path / "sam.pth", variant)


def test_folder_without_weights_says_what_it_looked_for(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="model.safetensors"):
        read_state_dict(tmp_path)


def test_truncated_file_says_so_and_names_the_path(tiny_file):
    data = tiny_file.read_bytes()
    tiny_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as error:
        sam_model_registry["tiny"](checkpoint=tiny_file)
    assert str(tiny_file) in str(error.value)


def test_truncated_safetensors_file_says_so(tiny_state, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file(tiny_state, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated") as error:
        read_state_dict(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("content", [b"", b"<html>404 Not Found</html>", b"\x89PNG\r\n\x1a\n" + bytes(200)])
def test_file_that_is_not_a_checkpoint_says_so(tmp_path, content):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a checkpoint") as error:
        read_state_dict(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("saved", [[1, 2, 3], {"weights": "elsewhere"}, {}], ids=["list", "dict of strings", "empty"])
def test_pickle_of_something_else_is_not_a_state_dict(tmp_path, saved):
    path = tmp_path / "other.pt"
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(path)


# --- nothing in a checkpoint runs ------------------------------------------------------------------------
class CreatesMarker:
    """Unpickling this calls open(marker, 'w'): a stand-in for any code an attacker would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "legacy torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused_and_does_not_run(tiny_state, tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"evil": CreatesMarker(marker), **tiny_state}
    if writer == "torch.save":
        torch.save(payload, path)
    elif writer == "legacy torch.save":  # the pre-1.6 format: plain pickles, no zip
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as file:
            pickle.dump(payload, file, protocol=2)

    with pytest.raises(CheckpointError, match=r"refused to load .* asks to call \S*open") as error:
        sam_model_registry["tiny"](checkpoint=path)
    assert str(path) in str(error.value)
    assert not marker.exists()

    # The payload is live: unsafe loading would have run it (so the assertion above can fail).
    if writer != "pickle.dump":
        torch.load(path, weights_only=False)
    else:
        with open(path, "rb") as file:
            pickle.load(file)
    assert marker.exists()


# --- a checkpoint for another model ----------------------------------------------------------------------
def test_checkpoint_of_another_variant_names_it_and_how_to_build_it(tiny_file):
    with pytest.raises(CheckpointError) as error:
        sam_model_registry["vit_b"](checkpoint=tiny_file)
    message = str(error.value)
    assert "this looks like tiny" in message.lower()
    assert "sam_model_registry['tiny'](checkpoint=...)" in message
    assert str(tiny_file) in message


@pytest.mark.parametrize("found, built", [("vit_l", "vit_b"), ("vit_h", "vit_l"), ("vit_b", "vit_h")])
def test_official_checkpoint_in_the_wrong_official_model(found, built):
    with torch.device("meta"):
        model = sam_model_registry[built]()
    with pytest.raises(CheckpointError, match=rf"looks like {found}: build it with sam_model_registry\['{found}'\]"):
        load_into(model, meta_state(found), built)


def test_unknown_size_says_it_matches_no_variant(tiny_state):
    last_block = f"image_encoder.blocks.{CONFIGS['tiny'].encoder_depth - 1}."
    state = {k: v for k, v in tiny_state.items() if not k.startswith(last_block)}  # one block short
    with pytest.raises(CheckpointError, match="matches none of the known variants"):
        load_into(sam_model_registry["tiny"](), state, "tiny")


def test_state_dict_of_another_network_is_not_a_sam_checkpoint(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)).state_dict(), path)
    with pytest.raises(CheckpointError, match="does not look like a SAM checkpoint"):
        sam_model_registry["tiny"](checkpoint=path)


def test_missing_keys_are_listed_briefly(tiny_state):
    dropped = [k for k in tiny_state if k.startswith("mask_decoder.output_hypernetworks_mlps.")]  # 24 keys
    state = {k: v for k, v in tiny_state.items() if k not in dropped}
    with pytest.raises(CheckpointError) as error:
        load_into(sam_model_registry["tiny"](), state, "tiny")
    message = str(error.value)
    assert f"{len(dropped)} missing key(s): {dropped[0]}" in message
    assert f"({len(dropped) - 5} more)" in message
    assert dropped[-1] not in message  # brief: not all of them


def test_unexpected_keys_are_listed(tiny_state):
    state = {**tiny_state, "mask_decoder.extra_head.weight": torch.zeros(2), "step": torch.tensor(100)}
    with pytest.raises(CheckpointError, match=r"2 unexpected key\(s\): mask_decoder.extra_head.weight, step"):
        load_into(sam_model_registry["tiny"](), state, "tiny")


def three_mask_tokens(state):
    """The state dict with one mask token fewer: (3, C) instead of (4, C); the variant's numbers still fit."""
    return {**state, "mask_decoder.mask_tokens.weight": state["mask_decoder.mask_tokens.weight"][:3]}


def test_tensor_of_another_shape_is_reported(tiny_state):
    width = CONFIGS["tiny"].prompt_embed_dim
    with pytest.raises(CheckpointError, match=rf"mask_decoder.mask_tokens.weight \(3, {width}\) \(model \(4, {width}\)\)"):
        load_into(sam_model_registry["tiny"](), three_mask_tokens(tiny_state), "tiny")


def test_weights_that_are_not_finite_are_refused_naming_the_file_and_tensors(tiny_state, tmp_path):
    # A diverged training run saves NaN weights; loaded, every mask would come out empty with score nan.
    damaged = dict(tiny_state)
    damaged["mask_decoder.iou_token.weight"] = torch.full_like(damaged["mask_decoder.iou_token.weight"], float("nan"))
    damaged["image_encoder.pos_embed"] = damaged["image_encoder.pos_embed"].clone()
    damaged["image_encoder.pos_embed"].view(-1)[7] = float("inf")
    path = tmp_path / "diverged.pth"
    torch.save(damaged, path)
    pattern = (r"^checkpoint: .*diverged\.pth holds NaN or infinite values in 2 tensor\(s\): "
               r"image_encoder\.pos_embed, mask_decoder\.iou_token\.weight\. The file is damaged")
    with pytest.raises(CheckpointError, match=pattern):
        sam_model_registry["tiny"](checkpoint=path)
    with pytest.raises(CheckpointError, match=pattern):
        from_pretrained(str(path), device="cpu")  # the file named, though it is read once into memory


def test_failed_load_leaves_the_model_untouched(tiny_state):
    model = sam_model_registry["tiny"]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError):
        load_into(model, three_mask_tokens(tiny_state), "tiny")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- what the file is, and how to fix it ----------------------------------------------------------------
def damaged_official_copy(tiny_file, folder, cut=0.5):
    """A checkpoint in the cache under the official vit_b name, cut short like an interrupted copy."""
    path = folder / "sam_vit_b_01ec64.pth"
    data = tiny_file.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    return path


def test_damaged_cached_checkpoint_says_how_to_get_a_good_one(tiny_file, tmp_path):
    (tmp_path / "cache").mkdir()
    path = damaged_official_copy(tiny_file, tmp_path / "cache")
    with pytest.raises(CheckpointError) as error:
        sam_model_registry["vit_b"](checkpoint=path)  # what an offline run with a damaged cache does
    message = str(error.value)
    assert message.startswith(f"checkpoint: {path} (")
    assert "is truncated or damaged" in message
    assert "python -m sam_from_scratch download vit_b" in message and f"or delete {path}" in message
    assert "Reader said" not in message and "central directory" not in message


@pytest.mark.parametrize(
    "content, kind",
    [
        (b"hello world\nthese are not weights\n", "is a text file, not a checkpoint"),
        (b'{"model": "sam", "weights": [1, 2, 3]}', "is a JSON text file, not a checkpoint"),
        (b"  <!DOCTYPE html><html><body>Access denied</body></html>", "is an HTML page (a server's error or login page?), not a checkpoint"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "is a PNG image, not a checkpoint"),
        (b"\xff\xd8\xff\xe0" + bytes(200), "is a JPEG image, not a checkpoint"),
        (b"", "is empty, not a checkpoint"),
        (b"PK\x03\x04" + bytes(300), "is truncated or damaged"),
        (b"\x94\x01\x07\xe3" * 500, "is binary data in no format PyTorch reads"),
    ],
    ids=["text", "JSON", "HTML", "PNG", "JPEG", "empty", "broken zip", "random bytes"],
)
def test_a_file_that_is_not_a_checkpoint_is_named_for_what_it_is(tmp_path, content, kind):
    path = tmp_path / "my_model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    message = str(error.value)
    assert message.startswith(f"checkpoint: {path} ({len(content):,} bytes) {kind}"), message
    assert "Reader said" not in message and "Unsupported operand" not in message
    assert "torch.save(model.state_dict(), path)" in message  # not an official file: how to make a good one


def test_legacy_checkpoint_cut_short_is_truncated(tiny_state, tmp_path):
    path = tmp_path / "old.pth"
    torch.save(tiny_state, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"is truncated or damaged \(an old-format PyTorch file"):
        read_state_dict(path)


def test_an_empty_checkpoint_path_is_named_not_read_as_the_current_folder():
    with pytest.raises(CheckpointError, match=r"^checkpoint: expected the path of a checkpoint file or folder, got ''\.$"):
        sam_model_registry["tiny"](checkpoint="")


def test_a_misspelt_registry_name_lists_the_known_ones():
    assert isinstance(sam_model_registry, dict)  # as the official registry
    with pytest.raises(KeyError, match=r"'vit_B' is not a SAM variant here; the registry knows 'default', 'vit_h', 'vit_l', 'vit_b', 'tiny'"):
        sam_model_registry["vit_B"]


@pytest.mark.parametrize("call, message", [
    (lambda: read_state_dict(None), r"^checkpoint: expected the path of a checkpoint file or folder \(a str or a Path\), got NoneType None\.$"),
    (lambda: read_state_dict(5), r"^checkpoint: expected the path .*got int 5\.$"),
    (lambda: load_into("tiny", "sam_tiny.pt", "tiny"),
     r"^model: expected the SAM model \(an nn\.Module\) built as 'tiny' to load the weights into, got str 'tiny'\.$"),
], ids=["None", "a number", "a name for the model"])
def test_the_loading_functions_name_what_is_not_a_path_or_a_model(call, message):
    """Called directly (sam_model_registry checks first), they raised pathlib's TypeError or an AttributeError."""
    with pytest.raises(SamInputError, match=message):
        call()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_named_pipe_is_refused_instead_of_waiting_forever(tmp_path):
    pipe = tmp_path / "sam.pth"
    os.mkfifo(pipe)
    with pytest.raises(CheckpointError, match=r"^checkpoint: .*sam\.pth is not a regular file \(a pipe, a socket or a device\)"):
        read_state_dict(pipe)


@pytest.mark.parametrize("weight_map", [["a"], {"a": 5}, {}], ids=["a list", "a number", "empty"])
def test_a_shard_index_whose_weight_map_names_no_files_is_named(tmp_path, weight_map):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=r"^checkpoint: .*model\.safetensors\.index\.json is not a valid shard "
                                              r"index \(its weight_map should map each tensor's name to a shard's "
                                              r"file name, got "):
        read_state_dict(tmp_path)


def test_a_shard_index_naming_a_folder_says_so(tmp_path):
    (tmp_path / "shard").mkdir()
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "shard"}}))
    with pytest.raises(CheckpointError, match=r"shard .*shard listed in .* is missing \(a folder is there\)\.$"):
        read_state_dict(tmp_path)


def test_weights_saved_from_a_wrapper_say_how_to_load_them(tmp_path):
    tiny = from_pretrained("tiny", device="cpu")
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{key}": value for key, value in tiny.state_dict().items()}, path)
    hint = (r"Every key starts with 'module\.': the weights were saved from a DistributedDataParallel \(or "
            r"DataParallel\) model: save model\.module\.state_dict\(\), or strip the prefix: ")
    with pytest.raises(SamInputError, match=r"^name: could not tell which SAM variant .*" + hint):
        from_pretrained(str(path), device="cpu")
    with pytest.raises(CheckpointError, match=r"does not look like a SAM checkpoint .*" + hint):
        sam_model_registry["tiny"](checkpoint=path)
