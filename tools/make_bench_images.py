"""Distinct, deterministic 672x672 JPEG images for the GPU cache benchmarks.

    python3 tools/make_bench_images.py N OUT_DIR

Smooth colour fields plus noise, seeded by index: every image differs (so top-N lists keep
changing, the store's worst case) and decodes like a photograph. Made in parallel on all cores.
"""
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image


def make(args):
    i, root = args
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:672, 0:672] / 672.0
    planes = [np.sin(x * rng.uniform(1, 12) + y * rng.uniform(1, 12) + rng.uniform(0, 6.3))
              for _ in range(3)]
    img = np.stack(planes, -1) * 100 + 128 + rng.normal(0, 12, (672, 672, 3))
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(f"{root}/img-{i:05d}.jpg", quality=90)


if __name__ == "__main__":
    n, root = int(sys.argv[1]), sys.argv[2]
    os.makedirs(root, exist_ok=True)
    with Pool(os.cpu_count()) as pool:
        pool.map(make, [(i, root) for i in range(n)], chunksize=8)
