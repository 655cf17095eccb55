"""Fine-tuning under torchrun: two CPU processes over gloo end with the weights one process trains on the same
batches (each process takes half of every step's images; an image's prompts do not depend on the split)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sam_from_scratch.training.datasets import save_folder_dataset
from sam_from_scratch.training.finetune import finetune
from sam_from_scratch.training.stars import STAR_SEED, make_star_scene

REPO = Path(__file__).resolve().parents[2]
ARGS = dict(steps=3, batch=4, lr=1e-3, val_ids=["star_0"], seed=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_over_gloo_train_what_one_process_trains(tmp_path):
    samples = [(f"star_{i}", make_star_scene(STAR_SEED, i).image, make_star_scene(STAR_SEED, i).masks) for i in range(5)]
    data = save_folder_dataset(tmp_path / "stars", samples)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "-m", "sam_from_scratch", "finetune", "--model", "tiny", "--data", str(data), "--out", str(tmp_path / "ddp"),
        "--device", "cpu", "--steps", str(ARGS["steps"]), "--batch", str(ARGS["batch"]), "--lr", str(ARGS["lr"]),
        "--val-ids", "star_0", "--seed", str(ARGS["seed"]),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote") == 1  # only the lead process writes and reports

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        card = finetune("tiny", data, out=tmp_path / "one", device="cpu", progress=False, **ARGS)
    finally:
        torch.set_num_threads(threads)
    parallel = torch.load(tmp_path / "ddp" / card["checkpoint"], weights_only=True)
    single = torch.load(tmp_path / "one" / card["checkpoint"], weights_only=True)
    assert parallel.keys() == single.keys()
    for key, value in single.items():
        if key.endswith("k_proj.bias"):
            # Its true gradient is 0 (softmax ignores a shift shared by all keys); Adam turns rounding noise into
            # full-size steps, so the two runs differ here by design.
            continue
        torch.testing.assert_close(parallel[key], value, atol=1e-4, rtol=1e-3, msg=key)
    trained = [k for k in single if k.startswith("mask_decoder.")]
    original = torch.load(REPO / "sam_from_scratch" / "data" / "tiny" / "sam_tiny.pt", weights_only=True)
    assert any(not torch.equal(single[k], original[k]) for k in trained)  # the comparison is not of untouched weights


@pytest.mark.parametrize("batch", [3])
def test_the_batch_must_split_evenly_between_the_processes(tmp_path, batch, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    samples = [(f"s{i}", make_star_scene(STAR_SEED, i).image, make_star_scene(STAR_SEED, i).masks) for i in range(3)]
    data = save_folder_dataset(tmp_path / "stars", samples)
    from sam_from_scratch.errors import SamInputError

    with pytest.raises(SamInputError, match="batch: expected a multiple of the 2 processes, got 3"):
        finetune("tiny", data, out=tmp_path / "run", batch=batch, steps=1, device="cpu", progress=False)


@pytest.mark.parametrize("lead", [True, False], ids=["lead", "other"])
def test_every_process_looks_at_the_run_folder_before_the_lead_writes_in_it(tmp_path, monkeypatch, lead):
    """Under torchrun each process checks --out for files of anyone else's; the lead then marks it as a run
    (run.json). A process still checking when run.json appeared would refuse the folder as someone else's: a
    barrier comes between the checks and the write. (The other process here sees run.json appear at the
    barrier, as it would from the lead.)"""
    import importlib
    from dataclasses import fields

    finetune_module = importlib.import_module("sam_from_scratch.training.finetune")  # the module, not the function

    events = []
    out = tmp_path / "run"
    settings = finetune_module.FinetuneSettings(**{f.name: None for f in fields(finetune_module.FinetuneSettings)})
    write = finetune_module.write_atomically

    def barrier():
        events.append("barrier")
        if not lead and len(events) == 1:  # meanwhile, the lead writes
            out.mkdir()
            (out / finetune_module.RUN_FILE).write_text('{"settings": {}}')

    def recorded_write(path, save):
        events.append("write")
        return write(path, save)

    monkeypatch.setattr(finetune_module.dist, "barrier", barrier)
    monkeypatch.setattr(finetune_module, "write_atomically", recorded_write)
    finetune_module._claim_run_folder(out, settings, "fingerprint", lead=lead, world=2)
    assert events == (["barrier", "write", "barrier"] if lead else ["barrier", "barrier"])
    assert (out / finetune_module.RUN_FILE).exists()
