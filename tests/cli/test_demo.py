"""`demo` (what `make demo` runs): Meta's vit_b when it can be downloaded, the bundled small model when not.

Nothing here touches the internet: the download is served by a local HTTP server on 127.0.0.1 with a stand-in
vit_b checkpoint (random weights in the official format) registered under the official file name with the
checksum the test computes; "offline" is a port where nothing listens, or a server that never answers.
"""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest
from PIL import Image

from sam_from_scratch import download
from sam_from_scratch.cli import main
from sam_from_scratch.download import CHECKPOINTS, RemoteCheckpoint


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))  # never the user's cache
    return tmp_path


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once the probe closes: nothing listens there


def test_offline_the_demo_says_so_in_one_line_and_uses_the_small_model(clean_env, capsys):
    out = clean_env / "outputs"
    code, stdout, stderr = run(capsys, "demo", "--out", str(out), "--mirror", f"http://127.0.0.1:{closed_port()}/")
    assert code == 0, stderr
    fallback = [line for line in stderr.splitlines() if "could not download" in line]
    assert len(fallback) == 1 and "small model" in fallback[0]
    assert "small course model (tiny)" in stdout and str(out / "demo_overlay.png") in stdout
    assert "rough guess" in stdout  # what the small model is for is said beside its mask of a photograph
    mask = np.asarray(Image.open(out / "demo_mask.png"))
    assert mask.shape == (400, 600) and 0 < (mask > 0).mean() < 0.5  # a mask around the click, not the photo
    assert not any((clean_env / "cache").glob("*.pth"))


@pytest.mark.timeout(120)  # ignoring --timeout would wait on the silent host until this stops the test
def test_a_host_that_never_answers_is_given_up_within_the_timeout(clean_env, capsys):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        code, _, stderr = run(capsys, "demo", "--out", str(clean_env / "o"), "--timeout", "1",
                              "--mirror", f"http://127.0.0.1:{silent.getsockname()[1]}/")
    assert code == 0 and "using the bundled small model" in stderr
    assert "the host did not answer within 1 s" in stderr  # given up by --timeout, not by a limit of its own


def test_offline_flag_and_existing_outputs(clean_env, capsys):
    out = clean_env / "outputs"
    assert run(capsys, "demo", "--offline", "--out", str(out))[0] == 0
    code, _, stderr = run(capsys, "demo", "--offline", "--out", str(out))
    assert code == 1 and "--force" in stderr  # the pictures of the last run are not overwritten silently


def test_online_the_demo_downloads_checks_and_caches_vit_b_then_uses_it(clean_env, capsys, monkeypatch, file_host,
                                                                       random_vit_b_checkpoint):
    body = random_vit_b_checkpoint.read_bytes()
    official = CHECKPOINTS["vit_b"]
    monkeypatch.setitem(CHECKPOINTS, "vit_b", RemoteCheckpoint(official.filename, hashlib.sha256(body).hexdigest()))
    file_host.files["/" + official.filename] = body
    out = clean_env / "outputs"
    code, stdout, stderr = run(capsys, "demo", "--out", str(out), "--mirror", file_host.url)
    assert code == 0, stderr
    assert "SAM vit_b" in stdout and "could not download" not in stderr and "rough guess" not in stdout
    cached = clean_env / "cache" / official.filename
    assert cached.read_bytes() == body
    assert Image.open(out / "demo_mask.png").size == (600, 400)
    # The second run finds it in the cache and asks the host for nothing.
    assert run(capsys, "demo", "--out", str(out), "--mirror", file_host.url, "--force")[0] == 0
    assert file_host.requests == ["/" + official.filename]


def test_a_file_that_is_not_the_published_one_is_refused_and_the_small_model_used(clean_env, capsys, file_host):
    official = CHECKPOINTS["vit_b"]
    file_host.files["/" + official.filename] = b"not the published file"
    code, stdout, stderr = run(capsys, "demo", "--out", str(clean_env / "o"), "--mirror", file_host.url)
    assert code == 0 and "not the published one" in stderr and "small course model" in stdout
    assert not any((clean_env / "cache").glob("*"))


@pytest.mark.parametrize("option, value, message", [
    ("--mirror", "nohost", "--mirror: expected an http:// or https:// URL of a folder that serves the checkpoint "
                           "files, got 'nohost'."),
    ("--cache-dir", "notes.txt/cache", "--cache-dir: expected a folder to keep checkpoints in, got notes.txt/cache, "
                                       "which cannot be created: notes.txt is a file."),
    ("--timeout", "1e308", "--timeout: expected at most 86400 seconds (a day), got float 1e+308."),
], ids=["mirror not a url", "cache-dir under a file", "timeout beyond a day"])
def test_bad_download_options_are_one_line_and_exit_code_2_before_any_request(clean_env, capsys, file_host,
                                                                              monkeypatch, option, value, message):
    # the user's mistake, not a network failure: said as such, not covered by the small model's fallback
    monkeypatch.chdir(clean_env)
    (clean_env / "notes.txt").write_text("mine")
    args = {"--mirror": file_host.url, option: value}
    code, _, stderr = run(capsys, "demo", "--out", "o", *[part for pair in args.items() for part in pair])
    assert code == 2 and stderr.splitlines()[-1].startswith(f"error: {message}"), stderr
    assert "small model" not in stderr and file_host.requests == []
    assert sorted(p.name for p in clean_env.iterdir()) == ["notes.txt"]
    assert (clean_env / "notes.txt").read_text() == "mine"
