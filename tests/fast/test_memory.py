"""keep_freed_memory: the predictor's malloc setting on a CPU, and the variable that turns it off."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sam_from_scratch.fast import memory

REPO = Path(__file__).resolve().parents[2]

PROGRAM = """
import json
from sam_from_scratch import SamPredictor
from sam_from_scratch.build import build_sam
from sam_from_scratch.config import CONFIGS
from sam_from_scratch.fast import memory
before = memory._applied
SamPredictor(build_sam(CONFIGS["tiny"]))
print(json.dumps([before, memory._applied]))
"""


def run_program(**env) -> list:
    environment = {**os.environ, **env}
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, cwd=REPO, env=environment,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not memory._is_glibc(), reason="the setting is made through glibc's mallopt")
def test_a_predictor_on_a_cpu_keeps_freed_memory():
    assert run_program(SAM_FROM_SCRATCH_KEEP_FREED_MEMORY="1") == [None, True]


def test_the_variable_leaves_malloc_as_it_is():
    assert run_program(SAM_FROM_SCRATCH_KEEP_FREED_MEMORY="0") == [None, False]
