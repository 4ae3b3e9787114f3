"""Cross-resolution: `python run_crossres.py net=<net> dataset=<dataset> cross_res.source_res=16 cross_res.target_res=32 [train.epochs=N] [cross_res.finetune_epochs=M]`.

Trains at the source resolution, evaluates out of the box at the target resolution, fine-tunes
there and tests again, logging `source/…`, `ootb/…` and `target/…` metrics to one run
(and `ootb_bn/…`, BatchNorm statistics re-estimated at the target resolution, with
`cross_res.bn_recalibration_batches=N`).
`pretrained=<file.ckpt>` (or `pretrained_wandb=…`) with `train.epochs=0` skips the source training.
See `engine/crossres.py`.
"""

from engine.cli import main
from engine.crossres import run_crossres

if __name__ == "__main__":
    main(run_crossres)
