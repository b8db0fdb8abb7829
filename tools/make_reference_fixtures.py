#!/usr/bin/env python3
"""Write the LLaVA-NeXT reference fixtures under tests/fixtures/llava_tiny/.

A tiny, randomly initialised LlavaNextForConditionalGeneration (real CLIP-336 geometry,
small widths) is run with Hugging Face transformers on four synthetic images. The Rust
tests load the saved model and compare glint's forward pass with the recorded tensors.

Everything is seeded, so rerunning with the same package versions rewrites the same bytes.
CI never runs this script; the fixtures it writes are committed.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL
import safetensors
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
)
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches, unpad_image

from fixture_images import make_image, save_png, views_to_png

SEED = 20240607
REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "llava_tiny"
MODEL_DIR = OUT_DIR / "model"
CASES_DIR = OUT_DIR / "cases"

IMAGE_TOKEN = 510
BOS = 1
PROMPT_PREFIX = [17, 42, 99, 7]  # text ids between BOS and the image
PROMPT_SUFFIX = [5, 301, 88, 250]  # text ids after the image
TAP_LAYER = 2
PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

# (name, width, height) of the synthetic test images.
CASES = [("square", 336, 336), ("wide", 700, 300), ("tall", 300, 700), ("odd", 500, 375)]
# Seed-spec worked examples: (width, height, expected image-token count).
WORKED_EXAMPLES = [(640, 480, 2340), (1000, 1000, 2928), (300, 300, 1176)]


def build_config() -> LlavaNextConfig:
    vision = CLIPVisionConfig(
        image_size=336,
        patch_size=14,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        hidden_act="quick_gelu",
        projection_dim=32,
    )
    text = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=4096,
        bos_token_id=BOS,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    return LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_TOKEN,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_grid_pinpoints=PINPOINTS,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


def name_generator(name: str) -> torch.Generator:
    """A generator seeded from the parameter name, so values do not depend on iteration order."""
    digest = hashlib.sha256(f"{SEED}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def init_weights(model: torch.nn.Module) -> None:
    """Give every parameter non-trivial values so a mistake in any of them changes the output."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            g = name_generator(name)
            noise = torch.randn(param.shape, generator=g, dtype=torch.float32)
            leaf = name.rsplit(".", 1)[-1]
            is_norm = "norm" in name or "layrnorm" in name
            if name.endswith("image_newline"):
                value = noise
            elif leaf == "bias":
                value = 0.02 * noise
            elif is_norm:
                value = 1.0 + 0.1 * noise
            elif "embed_tokens" in name or name.endswith("class_embedding"):
                value = noise
            elif "position_embedding" in name:
                value = 0.5 * noise
            else:
                fan_in = math.prod(param.shape[1:])
                value = noise / math.sqrt(fan_in)
            param.copy_(value)


def rewrite_hub_layout(path: Path) -> None:
    """Rename CLIP keys to the 2024 llava-hf hub layout (`vision_tower.vision_model.*`)."""
    tensors = load_file(path)
    renamed = {}
    for key, value in tensors.items():
        if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
            key = "vision_tower.vision_model." + key[len("vision_tower.") :]
        renamed[key] = value
    save_file(renamed, path, metadata={"format": "pt"})


def processor_token_count(image_processor, height: int, width: int) -> int:
    """Image-token count from the installed LlavaNextProcessor formula (no tokenizer needed)."""
    proc = object.__new__(LlavaNextProcessor)
    proc.image_processor = image_processor
    proc.patch_size = 14
    proc.num_additional_image_tokens = 1  # CLS, as in the llava-hf processor configs
    proc.vision_feature_select_strategy = "default"
    crop = image_processor.crop_size
    count = LlavaNextProcessor._get_number_of_features(proc, height, width, crop["height"], crop["width"])
    return count - 1  # "default" drops CLS


def unpadded_map(config, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the stitched tile feature map after the model's unpad step."""
    grid = config.vision_config.image_size // config.vision_config.patch_size
    best_h, best_w = select_best_resolution((height, width), config.image_grid_pinpoints)
    side = config.vision_config.image_size
    dummy = torch.zeros(1, (best_h // side) * grid, (best_w // side) * grid)
    rows, cols = unpad_image(dummy, (height, width)).shape[1:]
    return int(rows), int(cols)


@torch.no_grad()
def model_token_count(model, image_processor, height: int, width: int) -> int:
    """Image-token count from the model's own packing of a blank image of this size."""
    blank = np.full((height, width, 3), 128, dtype=np.uint8)
    inputs = image_processor(images=[blank], return_tensors="pt")
    out = model.model.get_image_features(
        pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"], return_dict=True
    )
    return int(out.pooler_output[0].shape[0])


@torch.no_grad()
def run_case(model, image_processor, name: str, width: int, height: int, index: int, tensors: dict) -> dict:
    image = make_image(width, height, index)
    png = f"{name}.png"
    save_png(image, CASES_DIR / png)
    with Image.open(CASES_DIR / png) as reread:
        pil_image = reread.convert("RGB")
    assert np.array_equal(np.asarray(pil_image), image)

    inputs = image_processor(images=[pil_image], return_tensors="np")
    pixel_values = inputs["pixel_values"][0]
    image_size_hw = [int(x) for x in inputs["image_sizes"][0]]
    assert image_size_hw == [height, width]
    view_pngs, exact, worst = views_to_png(image_processor, pixel_values, name, CASES_DIR)

    config = model.config
    best_hw = select_best_resolution((height, width), config.image_grid_pinpoints)
    chw = np.zeros((3, height, width), dtype=np.uint8)
    resized_hw = get_patch_output_size(chw, best_hw, input_data_format=ChannelDimension.FIRST)
    padding = image_processor._get_padding_size(resized_hw, best_hw)
    n_views = int(pixel_values.shape[0])
    assert n_views == image_size_to_num_patches((height, width), config.image_grid_pinpoints, 336)

    pv = torch.from_numpy(pixel_values)[None]
    sizes = torch.tensor([[height, width]], dtype=torch.long)
    packed = model.model.get_image_features(pixel_values=pv, image_sizes=sizes, return_dict=True)
    image_features = packed.pooler_output[0]
    n_from_model = int(image_features.shape[0])
    n_from_processor = processor_token_count(image_processor, height, width)
    assert n_from_model == n_from_processor, f"{name}: model {n_from_model} vs processor {n_from_processor}"
    rows, cols = unpadded_map(config, height, width)
    grid = config.vision_config.image_size // config.vision_config.patch_size
    assert n_from_model == grid * grid + rows * (cols + 1)

    ids = [BOS] + PROMPT_PREFIX + [IMAGE_TOKEN] * n_from_model + PROMPT_SUFFIX
    compact = [BOS] + PROMPT_PREFIX + [IMAGE_TOKEN] + PROMPT_SUFFIX
    input_ids = torch.tensor([ids], dtype=torch.long)

    captured = {}
    hook = model.model.language_model.layers[TAP_LAYER].register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("tap", out[0] if isinstance(out, tuple) else out)
    )
    out = model(
        input_ids=input_ids,
        pixel_values=pv,
        image_sizes=sizes,
        attention_mask=torch.ones_like(input_ids),
        output_hidden_states=True,
        use_cache=False,
    )
    hook.remove()
    tap = out.hidden_states[TAP_LAYER + 1][0]
    assert torch.equal(tap, captured["tap"].reshape(tap.shape)), "hidden_states index does not match the layer hook"

    # The CLIP hidden state the projector reads, for the base (squashed) view.
    vision = model.model.vision_tower(pv[0, :1], output_hidden_states=True, return_dict=True)
    vision_hidden = vision.hidden_states[config.vision_feature_layer][0, 1:]
    reprojected = model.model.multi_modal_projector(vision_hidden[None])[0]
    assert torch.allclose(reprojected, image_features[: grid * grid], atol=1e-5), "vision_hidden does not project"

    tensors[f"{name}.tap_hidden"] = tap.float().contiguous()
    tensors[f"{name}.last_logits"] = out.logits[0, -1].float().contiguous()
    tensors[f"{name}.image_features"] = image_features.float().contiguous()
    tensors[f"{name}.vision_hidden"] = vision_hidden.float().contiguous()
    tensors[f"{name}.input_ids"] = input_ids[0].contiguous()
    tensors[f"{name}.input_ids_compact"] = torch.tensor(compact, dtype=torch.long)

    return {
        "name": name,
        "png": f"cases/{png}",
        "width": width,
        "height": height,
        "image_size_hw": image_size_hw,
        "best_resolution_hw": [int(x) for x in best_hw],
        "resized_hw": [int(x) for x in resized_hw],
        "padding_top_bottom_left_right": [
            int(padding[0][0]),
            int(padding[0][1]),
            int(padding[1][0]),
            int(padding[1][1]),
        ],
        "n_views": n_views,
        "view_pngs": [f"cases/{v}" for v in view_pngs],
        "pixel_round_trip_exact": exact,
        "pixel_round_trip_max_abs_diff": worst,
        "n_image_tokens": n_from_model,
        "unpadded_map_rows_cols": [rows, cols],
        "image_token_start": 1 + len(PROMPT_PREFIX),
        "tap_layer": TAP_LAYER,
        "T": len(ids),
        "T_compact": len(compact),
    }


def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # fixed reduction order, so reruns write the same bytes

    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    CASES_DIR.mkdir(parents=True)

    config = build_config()
    built = LlavaNextForConditionalGeneration._from_config(config, attn_implementation="eager", dtype=torch.float32)
    init_weights(built)
    built.save_pretrained(MODEL_DIR, safe_serialization=True)
    weight_files = sorted(p.name for p in MODEL_DIR.glob("*.safetensors"))
    assert weight_files == ["model.safetensors"], weight_files
    if "--hub-layout" in sys.argv[1:]:
        rewrite_hub_layout(MODEL_DIR / "model.safetensors")
    saved = load_file(MODEL_DIR / "model.safetensors")

    # Everything below runs on the model read back from disk, so the fixture file alone
    # reproduces the recorded tensors.
    model, info = LlavaNextForConditionalGeneration.from_pretrained(
        MODEL_DIR, attn_implementation="eager", dtype=torch.float32, output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"reloading the saved model: {problems}"
    model.eval()
    assert model.config.text_config._attn_implementation == "eager"
    assert model.config.vision_config._attn_implementation == "eager"
    reloaded = model.state_dict()
    for key, value in built.state_dict().items():
        assert torch.equal(value, reloaded[key]), f"weight {key} changed in the save/load round trip"
    assert not torch.equal(reloaded["lm_head.weight"], reloaded["model.language_model.embed_tokens.weight"])
    del built

    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=PINPOINTS,
        resample=3,  # PIL bicubic
    )
    image_processor.save_pretrained(MODEL_DIR)

    tensors: dict[str, torch.Tensor] = {}
    cases = [run_case(model, image_processor, n, w, h, i, tensors) for i, (n, w, h) in enumerate(CASES)]

    worked = []
    for width, height, expected in WORKED_EXAMPLES:
        from_processor = processor_token_count(image_processor, height, width)
        from_model = model_token_count(model, image_processor, height, width)
        worked.append(
            {
                "width": width,
                "height": height,
                "best_resolution_hw": list(select_best_resolution((height, width), PINPOINTS)),
                "unpadded_map_rows_cols": list(unpadded_map(config, height, width)),
                "n_image_tokens_processor": from_processor,
                "n_image_tokens_model": from_model,
                "seed_spec_expected": expected,
                "matches_seed_spec": from_processor == from_model == expected,
            }
        )

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "safetensors": safetensors.__version__,
    }
    meta = {
        "generator": "tools/make_reference_fixtures.py",
        "seed": SEED,
        "versions": versions,
        "dtype": "float32",
        "attn_implementation": "eager",
        "weights": "model/model.safetensors",
        "weight_key_layout": "hub-2024 (vision_tower.vision_model.*)"
        if "--hub-layout" in sys.argv[1:]
        else "as written by save_pretrained",
        "weight_key_prefixes": sorted({".".join(k.split(".")[:2]) for k in saved}),
        "weight_keys_sample": sorted(saved)[:6] + sorted(k for k in saved if k.startswith("vision_tower"))[:3],
        "n_weight_tensors": len(saved),
        "image_processor": "LlavaNextImageProcessorPil (slow, PIL bicubic)",
        "image_token_index": IMAGE_TOKEN,
        "bos_token_id": BOS,
        "tap": "tap_hidden = output of model.language_model.layers[2] = hidden_states[3]",
        "vision_hidden": "CLIP encoder hidden_states[-2] of the base view (output of encoder layer 1 of 3), CLS dropped",
        "image_features": "packed features: 576 base tokens, then unpadded tile map rows each followed by image_newline",
        "unpad_formula": "new = int(round(orig * scale, 7)) as in the installed transformers",
        "pixel_round_trip": "u8 = round((v * std + mean) * 255); view PNG pixels re-normalise to pixel_values",
    }
    (OUT_DIR / "cases.json").write_text(
        json.dumps({"meta": meta, "cases": cases, "worked_examples": worked}, indent=2) + "\n"
    )
    save_file(
        tensors,
        OUT_DIR / "reference.safetensors",
        # One key only: safetensors writes a multi-key metadata map in random order, which
        # would make reruns differ byte-wise.
        metadata={"glint_fixture": json.dumps({**versions, "seed": SEED, "tap_layer": TAP_LAYER}, sort_keys=True)},
    )

    for case in cases:
        print(
            f"{case['name']:7s} {case['width']}x{case['height']} best={case['best_resolution_hw']} "
            f"views={case['n_views']} map={case['unpadded_map_rows_cols']} tokens={case['n_image_tokens']} "
            f"T={case['T']} round_trip_exact={case['pixel_round_trip_exact']}"
        )
    for w in worked:
        print(
            f"worked {w['width']}x{w['height']}: processor={w['n_image_tokens_processor']} "
            f"model={w['n_image_tokens_model']} seed-spec={w['seed_spec_expected']}"
        )
    if not all(w["matches_seed_spec"] for w in worked):
        print("warning: a worked example disagrees with the seed spec", file=sys.stderr)


if __name__ == "__main__":
    main()
