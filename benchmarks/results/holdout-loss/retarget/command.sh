# Re-evaluation of the holdout-loss sweep's medium-replay checkpoints (its --run-root, here RUN_ROOT=/tmp/holdout-runs) at
# targets from the data (the largest episode return and the 99th percentile), on the final evaluation's episodes.
RUN_ROOT=${RUN_ROOT:-/tmp/holdout-runs}
# from the repository root, in the project's environment (bash benchmarks/results/holdout-loss/retarget/command.sh)
for run in $RUN_ROOT/cpu/local_hopper_medium-replay-v0__mingru__seed{0,1,2}__base $RUN_ROOT/cpu/local_walker2d_medium-replay-v0__mingru__seed{0,1,2}__base; do
  case $run in *hopper*) T="--target-return 2311 --target-return 1171";; *) T="--target-return 2461 --target-return 1944";; esac
  for ck in last best; do
    [ -f $run/checkpoints/$ck.pt ] || continue
    OMP_NUM_THREADS=1 python evaluate.py --checkpoint $run/checkpoints/$ck.pt --episodes 100 --seed 1000000 $T --threads 1 --no-progress --json benchmarks/results/holdout-loss/retarget/$(basename $run)__$ck.json > /dev/null 2>&1
    echo "$(basename $run) $ck done"
  done
done
