#!/usr/bin/env bash
# The paper profile (Table IV) of ONE model on a lent GPU machine (the device tool), in one call:
#   here, once:        .venv/bin/python -m cbirlib.device pack
#   then, per model:   device run  command="bash workflow/device/paper-run.sh vgg16"
#                                  carry=[".device/wheels", ".device/vgg16", "data/default"]  timeout_s=540
#   (and the same with vit and ".device/vit"). The tables come back under $OUT/results/; copy them to
#   results/02_classification_paper_device/ and commit them (they record the device and the weights'
#   transport). Budget: about 4 minutes of training per model on an H200 (bfloat16 autocast).
set -euo pipefail
model=${1:?usage: paper-run.sh vgg16|vit}
out=${OUT:-/tmp/out}
mkdir -p "$out/results"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/wheels/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
python3 -m cbirlib.device unpack "$model" | tee -a "$out/device.txt"
python3 -m cbirlib.studies.classificationstudy paper --models "$model" --results-dir "$out/results" \
  --results-name "02_classification_paper_$model" 2>&1 | tee "$out/log.txt"
