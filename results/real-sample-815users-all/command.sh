#!/bin/bash
# The real-sample run of issue 16 with every sample (no per-user cap), both negative schemes, CPU.
# One process per scheme (both at once), one thread each; 1 epoch at batch 256 (about 530 steps on the
# ~135k rows to fit); about 78 minutes per scheme on the shared 2-core machine.
SCHEME=$1
PYTHONPATH=$PWD nice -n 10 python examples/train_taobao.py \
  --data ../shared/data/taobao_userbehavior/userbehavior_head_815users.csv.gz \
  --negative-scheme "$SCHEME" \
  --models mdaf bst dcnv2 mdaf-seq-target --seeds 0 1 2 \
  --lr-candidates 1e-3 3e-3 --epochs 1 --batch-size 256 --train-eval-samples 4000 \
  --num-threads 1 --out runs/real-all-$SCHEME
