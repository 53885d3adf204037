#!/usr/bin/env bash
# One command, at most 10 minutes, on a machine with a CUDA GPU. Measures:
#   1. the image study's throughput (benchmarks/hparams_images.py on the GPU, short budget)
#   2. the shortcut gradient's peak GPU memory and time per family (SDXL, SD3, FLUX) at real architecture
#      sizes with random weights, shortcut (t = T/2, K = 1) vs full backpropagation, T = 10 steps
#   3. one short prompt search per family on the tiny pipelines, on the GPU, through the CLI
#   4. noise search (best-of-N, zero-order) on SD 1.x at 512 px and SDXL at 1024 px: peak memory, seconds per
#      NFE; the weights come from SD15_DIR and SDXL_DIR (diffusers pipeline directories; skipped when unset)
# Writes benchmarks/results/gpu_check.{md,json} (plus gpu_check_images.md and
# prompt_gradient_families_<family>_gpu.{md,json} from the scripts it calls).
#
#   bash benchmarks/gpu_check.sh             # needs a GPU; fails with one line without one
#   bash benchmarks/gpu_check.sh --dry-run   # any machine: checks the scripts compile, prints the plan
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
RESULTS=benchmarks/results
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1

if [ $DRY = 0 ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False); run it on a machine with one, or pass --dry-run" >&2
  exit 1
fi

TMP=$(mktemp -d)
STEPS=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, record rc and seconds
  local name=$1 limit=$2; shift 2
  if [ $DRY = 1 ]; then echo "would run (limit ${limit}s): $*"; return 0; fi
  local start=$(date +%s)
  timeout "$limit" "$@" > "$TMP/$name.log" 2>&1
  local rc=$?
  STEPS+=("$name|$rc|$(( $(date +%s) - start ))|$*")
  echo "$name: rc $rc in $(( $(date +%s) - start )) s" >&2
}

if [ $DRY = 1 ]; then  # every script must at least compile here
  "$PY" -m py_compile benchmarks/hparams_images.py benchmarks/prompt_gradient.py diffsearch/cli/prompt.py \
    benchmarks/noise_gpu.py \
    || { echo "gpu_check: a script it runs does not compile" >&2; exit 1; }
fi

# 1. image study throughput (~2 min)
step images 150 "$PY" benchmarks/hparams_images.py --device cuda --width 1.0 --trials 2 --epochs 1 --repeats 1 \
  --strategies baseline random --throughput-images 500 --tag gpu_check_images --storage "sqlite:///$TMP/images.db"
# 2. shortcut gradient at real sizes, random weights (~5 min)
for family in sdxl sd3 flux; do
  dtype=float16; [ $family = flux ] && dtype=bfloat16
  step "gradient_$family" 110 "$PY" benchmarks/prompt_gradient.py --family $family --device cuda --dtype $dtype \
    --steps-list 10 --repeats 1 --out "$RESULTS/prompt_gradient_families_${family}_gpu"
done
# 3. one short prompt search per family, tiny weights, on the GPU (~1 min)
for family in tiny-sdxl tiny-sd3 tiny-flux; do
  extra=(); [ $family = tiny-flux ] && extra=(--size 16 --true-cfg 3)
  step "search_$family" 60 "$PY" -m diffsearch.cli.main prompt "a red boat on a calm lake" --model $family \
    --clip tiny --device cuda --steps 4 --budget 8 --iterations 2 --space antonym+library --searcher gpo+es \
    --out "$TMP/search_$family" --json "${extra[@]}"
done
# 4. noise search on real pipelines (the user's weights), ~2 min each
for pair in "sd15:${SD15_DIR:-}:512" "sdxl:${SDXL_DIR:-}:1024"; do
  IFS=: read -r name dir size <<< "$pair"
  if [ -z "$dir" ] && [ $DRY = 0 ]; then echo "noise_$name: skipped (set ${name^^}_DIR to a diffusers pipeline directory)" >&2; continue; fi
  step "noise_$name" 150 "$PY" benchmarks/noise_gpu.py --model "${dir:-\$${name^^}_DIR}" --size $size --steps 20 \
    --generations 4 --searchers best-of-n,zero-order --out "$RESULTS/noise_gpu_$name"
done
[ $DRY = 1 ] && { echo "dry run: nothing measured"; rm -rf "$TMP"; exit 0; }

"$PY" - "$TMP" "$RESULTS" "${STEPS[@]}" <<'PYEOF'
import json, sys, pathlib, platform
import torch
tmp, results, steps = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
rows = []
for s in steps:
    name, rc, seconds, cmd = s.split("|", 3)
    log = (tmp / f"{name}.log").read_text(errors="replace").strip().splitlines()
    rows.append({"step": name, "rc": int(rc), "seconds": int(seconds), "command": cmd, "last_line": log[-1][:300] if log else ""})
gpu = torch.cuda.get_device_name(0)
lines = [f"# GPU check on {gpu}", "", "Run by `bash benchmarks/gpu_check.sh`; each step under its own time limit "
         "(rc 124: it ran out). Gradient tables: prompt_gradient_families_<family>_gpu.md (real architecture sizes, "
         "random weights: memory and time hold for the real models at these sizes, the images mean nothing). "
         "Image study: gpu_check_images.md.", "", "| step | rc | seconds | last line |", "|---|---|---|---|"]
lines += [f"| {r['step']} | {r['rc']} | {r['seconds']} | {r['last_line'].replace('|', '/')} |" for r in rows]
for r in rows:
    p = results / f"noise_gpu_{r['step'].removeprefix('noise_')}.md"
    if r["step"].startswith("noise_") and p.is_file():
        lines += ["", p.read_text()]
    p = results / f"prompt_gradient_families_{r['step'].removeprefix('gradient_')}_gpu.md"
    if r["step"].startswith("gradient_") and p.is_file():
        lines += ["", p.read_text()]
(results / "gpu_check.json").write_text(json.dumps({"gpu": gpu, "host": platform.node(), "steps": rows}, indent=2))
(results / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
rm -rf "$TMP"
