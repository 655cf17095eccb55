"""Our data engine: procedurally generated scenes whose instance masks we know exactly.

SAM was trained on 1.1 billion masks; we cannot download them, so we draw our own. Every scene is a few
objects on a background: ellipses, convex polygons, rotated rectangles, rings (a shape with a hole), thin bars,
and *nested* objects (a part painted inside a whole). Objects can be textured, the background can be a
gradient or cluttered with distractors, the whole image gets pixel noise, and later objects occlude earlier
ones. Nested objects make one click ambiguous (the part, or the whole?), which is exactly what SAM's three
multimask outputs are for.

A scene is a pure function of (seed, index): `make_scene(seed, i)` always returns the same picture, so the
training split (`TRAIN_SEED`) and the held-out split (`HELDOUT_SEED`) never share a scene, and any scene can
be regenerated instead of stored.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import SamInputError, check_int, check_number, input_error, is_int, is_number

TRAIN_SEED = 0
HELDOUT_SEED = 1
KINDS = ("ellipse", "polygon", "rectangle", "ring", "thin", "nested")


@dataclass(frozen=True)
class SceneConfig:
    """The knobs of scene difficulty. Sizes are fractions of the image side.

    The smallest objects are kept several pixels wide on purpose: at the tiny model's 96 px, a mask that is
    one pixel too large all round already costs a thin bar much of its IoU, so smaller objects would measure
    pixel luck, not the model.
    """

    image_size: int = 96  # the tiny model's input size
    min_objects: int = 2
    max_objects: int = 4
    kind_weights: tuple[float, ...] = (0.2, 0.2, 0.17, 0.13, 0.1, 0.2)  # in the order of KINDS
    min_radius: float = 0.16
    max_radius: float = 0.32
    texture_prob: float = 0.4  # an object is striped, checkered or blotchy
    texture_strength: float = 0.18
    gradient_prob: float = 0.5  # otherwise a flat colour with smooth blotches
    clutter_prob: float = 0.4  # small low-contrast distractors that are not instances
    max_noise: float = 0.04  # std of the pixel noise, in 0..1 units
    min_color_distance: float = 0.35  # between an object and everything it may touch
    min_visible_fraction: float = 0.35  # occluded more than this and it is not a target
    min_area_fraction: float = 0.01
    thin_half_width: tuple[float, float] = (0.045, 0.065)  # of a thin bar, as a fraction of the image side
    part_scale: tuple[float, float] = (0.4, 0.6)  # radius of a nested part relative to its whole

    def __post_init__(self) -> None:
        """Refuse a config that cannot draw scenes, naming the field (numpy's errors came at the first scene)."""
        check_int("image_size", self.image_size, 1)
        check_int("min_objects", self.min_objects, 1)
        check_int("max_objects", self.max_objects, 1)
        if self.max_objects < self.min_objects:
            raise SamInputError(
                f"max_objects: expected at least min_objects ({self.min_objects}), got {self.max_objects}."
            )
        weights = self.kind_weights
        if (isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__") or len(weights) != len(KINDS)
                or not all(_is_finite(w) and w >= 0 for w in weights) or sum(weights) <= 0):
            raise input_error(
                "kind_weights", f"{len(KINDS)} weights >= 0, not all 0, in the order {KINDS}", weights
            )
        object.__setattr__(self, "kind_weights", tuple(weights))  # a list would make the config unhashable
        for name in ("min_radius", "max_radius"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        if self.max_radius < self.min_radius:
            raise SamInputError(
                f"max_radius: expected at least min_radius ({self.min_radius:g}), got {self.max_radius:g}."
            )
        for name in ("texture_prob", "gradient_prob", "clutter_prob", "min_visible_fraction", "min_area_fraction"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        for name in ("texture_strength", "max_noise", "min_color_distance"):
            check_number(name, getattr(self, name), 0.0)
        for name in ("thin_half_width", "part_scale"):
            pair = getattr(self, name)
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(_is_finite(v) and v > 0 for v in pair)
                    and pair[0] <= pair[1]):
                raise input_error(name, "a pair (low, high) of numbers > 0 with low <= high", pair)
            object.__setattr__(self, name, tuple(pair))


def _is_finite(value) -> bool:
    return is_number(value) and math.isfinite(value)


def _check_split(seed, index) -> None:
    """A scene is named by two integers >= 0 (numpy's seed sequence takes nothing else)."""
    check_int("seed", seed, 0)
    check_int("index", index, 0)


def _check_config(config) -> None:
    if not isinstance(config, SceneConfig):
        hint = ""
        if isinstance(config, dict):
            hint = "Pass SceneConfig(**config)."
        elif isinstance(config, numbers.Integral):
            hint = f"For an image size pass SceneConfig(image_size={config})."
        raise input_error("config", "a SceneConfig", config, hint)


@dataclass
class Scene:
    """One generated image and its instances.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        masks: (N, H, W) bool, the visible pixels of every instance (a whole includes its parts).
        kinds: N names from KINDS ("part" for the inner object of a nested pair).
        parents: N indices; for a part, the index of its whole; -1 otherwise.
    """

    image: np.ndarray
    masks: np.ndarray
    kinds: list[str]
    parents: list[int]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bilinearly interpolated random grid: (size, size) values in 0..1 that vary slowly."""
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, size, endpoint=False)
    i = t.astype(int)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]  # (size, cells + 1)
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


class _Canvas:
    """Pixel coordinates plus helpers that rasterise one shape into a boolean mask."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.y, self.x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    def local(self, cx, cy, angle):
        """Coordinates in a frame centred at (cx, cy) and rotated by `angle`."""
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = self.x - cx, self.y - cy
        return c * dx + s * dy, -s * dx + c * dy

    def ellipse(self, cx, cy, a, b, angle):
        u, v = self.local(cx, cy, angle)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0

    def rectangle(self, cx, cy, a, b, angle):
        u, v = self.local(cx, cy, angle)
        return (np.abs(u) <= a) & (np.abs(v) <= b)

    def polygon(self, cx, cy, radii, angles):
        """Convex polygon with vertices at (angles, radii) around the centre: inside every edge's half-plane."""
        px, py = cx + radii * np.cos(angles), cy + radii * np.sin(angles)
        inside = np.ones((self.size, self.size), dtype=bool)
        for k in range(len(px)):
            x0, y0, x1, y1 = px[k], py[k], px[(k + 1) % len(px)], py[(k + 1) % len(px)]
            inside &= (x1 - x0) * (self.y - y0) - (y1 - y0) * (self.x - x0) >= 0
        return inside

    def segment(self, x0, y0, x1, y1, half_width):
        """Thick line segment: points within half_width of the segment."""
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((self.x - x0) * dx + (self.y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        return (self.x - x0 - t * dx) ** 2 + (self.y - y0 - t * dy) ** 2 <= half_width**2


def _random_solid(canvas: _Canvas, rng: np.random.Generator, cfg: SceneConfig, radius: float, kind: str):
    """A filled shape of the given kind and rough radius (pixels), centred inside the image."""
    S = canvas.size
    cx, cy = rng.uniform(0.12 * S, 0.88 * S, size=2)
    angle = rng.uniform(0, np.pi)
    if kind == "ellipse":
        return canvas.ellipse(cx, cy, radius, radius * rng.uniform(0.5, 1.0), angle)
    if kind == "rectangle":
        return canvas.rectangle(cx, cy, radius * rng.uniform(0.6, 1.0), radius * rng.uniform(0.4, 0.9), angle)
    if kind == "polygon":
        n = int(rng.integers(3, 8))
        gaps = rng.uniform(0.7, 1.3, n)  # every angular gap < pi keeps the centre inside: convex, not empty
        angles = angle + 2 * np.pi * np.cumsum(gaps) / gaps.sum()
        return canvas.polygon(cx, cy, radius * rng.uniform(0.7, 1.1, n), angles)
    if kind == "ring":
        a, b = radius, radius * rng.uniform(0.6, 1.0)
        hole = rng.uniform(0.4, 0.6)
        return canvas.ellipse(cx, cy, a, b, angle) & ~canvas.ellipse(cx, cy, a * hole, b * hole, angle)
    if kind == "thin":
        length = rng.uniform(0.35, 0.65) * S
        x0, y0 = cx - 0.5 * length * np.cos(angle), cy - 0.5 * length * np.sin(angle)
        x1, y1 = cx + 0.5 * length * np.cos(angle), cy + 0.5 * length * np.sin(angle)
        return canvas.segment(x0, y0, x1, y1, rng.uniform(*cfg.thin_half_width) * S)
    raise ValueError(f"kind: expected one of {KINDS[:-1]}, got {kind!r}")


def _nested(canvas: _Canvas, rng: np.random.Generator, cfg: SceneConfig, radius: float):
    """A whole (ellipse, rectangle or polygon) and a part that lies entirely inside it."""
    S = canvas.size
    whole = _random_solid(canvas, rng, cfg, radius * 1.25, str(rng.choice(["ellipse", "rectangle", "polygon"])))
    ys, xs = np.nonzero(whole)
    for _ in range(10 if len(xs) else 0):
        k = rng.integers(len(xs))
        part_radius = radius * rng.uniform(*cfg.part_scale)
        kind = rng.choice(["ellipse", "rectangle"])
        maker = canvas.ellipse if kind == "ellipse" else canvas.rectangle
        part = maker(xs[k], ys[k], part_radius, part_radius * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))
        if part.sum() > cfg.min_area_fraction * S * S and not (part & ~whole).any():
            return whole, part
    return whole, None


def _pick_color(rng: np.random.Generator, avoid: list[np.ndarray], min_distance: float) -> np.ndarray:
    """A random RGB colour (0..1) at least min_distance from every colour in `avoid` (best effort)."""
    best, best_distance = None, -1.0
    for _ in range(30):
        color = rng.random(3)
        distance = min((np.linalg.norm(color - a) for a in avoid), default=np.inf)
        if distance >= min_distance:
            return color
        if distance > best_distance:
            best, best_distance = color, distance
    return best


def _texture(canvas: _Canvas, rng: np.random.Generator, cfg: SceneConfig) -> np.ndarray:
    """A (H, W) multiplicative pattern around 1: stripes, checks or blotches."""
    kind = rng.integers(3)
    period = rng.uniform(3, 9) * canvas.size / 96
    u, v = canvas.local(0.0, 0.0, rng.uniform(0, np.pi))
    if kind == 0:
        pattern = np.sin(2 * np.pi * u / period)
    elif kind == 1:
        pattern = np.sign(np.sin(np.pi * u / period) * np.sin(np.pi * v / period))
    else:
        pattern = 2 * _smooth_noise(rng, canvas.size, int(rng.integers(6, 16))) - 1
    return 1.0 + cfg.texture_strength * pattern


def _background(canvas: _Canvas, rng: np.random.Generator, cfg: SceneConfig):
    """(H, W, 3) background and the colours it is made of."""
    S = canvas.size
    c0 = rng.random(3)
    if rng.random() < cfg.gradient_prob:
        c1 = np.clip(c0 + rng.uniform(-0.35, 0.35, 3), 0, 1)
        u, _ = canvas.local(S / 2, S / 2, rng.uniform(0, 2 * np.pi))
        t = np.clip(u / S + 0.5, 0, 1)[..., None]
        image = c0 * (1 - t) + c1 * t
        colors = [c0, c1, (c0 + c1) / 2]
    else:
        blotches = _smooth_noise(rng, S, int(rng.integers(3, 8)))[..., None] - 0.5
        image = np.clip(c0 + 0.2 * blotches, 0, 1) * np.ones(3)
        colors = [c0]
    if rng.random() < cfg.clutter_prob:  # small distractors close to the background colour
        for _ in range(int(rng.integers(5, 20))):
            x, y = rng.uniform(0, S, 2)
            r = rng.uniform(0.01, 0.03) * S
            if rng.random() < 0.5:
                blob = canvas.ellipse(x, y, r, r * rng.uniform(0.5, 1), rng.uniform(0, np.pi))
            else:
                angle = rng.uniform(0, np.pi)
                blob = canvas.segment(x, y, x + 3 * r * np.cos(angle), y + 3 * r * np.sin(angle), 0.01 * S)
            image[blob] = np.clip(image[blob] + rng.uniform(-0.15, 0.15, 3), 0, 1)
    return image, colors


MAX_ATTEMPTS = 1000  # random streams make_scene tries before it calls the config too strict (about 3 s)


def make_scene(seed: int, index: int, config: SceneConfig = SceneConfig()) -> Scene:
    """The scene number `index` of the split with seed `seed` (deterministic).

    Returns a Scene with image (S, S, 3) uint8 and masks (N, S, S) bool, S = config.image_size, N >= 1.
    """
    _check_split(seed, index)
    _check_config(config)
    for attempt in range(MAX_ATTEMPTS):  # every object hidden: try the next random stream of the same index
        scene = _draw_scene(np.random.default_rng([seed, index + attempt * 7919 * 1_000_003]), config)
        if scene is not None:
            return scene
    raise SamInputError(
        f"config: expected settings that leave an object visible, got no visible object in {MAX_ATTEMPTS} "
        f"scenes (min_area_fraction={config.min_area_fraction:g}, min_visible_fraction="
        f"{config.min_visible_fraction:g}, radii {config.min_radius:g}..{config.max_radius:g}). Lower the fractions."
    )


def _draw_scene(rng: np.random.Generator, config: SceneConfig) -> Scene | None:
    """One scene from `rng`'s stream; None when no object stays visible enough to be a target."""
    S = config.image_size
    canvas = _Canvas(S)
    image, bg_colors = _background(canvas, rng, config)

    # Draw back to front; every layer is (shape, colour, kind, index of the layer it is a part of).
    layers: list[tuple[np.ndarray, np.ndarray, str, int]] = []
    num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    weights = np.asarray(config.kind_weights) / np.sum(config.kind_weights)
    for _ in range(num_objects):
        kind = str(rng.choice(KINDS, p=weights))
        radius = rng.uniform(config.min_radius, config.max_radius) * S
        avoid = bg_colors + [layer[1] for layer in layers]
        color = _pick_color(rng, avoid, config.min_color_distance)
        if kind == "nested":
            whole, part = _nested(canvas, rng, config, radius)
            layers.append((whole, color, kind, -1))
            if part is not None:
                part_color = _pick_color(rng, avoid + [color], config.min_color_distance)
                layers.append((part, part_color, "part", len(layers) - 1))
        else:
            layers.append((_random_solid(canvas, rng, config, radius, kind), color, kind, -1))

    for shape, color, _, _ in layers:
        paint = color * (_texture(canvas, rng, config)[..., None] if rng.random() < config.texture_prob else 1.0)
        image[shape] = np.clip(paint, 0, 1)[shape] if np.ndim(paint) == 3 else paint

    image = image + rng.normal(0, rng.uniform(0, config.max_noise), image.shape)
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)

    # Visible part of each layer: minus everything drawn later, except its own parts.
    masks, kinds, parents, keep_index = [], [], [], {}
    for i, (shape, _, kind, parent) in enumerate(layers):
        covered = np.zeros((S, S), dtype=bool)
        for j in range(i + 1, len(layers)):
            if layers[j][3] != i:
                covered |= layers[j][0]
        visible = shape & ~covered
        area = visible.sum()
        if area < config.min_area_fraction * S * S or area < config.min_visible_fraction * shape.sum():
            continue
        keep_index[i] = len(masks)
        masks.append(visible)
        kinds.append(kind)
        parents.append(keep_index.get(parent, -1))
    if not masks:
        return None
    return Scene(image=image, masks=np.stack(masks), kinds=kinds, parents=parents)


class SceneDataset:
    """`length` scenes of one split, generated on demand: dataset[i] == make_scene(seed, i)."""

    def __init__(self, seed: int = TRAIN_SEED, length: int = 10_000, config: SceneConfig = SceneConfig()) -> None:
        check_int("seed", seed, 0)
        check_int("length", length, 1)
        _check_config(config)
        self.seed, self.length, self.config = seed, length, config

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Scene:
        if not is_int(index):
            raise input_error("index", f"an integer from 0 to {self.length - 1}", index)
        if not 0 <= index < self.length:
            raise IndexError(f"index: expected 0 <= index < {self.length}, got {index}")
        return make_scene(self.seed, index, self.config)
