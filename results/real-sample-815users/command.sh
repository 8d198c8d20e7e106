#!/bin/bash
# The real-sample run of issue 16 (CPU, what fits in about 25 minutes on a shared 2-core machine).
SCHEME=$1
PYTHONPATH=$PWD nice -n 10 python examples/train_taobao.py \
  --data ../shared/data/taobao_userbehavior/userbehavior_head_815users.csv.gz \
  --negative-scheme "$SCHEME" --max-samples-per-user 4 \
  --models mdaf bst dcnv2 mdaf-seq-target --seeds 0 1 2 \
  --lr-candidates 1e-3 3e-3 --epochs 2 --batch-size 128 --train-eval-samples 2000 \
  --num-threads 1 --no-progress --out runs/real4-$SCHEME
