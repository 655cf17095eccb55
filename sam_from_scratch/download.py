"""Downloading the official SAM checkpoints, checked against their published SHA-256.

    python -m sam_from_scratch download vit_b                       # into the cache, with a progress bar
    python -m sam_from_scratch download vit_h --mirror https://my.mirror/sam/

Where files go: `~/.cache/sam_from_scratch/` unless the environment variable SAM_FROM_SCRATCH_CACHE names
another folder (or `cache_dir=` / `--cache-dir` is given). Where they come from: the official host
https://dl.fbaipublicfiles.com/segment_anything/ unless SAM_FROM_SCRATCH_MIRROR (or `mirror=` / `--mirror`)
names a base URL (http:// or https://) that serves the same file names.

The transfer itself is pooch's: it streams into a temporary file next to the target, checks the hash, and
only then moves the file into place. So an interrupted transfer, Ctrl-C or a wrong checksum leaves nothing
behind, and a good cached file is never replaced by a partial one. A cached file whose hash matches is used as
is, without touching the network. A process killed outright (kill -9, a closed terminal) cleans nothing up:
its temporary file, up to the checkpoint's size, is removed by the next download into the same folder.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import SamInputError, check_switch, describe, expand_user, input_error, is_number, nearest_existing

OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
MIRROR_SCHEMES = ("http", "https")  # what the downloader (pooch's HTTPDownloader, through requests) fetches
CACHE_ENV = "SAM_FROM_SCRATCH_CACHE"
MIRROR_ENV = "SAM_FROM_SCRATCH_MIRROR"
DEFAULT_CACHE_DIR = Path("~/.cache/sam_from_scratch")
CACHE_EXPECTED = "a folder to keep checkpoints in"
# The longest `timeout` taken: a day is far beyond any host worth waiting for, and a larger number (1e308) would
# overflow inside the socket layer and be reported as a failed download.
MAX_TIMEOUT_S = 86400.0


@dataclass(frozen=True)
class RemoteCheckpoint:
    """A file on the checkpoint host: its name (also its name in the cache) and its SHA-256."""

    filename: str
    sha256: str


# The published files. Other entries can be registered (the tests add small fake ones).
CHECKPOINTS: dict[str, RemoteCheckpoint] = {
    "vit_b": RemoteCheckpoint("sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    "vit_l": RemoteCheckpoint("sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "vit_h": RemoteCheckpoint("sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
}
ALIASES = {"default": "vit_h"}  # as in sam_model_registry

# For reading: the official URL of each file.
MODEL_URLS = {name: OFFICIAL_BASE_URL + entry.filename for name, entry in CHECKPOINTS.items()}


# pooch streams into tempfile.NamedTemporaryFile(dir=<cache folder>): "tmp" and 8 of tempfile's random characters.
TEMPORARY_NAME = re.compile(r"tmp[a-z0-9_]{8}")
# A download in progress writes its temporary file all the time (and gives up after `timeout` without data), so
# one untouched this long belongs to a process that died; a younger one may be another download's, running now.
STALE_AFTER_S = 120.0


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched, or what arrived is not the published file."""


def is_download_temporary_file(path: Path) -> bool:
    """True for a file named the way the downloader names its temporary files (never a folder or a link)."""
    return TEMPORARY_NAME.fullmatch(path.name) is not None and path.is_file() and not path.is_symlink()


def _holds_a_partial_checkpoint(path: Path) -> bool:
    """Empty, or the start of a torch.save archive: a zip whose first entry is <folder>/data.pkl. A zip of the
    user's that happens to have the downloader's kind of name is not one."""
    with open(path, "rb") as file:
        head = file.read(30 + 256)  # a zip's local file header (30 bytes), then the first entry's name
    if head == b"":
        return True
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return False
    name_length = int.from_bytes(head[26:28], "little")
    return head[30 : 30 + name_length].endswith(b"/data.pkl")


def remove_stale_downloads(folder: Path, progress: bool = False) -> list[Path]:
    """Remove the temporary files killed downloads left in `folder`: named like the downloader's, untouched for
    STALE_AFTER_S seconds, and empty or the start of a checkpoint (a torch.save zip archive, whose first entry
    is its data.pkl). Returns their paths."""
    if not folder.is_dir():
        return []
    now, removed, size = time.time(), [], 0
    for path in folder.iterdir():
        try:
            if (
                is_download_temporary_file(path)
                and now - path.stat().st_mtime > STALE_AFTER_S
                and _holds_a_partial_checkpoint(path)
            ):
                size += path.stat().st_size
                path.unlink()
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
    if removed and progress:
        count = f"{len(removed)} unfinished download{'s' if len(removed) > 1 else ''}"
        print(f"removed {count} ({size / 1e6:.1f} MB) from {folder}", file=sys.stderr)
    return removed


def _temporary_files(folder: Path) -> set[Path]:
    return {path for path in folder.iterdir() if is_download_temporary_file(path)} if folder.is_dir() else set()


def _what_is_left(target: Path) -> str:
    """The end of an error message: what the cache holds now."""
    if target.exists():
        # pooch only downloads over an existing file whose SHA-256 is wrong
        return (
            f"The file already at {target} was left as it was, but it is not the published file either (its "
            f"SHA-256 differs: damaged or incomplete): delete it, or download again."
        )
    return f"Nothing was saved to {target}."


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder checkpoints are kept in: the argument, else $SAM_FROM_SCRATCH_CACHE, else ~/.cache/sam_from_scratch.

    Raises SamInputError for a `cache_dir` that is not a path, or an empty one (which would mean the default), and
    for a ~ that names no home folder here (naming $SAM_FROM_SCRATCH_CACHE where the folder came from it)."""
    return _cache(cache_dir)[1]


def _cache(cache_dir) -> tuple[str, Path]:
    """(where the cache folder was given: "cache_dir", or "$SAM_FROM_SCRATCH_CACHE"; the folder, ~ expanded)."""
    if cache_dir is not None and (not isinstance(cache_dir, (str, os.PathLike)) or str(cache_dir) == ""):
        raise input_error("cache_dir", "a folder (a str or a path), or None for the default", cache_dir)
    for argument, value in (("cache_dir", cache_dir), (f"${CACHE_ENV}", os.environ.get(CACHE_ENV))):
        if value is not None and str(value) != "":  # an empty variable means the default
            return argument, expand_user(argument, value, CACHE_EXPECTED, " Write the folder out in full.")
    return "cache_dir", expand_user("cache_dir", DEFAULT_CACHE_DIR, CACHE_EXPECTED,
                                    f" Pass cache_dir, or set ${CACHE_ENV}.")


def _checked_cache_folder(cache_dir) -> Path:
    """The cache folder, refused unless it is a folder or can be made one: a SamInputError naming where it was
    given (the argument, or $SAM_FROM_SCRATCH_CACHE)."""
    argument, folder = _cache(cache_dir)
    existing = nearest_existing(folder)
    if not existing.is_dir():
        why = "which is a file" if existing == folder else f"which cannot be created: {existing} is a file"
        raise SamInputError(f"{argument}: expected a folder to keep checkpoints in, got {folder}, {why}.")
    return folder


def checkpoint_url(name: str, mirror: str | None = None) -> str:
    """Where `name` is fetched from: `mirror` (else $SAM_FROM_SCRATCH_MIRROR, else the official host) + file name.

    Raises SamInputError for a mirror that is not an http:// or https:// URL."""
    base = _mirror(mirror)[1] or OFFICIAL_BASE_URL
    return base.rstrip("/") + "/" + _entry(name).filename


def _mirror(mirror: str | None) -> tuple[str | None, str | None]:
    """(where the mirror was given, its base URL), checked: from `mirror`, else $SAM_FROM_SCRATCH_MIRROR, else
    (None, None) for the official host."""
    for argument, value in (("mirror", mirror), (f"${MIRROR_ENV}", os.environ.get(MIRROR_ENV))):
        if value is None or value == "":
            continue
        _check_mirror(argument, value)
        return argument, value
    return None, None


def _check_mirror(argument: str, value) -> None:
    """`value` must be an http:// or https:// URL with a host, else a SamInputError naming `argument`."""
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:  # e.g. an unclosed [ in the host
        parts = None
    # (a query or a fragment would end up before the file name that is appended to the folder's URL)
    if parts is None or parts.scheme.lower() not in MIRROR_SCHEMES or not parts.netloc or parts.query or parts.fragment:
        got = repr(value) if isinstance(value, str) else describe(value)
        raise SamInputError(f"{argument}: expected an http:// or https:// URL of a folder that serves the "
                            f"checkpoint files, got {got}.")


def _entry(name: str) -> RemoteCheckpoint:
    key = ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in CHECKPOINTS:
        known = ", ".join(sorted([*CHECKPOINTS, *ALIASES]))
        got = repr(name) if isinstance(name, str) else describe(name)
        raise SamInputError(f"name: expected one of {known}, got {got}.")
    return CHECKPOINTS[key]


def find_checkpoint(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached file for `name` if it is there (no network, no hash check), else None.

    Downloads only ever put complete, verified files in the cache, so presence is enough for notebooks that want
    to use real weights when a learner has downloaded them (a file copied in by hand is taken as it is).
    """
    path = cache_folder(cache_dir) / _entry(name).filename
    return path if path.is_file() and path.stat().st_size > 0 else None


def check_download_arguments(
    cache_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> None:
    """Check download_checkpoint's arguments besides `name`, without any network or file written.

    from_pretrained calls it for every name, so a bad `cache_dir=`, `mirror=` or `timeout=` is refused for "tiny"
    or a path too (where nothing is downloaded), not ignored. Only the arguments are checked here:
    $SAM_FROM_SCRATCH_CACHE and $SAM_FROM_SCRATCH_MIRROR are checked when a download needs them.

    Raises SamInputError (a ValueError): `progress` not True or False; `timeout` not a number of seconds > 0, or
    more than MAX_TIMEOUT_S (a day); a `cache_dir` that is not a path, is empty, is a file or lies under one, or
    starts with a ~ that names no home folder; a `mirror` that is not an http:// or https:// URL.
    """
    check_switch("progress", progress)
    if not (is_number(timeout) and math.isfinite(timeout) and timeout > 0):
        raise input_error("timeout", "a number of seconds > 0", timeout)
    if timeout > MAX_TIMEOUT_S:
        raise input_error("timeout", f"at most {MAX_TIMEOUT_S:g} seconds (a day)", timeout,
                          "It is how long to wait for the server to answer, not for the whole download.")
    if cache_dir is not None:
        _checked_cache_folder(cache_dir)
    if mirror is not None and mirror != "":
        _check_mirror("mirror", mirror)


def download_checkpoint(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch the official checkpoint `name` ("vit_b", "vit_l", "vit_h" or "default") into the cache.

    Args:
        name: which checkpoint.
        cache_dir: folder to keep it in (default: $SAM_FROM_SCRATCH_CACHE or ~/.cache/sam_from_scratch).
        mirror: base URL serving the same file names (default: $SAM_FROM_SCRATCH_MIRROR or the official host).
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the server before giving up (per connection attempt / read).

    Returns:
        Path of the verified file. If it is already cached with the right SHA-256, no network is used.

    Raises:
        SamInputError (a ValueError): an unknown `name`; a `cache_dir` (or $SAM_FROM_SCRATCH_CACHE) that is
            not a path, is a file or lies under one; a `mirror` (or $SAM_FROM_SCRATCH_MIRROR) that is not an
            http:// or https:// URL; `progress` not True or False; `timeout` not a number of seconds from 0 to
            MAX_TIMEOUT_S (a day); a cache folder this user cannot write to (when the file is not there yet).
            All before any request.
        DownloadError: the transfer failed or the file's SHA-256 differs from the published one; in both cases
            nothing new is left in the cache (a file already there stays as it was, and the message says so).
        KeyboardInterrupt: passed on as it came, with nothing partial left in the cache.

    Before downloading, temporary files that killed downloads left in the cache folder are removed (see
    `remove_stale_downloads`: only files named like the downloader's own, untouched for STALE_AFTER_S seconds,
    holding the start of a checkpoint).
    """
    import pooch  # imported here: the package works offline without it for everything else

    entry = _entry(name)
    check_download_arguments(cache_dir, mirror, progress, timeout)
    folder = _checked_cache_folder(cache_dir)  # $SAM_FROM_SCRATCH_CACHE too, now that a download needs it
    url = checkpoint_url(name, mirror)
    given = _mirror(mirror)[0]
    if given is None:
        advice = f"Try again, or pass a mirror (--mirror URL or ${MIRROR_ENV})."
    else:
        where = "" if given == "mirror" else f" (set by {given})"
        advice = f"Check that the mirror{where} serves the file at that URL, and try again."
    target, argument = folder / entry.filename, _cache(cache_dir)[0]  # the argument, or the variable, that gave it
    if target.is_dir():  # never replaced: it may hold anything
        raise SamInputError(f"{argument}: expected {entry.filename} in {folder} to be the checkpoint file, "
                            "got a folder of that name. Nothing was downloaded: move the folder, or give another cache "
                            "folder.")
    base = nearest_existing(folder)
    if not target.is_file() and not os.access(base, os.W_OK | os.X_OK):  # before any request: nowhere to put it
        where = "" if base == folder else f" (it would be made in {base})"
        raise SamInputError(f"{argument}: expected a folder this user can write checkpoints to, got {folder}{where}, "
                            f"which is read-only here. Nothing was downloaded: give another folder (cache_dir, "
                            f"--cache-dir or ${CACHE_ENV}).")
    remove_stale_downloads(folder, progress)
    before = _temporary_files(folder)
    # pooch announces each download on its own logger, naming the target even when nothing arrives: our
    # progress bar and errors say what happens. Filtered for this call only (another call's filter is its own).
    quiet = _OnlyWarnings()
    pooch.get_logger().addFilter(quiet)
    fetched = None
    try:
        fetched = pooch.retrieve(
            url,
            known_hash=f"sha256:{entry.sha256}",
            fname=entry.filename,
            path=folder,
            downloader=pooch.HTTPDownloader(progressbar=progress, timeout=timeout),
        )
    except ValueError as error:
        if "hash" not in str(error).lower():
            raise DownloadError(
                f"could not download {name} from {url}: {error}. {_what_is_left(target)} {advice}"
            ) from error
        raise DownloadError(
            f"refused {url}: its SHA-256 differs from the published {entry.sha256} for {entry.filename}, so it "
            f"is not the official {name} checkpoint (a broken mirror, a changed file or a corrupted transfer). "
            f"{_what_is_left(target)}"
        ) from error
    except Exception as error:  # requests' ConnectionError, HTTPError, ChunkedEncodingError, timeouts, OSError
        raise DownloadError(
            f"could not download {name} from {url} ({type(error).__name__}: {error}). {_what_is_left(target)} "
            f"{advice}"
        ) from error
    except BaseException:  # Ctrl-C, SystemExit: pooch removes its file; make sure of it, then let the stop through
        for path in _temporary_files(folder) - before:
            path.unlink(missing_ok=True)
        raise
    finally:
        pooch.get_logger().removeFilter(quiet)
        if fetched is None:  # nothing arrived: the folders this call made for it go too (only if still empty)
            _remove_empty_folders(folder, up_to=base)
    return Path(fetched)


def _remove_empty_folders(folder: Path, up_to: Path) -> None:
    """Remove `folder` and its parents below `up_to` (the nearest folder that existed before), each only while
    it is empty."""
    while folder != up_to and up_to in folder.parents:
        try:
            folder.rmdir()  # refuses a folder that holds anything
        except OSError:
            return
        folder = folder.parent


class _OnlyWarnings(logging.Filter):
    """Keeps a logger's warnings and errors, drops its information."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING
