#!/usr/bin/env bash
# One `backend: verl` run on a Slurm allocation of several GPU nodes, with a Ray cluster over them.
#
#   sbatch --nodes=N --gpus-per-node=G --exclusive [--partition P] \
#       python/harness_verl/slurm_ray.sh runs/<grid> <run id or label>
#
# From the repository root (the job's working directory): starts the Ray head on the first node
# and a Ray worker on every other node (`srun`, one task per node), then on the head node
# `harness run runs/<grid> --only <run>`, which writes the run's launch.sh (verl's trainer with the
# harness's plugins and Hydra overrides), runs it against this Ray cluster, and reads verl's log
# into the run's metrics.jsonl / eval.jsonl. N and G must equal the run's backend.nnodes and
# backend.gpus_per_node. The run directory comes from `harness run <grid.yaml> --dry-run` (ids) or
# a prepared grid (`harness slurm` prepares it). Resume: submit again (verl's checkpoints, λ too).
#SBATCH --job-name=harness-verl
#SBATCH --ntasks-per-node=1
#SBATCH --output=%x-%j.out
set -euo pipefail
GRID_DIR=${1:?usage: slurm_ray.sh runs/<grid> <run>}
RUN=${2:?usage: slurm_ray.sh runs/<grid> <run>}
HARNESS=${HARNESS:-harness}
PORT=${RAY_PORT:-6379}

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD=${NODES[0]}
HEAD_IP=$(srun --nodes=1 --ntasks=1 -w "$HEAD" hostname --ip-address | awk '{print $1}')
export RAY_ADDRESS="$HEAD_IP:$PORT"

srun --nodes=1 --ntasks=1 -w "$HEAD" ray start --head --node-ip-address="$HEAD_IP" --port="$PORT" \
    --num-gpus="${SLURM_GPUS_PER_NODE:-8}" --block &
sleep 15
for node in "${NODES[@]:1}"; do
    srun --nodes=1 --ntasks=1 -w "$node" ray start --address="$RAY_ADDRESS" \
        --num-gpus="${SLURM_GPUS_PER_NODE:-8}" --block &
done
sleep 15
ray status --address="$RAY_ADDRESS"

"$HARNESS" run "$GRID_DIR" --only "$RUN"
