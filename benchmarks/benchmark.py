"""Ours against the official segment-anything, on the same weights, in one process. (A benchmark, not a test.)

Sections (each prints its rows as soon as it is done, then everything is printed as one markdown table):

  encoder   image encoder fp32: official vs ours vs Hugging Face transformers' SamModel (same weights), and
            the share of the machine's fp32 GEMM rate (a large matrix product timed in the same run) each reaches
  bf16      our image encoder in bfloat16 vs the official in float32: time, cosine of the embeddings, and
            IoU of the masks of a fixed set of prompts decoded from either embedding
  memory    peak memory of one encoder pass, each implementation in its own fresh process
  clicks    one click on a 600 x 400 photo: official `predict` vs ours, on the same embedding (prompt encoder,
            decoder, masks at the image size)
  prompts   64 single-point prompts on one image: 64 official `predict` calls vs one batched
            `predict_torch` call of ours (same embedding, same outputs: masks at the image size)
  amg       automatic mask generator, default settings, one 1024-pixel image: time and records
  amg-records  the same generators with the quality filters off (random weights pass none of them), so
            that there are records to compare
  scaling   our encoder's images/s at batch 1, 2 and 4, and our automatic mask generator's time at 16, 32
            and 64 points per side
  compile   ours with torch.compile on the image encoder (slow to compile on a CPU: not in the default set)
  gpu       images/s for vit_b and vit_h in fp32, bf16 and compiled (only where CUDA is available)

Timed runs alternate between the implementations (official, ours, official, ours, ...) and we report
medians, because the machine may be shared. Weights are random (no download needed): the official model
with seeded noise on every weight, saved in the official checkpoint format and loaded into ours.

    make benchmark                                           # the default sections
    .venv/bin/python benchmarks/benchmark.py --sections encoder,memory --repeats 5
    .venv/bin/python benchmarks/benchmark.py --sections all --output benchmarks/latest.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sam_from_scratch.fast.memory import keep_freed_memory  # noqa: E402

DEFAULT_SECTIONS = ("encoder", "bf16", "memory", "clicks", "prompts", "amg", "amg-records", "scaling", "gpu")
ALL_SECTIONS = ("encoder", "bf16", "memory", "clicks", "prompts", "amg", "amg-records", "scaling", "compile", "gpu")


# ---- set-up --------------------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from sam_from_scratch.device import cpu_bf16_flags

    capability = torch.backends.cpu.get_cpu_capability()
    units = ", ".join(cpu_bf16_flags()) or "no AMX / AVX-512-BF16"
    return (f"{model} ({capability}; {units}), {os.cpu_count()} logical cores, torch threads "
            f"{torch.get_num_threads()}")


def official_model(variant: str, seed: int = 0):
    """The official model with seeded noise on every weight (as tests/conftest.py does), in eval mode."""
    from segment_anything import sam_model_registry as official_registry

    torch.manual_seed(seed)
    model = official_registry[variant]()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for part in (model.image_encoder, model.prompt_encoder, model.mask_decoder):
            for tensor in list(part.parameters()) + [b for b in part.buffers() if b.is_floating_point()]:
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.02)
    return model.eval()


def both_models(variant: str, device: torch.device):
    """(official, ours) holding the same weights: ours is loaded from the official one's checkpoint file."""
    from sam_from_scratch import sam_model_registry

    official = official_model(variant)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"sam_{variant}_random.pth"
        torch.save(official.state_dict(), path)
        ours = sam_model_registry[variant](checkpoint=path)
    return official.to(device), ours.to(device)


def sample_image(side: int = 1024) -> np.ndarray:
    """A sample photograph resized so that its longest side is `side` pixels: (H, W, 3) uint8."""
    from PIL import Image

    from sam_from_scratch.samples import load_sample_image

    image = Image.fromarray(load_sample_image("astronaut"))
    scale = side / max(image.size)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC))


def model_input(model, image: np.ndarray, device: torch.device) -> torch.Tensor:
    """The preprocessed (1, 3, 1024, 1024) float32 input of the image encoder."""
    from sam_from_scratch.utils.transforms import ResizeLongestSide

    resized = ResizeLongestSide(model.image_encoder.img_size).apply_image(image)
    x = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()  # (3, h, w)
    return model.preprocess(x.float())[None]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(functions: dict, repeats: int, device: torch.device, warmup: int = 0) -> dict[str, list[float]]:
    """Run each function in turn, `repeats` rounds; returns the wall-clock seconds of every run."""
    for _ in range(warmup):
        for function in functions.values():
            function()
            synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            synchronize(device)
            start = time.perf_counter()
            function()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


class Table:
    """Rows of measurement | official | ours | ratio | target | met, printed as they come."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, what: str, official: str, ours: str, ratio: str = "", target: str = "", met: bool | None = None):
        row = (what, official, ours, ratio, target, "" if met is None else ("yes" if met else "**no**"))
        self.rows.append(row)
        print("  " + " | ".join(row), flush=True)

    def markdown(self) -> str:
        lines = ["| measurement | official | ours | ratio | target | met |", "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def seconds(values: list[float]) -> str:
    return f"{median(values):.2f} s (n={len(values)})"


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two boolean masks of the same shape (1.0 when both are empty)."""
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


# ---- sections ------------------------------------------------------------------------------------------


def gemm_rate(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 7) -> float:
    """FLOP/s of a large matrix product shaped like the encoder's MLP, (4096, 768) x (768, 3072): the best
    this machine does with torch's matrix library, measured now (median of `repeats` after a warm-up)."""
    a = torch.randn(4096, 768, device=device, dtype=dtype)
    w = torch.randn(3072, 768, device=device, dtype=dtype)
    # ten calls first: with two, the first rate of a process came out low (296 against 337-345 GFLOP/s after)
    times = alternate({"gemm": lambda: F.linear(a, w)}, repeats, device, warmup=10)["gemm"]
    return 2 * a.shape[0] * a.shape[1] * w.shape[0] / median(times)


def encoder_flops(variant: str) -> float:
    """Floating-point operations of one image-encoder pass (batch 1): every matrix product and convolution,
    counted on the official model with shapes only (meta tensors, no arithmetic)."""
    from torch.utils.flop_counter import FlopCounterMode

    from segment_anything import sam_model_registry as official_registry

    with torch.device("meta"), torch.no_grad(), FlopCounterMode(display=False) as counter:
        official_registry[variant]().image_encoder(torch.empty(1, 3, 1024, 1024))
    return float(counter.get_total_flops())


def hf_model(official, variant: str):
    """transformers' SamModel holding the official model's weights (through our key map), in eval mode."""
    from transformers import SamConfig, SamModel, SamVisionConfig
    from transformers.models.sam.configuration_sam import SamMaskDecoderConfig

    from sam_from_scratch.checkpoint import hf_to_official
    from sam_from_scratch.config import CONFIGS

    ours = CONFIGS[variant]
    vision = SamVisionConfig(hidden_size=ours.encoder_embed_dim, num_hidden_layers=ours.encoder_depth,
                             num_attention_heads=ours.encoder_num_heads,
                             global_attn_indexes=list(ours.encoder_global_attn_indexes))
    model = SamModel(SamConfig(vision_config=vision, mask_decoder_config=SamMaskDecoderConfig(layer_norm_eps=1e-5)))
    weights = official.state_dict()
    with torch.no_grad():  # the renamed state dict holds the HF model's own tensors: fill them in place
        for key, tensor in hf_to_official(model.state_dict()).items():
            tensor.copy_(weights[key])
    return model.eval()


def bench_encoder(table, official, ours, x, args, device, cache):
    from sam_from_scratch.build import build_sam
    from sam_from_scratch.config import CONFIGS

    if args.with_plain:  # the plain model of notebooks 02-08, same weights
        plain = build_sam(CONFIGS["vit_b"], fast=False).to(x.device)
        plain.load_state_dict(ours.state_dict())
    hf = None if args.no_hf else hf_model(official, args.variant).to(device)

    with torch.no_grad():
        cache["official"] = official.image_encoder(x)
        cache["ours"] = ours.image_encoder(x)
        functions = {"official": lambda: official.image_encoder(x), "ours": lambda: ours.image_encoder(x)}
        if hf is not None:
            hf_embedding = hf.get_image_embeddings(x)
            functions["hf"] = lambda: hf.get_image_embeddings(x)
        if args.with_plain:
            functions["ours_plain"] = lambda: plain.image_encoder(x)
        rate_before = gemm_rate(device)
        times = alternate(functions, args.repeats, device)
        rate_after = gemm_rate(device)
    rate = max(rate_before, rate_after)
    flops = encoder_flops(args.variant)
    diff = (cache["official"] - cache["ours"]).abs().max().item()
    ratio = median(times["official"]) / median(times["ours"])
    share = {name: flops / median(values) / rate for name, values in times.items()}
    table.add("fp32 GEMM rate of this machine, (4096 x 768) x (768 x 3072), before / after the encoder runs", "",
              f"{rate_before / 1e9:.0f} / {rate_after / 1e9:.0f} GFLOP/s")
    table.add("image encoder fp32, time", seconds(times["official"]), seconds(times["ours"]), f"{ratio:.2f}x faster",
              ">= 2.5x", ratio >= 2.5)
    table.add(f"image encoder fp32, share of the GEMM rate ({flops / 1e9:.0f} GFLOP a pass)",
              f"{share['official']:.0%}", f"{share['ours']:.0%}", "", ">= 80%", share["ours"] >= 0.8)
    table.add("image encoder fp32, max abs diff of embeddings", "", f"{diff:.1e}", "", "<= 1e-4", diff <= 1e-4)
    if hf is not None:
        hf_ratio = median(times["hf"]) / median(times["ours"])
        hf_diff = (hf_embedding - cache["official"]).abs().max().item()
        table.add("image encoder fp32, Hugging Face SamModel (official column) vs ours", seconds(times["hf"]),
                  seconds(times["ours"]), f"{hf_ratio:.2f}x faster", ">= 1.8x", hf_ratio >= 1.8)
        table.add("image encoder fp32, Hugging Face: share of the GEMM rate; max abs diff from official",
                  f"{share['hf']:.0%}", f"{hf_diff:.1e}")
    if args.with_plain:
        plain = median(times["official"]) / median(times["ours_plain"])
        table.add("image encoder fp32, our plain model (no fast paths)", seconds(times["official"]),
                  seconds(times["ours_plain"]), f"{plain:.2f}x faster")


FIXED_PROMPTS = {  # in the 1024 x 1024 input frame
    "points": torch.tensor([[[200.0, 300.0]], [[512.0, 512.0]], [[800.0, 150.0]], [[100.0, 900.0]],
                            [[640.0, 700.0]], [[350.0, 450.0]]]),
    "boxes": torch.tensor([[100.0, 100.0, 600.0, 700.0], [400.0, 200.0, 1000.0, 900.0]]),
}


def masks_from_embedding(model, embedding: torch.Tensor) -> torch.Tensor:
    """Boolean low-resolution masks (multimask) of the fixed prompts decoded from `embedding`: (P, 3, 256, 256)."""
    out = []
    points = FIXED_PROMPTS["points"]
    for prompt in (dict(points=(points, torch.ones(points.shape[:2], dtype=torch.int)), boxes=None, masks=None),
                   dict(points=None, boxes=FIXED_PROMPTS["boxes"], masks=None)):
        prompt = {k: (tuple(t.to(embedding.device) for t in v) if isinstance(v, tuple) else
                      (v.to(embedding.device) if v is not None else None)) for k, v in prompt.items()}
        sparse, dense = model.prompt_encoder(**prompt)
        logits, _ = model.mask_decoder(embedding, model.prompt_encoder.get_dense_pe(), sparse, dense, True)
        out.append(logits.float() > model.mask_threshold)
    return torch.cat(out)


def bench_bf16(table, official, ours, x, args, device, cache):
    """Our encoder in bfloat16, two ways: under autocast (what dtype="auto" does in the predictor) and with the
    weights converted (from_pretrained(..., dtype=torch.bfloat16)), against the official one in float32."""
    import copy

    from sam_from_scratch.device import auto_dtype, cpu_bf16_flags
    from sam_from_scratch.fast import speed_up

    if device.type == "cpu" and not cpu_bf16_flags() and not args.force_bf16:
        table.add("image encoder bf16 vs official fp32", "", "not timed: this CPU has no AMX / AVX-512-BF16 "
                  f"({torch.backends.cpu.get_cpu_capability()}); dtype='auto' picks {auto_dtype(device)}",
                  "", ">= 6x on a CPU with AMX", None)
        return
    ours_bf16 = speed_up(copy.deepcopy(ours), torch.bfloat16)

    def autocast():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return ours.image_encoder(x)

    with torch.no_grad():
        reference = cache.get("official")
        if reference is None:
            reference = cache["official"] = official.image_encoder(x)
        rates = {dtype: gemm_rate(device, dtype) for dtype in (torch.float32, torch.bfloat16)}
        times = alternate({"official": lambda: official.image_encoder(x), "autocast": autocast,
                           "converted": lambda: ours_bf16.image_encoder(x)}, args.bf16_repeats, device, warmup=1)
        # The bound: every FLOP of a pass at the bf16 GEMM rate (attention, softmax, norms cost more).
        flops, official_time = encoder_flops(args.variant), median(times["official"])
        bound = flops / rates[torch.bfloat16]
        table.add("bf16 GEMM rate, (4096 x 768) x (768 x 3072), and its ratio to fp32", "",
                  f"{rates[torch.bfloat16] / 1e9:.0f} GFLOP/s ({rates[torch.bfloat16] / rates[torch.float32]:.1f}x "
                  f"the fp32 {rates[torch.float32] / 1e9:.0f})")
        table.add(f"image encoder bf16: {flops / 1e9:.0f} GFLOP at that rate (the bound), vs official fp32", "",
                  f"{bound:.2f} s", f"{official_time / bound:.2f}x")
        table.add("image encoder bf16 (weights converted), share of the bf16 GEMM rate", "",
                  f"{flops / median(times['converted']) / rates[torch.bfloat16]:.0%}")
        for name, embedding in (("autocast", autocast()), ("converted", ours_bf16.image_encoder(x))):
            cosine = F.cosine_similarity(embedding.float().flatten(), reference.flatten(), dim=0).item()
            # Both decoded by our fp32 decoder, so only the embedding's precision differs.
            masks_fp32 = masks_from_embedding(ours, reference)
            masks_bf16 = masks_from_embedding(ours, embedding.float())
            ious = [mask_iou(a, b) for a, b in zip(masks_fp32.flatten(0, 1), masks_bf16.flatten(0, 1))]
            ratio = median(times["official"]) / median(times[name])
            how = "autocast, as dtype='auto' runs it" if name == "autocast" else "weights converted"
            table.add(f"image encoder bf16 ({how}) vs official fp32, time", seconds(times["official"]),
                      seconds(times[name]), f"{ratio:.2f}x faster", ">= 6x", ratio >= 6)
            table.add(f"image encoder bf16 ({how}), cosine of embeddings vs fp32", "", f"{cosine:.5f}", "",
                      ">= 0.999", cosine >= 0.999)
            table.add(f"masks from bf16 ({name}) vs fp32 embedding, min IoU over {len(ious)} masks", "",
                      f"{min(ious):.3f} (mean {np.mean(ious):.3f})", "", ">= 0.95", min(ious) >= 0.95)


def memory_child(kind: str, variant: str) -> None:
    """Run in a fresh process: build the model, then measure the peak RSS of one encoder pass."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    if kind == "official":
        from segment_anything import sam_model_registry as registry
    else:
        from sam_from_scratch import sam_model_registry as registry
    model = registry[variant]().eval()
    if kind == "ours_bf16":
        from sam_from_scratch.fast import speed_up

        model = speed_up(model, torch.bfloat16)
    x = torch.randn(1, 3, 1024, 1024)

    def rss_kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
        raise RuntimeError(field)

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (the peak RSS) to the current RSS
    before = rss_kib("VmRSS:")
    start = time.perf_counter()
    with torch.no_grad():
        model.image_encoder(x)
    elapsed = time.perf_counter() - start
    peak = rss_kib("VmHWM:")
    print(json.dumps({"before_mib": before / 1024, "peak_mib": peak / 1024, "pass_mib": (peak - before) / 1024,
                      "seconds": elapsed}))


def bench_memory(table, args):
    results = {}
    for kind in ("official", "ours", "ours_bf16"):
        command = [sys.executable, __file__, "--memory-child", kind, "--variant", args.variant]
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
        results[kind] = json.loads(output.strip().splitlines()[-1])
        print(f"  memory {kind}: {results[kind]}", flush=True)
    official = results["official"]["pass_mib"]
    for kind in ("ours", "ours_bf16"):
        ours = results[kind]["pass_mib"]
        label = "fp32" if kind == "ours" else "bf16"
        table.add(f"peak memory of one encoder pass, ours {label} (RSS growth; separate processes)",
                  f"{official:.0f} MiB", f"{ours:.0f} MiB", f"{ours / official:.0%} of official", "<= 20%",
                  ours / official <= 0.2)
    table.add("resident before the pass (weights, libraries)", f"{results['official']['before_mib']:.0f} MiB",
              f"{results['ours']['before_mib']:.0f} MiB")


def bench_prompts(table, official, ours, image, args, device, cache, n_prompts: int = 64):
    theirs, mine = shared_predictors(official, ours, image, "official", cache)  # the encoder is timed elsewhere

    generator = np.random.default_rng(0)
    points = generator.uniform(0, 1, size=(n_prompts, 2)) * np.array(image.shape[1::-1])  # (64, 2) x, y pixels

    def official_calls():
        return [theirs.predict(point_coords=p[None], point_labels=np.ones(1), multimask_output=True) for p in points]

    def ours_batched():
        coords = mine.transform.apply_coords_torch(torch.as_tensor(points, dtype=torch.float, device=device),
                                                   image.shape[:2])[:, None, :]  # (64, 1, 2)
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=device)  # (64, 1)
        return mine.predict_torch(coords, labels, multimask_output=True)

    with torch.no_grad():
        # the masks compared first; these calls are also both sides' warm-up (a first call grows the heap)
        reference, batched = official_calls(), ours_batched()
        ious = [mask_iou(torch.as_tensor(ref[0]), masks.cpu()) for ref, masks in zip(reference, batched[0])]
        del reference, batched  # the timed calls reuse their memory
        times = alternate({"official": official_calls, "ours": ours_batched}, args.prompt_repeats, device)
    ratio = median(times["official"]) / median(times["ours"])
    table.add(f"{n_prompts} point prompts: {n_prompts} official predict calls vs one batched call",
              seconds(times["official"]), seconds(times["ours"]), f"{ratio:.2f}x throughput", ">= 4x", ratio >= 4)
    table.add(f"{n_prompts} point prompts, min IoU of our masks vs official", "", f"{min(ious):.4f}", "", "", None)


def bench_amg(table, official, ours, image, args, device):
    from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator

    from sam_from_scratch.automatic_mask_generator import SamAutomaticMaskGenerator

    theirs, mine = OfficialGenerator(official), SamAutomaticMaskGenerator(ours, dtype="float32")
    results = {}

    def run(name, generator):
        def go():
            results[name] = generator.generate(image)
        return go

    # a warm-up run of each first: first calls grow the heap and pay one-time costs, the official's more than ours
    times = alternate({"official": run("official", theirs), "ours": run("ours", mine)}, args.amg_repeats, device,
                      warmup=args.amg_warmup)
    ref, got = results["official"], results["ours"]
    same = len(ref) == len(got) and all(
        np.array_equal(a["segmentation"], b["segmentation"]) and a["bbox"] == b["bbox"] for a, b in zip(ref, got)
    )
    ratio = median(times["official"]) / median(times["ours"])
    table.add("automatic mask generator, default settings, 1024-pixel image", seconds(times["official"]),
              seconds(times["ours"]), f"{ratio:.2f}x faster", ">= 2x", ratio >= 2)
    table.add("automatic mask generator, records", f"{len(ref)} masks", f"{len(got)} masks",
              "identical" if same else "differ", "same records", same)


def bench_amg_records(table, official, ours, image, args, device):
    """With random weights no mask passes the default filters; compare records with the filters off."""
    from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator

    from sam_from_scratch.automatic_mask_generator import SamAutomaticMaskGenerator

    settings = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ref = OfficialGenerator(official, **settings).generate(image)
    got = SamAutomaticMaskGenerator(ours, dtype="float32", **settings).generate(image)
    ious = [mask_iou(torch.as_tensor(a["segmentation"]), torch.as_tensor(b["segmentation"])) for a, b in zip(ref, got)]
    same_boxes = len(ref) == len(got) and all(a["bbox"] == b["bbox"] for a, b in zip(ref, got))
    table.add("automatic mask generator records, filters off (8 x 8 points, thresholds 0)", f"{len(ref)} masks",
              f"{len(got)} masks", f"same boxes: {same_boxes}; min mask IoU {min(ious, default=1.0):.4f}",
              "same records", same_boxes and min(ious, default=1.0) >= 0.999)


def shared_predictors(official, ours, image, cache_key, cache):
    """An official and our SamPredictor on `image`, holding the same embedding (the official encoder's, run once)."""
    from segment_anything import SamPredictor as OfficialPredictor

    from sam_from_scratch.predictor import SamPredictor

    theirs, mine = OfficialPredictor(official), SamPredictor(ours, dtype="float32")
    with torch.no_grad():
        if cache_key not in cache:
            theirs.set_image(image)
            cache[cache_key] = theirs.features
        for predictor in (theirs, mine):
            predictor.reset_image()
            predictor.original_size = image.shape[:2]
            predictor.input_size = tuple(predictor.transform.get_preprocess_shape(*image.shape[:2], 1024))
            predictor.features = cache[cache_key]
            predictor.is_image_set = True
    return theirs, mine


def bench_clicks(table, official, ours, image, args, device, cache):
    """One click on a 600 x 400 photo, as the widget sends it: predict with one point, three masks at the
    image's size. Official and ours alternate, on the same embedding."""
    from PIL import Image

    small = np.asarray(Image.fromarray(image).resize((600, 400), Image.BICUBIC))
    theirs, mine = shared_predictors(official, ours, small, "clicks", cache)
    clicks = np.random.default_rng(1).uniform(0, 1, size=(args.clicks, 2)) * np.array([600, 400])
    turn = {"official": 0, "ours": 0}

    def click(name, predictor):
        def go():
            point = clicks[turn[name] % len(clicks)][None]
            turn[name] += 1
            return predictor.predict(point_coords=point, point_labels=np.ones(1), multimask_output=True)
        return go

    with torch.no_grad():
        times = alternate({"official": click("official", theirs), "ours": click("ours", mine)}, args.clicks, device,
                          warmup=3)
        same = [mask_iou(torch.as_tensor(a), torch.as_tensor(b)) for point in clicks[:8]
                for a, b in zip(theirs.predict(point_coords=point[None], point_labels=np.ones(1))[0],
                                mine.predict(point_coords=point[None], point_labels=np.ones(1))[0])]
    official_ms, ours_ms = 1000 * median(times["official"]), 1000 * median(times["ours"])
    table.add(f"one click, 600 x 400 photo, 3 masks at its size (median of {args.clicks})", f"{official_ms:.1f} ms",
              f"{ours_ms:.1f} ms", f"{official_ms / ours_ms:.2f}x faster", "<= 40 ms and >= 2x",
              ours_ms <= 40 and official_ms / ours_ms >= 2)
    table.add("one click, min IoU of our masks vs official (8 clicks x 3 masks)", "", f"{min(same):.4f}")


def bench_scaling(table, official, ours, image, x, args, device, cache):
    """How the cost grows: our encoder at batch 1, 2, 4 (images/s), our generator at 16, 32, 64 points a side."""
    from sam_from_scratch.automatic_mask_generator import SamAutomaticMaskGenerator

    with torch.no_grad():
        for batch in (1, 2, 4):
            xb = x.expand(batch, -1, -1, -1).contiguous()
            times = alternate({"ours": lambda: ours.image_encoder(xb)}, args.scaling_repeats, device, warmup=1)
            table.add(f"scaling: our encoder fp32, batch {batch}", "", f"{batch / median(times['ours']):.3f} img/s "
                      f"({seconds(times['ours'])} a batch)")
        encoder = median(alternate({"ours": lambda: ours.image_encoder(x)}, 2, device)["ours"])  # no autograd
    for side in (16, 32, 64):
        generator = SamAutomaticMaskGenerator(ours, points_per_side=side, dtype="float32")
        times = alternate({"ours": lambda: generator.generate(image)}, 1, device)
        table.add(f"scaling: our automatic mask generator, {side} x {side} points ({side * side} prompts)", "",
                  f"{seconds(times['ours'])}; without the encoder pass {median(times['ours']) - encoder:.1f} s")


def bench_compile(table, ours, x, args, device):
    import copy

    from sam_from_scratch.fast import compile_image_encoder

    compiled = compile_image_encoder(copy.deepcopy(ours))
    with torch.no_grad():
        start = time.perf_counter()
        compiled.image_encoder(x)
        first = time.perf_counter() - start
        times = alternate({"eager": lambda: ours.image_encoder(x), "compiled": lambda: compiled.image_encoder(x)},
                          args.repeats, device)
    failed = compiled.image_encoder.compile_failed
    ratio = median(times["eager"]) / median(times["compiled"])
    table.add("our image encoder compiled (first call includes compiling)", f"eager {seconds(times['eager'])}",
              f"{seconds(times['compiled'])}; first call {first:.0f} s" + (" (FELL BACK to eager)" if failed else ""),
              f"{ratio:.2f}x faster")


def peer_fast_encoder(variant: str, checkpoint: Path, compile_mode: str):
    """segment-anything-fast's image encoder (bf16, compiled) on the same weights, or None if not installed."""
    import importlib

    try:
        fast_build = importlib.import_module("segment_anything_fast.build_sam")
    except Exception as error:  # not installed, or it does not import with this torch
        print(f"  segment-anything-fast is not usable here: {type(error).__name__}: {error}", flush=True)
        return None
    builder = getattr(fast_build, f"build_sam_fast_{variant}")
    return builder(checkpoint=str(checkpoint), compile_mode=compile_mode, dtype=torch.bfloat16).cuda().image_encoder


def first_call_or_none(peer, xb, variant, checkpoint_bytes):
    """Call the peer once (it compiles then); on failure retry without its custom Triton kernel, else None."""
    for attempt in ("as published", "without its custom attention kernel"):
        try:
            with torch.no_grad():
                peer(xb)
            print(f"  segment-anything-fast {variant}: runs {attempt}", flush=True)
            return peer
        except Exception as error:  # a peer that cannot run on this torch is reported, not fatal
            print(f"  segment-anything-fast {variant} failed {attempt}: {type(error).__name__}: "
                  f"{str(error)[:300]}", flush=True)
            from segment_anything_fast import flash_4

            flash_4.USE_CUSTOM_KERNEL = False
            torch._dynamo.reset()
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "peer.pth"
                path.write_bytes(checkpoint_bytes)
                peer = peer_fast_encoder(variant, path, "default")
    return None


def set_bias_path(model, path: str | None):
    """Choose how our encoder attention applies its relative-position bias (None: the device's default)."""
    from sam_from_scratch.fast.attention import FastEncoderAttention

    for module in model.modules():
        if isinstance(module, FastEncoderAttention):
            module.bias_path = path
    return model


def bench_gpu(table, args):
    """Encoder images/s at batch 1 and 8: official fp32, ours (fp32, bf16, compiled), segment-anything-fast.

    Ours runs each way of applying the relative-position bias (fast/attention.py): in fp32 and bf16 eagerly,
    the default of each, then each path by name; compiled, the default and, with --gpu-compiled-paths, others.
    """
    import copy

    if not torch.cuda.is_available():
        table.add("GPU rows", "", "no CUDA device in this run: not measured")
        return
    import torch._dynamo as dynamo

    from sam_from_scratch.fast import compile_image_encoder, speed_up

    dynamo.config.automatic_dynamic_shapes = False  # each batch size gets its own static graph
    dynamo.config.cache_size_limit = 16
    device = torch.device("cuda")
    print(f"  GPU: {device_name(device)}; compile mode {args.gpu_compile_mode!r} for ours and the peer",
          flush=True)
    batches = [int(b) for b in args.gpu_batches.split(",")]
    eager_paths = [p for p in args.gpu_eager_paths.split(",") if p]
    compiled_paths = [p for p in args.gpu_compiled_paths.split(",") if p]
    for variant in args.gpu_variants.split(","):
        official, ours = both_models(variant, device)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"sam_{variant}_random.pth"
            torch.save(official.state_dict(), path)
            checkpoint_bytes = path.read_bytes()
            peer = peer_fast_encoder(variant, path, args.gpu_compile_mode)
        ours_bf16 = speed_up(copy.deepcopy(ours), torch.bfloat16)
        compiled = {}
        for name in ["default"] + compiled_paths:
            model = set_bias_path(copy.deepcopy(ours_bf16), None if name == "default" else name)
            started = time.perf_counter()
            compiled[name] = compile_image_encoder(model, mode=args.gpu_compile_mode)
            fell_back = " (FELL BACK to eager)" if model.image_encoder.compile_failed else ""
            print(f"  {variant}: compiled ours ({name}) at batch 1 in {time.perf_counter() - started:.0f} s"
                  f"{fell_back}", flush=True)

        def eager(model, x, path):
            def run():
                set_bias_path(model, path)
                return model.image_encoder(x)
            return run

        for batch in batches:
            x = torch.randn(batch, 3, 1024, 1024, device=device)
            xb = x.to(torch.bfloat16)
            runs = {"official fp32": lambda: official.image_encoder(x),
                    "ours fp32": eager(ours, x, None)}
            runs.update({f"ours fp32, {p}": eager(ours, x, p) for p in eager_paths})
            runs["ours bf16"] = eager(ours_bf16, xb, None)
            runs.update({f"ours bf16, {p}": eager(ours_bf16, xb, p) for p in eager_paths})
            for name, model in compiled.items():
                label = "ours bf16 + compile" + ("" if name == "default" else f", {name}")
                runs[label] = (lambda m: lambda: m.image_encoder(xb))(model)
            if peer is not None:
                peer = first_call_or_none(peer, xb, variant, checkpoint_bytes)
            if peer is not None:
                runs["segment-anything-fast bf16 + compile"] = lambda: peer(xb)
            with torch.no_grad():
                started = time.perf_counter()
                reference = official.image_encoder(x).float()
                for name, run in runs.items():
                    if name.startswith("ours"):
                        cosine = F.cosine_similarity(run().float().flatten(), reference.flatten(), dim=0)
                        print(f"  {variant} batch {batch} {name}: cosine with official fp32 {cosine.item():.5f}",
                              flush=True)
                print(f"  {variant} batch {batch}: first calls {time.perf_counter() - started:.0f} s", flush=True)
                started = time.perf_counter()
                times = alternate(runs, args.repeats * 3, device, warmup=2)
            print(f"  {variant} batch {batch}: timed runs {time.perf_counter() - started:.0f} s", flush=True)
            base = batch / median(times["official fp32"])
            for name, values in times.items():
                rate = batch / median(values)
                table.add(f"GPU {variant} encoder, batch {batch}, {name}", f"{base:.2f} img/s", f"{rate:.2f} img/s",
                          f"{rate / base:.2f}x")
            ours_fp32 = batch / median(times["ours fp32"])
            table.add(f"GPU {variant} batch {batch}: ours fp32 vs official fp32", f"{base:.2f} img/s",
                      f"{ours_fp32:.2f} img/s", f"{ours_fp32 / base:.2f}x", ">= 1.0x", ours_fp32 >= base)
            if peer is None:
                table.add(f"GPU {variant} encoder, batch {batch}, segment-anything-fast", "", "not installed")
            else:
                peer_rate = batch / median(times["segment-anything-fast bf16 + compile"])
                ours_rate = batch / median(times["ours bf16 + compile"])
                table.add(f"GPU {variant} batch {batch}: ours compiled vs segment-anything-fast",
                          f"{peer_rate:.2f} img/s", f"{ours_rate:.2f} img/s", f"{ours_rate / peer_rate:.2f}x",
                          "ahead (> 1.0x)", ours_rate > peer_rate)
        official = ours = ours_bf16 = compiled = peer = None  # free this variant's GPU memory before the next
        torch.cuda.empty_cache()


# ---- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma-separated, from {', '.join(ALL_SECTIONS)}, or 'all'")
    parser.add_argument("--variant", default="vit_b")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (alternating)")
    parser.add_argument("--bf16-repeats", type=int, default=1)
    parser.add_argument("--prompt-repeats", type=int, default=2)
    parser.add_argument("--amg-repeats", type=int, default=1)
    parser.add_argument("--amg-warmup", type=int, default=1, help="untimed generator runs of each side first")
    parser.add_argument("--clicks", type=int, default=30, help="timed clicks of each implementation")
    parser.add_argument("--scaling-repeats", type=int, default=2)
    parser.add_argument("--no-hf", action="store_true", help="leave out the Hugging Face row of the encoder section")
    parser.add_argument("--force-bf16", action="store_true", help="time bfloat16 even on a CPU without bf16 units")
    parser.add_argument("--with-plain", action="store_true", help="also time our plain model (no fast paths)")
    parser.add_argument("--gpu-variants", default="vit_b,vit_h", help="the variants of the gpu section")
    parser.add_argument("--gpu-batches", default="1,8", help="the batch sizes of the gpu section")
    parser.add_argument("--gpu-compile-mode", default="default", help="torch.compile mode, ours and the peer")
    parser.add_argument("--gpu-eager-paths", default="mask,folded",
                        help="ways of applying the bias timed by name in the gpu section, eager (see fast/attention.py)")
    parser.add_argument("--gpu-compiled-paths", default="",
                        help="ways of applying the bias timed by name, compiled, beside the default")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown table to this file")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.variant)
        return 0
    sections = ALL_SECTIONS if args.sections == "all" else tuple(args.sections.split(","))
    unknown = set(sections) - set(ALL_SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {sorted(unknown)}; expected some of {', '.join(ALL_SECTIONS)}")

    device = torch.device("cpu")  # the CPU table; the gpu section builds its own models
    # SamPredictor keeps freed memory on a CPU (a setting of the whole process); made before anything is timed,
    # it holds for every row alike, official, Hugging Face and ours (the memory section's fresh processes leave
    # malloc as it is)
    kept = keep_freed_memory()
    started = datetime.datetime.now(datetime.timezone.utc)
    header = [
        f"command: {' '.join(['python', 'benchmarks/benchmark.py'] + (argv if argv is not None else sys.argv[1:]))}",
        f"started: {started:%Y-%m-%d %H:%M} UTC, load average at start: {load_average()}",
        f"device: {device_name(device)}; torch {torch.__version__}; variant {args.variant}; random weights",
        f"allocator: {'freed memory kept (mallopt), for every row' if kept else 'as the C library has it'}",
    ]
    print("\n".join(header), flush=True)
    table = Table()
    cache: dict[str, torch.Tensor] = {}
    cpu_sections = [s for s in sections if s not in ("memory", "gpu")]
    if cpu_sections:
        official, ours = both_models(args.variant, device)
        image = sample_image()
        x = model_input(ours, image, device)
    runners = {
        "encoder": lambda: bench_encoder(table, official, ours, x, args, device, cache),
        "bf16": lambda: bench_bf16(table, official, ours, x, args, device, cache),
        "memory": lambda: bench_memory(table, args),
        "clicks": lambda: bench_clicks(table, official, ours, image, args, device, cache),
        "scaling": lambda: bench_scaling(table, official, ours, image, x, args, device, cache),
        "prompts": lambda: bench_prompts(table, official, ours, image, args, device, cache),
        "amg": lambda: bench_amg(table, official, ours, image, args, device),
        "amg-records": lambda: bench_amg_records(table, official, ours, image, args, device),
        "compile": lambda: bench_compile(table, ours, x, args, device),
        "gpu": lambda: bench_gpu(table, args),
    }
    for section in sections:
        print(f"[{section}] {datetime.datetime.now(datetime.timezone.utc):%H:%M} UTC", flush=True)
        try:
            runners[section]()
        except Exception as error:  # one broken section should not cost the others' hour of measurements
            table.add(f"{section}: FAILED", "", f"{type(error).__name__}: {error}"[:200])
    finished = datetime.datetime.now(datetime.timezone.utc)
    header.append(f"finished: {finished:%Y-%m-%d %H:%M} UTC, load average at end: {load_average()}")
    report = "\n".join(header[:1] + [""] + [f"- {line}" for line in header[1:]] + ["", table.markdown()])
    print("\n" + report)
    if args.output:
        args.output.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
