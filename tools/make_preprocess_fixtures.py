#!/usr/bin/env python3
"""Write tests/fixtures/preprocess/: images that the anyres preprocessing must shrink, and the
views transformers' PIL LlavaNextImageProcessor makes of them, as exact 8-bit PNGs.

tests/fixtures/llava_tiny/cases covers images that are enlarged (and one shrunk base view);
these cover shrinking on both axes, very wide and very tall canvases, and a tiny image, so the
Rust test checks glint's resize against Pillow's on every aspect ratio. Needs only
transformers, numpy and Pillow (no torch). CI never runs this script; its output is committed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL
import transformers
from PIL import Image
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from fixture_images import make_image, save_png, views_to_png

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "preprocess"
PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
# (name, width, height): shrunk on both axes, wide and tall, odd sizes, and a tiny one.
CASES = [("large", 1000, 1000), ("panorama", 1300, 420), ("portrait", 357, 1111), ("tiny", 45, 31)]


def main() -> None:
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)
    processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=PINPOINTS,
        resample=3,  # PIL bicubic
    )
    cases = []
    for index, (name, width, height) in enumerate(CASES):
        image = make_image(width, height, index)
        png = f"{name}.png"
        save_png(image, OUT_DIR / png)
        with Image.open(OUT_DIR / png) as reread:
            pil_image = reread.convert("RGB")
        assert np.array_equal(np.asarray(pil_image), image)
        pixel_values = processor(images=[pil_image], return_tensors="np")["pixel_values"][0]
        views, exact, _ = views_to_png(processor, pixel_values, name, OUT_DIR)
        assert exact, f"{name}: views do not round-trip through 8 bits"
        cases.append({"name": name, "png": png, "width": width, "height": height, "views": views})
    meta = {
        "generator": "tools/make_preprocess_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "image_processor": "LlavaNextImageProcessorPil (slow, PIL bicubic)",
        "pinpoints": PINPOINTS,
        "pixel_round_trip": "u8 = round((v * std + mean) * 255); view PNG pixels re-normalise to pixel_values",
    }
    (OUT_DIR / "cases.json").write_text(json.dumps({"meta": meta, "cases": cases}, indent=2) + "\n")


if __name__ == "__main__":
    main()
