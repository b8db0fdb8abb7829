#!/usr/bin/env bash
# Caching across GPUs against one GPU, in one lease (issue 22):
#   tools/gpu_shard_bench.sh GLINT_BINARY [IMAGES] [SHARDS] [OUT_DIR]
# Makes IMAGES (default 600) distinct 672x672 images, caches them with the 8B shapes (random
# bf16 weights) and a random 131072x256 SAE once on GPU 0, then as SHARDS (default 2) shard
# stores -- one process per GPU at once when the host has that many GPUs, else one after the
# other on GPU 0 -- merges the shards, and checks that the merged store's seed export equals the
# single run's file for file. Writes every JSON report, the timings and a verdict to OUT_DIR
# (default $OUT, else ./gpu-shard-bench). Run from the repository root.
set -euo pipefail

glint=${1:?usage: tools/gpu_shard_bench.sh GLINT_BINARY [IMAGES] [SHARDS] [OUT_DIR]}
images=${2:-600}
shards=${3:-2}
out=${4:-${OUT:-gpu-shard-bench}}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }

python3 "$(dirname "$0")/make_bench_images.py" "$images" "$work/images"
gpus=$(nvidia-smi -L | wc -l)
model=(--device cuda --dtype bf16 --model sample-data/configs/llama3-llava-next-8b.json
       --random-weights 0 --sae random:131072:256 --hookpoint model.layers.24)
cache() { "$glint" "${model[@]}" --batch cache --dataset "$work/images" --json "$@"; }

t0=$(now)
CUDA_VISIBLE_DEVICES=0 cache --out "$work/single" > "$out/single.json"
t1=$(now)
parallel=$(( gpus >= shards ? 1 : 0 ))
for ((i = 0; i < shards; i++)); do
    gpu=$(( parallel ? i : 0 ))
    if ((parallel)); then
        CUDA_VISIBLE_DEVICES=$gpu cache --shard "$i/$shards" --out "$work/shard$i" \
            > "$out/shard$i.json" &
    else
        CUDA_VISIBLE_DEVICES=$gpu cache --shard "$i/$shards" --out "$work/shard$i" \
            > "$out/shard$i.json"
    fi
done
wait
t2=$(now)
shard_dirs=()
for ((i = 0; i < shards; i++)); do shard_dirs+=("$work/shard$i"); done
timer=()
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v)
"${timer[@]}" "$glint" --batch merge "$work/merged" "${shard_dirs[@]}" \
    2> "$out/merge-time.txt" > "$out/merge.txt"
t3=$(now)
"$glint" --batch export --format seed --store "$work/single" --out "$work/seed-single"
"$glint" --batch export --format seed --store "$work/merged" --out "$work/seed-merged"
if diff -r -q "$work/seed-single" "$work/seed-merged" > "$out/seed-diff.txt"; then
    equal=true
else
    equal=false
fi
du -sb "$work/single" "$work/merged" "${shard_dirs[@]}" > "$out/store-bytes.txt"

python3 - "$out" "$shards" "$parallel" "$equal" "$t0" "$t1" "$t2" "$t3" <<'EOF'
import json, re, sys
out, shards, parallel, equal = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
t0, t1, t2, t3 = map(float, sys.argv[5:9])
single = json.load(open(f"{out}/single.json"))
parts = [json.load(open(f"{out}/shard{i}.json")) for i in range(shards)]
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{out}/merge-time.txt").read())
result = {
    "shards": shards,
    "shards_ran_at_once": parallel,
    "images": single["images_done"],
    "single_wall_s": t1 - t0,
    "single_caching_img_per_s": single["images_per_second"],
    "single_setup_s": (t1 - t0) - single["seconds"],
    "shards_wall_s": t2 - t1,
    "shard_caching_img_per_s": [p["images_per_second"] for p in parts],
    "shard_setup_s_sum": (t2 - t1) - sum(p["seconds"] for p in parts) if not parallel else None,
    "merge_s": t3 - t2,
    "merge_peak_rss_bytes": int(rss.group(1)) * 1024 if rss else None,
    "speedup_incl_merge": (t1 - t0) / (t3 - t1),
    "merged_seed_export_equals_single": equal == "true",
}
json.dump(result, open(f"{out}/result.json", "w"), indent=2)
print(json.dumps(result, indent=2))
EOF
