#!/usr/bin/env bash
# The Cityscapes runs of Burkov & Lempitsky, "Deep Neural Networks with Box Convolutions"
# (NeurIPS 2018): the six nets of the paper, one after another, each with the authors'
# recipe (cfg/experiment/box_cityscapes.yaml: Adam, batch 12, 1300 epochs, 512x1024, one GPU, W&B).
#
#   experiments/box/cityscapes.sh <folder holding cityscapes/> [key=value ...]
#
# Extra key=value overrides go to every run (e.g. logger.wandb.entity=<team> seed=1).
# PYTHON selects the interpreter (default: python).
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 <folder holding cityscapes/> [key=value ...]" >&2
    exit 2
fi
data=$(cd "$1" && pwd)  # absolute, since the runs start from the repository root
shift
cd "$(dirname "$0")/../.."

for net in enet boxenet boxonlyenet enet_minus erfnet boxerfnet; do
    "${PYTHON:-python}" run_experiment.py experiment=box_cityscapes net="$net" paths.data="$data" "$@"
done
