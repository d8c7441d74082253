#!/usr/bin/env bash
# TorchRec for `train.engine=torchrec` and its tests (tests/distributed/test_torchrec_engine.py),
# into the active environment, on the CPU torch wheel. torchrec 1.9.x with fbgemm 1.9.0 does not
# load with torch 2.13 (ABI); 1.8.0 with FBGEMM's CPU build does. --no-deps keeps pip from pulling
# the CUDA fbgemm-gpu; the pure-python dependencies follow, with torch pinned so that nothing
# replaces the CPU wheel. The README's test command and .ci/run both call this script.
set -euo pipefail
python -m pip install --quiet --no-deps "torchrec==1.8.0" "fbgemm-gpu-cpu==1.8.0"
python -m pip install --quiet torch==2.13.0 "tensordict==0.15.3" "pyre-extensions==0.0.32" \
  "iopath==0.1.10" "torchmetrics==1.0.3"
