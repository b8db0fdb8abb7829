"""How far bf16 moves SAE top-k in PyTorch itself, for comparison with glint on the GPU.

Runs the sample world's tiny LLaVA-NeXT with transformers in f32 and in bf16 on the same
inputs as a `glint probe --dump` file (its input ids; the image preprocessed by transformers),
applies the SAE to the layer's output in f32 and prints, as JSON: the bf16 residual's relative
error against f32, the top-k index agreement between the two, and both against glint's dump.

Usage: python tools/torch_bf16_agreement.py DUMP.safetensors SAE_HOOKPOINT_DIR IMAGE [MODEL_DIR]
"""
import json
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load_file
from transformers import AutoImageProcessor, LlavaNextForConditionalGeneration


def agreement(a, b):
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


def main():
    dump_path, sae_dir, image = sys.argv[1:4]
    model_dir = sys.argv[4] if len(sys.argv) > 4 else "sample-data/llava-next-tiny"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dump = load_file(dump_path)
    layer = int(json.load(open(f"{sae_dir}/cfg.json")).get("layer", -1))
    layer = int(sae_dir.rstrip("/").rsplit(".", 1)[-1]) if layer < 0 else layer
    k = json.load(open(f"{sae_dir}/cfg.json"))["k"]
    sae = {n: torch.tensor(v, device=dev) for n, v in load_file(f"{sae_dir}/sae.safetensors").items()}
    proc = AutoImageProcessor.from_pretrained(model_dir)
    inputs = proc(images=Image.open(image).convert("RGB"), return_tensors="pt")
    ids = torch.tensor(dump["input_ids"].astype(np.int64), device=dev)[None]

    def run(dtype):
        model = LlavaNextForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).to(dev).eval()
        with torch.no_grad():
            out = model(
                input_ids=ids,
                pixel_values=inputs["pixel_values"].to(dev, dtype),
                image_sizes=inputs["image_sizes"].to(dev),
                output_hidden_states=True,
            )
            h = out.hidden_states[layer + 1][0].float()
            pre = torch.relu((h - sae["b_dec"]) @ sae["encoder.weight"].T + sae["encoder.bias"])
            return h.cpu().numpy(), pre.topk(k).indices.cpu().numpy()

    h32, i32 = run(torch.float32)
    h16, i16 = run(torch.bfloat16)
    scale = np.abs(h32).max()
    print(json.dumps({
        "torch_bf16_vs_f32_rel_err": float(np.abs(h16 - h32).max() / scale),
        "torch_bf16_vs_f32_topk_agreement": agreement(i32, i16),
        "torch_f32_vs_glint_cpu_rel_err": float(np.abs(h32 - dump["residual"]).max() / scale),
        "torch_f32_vs_glint_cpu_topk_agreement": agreement(i32, dump["top_indices"]),
        "device": dev,
        "torch": torch.__version__,
    }, indent=1))


if __name__ == "__main__":
    main()
