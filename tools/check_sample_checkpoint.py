"""Checks that the sample world's tiny LLaVA-NeXT loads and runs as shipped in Hugging Face
transformers (4.45 and 5.x): processor, chat template, image-token expansion and generation.

    python tools/check_sample_checkpoint.py [MODEL_DIR] [--serve]

MODEL_DIR defaults to sample-data/llava-next-tiny. With --serve (transformers 5.x) it also
starts `transformers serve` on a free local port and asks it one chat completion with an image.
Not run by CI; it needs torch, transformers and Pillow.
"""

import base64
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import torch
import transformers
from PIL import Image
from transformers import AutoProcessor, LlavaNextForConditionalGeneration

root = Path(__file__).resolve().parent.parent
args = [a for a in sys.argv[1:] if not a.startswith("--")]
model_dir = Path(args[0]) if args else root / "sample-data/llava-next-tiny"
image_path = root / "sample-data/shapes/images/shape-0000.png"
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


print(f"transformers {transformers.__version__}, torch {torch.__version__}, {model_dir}")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    processor = AutoProcessor.from_pretrained(model_dir)
    model = LlavaNextForConditionalGeneration.from_pretrained(model_dir).eval()
legacy = [str(w.message) for w in caught if "legacy" in str(w.message).lower()]
check(not legacy, f"no legacy-processing warning {legacy[:1]}")
check(type(processor).__name__ == "LlavaNextProcessor", f"processor is {type(processor).__name__}")

image = Image.open(image_path).convert("RGB")
messages = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the picture."}]}
]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
check("<image>" in prompt, "the processor's chat template places the image")
inputs = processor(images=image, text=prompt, return_tensors="pt")
check("token_type_ids" not in inputs, f"inputs are {sorted(inputs.keys())}")
image_id = model.config.image_token_index
n_image = int((inputs["input_ids"] == image_id).sum())
# 336x336 picks the 336x672 pinpoint: 576 base tokens, then 24 rows of 48 (unpadded to 24) + newline.
check(n_image == 576 + 24 * 25, f"one image expands to {n_image} tokens (expected {576 + 24 * 25})")
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
new = out[0, inputs["input_ids"].shape[1]:]
check(len(new) > 0, f"generate gave {len(new)} tokens: {processor.decode(new)!r}")

if "--serve" in sys.argv:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["transformers", "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", str(model_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        body = json.dumps({
            "model": str(model_dir),
            "max_tokens": 8,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": "Describe the picture."},
            ]}],
        }).encode()
        answer, deadline = None, time.time() + 120
        while answer is None and time.time() < deadline and server.poll() is None:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/chat/completions", body,
                    {"Content-Type": "application/json"},
                )
                answer = json.load(urllib.request.urlopen(req, timeout=60))
            except OSError:
                time.sleep(1)
        text = answer and answer["choices"][0]["message"]["content"]
        check(text is not None, f"transformers serve answered {text!r}")
        if text is None and server.poll() is not None:
            print(server.stdout.read()[-3000:])
    finally:
        server.terminate()
        server.wait(timeout=30)

sys.exit(1 if failures else 0)
