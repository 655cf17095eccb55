"""SAM_FROM_SCRATCH_DATA moves the bundled data (the small model, the sample photographs) to another folder:
when files are missing there, the messages say that the variable is set, and to what."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from sam_from_scratch import from_pretrained
from sam_from_scratch.samples import load_sample_image
for call in (lambda: from_pretrained("tiny"), lambda: load_sample_image("astronaut")):
    try:
        call()
        print("no error")
    except Exception as error:
        print(type(error).__name__, error)
"""


def test_a_data_folder_set_by_the_environment_is_named_when_its_files_are_missing(tmp_path):
    env = dict(os.environ, SAM_FROM_SCRATCH_DATA=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    model, image = result.stdout.splitlines()
    note = f" SAM_FROM_SCRATCH_DATA is set to {str(tmp_path)!r}: unset it to use the package's own data."
    assert model.startswith(f"FileNotFoundError name: the bundled tiny model was not found at {tmp_path}")
    assert model.endswith(note)
    assert image.startswith(f"SamInputError name: expected one of none (is {tmp_path / 'images'} missing?)")
    assert image.endswith(note)


def test_without_the_variable_the_messages_do_not_mention_it(monkeypatch):
    from sam_from_scratch.config import data_dir_note

    monkeypatch.delenv("SAM_FROM_SCRATCH_DATA", raising=False)
    assert data_dir_note() == ""
