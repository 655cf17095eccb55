"""A kind of object the small model never saw: stars, a few thick spokes from one centre.

The shapes of its training mix (scenes.py) are each one compact piece (convex, or a ring around a hole), so a
click on one spoke of a star stops short of the whole star: the clicked spoke and some of its neighbours. These scenes are drawn like the others (same backgrounds, colours, textures,
noise, occlusion) and serve the fine-tuning demonstration: teach the small model that a star is one object.
"""

from __future__ import annotations

import numpy as np

from .scenes import Scene, SceneConfig, _background, _Canvas, _check_config, _check_split, _pick_color, _texture

STAR_SEED = 7  # the stars' own split: make_star_scene(STAR_SEED, i) for training, HELDOUT_STAR_SEED to measure
HELDOUT_STAR_SEED = 8


def _star(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    S = canvas.size
    cx, cy = rng.uniform(0.2 * S, 0.8 * S, 2)
    spokes, radius, angle = int(rng.integers(4, 7)), rng.uniform(0.15, 0.28) * S, rng.uniform(0, np.pi)
    shape = np.zeros((S, S), dtype=bool)
    for k in range(spokes):
        a = angle + 2 * np.pi * k / spokes
        shape |= canvas.segment(cx, cy, cx + radius * np.cos(a), cy + radius * np.sin(a), 0.035 * S)
    return shape


def make_star_scene(seed: int, index: int, config: SceneConfig = SceneConfig()) -> Scene:
    """One to three stars on a background (deterministic in (seed, index)); masks (N, S, S) bool, N >= 1."""
    _check_split(seed, index)
    _check_config(config)
    rng = np.random.default_rng([seed, index])
    canvas = _Canvas(config.image_size)
    image, avoid = _background(canvas, rng, config)
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        shapes.append(_star(canvas, rng))
        color = _pick_color(rng, avoid, config.min_color_distance)
        avoid = avoid + [color]
        paint = color * (_texture(canvas, rng, config)[..., None] if rng.random() < config.texture_prob else 1.0)
        image[shapes[-1]] = np.clip(paint, 0, 1)[shapes[-1]] if np.ndim(paint) == 3 else paint
    image = image + rng.normal(0, rng.uniform(0, config.max_noise), image.shape)
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    masks = []
    for i, shape in enumerate(shapes):  # the visible part of each star, if most of it shows
        visible = shape & ~np.any(shapes[i + 1:], axis=0) if i + 1 < len(shapes) else shape
        if visible.sum() >= max(config.min_visible_fraction, 0.5) * shape.sum():
            masks.append(visible)
    return Scene(image=image, masks=np.stack(masks), kinds=["star"] * len(masks), parents=[-1] * len(masks))
