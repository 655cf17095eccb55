"""How long from a click on the widget to the redrawn mask, on the CPU? (A benchmark, not a test.)

For each model it builds a ClickSegmenter on a sample photograph, computes the embedding once, then sends
clicks through the same path as the browser (ipympl's JSON mouse messages into the canvas widget) and times:

  decoder   predictor.predict: prompt encoder + mask decoder + upscaling the masks to the image size
  handler   the whole click callback: the above plus the prompt state, overlay, thumbnails and status line
  render    what the browser's redraw request then costs in the kernel: matplotlib renders the figure and
            ipympl encodes the PNG diff it sends (canvas.draw, which ends in manager.refresh_all)
  total     handler + render: click to a new picture ready to send (network and browser decode excluded)

Random weights are as fast as trained ones, so vit_b needs no download. The machine may be shared, so the
CPU time of the click (process_time, all threads) is printed beside the wall-clock total: with one thread,
it is what the click costs on an idle core.

    .venv/bin/python benchmarks/widget_latency.py                      # tiny and vit_b, 1 thread
    .venv/bin/python benchmarks/widget_latency.py --models tiny --clicks 30 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch


def click_message(segmenter, kind: str, col: float, row: float, button: int) -> dict:
    scale = segmenter.figure.bbox.width / segmenter.image.shape[1]
    return {"type": kind, "x": (col + 0.5) * scale, "y": (row + 0.5) * scale, "button": button,
            "buttons": 1 if kind == "button_press" else 0, "modifiers": [], "guiEvent": None}


def build_model(name: str):
    from sam_from_scratch.build import sam_model_registry
    from sam_from_scratch.config import TINY_CHECKPOINT

    torch.manual_seed(0)
    if name == "tiny" and TINY_CHECKPOINT.exists():
        return sam_model_registry["tiny"](checkpoint=TINY_CHECKPOINT), "trained"
    return sam_model_registry[name](), "random weights"


def bench(name: str, image: np.ndarray, clicks: int, display_width: int) -> dict:
    from sam_from_scratch.predictor import SamPredictor
    from sam_from_scratch.interactive import ClickSegmenter

    model, weights = build_model(name)
    segmenter = ClickSegmenter(image, SamPredictor(model), display_width=display_width)
    canvas = segmenter.canvas
    canvas.syncing_data_url = False  # as once a browser shows the canvas: no PNG copy kept in the widget state
    canvas.draw()  # the first frame is a full one; later frames are diffs, as in the browser
    rng = np.random.default_rng(0)
    height, width = image.shape[:2]
    times = {"decoder": [], "handler": [], "render": [], "cpu": []}
    for i in range(clicks + 2):  # the first two warm up
        if i % 4 == 3:
            segmenter.reset()  # keep the prompt to a few points, like a learner moving to the next object
        col, row = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
        button = 2 if i % 4 == 2 else 0  # some right clicks (negative points)
        start, cpu_start = time.perf_counter(), time.process_time()
        canvas._handle_message(canvas, click_message(segmenter, "button_press", col, row, button), [])
        canvas._handle_message(canvas, click_message(segmenter, "button_release", col, row, button), [])
        handled = time.perf_counter()
        canvas.draw()  # what the browser's "draw" request runs: render, then refresh_all() sends the PNG diff
        rendered, cpu_end = time.perf_counter(), time.process_time()
        assert "Error" not in segmenter.status.value, segmenter.status.value
        if i >= 2:
            times["decoder"].append(segmenter.timings["predict_ms"])
            times["handler"].append((handled - start) * 1e3)
            times["render"].append((rendered - handled) * 1e3)
            times["cpu"].append((cpu_end - cpu_start) * 1e3)
    total = [h + r for h, r in zip(times["handler"], times["render"])]
    return {"model": f"{name} ({weights})", "embedding_s": segmenter.timings["embedding_s"],
            **{k: statistics.median(v) for k, v in times.items()}, "total": statistics.median(total),
            "total_p90": float(np.percentile(total, 90))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "vit_b"], choices=["tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fair on a shared machine)")
    parser.add_argument("--image", default="coffee", help="a sample image name (sam_from_scratch.samples)")
    parser.add_argument("--display-width", type=int, default=512)
    args = parser.parse_args()

    from sam_from_scratch.samples import load_sample_image

    torch.set_num_threads(args.threads)
    image = load_sample_image(args.image)
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"image {args.image} {image.shape[1]}×{image.shape[0]}, canvas {args.display_width} px wide, "
          f"median of {args.clicks} clicks")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'model':<26} {'embedding':>10} {'decoder':>9} {'handler':>9} {'render':>9} {'total':>9} {'total p90':>10} {'CPU time':>9}")
    with torch.no_grad():  # as the widget runs it
        for name in args.models:
            r = bench(name, image, args.clicks, args.display_width)
            print(f"{r['model']:<26} {r['embedding_s']:>8.2f} s {r['decoder']:>6.1f} ms {r['handler']:>6.1f} ms "
                  f"{r['render']:>6.1f} ms {r['total']:>6.1f} ms {r['total_p90']:>7.1f} ms {r['cpu']:>6.1f} ms")


if __name__ == "__main__":
    main()
