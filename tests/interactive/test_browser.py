"""End to end: the click-to-segment widget in a real JupyterLab, driven by a real browser.

The test starts JupyterLab on 127.0.0.1 with a random token in a temporary copy of notebook 09, opens it with
`?reset` (no saved workspace can get in the way) in Debian's chromium driven by Playwright (the browser
comes from `make browser` / apt, never from a Playwright download), runs all cells, then clicks on an object
in the widget's picture. It checks what a learner would see: the status line reports a mask, and the picture
changed where the object is. Then a right click adds a negative point and "undo" takes it back.

The last screenshot is saved to tests/artifacts/ (git-ignored; CI keeps it as an artifact).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = Path(os.environ.get("SAM_BROWSER_NOTEBOOK", REPO / "notebooks" / "09_predictor_and_click_demo.ipynb"))
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SAM_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
# The scene notebook 09 shows in its widget (checked against the notebook below, so the two cannot drift apart).
DEMO_SCENE = 139
DEMO_SCENE_CALL = f"make_scene(HELDOUT_SEED, {DEMO_SCENE})"
SEGMENTER = ".sam-click-segmenter"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a temporary copy of notebook 09; yields (base_url, token, name)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium package)"
    assert NOTEBOOK.exists(), f"{NOTEBOOK} is missing"
    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "get Jupyter news?" pop-up over the notebook
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = free_port(), os.urandom(16).hex()
    env = dict(
        os.environ,
        JUPYTERLAB_SETTINGS_DIR=str(root / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        SAM_FAST_CI="1",
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",  # the kernel shares 2 cores with the server and the browser
    )
    log = open(root / "jupyter.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None"]
        + (["--allow-root"] if os.geteuid() == 0 else []),  # CI containers often run as root
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (root / "jupyter.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token, NOTEBOOK.name
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    base, token, name = lab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
                  "--disable-extensions", "--no-first-run"],
        )
        scale = float(os.environ.get("SAM_BROWSER_SCALE", "1"))  # 2 to try a HiDPI screen
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=scale)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{base}/lab/tree/{name}?reset&token={token}")
        try:
            yield page
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser_last_page.png"))
            context.close()
            browser.close()


# Every code cell of the open notebook has run (an execution count, no "[*]") and the kernel is idle.
ALL_CELLS_RAN = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
    const failed = cells.some(cell => cell.model.outputs.toJSON().some(output => output.output_type === 'error'));
    return kernel && kernel.status === 'idle' && (failed || cells.every(cell => cell.model.executionCount !== null
        && !cell.node.querySelector('.jp-InputPrompt').textContent.includes('*')));
}"""


def wait_for_status(page, pattern: str, timeout_s: float = 60) -> str:
    """Wait until the widget's status line matches `pattern` (a regex); return the text."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        locator = page.locator(f"{SEGMENTER} .sam-status")
        if locator.count():
            text = locator.first.inner_text()
            if re.search(pattern, text):
                return text
        page.wait_for_timeout(200)
    raise AssertionError(f"status line never matched {pattern!r}; last text: {text!r}")


def canvas_pixels(canvas) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(canvas.screenshot())).convert("RGB")).astype(np.int16)


def wait_for_picture_change(canvas, reference: np.ndarray, timeout_s: float = 30) -> np.ndarray:
    """The canvas is redrawn asynchronously (the kernel sends a new PNG); poll until it differs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pixels = canvas_pixels(canvas)
        if pixels.shape == reference.shape and (np.abs(pixels - reference).sum(axis=2) > 40).sum() > 50:
            return pixels
        canvas.page.wait_for_timeout(200)
    raise AssertionError("the picture did not change")


def demo_targets():
    """(x, y) of a pixel inside each of the two largest objects of the demo scene, as fractions of the image size."""
    from sam_from_scratch.training.scenes import HELDOUT_SEED, make_scene

    scene = make_scene(HELDOUT_SEED, DEMO_SCENE)
    height, width = scene.image.shape[:2]
    wholes = sorted((i for i, p in enumerate(scene.parents) if p == -1), key=lambda i: -scene.masks[i].sum())
    targets = []
    for i in wholes[:2]:
        rows, cols = np.nonzero(scene.masks[i])
        k = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)  # the object's pixel nearest its centre
        targets.append(((cols[k] + 0.5) / width, (rows[k] + 0.5) / height))
    return targets


def test_the_notebook_widget_shows_the_scene_this_test_clicks_on():
    assert DEMO_SCENE_CALL in NOTEBOOK.read_text(), f"notebook 09 no longer shows {DEMO_SCENE_CALL}; update DEMO_SCENE_CALL"


def test_clicking_an_object_in_jupyterlab_shows_its_mask_and_undo_takes_back_a_right_click(page):
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", state="visible")
    # The kernel must be up before "run all" (otherwise the command runs nothing).
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }",
        timeout=120_000,
    )
    # Outputs saved in the notebook show the widget as it was saved; clear them so what we see is this run.
    page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(ALL_CELLS_RAN, timeout=600_000, polling=500)
    errors = page.evaluate("""() => window.jupyterapp.shell.currentWidget.content.widgets
        .flatMap(cell => cell.model.type === 'code' ? cell.model.outputs.toJSON() : [])
        .filter(output => output.output_type === 'error').map(output => output.ename + ': ' + output.evalue)""")
    assert not errors, f"notebook cells failed in JupyterLab: {errors}"
    # The notebook's own cells clicked on the widget from code; start from a clean slate with its reset button.
    page.locator(f"{SEGMENTER} button", has_text=re.compile(r"^\s*reset\s*$")).click()
    wait_for_status(page, r"No prompts")

    # the picture: ipympl draws on a canvas and listens on a transparent canvas stacked on top of it
    canvas = page.locator(f"{SEGMENTER} .sam-canvas canvas").last
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # the picture without a mask reaches the browser
    before = canvas_pixels(canvas)
    box = canvas.bounding_box()
    (fx, fy), (gx, gy) = demo_targets()

    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    text = wait_for_status(page, r"Mask \d of 3: predicted IoU [\d.]+, \d+ px")
    assert int(re.search(r"(\d+) px", text).group(1)) > 0
    assert "1 positive, 0 negative points" in text
    after_click = wait_for_picture_change(canvas, before)
    changed = np.abs(after_click - before).sum(axis=2) > 40  # (h, w) screen pixels
    row, col = int(fy * changed.shape[0]), int(fx * changed.shape[1])
    assert changed[max(row - 12, 0) : row + 12, max(col - 12, 0) : col + 12].mean() > 0.3, "no mask drawn where we clicked"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(SEGMENTER).screenshot(path=str(ARTIFACTS / "browser_click_mask.png"))

    # the first answer added thumbnails and a status line: the page may have moved, so measure the canvas again
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + gx * box["width"], box["y"] + gy * box["height"], button="right")
    wait_for_status(page, r"1 positive, 1 negative points")
    page.locator(f"{SEGMENTER} button", has_text=re.compile(r"^\s*undo\s*$")).click()
    wait_for_status(page, r"Undone\. Mask \d of 3: .* 1 positive, 0 negative points")
    # the picture goes back to the one-click state (the negative point's marker is gone)
    deadline = time.monotonic() + 30
    while (np.abs(canvas_pixels(canvas) - after_click).sum(axis=2) > 40).mean() > 0.002:
        assert time.monotonic() < deadline, "the picture did not return to the state before the right click"
        page.wait_for_timeout(200)
    page.locator(SEGMENTER).screenshot(path=str(ARTIFACTS / "browser_after_undo.png"))
    print(f"screenshots in {ARTIFACTS}")
