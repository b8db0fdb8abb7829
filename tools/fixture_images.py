"""Synthetic test images and the processor's views as exact 8-bit PNGs, shared by the fixture
scripts (imports nothing heavier than numpy and Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image(width: int, height: int, index: int) -> np.ndarray:
    """Low-frequency RGB content (gradients plus a few solid shapes) that keeps PNGs small."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = xs / max(width - 1, 1), ys / max(height - 1, 1)
    img = np.empty((height, width, 3), dtype=np.float64)
    img[..., 0] = 40 + 180 * u
    img[..., 1] = 30 + 190 * v
    img[..., 2] = 90 + 80 * (u + v) / 2 + 20 * index
    # A solid rectangle, a disc and a triangle, placed relative to the image size.
    x0, x1 = int(0.10 * width), int(0.35 * width)
    y0, y1 = int(0.15 * height), int(0.45 * height)
    img[y0:y1, x0:x1] = [230, 40 + 40 * index, 30]
    cx, cy, r = 0.68 * width, 0.62 * height, 0.18 * min(width, height)
    img[(xs - cx) ** 2 + (ys - cy) ** 2 <= r * r] = [20, 60, 200 - 30 * index]
    tri = (v > 0.70) & (u > 0.05) & (u < 0.45) & (v - 0.70 > np.abs(u - 0.25) * 1.2)
    img[tri] = [250, 250, 60]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array, mode="RGB").save(path, format="PNG", optimize=True)


def views_to_png(processor, pixel_values: np.ndarray, case: str, out_dir: Path) -> tuple[list[str], bool, float]:
    """Save each normalised view as 8-bit RGB and check the round trip reproduces it."""
    mean = np.array(processor.image_mean, dtype=np.float64)[:, None, None]
    std = np.array(processor.image_std, dtype=np.float64)[:, None, None]
    names, exact, worst = [], True, 0.0
    for i, view in enumerate(pixel_values):
        raw = np.round((view.astype(np.float64) * std + mean) * 255.0)
        assert raw.min() >= -0.5 and raw.max() <= 255.5, f"{case} view {i}: pixel out of range"
        u8 = np.clip(raw, 0, 255).astype(np.uint8)
        # Re-apply the processor's own rescale and normalise to the recovered bytes.
        again = processor.normalize(
            processor.rescale(u8, scale=processor.rescale_factor),
            mean=processor.image_mean,
            std=processor.image_std,
        )
        assert again.dtype == np.float32 and view.dtype == np.float32
        diff = float(np.max(np.abs(again - view)))
        worst = max(worst, diff)
        exact &= bool(np.array_equal(again, view))
        assert diff <= 1e-6, f"{case} view {i}: pixel round trip off by {diff}"
        name = f"{case}_view{i}.png"
        save_png(np.ascontiguousarray(u8.transpose(1, 2, 0)), out_dir / name)
        with Image.open(out_dir / name) as reread:
            assert np.array_equal(np.asarray(reread.convert("RGB")), u8.transpose(1, 2, 0))
        names.append(name)
    return names, exact, worst
