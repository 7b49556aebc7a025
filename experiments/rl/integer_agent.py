"""The LunarLander Q-network as an integer-only C agent: the network compressed to 8-bit integer grids (one scale per
output neuron: ``lc.AffineQuantization(8, per_channel=True)``), directly and by LC (offline L step), converted to an
integer-only net (``lc.export.integer``: int8 weights and activations, int32 accumulators, fixed-point
requantization; activation scales calibrated on the reference's replay states), written as one C file, compiled
with the system C compiler and played through a small Python harness (``CompiledNet`` via ctypes; the harness
quantizes each observation to int8, the only float operation, which a device's sensors would do in integers).

    python -m experiments.rl.integer_agent                     # LunarLander, 100 test episodes (about 4.5 min)
    python -m experiments.rl.integer_agent --env cartpole --episodes 10 --lc-steps 3 --out /tmp/ia

Reports, over the test episodes (seeds from qn.TEST_SEED0): the float reference, each 8-bit float Δ(Θ) agent and
its integer C agent; how often the C agent's greedy action equals the float Δ(Θ) agent's on the states it visits;
and the size of the compiled code + weights (text + data of the object file) against the float32 weights.
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import lc
from experiments import cli
from experiments.cli import option
from experiments.schemes import Family, Scheme
from lc.export import integer
from lc.export.cgen import CompiledNet, compile_shared
from tasks import qnetwork as qn

from . import common as rc

AFFINE8 = Family("affine-rows", "bits", (8,),
                 lambda b, shapes: (lc.AsIs, lc.AffineQuantization(int(b), per_channel=True)),
                 description="each weight matrix on an integer grid of b bits, one scale per output neuron")


class CAgent(torch.nn.Module):
    """The compiled integer net, called like the float Q-network on one observation (for qn.evaluate)."""

    def __init__(self, net: integer.IntegerNet, compiled: CompiledNet):
        super().__init__()
        self.net, self.compiled, self.actions = net, compiled, []

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.compiled(self.net.quantize_input(obs.numpy().reshape(1, -1)))[0]
        self.actions.append(int(out.argmax()))
        return torch.from_numpy(out.astype(np.int64))


def object_bytes(source: str, directory: Path) -> int:
    """text + data of the compiled object file (code, and the const weights in .rodata)."""
    c, o = directory / "agent.c", directory / "agent.o"
    c.write_text(source)
    subprocess.run(["cc", "-O2", "-std=c99", "-c", str(c), "-o", str(o)], check=True)
    fields = subprocess.run(["size", str(o)], capture_output=True, text=True, check=True).stdout.splitlines()[1]
    text, data = (int(v) for v in fields.split()[:2])
    return text + data


def play(name: str, net_float: torch.nn.Module, compressed, ref: qn.Reference, episodes: int, work: Path) -> dict:
    states = torch.from_numpy(ref.replay().states()[:20_000])
    inet = integer.convert(net_float, compressed, states)
    source = inet.c_source("agent")
    agent = CAgent(inet, CompiledNet(compile_shared(source, work, "agent"), states.shape[1],
                                     inet.run(inet.quantize_input(states[:1].numpy())).shape[1], "agent"))
    ev_float = qn.evaluate(net_float, ref.cfg.env_id, episodes)
    ev_int = qn.evaluate(agent, ref.cfg.env_id, episodes)
    with torch.no_grad():
        agree = float((net_float(states[:5000]).argmax(1).numpy() ==
                       agent.compiled(inet.quantize_input(states[:5000].numpy())).argmax(1)).mean())
    return {"agent": name, "float_return": ev_float.mean, "float_std": ev_float.std, "int_return": ev_int.mean,
            "int_std": ev_int.std, "action_agreement_on_replay_states": agree,
            "weights_from": sorted({layer.source for layer in inet.layers if layer.weight is not None}),
            "code_and_weights_bytes": object_bytes(source, work), "int_constants_bytes": inet.code_bytes(),
            "float32_weight_bytes": 4 * sum(p.numel() for p in net_float.parameters()),
            "episodes": episodes, "ratio": compressed.ratio(net_float)}


@dataclass
class Config(rc.Common):
    """The integer agent's settings (every field a flag and a key of a --config file)."""

    lc_steps: int = option(10, "LC steps of the offline L step (0: the direct compression only)")
    out: str = option("results/rl/integer_agent", "output directory", directory=True)


def _main(argv=None) -> int:
    args = cli.parse(Config, argv, prog="python -m experiments.rl.integer_agent", description=__doc__)
    out = Path(args.out)
    torch.set_num_threads(args.threads)
    ref = rc.reference(args.env)
    scheme = Scheme(AFFINE8, 8)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        ref_net = ref.network()
        rows.append(play("reference (weights rounded to int8)", ref_net, lc.Compressed.none(), ref, args.episodes,
                         Path(d)))
        net, c = rc.naive(ref, scheme)
        rows.append(play("direct 8-bit grid", net, c, ref, args.episodes, Path(d)))
        if args.lc_steps:
            net, _, c = rc.lc_run(ref, scheme, "offline", seed=0, mu0=1e-3, multiplier=1.25 ** (30 / args.lc_steps),
                                  steps=args.lc_steps, eval_episodes=5)
            rows.append(play("LC 8-bit grid (offline L step)", net, c, ref, args.episodes, Path(d)))
    rc.write_rows(rows, out)
    for r in rows:
        print(f"{r['agent']:38s} float {r['float_return']:8.1f} ± {r['float_std']:5.1f}   integer C "
              f"{r['int_return']:8.1f} ± {r['int_std']:5.1f}   same action {100 * r['action_agreement_on_replay_states']:5.1f}%"
              f"   code+weights {r['code_and_weights_bytes']} B (float32 weights {r['float32_weight_bytes']} B)")
    return 0


def main(argv=None) -> int:
    return cli.console(_main, argv)


if __name__ == "__main__":
    main()
