#!/usr/bin/env bash
# Device check: the paper-scale paths on one accelerator, in one script (target: under 8 minutes).
#
#   benchmarks/device_check.sh                  # on a GPU (or TPU) machine
#   benchmarks/device_check.sh --cpu-smoke      # everything at tiny sizes on the CPU (the plumbing, ~3 minutes)
#   benchmarks/device_check.sh --out DIR        # keep the logs and JSON there (default: a fresh temporary folder)
#
# 1. The environment: the project's .venv (created and installed by ./run when missing). On a machine with
#    an NVIDIA GPU whose jax does not see it yet, the CUDA build is installed first:
#        .venv/bin/pip install -e ".[cuda]"
#    JAXUNLEARN_PYTHON=/path/to/python uses another interpreter instead (one that has jax for the device
#    and jaxunlearn's dependencies; the repository is put on its PYTHONPATH).
# 2. benchmarks/curvature.py: HVP and Fisher-diagonal cost as ratios to a gradient.
# 3. benchmarks/scale.py: time and peak memory of ResNet-18's SSD importances, JiT step, HVP and training
#    epoch at N = 50,000 synthetic CIFAR examples (smoke: 128 and 256).
# 4. benchmarks/paper_runs.py: ResNet-18 trained on 50,000 synthetic CIFAR-100 examples (3 epochs), then
#    one full SSD and one JiT run forgetting "rocket" (smoke: 300 examples, 1 epoch).
# The smoke run uses ResNet-18's layers at an eighth of the width (--width 8) so that it fits in minutes
# on two CPU cores; the device run uses the real ResNet-18.
# Then one combined table headed by the device name. Any failing part stops the script with a non-zero
# exit status and the part's name; a device run that finds no accelerator fails too.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=device
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) mode=smoke ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")}
mkdir -p "$out"
started=$(date +%s)
# programs compiled by one part (the model's initialisation, ...) are loaded by the next from this cache; a
# rerun with the same --out loads all of them (its compile times then measure the cache)
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$out/jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}

fail() { echo "device_check: FAILED: $*" >&2; exit 1; }

# ---- 1. environment -----------------------------------------------------------------------------------
if [ -n "${JAXUNLEARN_PYTHON:-}" ]; then
  PY=$JAXUNLEARN_PYTHON
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  PY=.venv/bin/python
  [ -x "$PY" ] || ./run python -c "pass" || fail "creating .venv with ./run"
fi
if [ "$mode" = smoke ]; then
  export JAX_PLATFORMS=cpu
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  if ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
    [ -z "${JAXUNLEARN_PYTHON:-}" ] || fail "$PY has no CUDA jax; install it there (pip install 'jax[cuda12]')"
    echo "[device_check] installing the CUDA build: $PY -m pip install -e \".[cuda]\"" >&2
    "$PY" -m pip install -q -e ".[cuda]" || fail "pip install -e \".[cuda]\""
  fi
fi
device=$("$PY" -c "import jax; d = jax.devices()[0]; print(f'{d.platform}: {d.device_kind} (jax {jax.__version__})')") \
  || fail "importing jax"
echo "[device_check] device $device, logs in $out" >&2
if [ "$mode" = device ] && [ "${device%%:*}" = cpu ]; then
  fail "no accelerator found (jax runs on the CPU); run with --cpu-smoke for the CPU check"
fi

# ---- 2.-4. the parts ------------------------------------------------------------------------------------
if [ "$mode" = smoke ]; then
  curvature_args=(--n 128 --repeats 2)
  scale_args=(--sizes 128,256 --width 8)
  paper_args=(--num-train 300 --num-test 100 --epochs 1 --width 8)
else
  curvature_args=(--n 1024 --repeats 10)
  scale_args=(--sizes 50000)
  paper_args=(--num-train 50000 --num-test 10000 --epochs 3)
fi
part() {  # part NAME SCRIPT ARGS...: run one benchmark, log it, fail loudly
  local name=$1 script=$2 t0
  shift 2
  t0=$(date +%s)
  echo "[device_check] $name: $script $*" >&2
  if ! PYTHONUNBUFFERED=1 "$PY" "$script" "$@" --json "$out/$name.json" >"$out/$name.log" 2>&1; then
    tail -n 40 "$out/$name.log" >&2
    fail "$name ($script $*), log $out/$name.log"
  fi
  echo "$(( $(date +%s) - t0 ))" >"$out/$name.seconds"
  echo "### $name"
  grep -v '^\[scale\]' "$out/$name.log" || true
  echo
}
part curvature benchmarks/curvature.py "${curvature_args[@]}"
part scale benchmarks/scale.py "${scale_args[@]}"
part paper_runs benchmarks/paper_runs.py "${paper_args[@]}"

# ---- the combined table ---------------------------------------------------------------------------------
"$PY" - "$out" "$device" "$mode" "$(( $(date +%s) - started ))" <<'EOF' || fail "the combined table"
import json, sys
out, device, mode, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
load = lambda name: json.load(open(f"{out}/{name}.json"))
seconds = lambda name: int(open(f"{out}/{name}.seconds").read())
rows = []
for r in load("curvature")["rows"]:
    rows.append(("curvature", r["model"], f"HVP/grad {r['hvp_over_grad']:.2f}, Fisher/grad {r['fisher_over_grad']:.2f}, "
                 f"vmap Fisher/grad {r['vmap_fisher_over_grad']:.1f}"))
scale = load("scale")
for r in scale["rows"]:
    flag = "" if r["peak_exact"] else "*"
    rows.append(("scale", f"{r['op']} N={r['n']}", f"{r['per_1000_s']:.3f} s/1k examples, peak "
                 f"{r['peak_bytes'] / 2**20:.0f}{flag} MiB, compile {r['compile_s']:.1f} s, "
                 f"{scale['extrapolate']} examples {r['per_1000_s'] * scale['extrapolate'] / 1000:.1f} s"))
paper = load("paper_runs")
for name, a in paper["accuracy"].items():
    sec = paper["seconds"]
    took = f", {sec[name + ' init']:.1f} s init + {sec[name + ' update']:.1f} s update" if name != "original" else (
        f", trained {paper['epochs']} epochs in {sec['train']:.1f} s")
    rows.append(("paper run", f"{name} ({paper['num_train']} examples)",
                 f"Dr/Df train {a['retain_train']:.3f}/{a['forget_train']:.3f}, Dr/Df test "
                 f"{a['retain_test']:.3f}/{a['forget_test']:.3f}{took}"))
print(f"\n## Device check ({mode}) on {device}: {total} s in all "
      f"(curvature {seconds('curvature')} s, scale {seconds('scale')} s, paper runs {seconds('paper_runs')} s)\n")
print("| part | case | result |\n|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
EOF
echo "[device_check] passed; logs and JSON in $out" >&2
