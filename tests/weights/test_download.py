"""Downloading checkpoints: against a local HTTP server on 127.0.0.1 serving small fake files (`file_host`).

The fake files are registered in `download.CHECKPOINTS` (the same table that holds the official ones) with
their own SHA-256, so every test runs the real download path offline in well under a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from sam_from_scratch import download
from sam_from_scratch.download import CHECKPOINTS, DownloadError, RemoteCheckpoint, download_checkpoint, find_checkpoint
from sam_from_scratch.errors import SamInputError

REPO = Path(__file__).resolve().parents[2]
GOOD = b"not really SAM weights, but 64 KiB of them " * 1500
FAKE = RemoteCheckpoint("sam_fake_0000.pth", hashlib.sha256(GOOD).hexdigest())


@pytest.fixture
def host(file_host, monkeypatch):
    """The shared local file host (tests/conftest.py), with no mirror or cache folder set in the environment."""
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.delenv(download.CACHE_ENV, raising=False)
    return file_host


@pytest.fixture
def fake(monkeypatch):
    """Register the checkpoint name 'fake' (file FAKE, hash of GOOD)."""
    monkeypatch.setitem(CHECKPOINTS, "fake", FAKE)
    return FAKE


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_published_checksums_and_file_names_are_the_official_ones():
    assert {name: (e.filename, e.sha256) for name, e in CHECKPOINTS.items()} == {
        "vit_b": ("sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
        "vit_l": ("sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        "vit_h": ("sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    }


def test_default_url_is_the_official_host(monkeypatch):
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    assert download.checkpoint_url("vit_b") == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert download.checkpoint_url("default") == download.checkpoint_url("vit_h")


def test_default_cache_folder_is_documented_one_and_env_overrides_it(monkeypatch, tmp_path):
    monkeypatch.delenv(download.CACHE_ENV, raising=False)
    assert download.cache_folder() == Path.home() / ".cache" / "sam_from_scratch"
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert download.cache_folder() == tmp_path / "elsewhere"
    assert download.cache_folder(tmp_path / "argument") == tmp_path / "argument"


def test_unknown_name_is_refused_with_the_choices():
    with pytest.raises(SamInputError, match=r"^name: expected one of default, vit_b, vit_h, vit_l, got 'vit_x'\.$"):
        download_checkpoint("vit_x")


def test_good_file_is_downloaded_verified_and_alone_in_the_cache(host, fake, tmp_path):
    host.files["/" + fake.filename] = GOOD
    path = download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert path == tmp_path / fake.filename
    assert path.read_bytes() == GOOD
    assert files_in(tmp_path) == [fake.filename]  # no temporary file left
    assert host.requests == ["/" + fake.filename]


def test_progress_bar_is_shown(host, fake, tmp_path, capfd):
    host.files["/" + fake.filename] = GOOD
    download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=True)
    assert "100%" in capfd.readouterr().err


def test_cache_hit_needs_no_network(host, fake, tmp_path):
    host.files["/" + fake.filename] = GOOD
    first = download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    host.stop()
    again = download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert again == first and again.read_bytes() == GOOD
    assert len(host.requests) == 1
    # ... and the server really is gone: anything not cached now fails.
    with pytest.raises(DownloadError, match="could not download"):
        download_checkpoint("fake", cache_dir=tmp_path / "empty", mirror=host.url, progress=False)


def test_wrong_checksum_is_refused_and_nothing_is_left_behind(host, fake, tmp_path):
    host.files["/" + fake.filename] = GOOD[:-1] + b"!"  # one byte differs
    with pytest.raises(DownloadError, match="SHA-256 differs") as error:
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert fake.sha256 in str(error.value) and fake.filename in str(error.value)
    assert files_in(tmp_path) == []
    assert find_checkpoint("fake", cache_dir=tmp_path) is None


def test_interrupted_transfer_raises_and_leaves_no_partial_file(host, fake, tmp_path):
    host.files["/" + fake.filename] = GOOD
    host.cut_after["/" + fake.filename] = len(GOOD) // 3
    with pytest.raises(DownloadError, match="could not download fake"):
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert files_in(tmp_path) == []


def test_a_host_that_hangs_up_without_answering_is_reported(host, fake, tmp_path):
    host.hang_up.add("/" + fake.filename)
    with pytest.raises(DownloadError, match="could not download fake"):
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert host.requests == ["/" + fake.filename]
    assert files_in(tmp_path) == []


def test_a_host_that_stalls_is_given_up_after_the_timeout(host, fake, tmp_path):
    host.files["/" + fake.filename] = GOOD
    host.stall.add("/" + fake.filename)  # the request is read, no answer comes
    with pytest.raises(DownloadError, match="could not download fake") as caught:
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False, timeout=0.5)
    assert "read timeout=0.5" in str(caught.value)  # given up by the 0.5 s timeout, not by the host's own limit
    assert host.requests == ["/" + fake.filename]
    assert files_in(tmp_path) == []


def test_failed_redownload_keeps_the_cached_file_as_it_was(host, fake, tmp_path):
    # A cached file whose hash is wrong gets downloaded again; if that transfer breaks, the old file is not
    # replaced by a partial one.
    cached = tmp_path / fake.filename
    cached.write_bytes(b"an older, damaged copy")
    host.files["/" + fake.filename] = GOOD
    host.cut_after["/" + fake.filename] = 1000
    with pytest.raises(DownloadError):
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert files_in(tmp_path) == [fake.filename]
    assert cached.read_bytes() == b"an older, damaged copy"

    del host.cut_after["/" + fake.filename]  # the connection recovers: the damaged copy is replaced
    assert download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False).read_bytes() == GOOD


def test_mirror_base_url_from_argument_or_environment(host, fake, tmp_path, monkeypatch):
    host.files["/sam/mirror/" + fake.filename] = GOOD
    path = download_checkpoint("fake", cache_dir=tmp_path / "a", mirror=host.url + "/sam/mirror/", progress=False)
    assert path.read_bytes() == GOOD

    monkeypatch.setenv(download.MIRROR_ENV, host.url + "/sam/mirror")  # without the trailing slash
    path = download_checkpoint("fake", cache_dir=tmp_path / "b", progress=False)
    assert path.read_bytes() == GOOD
    assert host.requests == ["/sam/mirror/" + fake.filename] * 2


def test_cache_folder_from_environment(host, fake, tmp_path, monkeypatch):
    host.files["/" + fake.filename] = GOOD
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    assert find_checkpoint("fake") is None
    path = download_checkpoint("fake", mirror=host.url, progress=False)
    assert path == tmp_path / "cache" / fake.filename
    assert find_checkpoint("fake") == path


def test_cli_downloads_a_registered_file(host, fake, tmp_path, capsys):
    from sam_from_scratch.cli import main

    host.files["/" + fake.filename] = GOOD
    code = main(["download", "fake", "--cache-dir", str(tmp_path), "--mirror", host.url, "--no-progress"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / fake.filename)
    assert (tmp_path / fake.filename).read_bytes() == GOOD


def test_a_cache_dir_that_is_a_file_is_named_before_any_download(host, fake, tmp_path, capsys):
    from sam_from_scratch.cli import main

    host.files["/" + fake.filename] = GOOD
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(ValueError, match=rf"^cache_dir: expected a folder to keep checkpoints in, got {a_file}, which is a file\.$"):
        download_checkpoint("fake", cache_dir=a_file, mirror=host.url, progress=False)
    code = main(["download", "fake", "--cache-dir", str(a_file), "--mirror", host.url, "--no-progress"])
    assert code == 2 and "error: --cache-dir: expected a folder" in capsys.readouterr().err
    assert a_file.read_text() == "mine"


def test_a_cache_dir_under_a_file_is_named_before_any_download(host, fake, tmp_path, capsys):
    from sam_from_scratch import from_pretrained
    from sam_from_scratch.cli import main

    host.files["/" + fake.filename] = GOOD
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    message = (f"cache_dir: expected a folder to keep checkpoints in, got {a_file / 'sub'}, which cannot be created: "
               f"{a_file} is a file.")
    with pytest.raises(SamInputError, match=f"^{re.escape(message)}$"):
        download_checkpoint("fake", cache_dir=a_file / "sub", mirror=host.url, progress=False)
    with pytest.raises(SamInputError, match=f"^{re.escape(message)}$"):  # as a cache_dir that is the file itself
        from_pretrained("tiny", cache_dir=a_file / "sub")
    code = main(["download", "fake", "--cache-dir", str(a_file / "sub"), "--mirror", host.url, "--no-progress"])
    assert code == 2 and capsys.readouterr().err == f"error: --{message.replace('_', '-', 1)}\n"
    assert host.requests == [] and a_file.read_text() == "mine" and files_in(tmp_path) == ["notes.txt"]


def test_a_tilde_that_names_no_home_folder_is_named_before_any_download(host, fake, tmp_path, monkeypatch):
    host.files["/" + fake.filename] = GOOD
    nobody = "~no_such_user_of_sam_from_scratch"
    with pytest.raises(SamInputError, match=rf"^cache_dir: expected a folder to keep checkpoints in, got "
                                            rf"'{nobody}/cache', whose {nobody} names no home folder here\. "):
        download_checkpoint("fake", cache_dir=f"{nobody}/cache", mirror=host.url, progress=False)
    monkeypatch.setenv(download.CACHE_ENV, f"{nobody}/cache")
    with pytest.raises(SamInputError, match=rf"^\$SAM_FROM_SCRATCH_CACHE: expected a folder .*, got '{nobody}/cache'"):
        download_checkpoint("fake", mirror=host.url, progress=False)
    assert host.requests == []
    monkeypatch.setenv("HOME", str(tmp_path))  # ~ alone is the user's home folder, as in a shell
    fetched = download_checkpoint("fake", cache_dir="~/cache", mirror=host.url, progress=False)
    assert fetched == tmp_path / "cache" / fake.filename


def test_a_cache_folder_from_the_environment_is_named_and_checked_only_for_a_download(host, fake, tmp_path,
                                                                                     monkeypatch):
    from sam_from_scratch import from_pretrained

    host.files["/" + fake.filename] = GOOD
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    monkeypatch.setenv(download.CACHE_ENV, str(a_file))
    with pytest.raises(SamInputError, match=rf"^\$SAM_FROM_SCRATCH_CACHE: expected a folder to keep checkpoints in, "
                                            rf"got {re.escape(str(a_file))}, which is a file\.$"):
        download_checkpoint("fake", mirror=host.url, progress=False)
    assert host.requests == [] and a_file.read_text() == "mine"
    # nothing to download, no cache needed: the variable, like $SAM_FROM_SCRATCH_MIRROR, is no concern of "tiny"
    assert from_pretrained("tiny", device="cpu") is not None
    assert find_checkpoint("fake") is None
    # the argument comes first: a good one is used, whatever the environment says
    assert download_checkpoint("fake", cache_dir=tmp_path / "c", mirror=host.url, progress=False).read_bytes() == GOOD


@pytest.mark.parametrize("arguments, message", [
    ({"name": ["vit_b"]}, r"^name: expected one of .*vit_b.*, got list \['vit_b'\]\.$"),
    ({"cache_dir": 5}, r"^cache_dir: expected a folder \(a str or a path\), or None for the default, got int 5\.$"),
    ({"cache_dir": ""}, r"^cache_dir: expected a folder .*, got str ''\.$"),
    ({"timeout": 0}, r"^timeout: expected a number of seconds > 0, got int 0\.$"),
    ({"timeout": -1.0}, r"^timeout: expected a number of seconds > 0, got float -1\.0\.$"),
    ({"timeout": "5"}, r"^timeout: expected a number of seconds > 0, got str '5'\.$"),
    ({"timeout": float("nan")}, r"^timeout: expected a number of seconds > 0, got float nan\.$"),
    ({"timeout": 1e308}, r"^timeout: expected at most 86400 seconds \(a day\), got float 1e\+308\. "),
    ({"timeout": 86401}, r"^timeout: expected at most 86400 seconds \(a day\), got int 86401\. "),
    ({"progress": "no"}, r"^progress: expected True or False, got str 'no'\.$"),
], ids=["name a list", "cache_dir a number", "cache_dir empty", "timeout 0", "timeout negative", "timeout text",
        "timeout nan", "timeout 1e308", "timeout over a day", "progress text"])
def test_bad_download_arguments_are_named_before_any_download(host, fake, tmp_path, arguments, message):
    host.files["/" + fake.filename] = GOOD
    call = {"name": "fake", "cache_dir": tmp_path, "mirror": host.url, "progress": False, **arguments}
    with pytest.raises(SamInputError, match=message):
        download_checkpoint(**call)
    assert host.requests == [] and list(tmp_path.iterdir()) == []


def test_an_empty_cache_dir_on_the_command_line_is_refused(host, fake, tmp_path, capsys, monkeypatch):
    from sam_from_scratch.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["download", "fake", "--cache-dir", "", "--mirror", host.url, "--no-progress"])
    assert code == 2 and "error: --cache-dir: expected a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_from_pretrained_refuses_a_misspelt_download_argument(tmp_path):
    from sam_from_scratch import from_pretrained

    with pytest.raises(TypeError, match=r"unexpected keyword argument 'cache_dri'.*cache_dir, mirror"):
        from_pretrained("tiny", cache_dri=tmp_path)


@pytest.mark.parametrize("arguments, message", [
    ({"mirror": "not a url"}, r"^mirror: expected an http:// or https:// URL .*, got 'not a url'\.$"),
    ({"mirror": "http://example.org/sam/?token=1"}, r"^mirror: expected an http:// or https:// URL .*, got 'http://example\.org/sam/\?token=1'\.$"),
    ({"timeout": -5}, r"^timeout: expected a number of seconds > 0, got int -5\.$"),
    ({"cache_dir": 5}, r"^cache_dir: expected a folder \(a str or a path\), or None for the default, got int 5\.$"),
    ({"cache_dir": ""}, r"^cache_dir: expected a folder .*, got str ''\.$"),
    ({"progress": "no"}, r"^progress: expected True or False, got str 'no'\.$"),
    ({"mirror": "not a url", "timeout": -5, "cache_dir": 5}, r"^timeout: expected a number of seconds > 0"),
], ids=["mirror not a url", "mirror with a query", "timeout negative", "cache_dir a number", "cache_dir empty",
        "progress text", "all three"])
@pytest.mark.parametrize("which", ["tiny", "a path"])
def test_from_pretrained_checks_download_arguments_whatever_the_name(arguments, message, which):
    from sam_from_scratch import from_pretrained
    from sam_from_scratch.config import TINY_CHECKPOINT

    name = "tiny" if which == "tiny" else str(TINY_CHECKPOINT)
    with pytest.raises(SamInputError, match=message):
        from_pretrained(name, **arguments)


def test_from_pretrained_checks_a_cache_dir_that_is_a_file_and_takes_good_download_arguments(tmp_path):
    from sam_from_scratch import from_pretrained

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(SamInputError, match=rf"^cache_dir: expected a folder to keep checkpoints in, got {a_file}, which is a file\.$"):
        from_pretrained("tiny", cache_dir=a_file)
    assert a_file.read_text() == "mine"
    # what the command line passes for every model (often None), and good values, are taken; nothing is written
    assert from_pretrained("tiny", device="cpu", cache_dir=None, mirror=None) is not None
    assert from_pretrained("tiny", device="cpu", cache_dir=tmp_path / "cache", mirror="https://my.mirror/sam/",
                           progress=False, timeout=3) is not None
    assert from_pretrained("tiny", device="cpu", timeout=86400) is not None  # a day: the longest timeout taken
    assert list(tmp_path.iterdir()) == [a_file]


def test_cli_subprocess_refuses_a_mirror_serving_the_wrong_file(host, tmp_path):
    # The real vit_b name, through `python -m sam_from_scratch`: the mirror serves 64 KiB of something else.
    host.files["/sam_vit_b_01ec64.pth"] = GOOD
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    env.pop(download.MIRROR_ENV, None)
    result = subprocess.run(
        [sys.executable, "-m", "sam_from_scratch", "download", "vit_b", "--cache-dir", str(tmp_path), "--mirror", host.url],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "SHA-256 differs" in result.stderr and "ec2df627" in result.stderr
    assert host.requests == ["/sam_vit_b_01ec64.pth"]
    assert files_in(tmp_path) == []


def test_cli_help_lists_the_checkpoints_and_the_cache_variable():
    result = subprocess.run(
        [sys.executable, "-m", "sam_from_scratch", "download", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "vit_b" in result.stdout and "vit_h" in result.stdout and "SAM_FROM_SCRATCH_CACHE" in result.stdout


# --- what interrupted downloads leave behind -----------------------------------------------------------------
def age(path: Path, seconds: float) -> Path:
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))
    return path


def test_our_pattern_matches_the_temporary_files_pooch_writes(tmp_path):
    import pooch.utils

    with pooch.utils.temporary_file(path=str(tmp_path)) as name:
        assert download.is_download_temporary_file(Path(name))
    for other in ("tmp_notes.txt", "tmpABCDEFGH", "my_tmpab12cd34", "tmpab12cd345", "tmpab12cd3", "sam_vit_b_01ec64.pth"):
        (tmp_path / other).write_bytes(b"x")
        assert not download.is_download_temporary_file(tmp_path / other), other


def test_a_read_only_cache_folder_is_named_before_any_request(host, fake, tmp_path, monkeypatch):
    """Before: the transfer began, and pooch's PermissionError came back as a failed download from the mirror."""
    read_only = tmp_path / "shared"
    read_only.mkdir()
    monkeypatch.setattr(download.os, "access", lambda path, mode: Path(path) != read_only)  # as for a user not root
    with pytest.raises(SamInputError, match=rf"^cache_dir: expected a folder this user can write checkpoints to, got "
                                            rf"{read_only}/new \(it would be made in {read_only}\), which is read-only "
                                            r"here\. Nothing was downloaded"):
        download_checkpoint("fake", cache_dir=read_only / "new", mirror=host.url, progress=False)
    assert host.requests == [] and list(read_only.iterdir()) == []


def test_a_folder_where_the_checkpoint_goes_is_named_and_kept(host, fake, tmp_path):
    (tmp_path / fake.filename).mkdir()
    (tmp_path / fake.filename / "mine.txt").write_text("mine")
    with pytest.raises(SamInputError, match=rf"^cache_dir: expected {re.escape(fake.filename)} in {tmp_path} to be the "
                                            r"checkpoint file, got a folder of that name\. Nothing was downloaded"):
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert host.requests == [] and (tmp_path / fake.filename / "mine.txt").read_text() == "mine"


def test_a_failed_download_removes_the_folders_it_made(host, fake, tmp_path):
    host.files.clear()  # the mirror answers 404
    with pytest.raises(DownloadError):
        download_checkpoint("fake", cache_dir=tmp_path / "new" / "cache", mirror=host.url, progress=False)
    assert list(tmp_path.iterdir()) == []  # before: new/cache/ stayed behind, empty


def partial_checkpoint(size: int) -> bytes:
    """The first `size` bytes of a torch.save archive (padded with zeros): what a killed download leaves."""
    import io

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(8)}, buffer)
    return (buffer.getvalue() + bytes(size))[:size]


def test_next_download_removes_what_a_killed_download_left(host, fake, tmp_path, capsys):
    # A killed process (kill -9, a closed terminal) runs no clean-up: pooch's temporary file stays in the cache.
    left_over = tmp_path / "tmpab12cd_3"
    left_over.write_bytes(partial_checkpoint(100_000))  # the start of a torch.save zip archive
    age(left_over, 3600)
    empty = tmp_path / "tmp0000zzzz"  # killed before the first byte arrived
    empty.touch()
    age(empty, 3600)
    # the user's files: other names, or the downloader's kind of name with other contents (a zip of their own)
    users = ["tmp_notes.txt", "tmpABCDEFGH", "my_tmpab12cd34", "tmpab12cd345", "tmp_notes12"]
    for name in users:
        (tmp_path / name).write_bytes(b"mine")
        age(tmp_path / name, 3600)
    with zipfile.ZipFile(tmp_path / "tmp_archive", "w") as archive:
        archive.writestr("notes.txt", "my notes")
    age(tmp_path / "tmp_archive", 3600)
    (tmp_path / "tmpqwertyui").mkdir()  # a folder, whatever its name, is not ours
    live = tmp_path / "tmpzz99yy88"  # fresh: another download may be writing it right now
    live.write_bytes(b"partial")

    host.files["/" + fake.filename] = GOOD
    download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert files_in(tmp_path) == sorted([fake.filename, *users, "tmp_archive", "tmpqwertyui", "tmpzz99yy88"])
    assert all((tmp_path / name).read_bytes() == b"mine" for name in users)


def test_the_clean_up_is_reported_with_the_progress_bar(host, fake, tmp_path, capsys):
    left_over = tmp_path / "tmp0a1b2c3d"
    left_over.write_bytes(partial_checkpoint(3_000_000))
    age(left_over, 3600)
    host.files["/" + fake.filename] = GOOD
    download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=True)
    assert f"removed 1 unfinished download (3.0 MB) from {tmp_path}" in capsys.readouterr().err


class InterruptingProgressBar:
    """Stands in for tqdm in pooch's downloader: Ctrl-C arrives once part of the file is written."""

    def __init__(self, *args, **kwargs):
        self.n = 0

    def update(self, count):
        self.n += count
        if self.n > len(GOOD) // 4:
            raise KeyboardInterrupt

    def reset(self):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("cached", [False, True], ids=["empty cache", "damaged copy in the cache"])
def test_ctrl_c_during_a_download_leaves_nothing_partial(host, fake, tmp_path, monkeypatch, cached):
    import pooch.downloaders

    monkeypatch.setattr(pooch.downloaders, "tqdm", InterruptingProgressBar)
    if cached:
        (tmp_path / fake.filename).write_bytes(b"an older, damaged copy")
    host.files["/" + fake.filename] = GOOD
    with pytest.raises(KeyboardInterrupt):  # not turned into an error message: the user asked to stop
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=True)
    assert files_in(tmp_path) == ([fake.filename] if cached else [])
    if cached:
        assert (tmp_path / fake.filename).read_bytes() == b"an older, damaged copy"


def test_a_failed_download_says_what_is_in_the_cache(host, fake, tmp_path):
    host.files["/" + fake.filename] = GOOD
    host.cut_after["/" + fake.filename] = 1000
    with pytest.raises(DownloadError) as error:
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert f"Nothing was saved to {tmp_path / fake.filename}." in str(error.value)

    # With a damaged copy in the cache "nothing was saved" is true but misleading: the file there is not usable.
    (tmp_path / fake.filename).write_bytes(b"an older, damaged copy")
    with pytest.raises(DownloadError) as error:
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    message = str(error.value)
    assert "Nothing was saved" not in message
    assert f"The file already at {tmp_path / fake.filename} was left as it was, but it is not the published" in message
    assert "delete it" in message


def test_a_refused_mirror_says_what_is_in_the_cache(host, fake, tmp_path):
    (tmp_path / fake.filename).write_bytes(b"an older, damaged copy")
    host.files["/" + fake.filename] = GOOD[:-1] + b"!"
    with pytest.raises(DownloadError, match="SHA-256 differs") as error:
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False)
    assert "Nothing was saved" not in str(error.value) and "was left as it was" in str(error.value)


# --- mirrors that cannot work, and what a failed download says ------------------------------------------------
@pytest.mark.parametrize("mirror", ["127.0.0.1:8765/", "localhost:8765/sam/", "example.org/sam/",
                                    "ftp://example.org/sam/", "file:///srv/sam/", "http://", "https:///sam/"])
def test_a_mirror_that_is_not_an_http_url_is_refused_before_any_download(host, fake, tmp_path, mirror):
    host.files["/" + fake.filename] = GOOD
    with pytest.raises(SamInputError, match=rf"^mirror: expected an http:// or https:// URL of a folder that serves "
                                            rf"the checkpoint files, got {re.escape(repr(mirror))}\.$"):
        download_checkpoint("fake", cache_dir=tmp_path / "cache", mirror=mirror, progress=False)
    assert host.requests == [] and not (tmp_path / "cache").exists()


def test_a_mirror_from_the_environment_is_checked_and_named(host, fake, tmp_path, monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, "127.0.0.1:8765/")
    with pytest.raises(SamInputError, match=r"^\$SAM_FROM_SCRATCH_MIRROR: expected an http:// or https:// URL .*, "
                                            r"got '127.0.0.1:8765/'\.$"):
        download_checkpoint("fake", cache_dir=tmp_path, progress=False)
    # the argument comes first: a good one is used, whatever the environment says
    host.files["/" + fake.filename] = GOOD
    assert download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url, progress=False).read_bytes() == GOOD


def test_a_mirror_that_lacks_the_file_says_to_check_the_mirror(host, fake, tmp_path, monkeypatch):
    url = f"{host.url}/sam/{fake.filename}"  # nothing there: 404
    with pytest.raises(DownloadError) as error:
        download_checkpoint("fake", cache_dir=tmp_path, mirror=host.url + "/sam/", progress=False)
    message = str(error.value)
    assert message.startswith(f"could not download fake from {url} (HTTPError: 404")
    assert message.endswith("Check that the mirror serves the file at that URL, and try again.")
    assert "--mirror" not in message

    monkeypatch.setenv(download.MIRROR_ENV, host.url + "/sam/")
    with pytest.raises(DownloadError) as error:
        download_checkpoint("fake", cache_dir=tmp_path, progress=False)
    assert str(error.value).endswith(
        "Check that the mirror (set by $SAM_FROM_SCRATCH_MIRROR) serves the file at that URL, and try again.")


def test_without_a_mirror_a_failed_download_suggests_one(fake, tmp_path, monkeypatch):
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.setattr(download, "OFFICIAL_BASE_URL", "http://127.0.0.1:1/")  # nothing listens on port 1
    with pytest.raises(DownloadError, match=r"Try again, or pass a mirror \(--mirror URL or \$SAM_FROM_SCRATCH_MIRROR\)\.$"):
        download_checkpoint("fake", cache_dir=tmp_path, progress=False, timeout=5)


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_pooch_adds_no_lines_of_its_own_and_its_logging_is_left_as_it_was(host, fake, tmp_path):
    import pooch

    logger = pooch.get_logger()
    level, filters = logger.level, list(logger.filters)
    records = Records()
    logger.addHandler(records)
    try:
        with pytest.raises(DownloadError):  # 404: pooch's own line would name a file that is never written
            download_checkpoint("fake", cache_dir=tmp_path / "a", mirror=host.url, progress=False)
        host.files["/" + fake.filename] = GOOD
        download_checkpoint("fake", cache_dir=tmp_path / "b", mirror=host.url, progress=False)
        assert records.messages == []
        assert logger.level == level and logger.filters == filters
        logger.info("pooch's own use, after ours")
        assert records.messages == ["pooch's own use, after ours"]
    finally:
        logger.removeHandler(records)


def test_cli_subprocess_reports_a_failed_download_in_one_line(host, tmp_path):
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    env.pop(download.MIRROR_ENV, None)
    result = subprocess.run(  # the mirror has no such file: 404
        [sys.executable, "-m", "sam_from_scratch", "download", "vit_b", "--cache-dir", str(tmp_path), "--mirror", host.url],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: could not download vit_b from {host.url}/sam_vit_b_01ec64.pth")
    assert result.stderr.count("\n") == 1 and "Downloading data" not in result.stderr, result.stderr
    assert files_in(tmp_path) == []
