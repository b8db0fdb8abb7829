#!/usr/bin/env bash
# End-to-end check of the workbench in a real terminal (tmux): start glint on a small sample
# store, open a feature by number and by mouse clicks, open a dataset image through the model
# actor, move the patch cursor by keys and by a click, quit.
# Usage: tests/e2e_tmux.sh [path/to/glint]   (default: target/debug/glint)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${GLINT_BIN:-target/debug/glint}}
command -v tmux >/dev/null || { echo "e2e_tmux: tmux not installed; skipping"; exit 0; }
[ -x "$BIN" ] || { echo "e2e_tmux: no binary at $BIN (cargo build first)"; exit 1; }
TMP=$(mktemp -d)
SESSION=glint-e2e-$$
cleanup() { tmux kill-session -t "$SESSION" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
unset GLINT_MODEL GLINT_SAE GLINT_CACHE RANK WORLD_SIZE SLURM_PROCID SLURM_NTASKS
"$BIN" --batch cache --limit 6 --top-n 6 --out "$TMP/store" >/dev/null
# Keep user keymaps and themes out of the test.
export XDG_CONFIG_HOME="$TMP/config"

# Wait until the pane shows $1 (a fixed string), or fail after $2 seconds.
wait_for() {
  local deadline=$((SECONDS + ${2:-40}))
  while ((SECONDS < deadline)); do
    if tmux capture-pane -p -t "$SESSION" | grep -qF -- "$1"; then return 0; fi
    sleep 0.2
  done
  echo "e2e_tmux: timed out waiting for: $1"; echo "--- screen ---"
  tmux capture-pane -p -t "$SESSION"; exit 1
}

tmux new-session -d -s "$SESSION" -x 120 -y 40 \
  "XDG_CONFIG_HOME=$TMP/config $BIN --cache $TMP/store --graphics auto; echo glint-exited-\$?; sleep 30"
wait_for "features " 30
wait_for "model: idle"
wait_for "graphics: halfblocks"
tmux send-keys -t "$SESSION" "s"               # sort by density
wait_for "density ▼"
tmux send-keys -t "$SESSION" ":" "1" "2" "5" Enter  # jump to feature 125 (fires on all 6 images)
wait_for "feature 125"
wait_for "top 6 examples"
wait_for "activations (log bins)"
tmux send-keys -t "$SESSION" "m"
wait_for "binary mask (m)"
tmux send-keys -t "$SESSION" "?"
wait_for "Toggle heatmap"
tmux send-keys -t "$SESSION" Escape
sleep 0.3  # an Esc followed at once by a key reads as Alt+key
tmux send-keys -t "$SESSION" "o" "2" Enter  # open dataset image 2 through the model actor
wait_for "image 2 · feature"
wait_for "features fire" 60
tmux send-keys -t "$SESSION" Tab "j" "l"
wait_for "tile 1 · row 1 · col 1"
wait_for "tile 1 · map 1,1"
# Mouse: glint enables SGR mouse reporting; tmux passes these bytes to it as a click would.
# G moves the patch cursor to the last cell; a click at column 25, row 3 (the top-left corner
# of the picture) brings it back to the first tile.
click() { tmux send-keys -t "$SESSION" -l $'\e[<0;'"$1;$2"'M'; }
tmux send-keys -t "$SESSION" "G"
sleep 0.5
click 25 3
wait_for "tile 1 · map "
click 10 1                                      # the "1 features" tab
wait_for "density ▼"
click 10 5                                      # select the second row of the table …
sleep 0.3
click 10 5                                      # … and open it
wait_for "activations (log bins)"
tmux send-keys -t "$SESSION" "q"
wait_for "glint-exited-0"
tmux kill-session -t "$SESSION"

# The first run, with no store named, builds the sample store and shows its progress bar.
tmux new-session -d -s "$SESSION" -x 120 -y 40 \
  "XDG_CONFIG_HOME=$TMP/config XDG_CACHE_HOME=$TMP/first-run $BIN; sleep 30"
wait_for "building the sample store" 30
wait_for "/16 images" 60
echo "e2e_tmux: ok"
