#!/usr/bin/env bash
# The paper scale of ONE model on a lent GPU machine (the device tool), in one call (issue 28):
#   here, once:        .venv/bin/python -m cbirlib.device pack
#   then, per model:   device run  command="bash workflow/device/paper-run.sh vgg16 300"
#                                  carry=[".device/wheels", ".device/vgg16", "data/default"]  timeout_s=360
#   (then the same with vit and ".device/vit", right after, while the machine is warm).
# It runs the model's points of workflow/sweeps/paper-gpu.yaml in order (Table IV first), each saved
# as soon as it ends into $OUT/points-<model>.tar, and starts no point that would end after DEADLINE
# seconds. Here:  .venv/bin/python -m cbirlib.device receive <files_at>/points-<model>.tar
# unpacks them into results/sweeps/paper-gpu/points/ and aggregates; commit both.
set -euo pipefail
model=${1:?usage: paper-run.sh vgg16|vit [DEADLINE_SECONDS]}
deadline=${2:-300}
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/wheels/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
python3 -m cbirlib.device unpack "$model" | tee -a "$out/device.txt"
python3 -m cbirlib.device plan "$model" --deadline "$deadline" --out "$out" 2>&1 | tee "$out/log.txt"
