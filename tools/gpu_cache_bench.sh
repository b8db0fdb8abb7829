#!/usr/bin/env bash
# The cache job against the caching step, in one lease (issue 23's goal):
#   tools/gpu_cache_bench.sh GLINT_BINARY [IMAGES] [OUT_DIR]
# Makes IMAGES (default 1000) distinct, deterministic 672x672 images, runs `glint bench --json`
# (the caching step: forward to the tap, SAE top-k, aggregation), then `glint --batch cache`
# over the images with the 8B shapes, random weights and a random 131072x256 SAE at layer 24,
# then `glint bench store` (no model) for the uniform and zipf profiles at 131072 latents, k 256,
# 2928 tokens, and writes the JSON reports and a verdict to OUT_DIR (default $OUT, else
# ./gpu-cache-bench). The step and the command both run the SAE in bf16, as the PyTorch peers
# do; a shorter cache run (F32_IMAGES, default 200; 0 skips it) records the f32 SAE default.
# Needs python3 with numpy and PIL; run from the repository root (it reads sample-data/).
set -euo pipefail

glint=${1:?usage: tools/gpu_cache_bench.sh GLINT_BINARY [IMAGES] [OUT_DIR]}
images=${2:-1000}
out=${3:-${OUT:-gpu-cache-bench}}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

f32_images=${F32_IMAGES:-200}
python3 "$(dirname "$0")/make_bench_images.py" "$images" "$work/images"

gpu=(--device cuda --dtype bf16 --sae-dtype bf16)
"$glint" "${gpu[@]}" bench --json --decode-tokens 0 --images 20 > "$out/bench.json"

model=(--model sample-data/configs/llama3-llava-next-8b.json --random-weights 0
       --sae random:131072:256 --hookpoint model.layers.24)
start=$(date +%s.%N)
"$glint" "${gpu[@]}" "${model[@]}" --batch cache --dataset "$work/images" \
    --out "$work/store" --json > "$out/cache.json"
end=$(date +%s.%N)
rm -rf "$work/store"
if ((f32_images > 0)); then
    python3 "$(dirname "$0")/make_bench_images.py" "$f32_images" "$work/images-f32"
    "$glint" --device cuda --dtype bf16 "${model[@]}" --batch cache --dataset "$work/images-f32" \
        --out "$work/store-f32" --json > "$out/cache-f32.json"
    rm -rf "$work/store-f32"
fi
for profile in uniform zipf; do
    "$glint" bench store --latents 131072 --k 256 --tokens 2928 --images 60 \
        --profile "$profile" --json > "$out/store-$profile.json"
done

python3 - "$out" "$start" "$end" <<'EOF'
import json, os, sys
out, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
bench = json.load(open(f"{out}/bench.json"))
cache = json.load(open(f"{out}/cache.json"))
step = bench["cache_img_per_s"]
whole = cache["images_per_second"]  # caching only: set-up (model load, store open) excluded
edges = cache.get("rates_after_fill") or {}
first, last = edges.get("first_10pct"), edges.get("last_10pct")
result = {
    "caching_step_img_per_s": step,
    "cache_command_img_per_s": whole,
    "ratio_to_step": whole / step,
    "setup_s": (end - start) - cache["seconds"],
    "first_10pct_after_fill_img_per_s": first,
    "last_10pct_after_fill_img_per_s": last,
    "last_over_first": last / first if first and last else None,
    "images": cache["images_done"],
    "skipped": len(cache["skipped"]),
    "store_bytes_per_image": cache["store_bytes_per_image"],
    "bytes_written_per_image": cache["bytes_written_per_image"],
    "stages": cache["stages"],
    "f32_sae_cache_img_per_s": (
        json.load(open(f"{out}/cache-f32.json"))["images_per_second"]
        if os.path.exists(f"{out}/cache-f32.json") else None
    ),
    "goal_met": whole >= 0.9 * step and bool(first and last and last >= 0.9 * first),
}
for profile in ("uniform", "zipf"):
    st = json.load(open(f"{out}/store-{profile}.json"))
    result[f"bench_store_{profile}"] = {
        "img_per_s": st["overall"]["images_per_second"],
        "first_10pct_img_per_s": st["first_10pct"]["images_per_second"],
        "last_10pct_img_per_s": st["last_10pct"]["images_per_second"],
        "codes_per_s": st["overall"]["codes_per_second"],
        "bytes_written_per_image": st["bytes_written_per_image"],
        "store_bytes_per_image": st["disk"]["store_bytes_per_image"],
        "peak_rss_bytes": st.get("peak_rss_bytes"),
    }
json.dump(result, open(f"{out}/result.json", "w"), indent=2)
print(json.dumps(result, indent=2))
EOF
