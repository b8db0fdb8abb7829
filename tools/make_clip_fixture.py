#!/usr/bin/env python3
"""Write the CLIP parity fixture under tests/fixtures/clip_tiny/.

Loads the committed tiny random checkpoint sample-data/clip-tiny (written by
`glint sample-data`) with Hugging Face transformers' CLIPModel, its CLIPTokenizer and the
PIL-backed CLIPImageProcessor, and records what the Rust port must reproduce: token ids,
the processed images, projected and normalised embeddings, logits and CLIP scores
(max(100 * cos, 0), as torchmetrics' CLIPScore computes them).

Nothing here is random, so rerunning with the same package versions rewrites the same bytes.
CI never runs this script; the fixture it writes is committed.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL
import safetensors
import tokenizers
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoTokenizer, CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO_ROOT / "sample-data" / "clip-tiny"
OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "clip_tiny"
IMAGES = ["shape-0001.png", "shape-0003.png"]  # 672x336 and 500x375: resize and crop both act
TEXTS = [
    "a photo of a red circle",
    "A  BLUE square,\ton a White background!",
    "star",
    "ünïcödé 東京: 3 shapes (it's 100% fine)",
    "red " * 100,  # longer than 77 ids: cut like torchmetrics, losing the end token
]
SCORE_TEXTS = 4  # the first texts go through CLIPModel.forward as one padded batch


def features(out) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features; older ones a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def main() -> None:
    torch.manual_seed(0)
    model = CLIPModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    processor = CLIPImageProcessorPil.from_pretrained(MODEL_DIR)
    context = model.config.text_config.max_position_embeddings

    # torchmetrics' CLIPScore: tokenise without truncation, then slice to the context.
    ids = [tokenizer(t)["input_ids"][:context] for t in TEXTS]

    images = [Image.open(REPO_ROOT / "sample-data" / "shapes" / "images" / n).convert("RGB") for n in IMAGES]
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].float()

    # The processed images as bytes: undo the normalisation and check it round-trips exactly.
    crops = processor(images=images, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    crops_u8 = np.rint(crops).astype(np.uint8)
    assert np.array_equal(crops_u8.astype(np.float32), crops.astype(np.float32))
    again = processor(images=[Image.fromarray(c.transpose(1, 2, 0)) for c in crops_u8], return_tensors="pt")
    assert torch.equal(again["pixel_values"].float(), pixel_values), "crop bytes do not reproduce pixel_values"

    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)
    crop_files = []
    for name, crop in zip(IMAGES, crops_u8):
        out = name.replace(".png", "_crop.png")
        Image.fromarray(crop.transpose(1, 2, 0)).save(OUT_DIR / out, optimize=True)
        crop_files.append(out)

    with torch.no_grad():
        text_embeds = torch.cat([features(model.get_text_features(input_ids=torch.tensor([i]))) for i in ids])
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        image_embeds = features(model.get_image_features(pixel_values=pixel_values))
        image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
        batch = tokenizer(TEXTS[:SCORE_TEXTS], padding=True, return_tensors="pt")
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pixel_values)
        scores = torch.clamp(100 * image_embeds @ text_embeds.T, min=0)

    tensors = {
        "text_embeds": text_embeds.contiguous(),
        "image_embeds": image_embeds.contiguous(),
        "logits_per_image": out.logits_per_image.contiguous(),
        "scores": scores.contiguous(),
        "pixel_values_sum": pixel_values.double().sum(dim=(1, 2, 3)).float(),
    }
    for k, v in tensors.items():
        assert torch.isfinite(v).all(), k
    save_file(tensors, OUT_DIR / "reference.safetensors")

    cases = {
        "model": "sample-data/clip-tiny",
        "texts": TEXTS,
        "input_ids": ids,
        "score_texts": SCORE_TEXTS,
        "images": [f"sample-data/shapes/images/{n}" for n in IMAGES],
        "crops": crop_files,
        "image_sizes": [list(im.size) for im in images],
        "logit_scale": float(model.logit_scale.detach().exp()),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "safetensors": safetensors.__version__,
        },
    }
    (OUT_DIR / "cases.json").write_text(json.dumps(cases, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT_DIR.relative_to(REPO_ROOT)}: ids {[len(i) for i in ids]}, scores {scores.tolist()}")


if __name__ == "__main__":
    sys.exit(main())
