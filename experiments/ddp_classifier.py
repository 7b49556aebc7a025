"""One LC run of the image-classification adapter with its L step under torch.distributed (DDP over the ranks):

    torchrun --nproc_per_node=2 -m experiments.ddp_classifier --family pruning --value 0.05
    torchrun --nproc_per_node=2 -m experiments.ddp_classifier --dataset mnist --data-dir /data/mnist --model lenet5

Every rank builds the same reference (trained, or loaded from --cache-dir: rank 0 trains it first, the others wait
and load it), runs lc.Algorithm on it with the adapter's L step — which wraps the model in DistributedDataParallel
and gives each rank its share of every batch — and the same compression; lc computes Θ on rank 0 and broadcasts
it, and rank 0 alone writes the checkpoint, the artifact and the row. Without torchrun it is one process (world 1).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

import lc
from tasks.classification import Classification, TaskConfig

from . import cli
from .cli import option
from .schemes import parse_scheme


@dataclass
class Config:
    """One distributed LC run (every field a flag and a key of a --config file)."""

    task: TaskConfig = option(TaskConfig(epochs_per_step=1, ref_epochs=10), "the task: see TaskConfig")
    family: str = option("pruning", "the compression family (experiments.schemes)")
    value: float = option(0.05, "its value (e.g. the kept fraction)")
    steps: int = option(10, "LC steps")
    mu0: float = option(3e-3, "μ₀ of the schedule μ_j = μ₀ · a^j")
    mu_multiplier: float = option(1.4, "a of the schedule")
    backend: str = option("gloo", "torch.distributed backend (gloo on CPUs, nccl on GPUs)")
    cache_dir: str = option(".cache/references", "where the reference is cached")
    out: str = option("results/ddp_classifier", "output directory (rank 0 writes)", directory=True)


def main(argv=None) -> int:
    config = cli.parse(Config, argv, prog="python -m experiments.ddp_classifier", description=__doc__)
    scheme = parse_scheme(f"{config.family}={config.value:g}")        # bad input fails here, before any training
    fam = scheme.of
    fam.check(scheme.value)
    if (Path(config.out) / "row.json").exists():                      # done before: its results are kept
        print(f"{Path(config.out) / 'row.json'} exists: this run is done (choose another --out to run it again)")
        return 0
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group(config.backend)
    rank = dist.get_rank() if world > 1 else 0
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s")
    task = Classification(config.task)
    if rank == 0:
        reference = task.reference(cache_dir=config.cache_dir)          # trained once, cached
    if world > 1:
        dist.barrier()
    if rank != 0:
        reference = task.reference(cache_dir=config.cache_dir)          # loaded from the cache
    tasks = fam.tasks(reference, scheme.value, task.compression_tasks)
    out = Path(config.out)
    torch.manual_seed(config.task.seed)                                 # the same batch order on every rank
    algorithm = lc.Algorithm(reference, tasks, lc.geometric_mu(config.mu0, config.mu_multiplier, config.steps),
                             task.l_step(), task.evaluate, checkpoint_dir=out / "checkpoint",
                             example_input=task.example_input(1))
    history = algorithm.run()
    digest = _digest(algorithm.states)
    digests = [None] * world
    if world > 1:
        dist.all_gather_object(digests, digest)
    else:
        digests = [digest]
    if rank == 0:
        size = lc.save(out / "model.lc", reference, algorithm, overwrite=True)
        row = {"family": fam.name, "value": scheme.value, "world": world, "test_error": history[-1].evaluation["error"],
               "ratio": history[-1].ratio, "file_bytes": size, "l_time": sum(r.l_step_time for r in history),
               "c_time": sum(r.c_step_time for r in history), "same_theta_on_every_rank": len(set(digests)) == 1}
        lc._io.write_text_atomic(out / "row.json", json.dumps(row))
        print(json.dumps(row))
    if world > 1:
        dist.barrier()                    # tear down together: a rank that left while rank 0 still wrote aborted
        dist.destroy_process_group()      # once ("terminate called without an active exception")
    return 0


def _digest(states) -> str:
    """A hash of Θ (every state tensor's bytes), to check that the ranks agree."""
    import hashlib
    h = hashlib.sha256()

    def add(state):
        for k in sorted(state.tensors):
            h.update(state.tensors[k].detach().cpu().contiguous().numpy().tobytes())
        for p in state.parts:
            add(p)
    for s in states:
        add(s)
    return h.hexdigest()


if __name__ == "__main__":
    raise SystemExit(cli.console(main))
