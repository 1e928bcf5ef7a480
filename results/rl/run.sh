#!/usr/bin/env bash
# The multistage RL run of results/rl/README.md: checkpoint -> + DPO -> + GRPO, LoRA on CPU, one command per stage.
# Each stage is resumable: a finished stage is skipped (its output exists), an interrupted training run continues.
# Run from the repository root: bash results/rl/run.sh   (LOCK=... wraps each stage, e.g. LOCK="flock /tmp/cpu.lock")
set -euo pipefail
R=results/rl
TASKS=reverse,sort,count,max
QM=".venv/bin/qwen-min"
LOCK=${LOCK:-}
EVAL="eval tasks --tasks $TASKS --prompts-per-task 50 --seed 1 --max-new-tokens 64 --resume"
LORA="--lora --lora-rank 4 --lora-alpha 8"
resume_if() { [ -f "$1/run.json" ] && echo --resume || true; }
stage() { local t0=$SECONDS; echo "== $1"; shift; $LOCK "$@"; echo "== took $((SECONDS - t0)) s"; }

stage "0: the checkpoint, held out" $QM $EVAL --checkpoint 0.5B --out $R/samples/checkpoint.jsonl
[ -f $R/pairs.jsonl ] || stage "1: pairs sampled from the checkpoint, ranked by the checkers" \
  $QM make-pairs --checkpoint 0.5B --tasks $TASKS --split dpo --prompts-per-task 40 --n-samples 8 \
  --max-new-tokens 32 --seed 0 --out $R/pairs.jsonl --no-progress
[ -f $R/dpo/model/adapter.json ] || stage "2: DPO" $QM dpo --checkpoint 0.5B --pairs $R/pairs.jsonl --out $R/dpo $LORA \
  --beta 0.1 --lr 2e-4 --epochs 2 --batch-size 8 --eval-every 4 --save-every 4 --eval-tasks none $(resume_if $R/dpo) --no-progress
stage "3: + DPO, held out" $QM $EVAL --checkpoint $R/dpo --out $R/samples/dpo.jsonl
[ -f $R/grpo/model/adapter.json ] || stage "4: GRPO from the DPO model" $QM grpo --checkpoint $R/dpo --tasks $TASKS $LORA \
  --group-size 8 --batch-size 32 --n-prompts 16 --order variance --max-new-tokens 32 --beta 0.04 --lr 1e-4 \
  --max-steps 16 --eval-prompts 8 --eval-every 4 --save-every 4 --out $R/grpo $(resume_if $R/grpo) --no-progress
stage "5: + GRPO, held out" $QM $EVAL --checkpoint $R/grpo --out $R/samples/grpo.jsonl
$QM eval tasks --compare $R/samples/checkpoint.jsonl $R/samples/dpo.jsonl $R/samples/grpo.jsonl | tee $R/table.md
