"""Diagrams of SAM drawn by code, for the notebooks: boxes, arrows and the tensor shapes of one configuration.

Every shape is computed from a `SamConfig`, so a diagram drawn for vit_b shows vit_b's numbers and one drawn
for the small model shows its numbers; tests/course/test_diagrams.py compares the labels with a forward pass.
Each function returns a `matplotlib.figure.Figure` made without pyplot (a notebook shows it once, as the
cell's value). Needs the course extras (matplotlib).
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from .config import CONFIGS, SamConfig, guess_variant
from .errors import SamInputError, check_int, input_error

# One colour per room of the model, the same in every diagram.
COLORS = {
    "data": "#f2f2f2",
    "image_encoder": "#cfe2f3",
    "prompt_encoder": "#d9ead3",
    "mask_decoder": "#fce5cd",
    "attention": "#ead1dc",
    "plain": "#fff2cc",
    "positional": "#2e7d32",
}


def shape(*dims) -> str:
    """The label of a tensor shape, as PyTorch prints it: shape(1, 3, 96, 96) -> '(1, 3, 96, 96)'."""
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _numbers(values) -> str:
    return ", ".join(str(v) for v in values)


def texts(figure: Figure) -> list[str]:
    """Every text drawn on a figure (box titles, shape labels, arrow labels)."""
    return [t.get_text() for ax in figure.axes for t in ax.texts]


def _check_config(config) -> None:
    """Every diagram but the generator's draws one SamConfig; a name or a model gets a hint to its config."""
    if isinstance(config, SamConfig):
        return
    expected = "a SamConfig, e.g. CONFIGS['tiny'] or CONFIGS['vit_b']"
    if hasattr(config, "image_encoder") and hasattr(config, "state_dict"):  # its repr is the whole module tree
        name = guess_variant(config.state_dict())
        hint = f"pass its config, CONFIGS[{name!r}]" if name is not None else "pass the SamConfig it was built from"
        raise SamInputError(f"config: expected {expected}, got a {type(config).__name__} model; {hint}.")
    known = isinstance(config, str) and config in CONFIGS
    hint = f"Pass CONFIGS[{config!r}] (from sam_from_scratch import CONFIGS)." if known else ""
    raise input_error("config", expected, config, hint)


# ---- drawing helpers: positions in inches, y growing downwards -----------------------------------------


def _canvas(width: float, height: float, title: str) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(0.15, 0.3, title, fontsize=12, fontweight="bold", va="center")
    return figure, ax


def _box(ax, x, y, w, h, title, detail="", color=COLORS["plain"]):
    """A rounded box with a bold title and smaller lines below it; returns its anchor points."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", fc=color, ec="0.3"))
    if detail:
        ax.text(x + w / 2, y + 0.22, title, ha="center", va="center", fontsize=9.5, fontweight="bold")
        ax.text(x + w / 2, y + (h + 0.3) / 2, detail, ha="center", va="center", fontsize=8.5, linespacing=1.35)
    else:
        ax.text(x + w / 2, y + h / 2, title, ha="center", va="center", fontsize=9.5, fontweight="bold")
    return {"left": (x, y + h / 2), "right": (x + w, y + h / 2), "top": (x + w / 2, y), "bottom": (x + w / 2, y + h)}


def _arrow(ax, start, end, label="", color="0.25", offset=(0.0, -0.12), ha="center"):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", lw=1.3, color=color, shrinkA=0, shrinkB=0))
    if label:
        x, y = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(x, y, label, ha=ha, va="bottom", fontsize=8.5, color=color,
                bbox=dict(fc="white", ec="none", pad=0.5, alpha=0.85))


# ---- the whole model ------------------------------------------------------------------------------------


def model_overview(config: SamConfig) -> Figure:
    """The three parts and the tensors between them, for one image and one click (batch 1)."""
    _check_config(config)
    S, g, C = config.image_size, config.image_embedding_size, config.prompt_embed_dim
    fig, ax = _canvas(12.6, 5.2, f"SAM: one image, one click (image {S}x{S}, embedding grid {g}x{g})")
    image = _box(ax, 0.2, 0.8, 2.3, 1.3, "image", f"resized, normalized, padded\n{shape(1, 3, S, S)}",
                 COLORS["data"])
    encoder = _box(ax, 3.4, 0.8, 2.7, 1.3, "image encoder (ViT)",
                   f"{config.encoder_depth} blocks, width {config.encoder_embed_dim}\n"
                   f"global blocks {config.encoder_global_attn_indexes}", COLORS["image_encoder"])
    prompts = _box(ax, 0.2, 2.9, 2.3, 1.6, "prompts",
                   f"click {shape(1, 1, 2)}, label {shape(1, 1)}\nor box {shape(1, 4)}\n"
                   f"or mask {shape(1, 1, 4 * g, 4 * g)}", COLORS["data"])
    prompt_encoder = _box(ax, 3.4, 2.9, 2.7, 1.6, "prompt encoder",
                          "Fourier codes + learned\npoint/box embeddings;\nmask: conv stack", COLORS["prompt_encoder"])
    decoder = _box(ax, 8.4, 1.0, 2.0, 3.5, "mask decoder",
                   "two-way\ntransformer\n+ upscaling\n+ hypernetworks\n+ IoU head", COLORS["mask_decoder"])
    _arrow(ax, image["right"], encoder["left"])
    _arrow(ax, prompts["right"], prompt_encoder["left"])
    x0, x1 = prompt_encoder["right"][0], decoder["left"][0]
    _arrow(ax, encoder["right"], (x1, 1.45), f"image embedding {shape(1, C, g, g)}")
    # two lines: on one, the label is wider than the gap between the prompt encoder and the decoder
    _arrow(ax, (x0, 3.1), (x1, 3.1), f"dense positional code\n{shape(1, C, g, g)}", COLORS["positional"])
    _arrow(ax, (x0, 3.7), (x1, 3.7), f"sparse tokens {shape(1, 2, C)}")
    _arrow(ax, (x0, 4.3), (x1, 4.3), f"dense prompt {shape(1, C, g, g)}")
    _box(ax, 10.9, 1.2, 1.4, 1.2, "mask logits", f"{shape(1, 3, 4 * g, 4 * g)}\nlow resolution", COLORS["data"])
    _box(ax, 10.9, 3.0, 1.4, 1.2, "predicted IoU", f"{shape(1, 3)}\none per mask", COLORS["data"])
    _arrow(ax, (10.4, 1.8), (10.9, 1.8))
    _arrow(ax, (10.4, 3.6), (10.9, 3.6))
    ax.text(11.6, 0.95, "then upsampled to\nthe photo: (1, 3, H, W)", ha="center", va="center", fontsize=8)
    ax.text(0.2, 4.95, "sparse tokens: the click and a padding point (no box given); dense prompt: the learned "
            "'no mask' vector when no mask is given; the image encoder runs once per image, the rest once per prompt.",
            fontsize=8, color="0.35")
    return fig


# ---- the image encoder's two kinds of block ---------------------------------------------------------------


def encoder_blocks(config: SamConfig) -> Figure:
    """A windowed block and a global block of the image encoder, side by side, with their shapes.

    A config with one kind only (window_size 0 or every block global; no global block) draws that kind alone.
    """
    _check_config(config)
    g, D, ws, nh = config.image_embedding_size, config.encoder_embed_dim, config.window_size, config.encoder_num_heads
    hidden = int(D * config.mlp_ratio)
    every = tuple(range(config.encoder_depth))
    global_ids = every if ws == 0 else tuple(config.encoder_global_attn_indexes)  # window_size 0: all global
    windowed_ids = tuple(i for i in every if i not in global_ids)
    fig, ax = _canvas(11.4, 9.0, f"The image encoder's blocks ({nh} heads of width {D // nh})")
    columns = []
    if windowed_ids:
        padded = math.ceil(g / ws) * ws
        windows = (padded // ws) ** 2
        columns.append((f"windowed block (blocks {_numbers(windowed_ids)})", [
            ("LayerNorm", shape(1, g, g, D)),
            ("window partition", (f"pad {g}x{g} to {padded}x{padded}, " if padded > g else "")
             + f"cut into {windows} windows\n{shape(windows, ws, ws, D)}"),
            ("attention inside each window", f"{ws * ws} keys per query + relative-position bias\n"
                                             f"rel_pos_h, rel_pos_w {shape(2 * ws - 1, D // nh)}"),
            ("window unpartition", f"back to the grid: {shape(1, g, g, D)}"),
        ]))
    if global_ids:
        columns.append((f"global block (blocks {_numbers(global_ids)})", [
            ("LayerNorm", shape(1, g, g, D)),
            ("attention over the whole grid", f"{g * g} keys per query + relative-position bias\n"
                                              f"rel_pos_h, rel_pos_w {shape(2 * g - 1, D // nh)}"),
        ]))
    columns = [(x, heading, steps) for x, (heading, steps) in zip((0.3, 5.9), columns)]
    for x, heading, steps in columns:
        ax.text(x + 2.6, 0.85, heading, ha="center", fontsize=10.5, fontweight="bold")
        _box(ax, x + 0.9, 1.15, 3.4, 0.55, f"x {shape(1, g, g, D)}", color=COLORS["data"])
        y, previous = 2.0, (x + 2.6, 1.7)
        for title, detail in steps:
            color = COLORS["attention"] if title.startswith("attention") else COLORS["image_encoder"]
            if title.startswith("window"):  # reshapes: values moved, no weights
                color = COLORS["data"]
            anchors = _box(ax, x, y, 5.2, 0.85, title, detail, color)
            _arrow(ax, previous, anchors["top"])
            previous, y = anchors["bottom"], y + 1.05
        plus = _box(ax, x + 1.9, y, 1.4, 0.45, "+ x", color=COLORS["plain"])
        _arrow(ax, previous, plus["top"])
        mlp = _box(ax, x, y + 0.7, 5.2, 0.75, "LayerNorm, then MLP", f"{D} -> {hidden} -> {D}, GELU",
                   COLORS["image_encoder"])
        _arrow(ax, plus["bottom"], mlp["top"])
        out = _box(ax, x + 0.9, y + 1.75, 3.4, 0.55, f"+ residual: {shape(1, g, g, D)}", color=COLORS["data"])
        _arrow(ax, mlp["bottom"], out["top"])
    if windowed_ids and global_ids:
        footnote = ("Both kinds share every layer; only the partition around the attention (grey: it moves values and "
                    "has no weights), and the size of the relative-position tables, differ.")
    elif global_ids:
        footnote = f"No windowed blocks: {'window_size is 0, so ' if ws == 0 else ''}every block attends over the whole grid."
    else:
        footnote = "No global blocks: every block attends inside its windows (grey: moving values, no weights)."
    ax.text(0.3, 8.8, footnote, fontsize=8.5, color="0.35")
    return fig


# ---- the two-way attention block ----------------------------------------------------------------------------


def two_way_block(config: SamConfig, num_prompt_tokens: int = 2) -> Figure:
    """One block of the two-way transformer: where tokens and image meet, and where positional codes are added."""
    _check_config(config)
    check_int("num_prompt_tokens", num_prompt_tokens, 0)
    g, C, nh = config.image_embedding_size, config.prompt_embed_dim, config.decoder_num_heads
    T = 5 + num_prompt_tokens  # IoU token, 4 mask tokens, the prompt tokens
    inner = C // 2  # the cross-attentions' downsample rate is 2
    fig, ax = _canvas(11.6, 8.2, f"A two-way attention block ({nh} heads; {T} tokens, {g * g} image tokens)")
    tokens = _box(ax, 0.8, 0.8, 3.6, 0.6, f"tokens {shape(1, T, C)}", color=COLORS["data"])
    image = _box(ax, 7.1, 0.8, 3.8, 0.6, f"image tokens {shape(1, g * g, C)}", color=COLORS["data"])
    steps = [
        (1.8, "1. token self-attention", f"q = k = tokens + query_pe, v = tokens\nwidth {C}; then add & norm1"),
        (3.1, "2. token -> image attention", f"q = tokens + query_pe; k = image + key_pe, v = image\n"
                                            f"inner width {inner}; then add & norm2"),
        (4.4, "3. MLP on each token", f"{C} -> {config.decoder_mlp_dim} -> {C}, ReLU; then add & norm3"),
    ]
    previous = tokens["bottom"]
    for y, title, detail in steps:
        color = COLORS["plain"] if title.startswith("3.") else COLORS["attention"]
        anchors = _box(ax, 0.2, y, 4.8, 0.95, title, detail, color)
        _arrow(ax, previous, anchors["top"])
        previous = anchors["bottom"]
    token_out = _box(ax, 0.8, 6.2, 3.6, 0.6, f"tokens out {shape(1, T, C)}", color=COLORS["data"])
    _arrow(ax, previous, token_out["top"])
    cross = _box(ax, 6.6, 4.4, 4.8, 0.95, "4. image -> token attention",
                 f"q = image + key_pe; k = tokens + query_pe, v = tokens\ninner width {inner}; then add & norm4",
                 COLORS["attention"])
    _arrow(ax, image["bottom"], cross["top"])
    image_out = _box(ax, 7.1, 6.2, 3.8, 0.6, f"image tokens out {shape(1, g * g, C)}", color=COLORS["data"])
    _arrow(ax, cross["bottom"], image_out["top"])
    _arrow(ax, (7.1, 1.25), (5.0, 3.45), "k, v: the image", offset=(0.3, 0.0))
    _arrow(ax, (5.0, 5.2), (6.6, 4.95), "k, v: the tokens", offset=(0.0, -0.2))
    green = COLORS["positional"]
    ax.text(0.2, 7.15, "Positional codes: query_pe is the token sequence (output tokens and prompts) as it entered "
            "the transformer, key_pe the dense code of the grid.\nThey are added to queries and keys before every "
            "attention, never to values, so position steers who attends to whom. Block 0 skips them in step 1,\n"
            "where the tokens still are their codes, and the add there too: its self-attention's output replaces them.", fontsize=8.5, color=green, va="top", linespacing=1.4)
    return fig


# ---- the hypernetwork dot product -------------------------------------------------------------------------


def hypernetwork(config: SamConfig) -> Figure:
    """How the mask tokens become masks: an MLP per token gives the weights of a per-pixel linear classifier."""
    _check_config(config)
    g, C = config.image_embedding_size, config.prompt_embed_dim
    c8, side = C // 8, 4 * g
    fig, ax = _canvas(11.6, 5.0, "From mask tokens to masks: a dot product at every pixel")
    tokens = _box(ax, 0.2, 0.9, 2.8, 0.9, "mask tokens out", f"from the transformer\n{shape(1, 4, C)}",
                  COLORS["data"])
    mlps = _box(ax, 3.7, 0.9, 3.1, 0.9, "4 hypernetwork MLPs", f"one per token: {C} -> {C} -> {C} -> {c8}",
                COLORS["mask_decoder"])
    weights = _box(ax, 7.5, 0.9, 2.0, 0.9, "hyper_in", f"4 classifiers\n{shape(1, 4, c8)}", COLORS["data"])
    image = _box(ax, 0.2, 2.6, 2.8, 0.9, "image tokens out", f"back on the grid\n{shape(1, C, g, g)}",
                 COLORS["data"])
    upscale = _box(ax, 3.7, 2.6, 3.1, 0.9, "output_upscaling", f"2 transposed convs, 2x2, stride 2\n"
                   f"{C} -> {C // 4} -> {c8} channels", COLORS["mask_decoder"])
    features = _box(ax, 7.5, 2.6, 2.0, 0.9, "upscaled", shape(1, c8, side, side), COLORS["data"])
    dot = _box(ax, 9.85, 1.35, 1.65, 1.9, "dot product", f"{shape(1, 4, c8)}\n@\n{shape(1, c8, side * side)}",
               COLORS["attention"])
    masks = _box(ax, 9.85, 3.6, 1.65, 1.0, "masks", f"{shape(1, 4, side, side)} logits", COLORS["data"])
    _arrow(ax, tokens["right"], mlps["left"])
    _arrow(ax, mlps["right"], weights["left"])
    _arrow(ax, image["right"], upscale["left"])
    _arrow(ax, upscale["right"], features["left"])
    _arrow(ax, weights["right"], (9.85, 1.75))
    _arrow(ax, features["right"], (9.85, 2.85))
    _arrow(ax, dot["bottom"], masks["top"])
    ax.text(0.2, 3.95, "Each mask token's MLP outputs the weights of a linear classifier over the upscaled features'\n"
            f"{c8} channels; applied at each of the {side}x{side} positions, it gives one mask's logits.\n"
            "multimask_output=True keeps masks 1-3, False keeps mask 0.", fontsize=8.5, color="0.35", va="top",
            linespacing=1.4)
    return fig


# ---- the automatic mask generator ---------------------------------------------------------------------------


def mask_generator_pipeline(points_per_side: int = 32, points_per_batch: int = 64) -> Figure:
    """The automatic mask generator's steps, from a grid of clicks to one record per mask."""
    check_int("points_per_side", points_per_side, 1)
    check_int("points_per_batch", points_per_batch, 1)
    n_points = points_per_side**2
    batches = math.ceil(n_points / points_per_batch)
    per_batch = min(n_points, points_per_batch)  # a grid smaller than a batch goes in one batch of its size
    fig, ax = _canvas(12.4, 4.4, "The automatic mask generator: from a grid of clicks to one record per mask")
    row1 = [
        ("point grid", f"{points_per_side} x {points_per_side} = {n_points} points\none click each"),
        ("prompt in batches", f"{batches} {'batch' if batches == 1 else 'batches'} of {per_batch} points\n"
                              "3 masks per point"),
        ("decoder output", f"logits ({per_batch * 3}, H, W)\npredicted IoU ({per_batch * 3},)"),
        ("filter", "predicted IoU > its threshold,\nstability score >= its threshold"),
    ]
    row2 = [
        ("box NMS", "drop masks whose box overlaps\na better-rated one (IoU > 0.7)"),
        ("crops (optional)", "repeat on zoomed crops; drop masks\ncut by a crop edge; NMS across"),
        ("clean-up (optional)", "fill small holes, remove\nsmall islands (min area)"),
        ("records", "mask or RLE, area, box,\npredicted IoU, stability, point"),
    ]
    for row, (y, steps) in enumerate([(0.8, row1), (2.6, row2)]):
        previous = None
        for i, (title, detail) in enumerate(steps):
            anchors = _box(ax, 0.2 + 3.05 * i, y, 2.75, 1.25, title, detail,
                           COLORS["mask_decoder"] if title == "decoder output" else COLORS["plain"])
            if previous is not None:
                _arrow(ax, previous["right"], anchors["left"])
            previous = anchors
        if row == 0:
            last = previous
    (x_end, y_end), x_start = last["bottom"], 0.2 + 2.75 / 2  # down, across the gap, down into the next row
    ax.plot([x_end, x_end, x_start], [y_end, 2.3, 2.3], color="0.25", lw=1.3)
    _arrow(ax, (x_start, 2.3), (x_start, 2.6))
    ax.text(0.2, 4.15, "The two filters run batch by batch, so only the masks that pass them are kept in memory; "
            "box NMS then runs once per crop, on all of them.", fontsize=8.5, color="0.35")
    return fig
