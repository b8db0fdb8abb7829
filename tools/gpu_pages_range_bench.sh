#!/usr/bin/env bash
# Feature pages and range samples on the card, in one lease (issue 20's benchmarks):
#   tools/gpu_pages_range_bench.sh GLINT_BINARY [IMAGES] [OUT_DIR]
# Makes IMAGES (default 600) distinct, deterministic 672x672 images, then with the 8B shapes
# (random bf16 weights) and a random 131072x256 SAE at layer 24, all in bf16 on the card:
#   - `glint bench pages`: a feature page computed (logit lens, both neighbour lists),
#     co-firing over 8 of the images, a kept page read back, against one pass over the decoder;
#   - `glint --batch cache` over the images with the default range sample (40) and with
#     `--range-sample 0`, the baseline, same binary, same images;
#   - `glint bench store --range-cost` (no model; zipf codes at 131072 latents, k 256).
# Writes the JSON reports and a summary to OUT_DIR (default $OUT, else ./gpu-pages-range).
# Needs python3 with numpy and PIL; run from the repository root (it reads sample-data/).
set -euo pipefail

glint=${1:?usage: tools/gpu_pages_range_bench.sh GLINT_BINARY [IMAGES] [OUT_DIR]}
images=${2:-600}
out=${3:-${OUT:-gpu-pages-range}}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$(dirname "$0")/make_bench_images.py" "$images" "$work/images"

gpu=(--device cuda --dtype bf16 --sae-dtype bf16)
model=(--model sample-data/configs/llama3-llava-next-8b.json --random-weights 0
       --sae random:131072:256 --hookpoint model.layers.24)
"$glint" "${gpu[@]}" "${model[@]}" bench pages --features 16 --images "$work/images" --json \
    > "$out/pages.json"
for rs in 40 0; do
    "$glint" "${gpu[@]}" "${model[@]}" --batch cache --dataset "$work/images" \
        --out "$work/store-$rs" --range-sample "$rs" --json > "$out/cache-range-$rs.json"
    du -sb "$work/store-$rs" | cut -f1 > "$out/store-bytes-$rs.txt"
    rm -rf "$work/store-$rs"
done
"$glint" bench store --latents 131072 --k 256 --tokens 2928 --images 120 --profile zipf \
    --range-cost --json > "$out/store-range-cost.json"

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
pages = json.load(open(f"{out}/pages.json"))
with_rs = json.load(open(f"{out}/cache-range-40.json"))
without = json.load(open(f"{out}/cache-range-0.json"))
store = json.load(open(f"{out}/store-range-cost.json"))
busy = lambda r: r["stages"]["aggregate_s"] + r["stages"]["commit_prepare_s"]
summary = {
    "page_computed_ms_median": pages["page_uncached_ms"]["median"],
    "page_computed_ms_max": pages["page_uncached_ms"]["max"],
    "page_goal_200ms_met": pages["page_uncached_ms"]["max"] < 200,
    "cofiring_ms_median": (pages["cofiring_ms"] or {}).get("median"),
    "page_kept_ms_median": pages["page_cached_ms"]["median"],
    "page_kept_goal_30ms_met": pages["page_cached_ms"]["max"] < 30,
    "decoder_pass_ms": pages["decoder_pass_ms"],
    "cache_img_per_s_range_40": with_rs["images_per_second"],
    "cache_img_per_s_range_0": without["images_per_second"],
    "cache_range_cost": 1 - with_rs["images_per_second"] / without["images_per_second"],
    "cache_range_goal_5pct_met": with_rs["images_per_second"] >= 0.95 * without["images_per_second"],
    "device_s": [with_rs["stages"]["device_s"], without["stages"]["device_s"]],
    "aggregate_and_build_s": [busy(with_rs), busy(without)],
    "writer_s": [with_rs["stages"]["commit_write_s"], without["stages"]["commit_write_s"]],
    "store_bytes_per_image": [with_rs["store_bytes_per_image"], without["store_bytes_per_image"]],
    "bench_store_zipf_img_per_s": [store["run"]["overall"]["images_per_second"],
                                    store["without_range_sample"]["overall"]["images_per_second"]],
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
