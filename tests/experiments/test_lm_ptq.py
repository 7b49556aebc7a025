"""The post-training baselines against brute force on 4×4 layers: GPTQ is its own definition (each column rounded after
the least-squares re-fit of the columns left), exact where H is diagonal, between the best rounding and RTN; SparseGPT,
Wanda and AWQ keep their structure and never do worse than what they refine; layers are grouped by input."""
import itertools

import pytest
import torch

from experiments import lm_ptq
from experiments.lm_ptq import Grid
from tasks.gpt import GPT, GPTConfig


def _layer(seed, n=4, rows=4, samples=12):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, n, generator=g, dtype=torch.float64)
    x = torch.randn(n, samples, generator=g, dtype=torch.float64) * torch.linspace(0.3, 2.0, n, dtype=torch.float64)[:, None]
    x[1] += 0.8 * x[0]                                                   # correlated inputs
    return w, x @ x.T / samples


def _damped(h, damp=0.01):
    return h + damp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=h.dtype)


def _err(w, q, h):
    d = w - q
    return float(torch.einsum("ij,jk,ik->", d, h, d))


def _by_definition(w, h, grid, order):
    """GPTQ as defined: in ``order``, round column i of the weights re-fitted by least squares given the columns
    already rounded (min over the free columns of the error with H), one row at a time."""
    out = torch.empty_like(w)
    for r in range(w.shape[0]):
        q, done = w[r].clone(), []
        for i in order:
            free = [j for j in range(w.shape[1]) if j not in done]
            e = (q - w[r])[done]
            v = w[r].clone()
            if done:                                                  # H_ff δ_f = −H_fd e_d
                v[free] += torch.linalg.solve(h[free][:, free], -h[free][:, done] @ e)
            q[i] = grid(v[i].reshape(1, 1).expand(w.shape[0], 1))[r, 0]
            done.append(i)
        out[r] = q
    return out


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_gptq_is_its_definition_on_a_4x4_layer(seed, act_order):
    w, h = _layer(seed)
    grid = Grid.minmax(w, 2)                                          # one grid per row, fixed from w
    order = torch.argsort(h.diagonal(), descending=True).tolist() if act_order else list(range(4))
    ours = lm_ptq.gptq(w, h, bits=2, act_order=act_order)
    assert torch.allclose(ours, _by_definition(w, _damped(h), grid, order), atol=1e-12)


def _best_rounding(w, h, grid, bits):
    """The brute-force optimum over every assignment of grid levels to the weights of each row."""
    levels = grid.scale * (torch.arange(2 ** bits, dtype=torch.float64)[None] - grid.zero)      # (rows, levels)
    best = torch.empty_like(w)
    for r in range(w.shape[0]):
        cands = (torch.tensor(c) for c in itertools.product(range(2 ** bits), repeat=w.shape[1]))
        best[r] = min((levels[r][c] for c in cands), key=lambda q: float((q - w[r]) @ h @ (q - w[r])))
    return best


def test_gptq_with_diagonal_h_is_the_best_rounding_and_otherwise_between_the_best_and_rtn():
    w, h = _layer(0)
    diag = torch.diag(h.diagonal())
    grid = Grid.minmax(w, 2)
    assert torch.allclose(lm_ptq.gptq(w, diag, bits=2, act_order=False), _best_rounding(w, diag, grid, 2))
    gaps = []
    for seed in range(8):
        w, h = _layer(seed)
        grid = Grid.minmax(w, 2)
        best = _err(w, _best_rounding(w, _damped(h), grid, 2), _damped(h))
        ours, rtn = (_err(w, q, _damped(h)) for q in (lm_ptq.gptq(w, h, bits=2, act_order=False), lm_ptq.rtn(w, 2)))
        assert best <= ours + 1e-12
        gaps.append((ours - best, rtn - best))
    assert sum(g for g, _ in gaps) < sum(r for _, r in gaps)          # closer to the best than RTN, on average


def test_gptq_groups_and_storage():
    w, h = _layer(1, n=8)
    for act_order in (False, True):
        q = lm_ptq.gptq(w, h, bits=2, group=4, act_order=act_order)
        for g in q.reshape(-1, 4):
            assert g.unique().numel() <= 4
    assert lm_ptq.grid_bits((4, 8), 3, 4) == 32 * 3 + 8 * 35 and lm_ptq.grid_bits((4, 8), 3, None) == 96 + 4 * 35


def test_sparsegpt_wanda_and_magnitude_keep_their_structure_and_sparsegpt_refits():
    w, h = _layer(2, n=8, rows=6)
    for nm in (None, (2, 4)):
        for q in (lm_ptq.sparsegpt(w, h, 0.5, nm, block=8), lm_ptq.wanda(w, h, 0.5, nm), lm_ptq.magnitude(w, 0.5, nm)):
            if nm:
                assert bool(((q.reshape(-1, 4) != 0).sum(1) <= 2).all())
            else:
                assert int((q == 0).sum()) >= 24
    # keeping SparseGPT's mask, its re-fitted weights beat the same mask with the weights unchanged
    q = lm_ptq.sparsegpt(w, h, 0.5, (2, 4))
    assert _err(w, q, _damped(h)) <= _err(w, torch.where(q == 0, 0, w), _damped(h))
    per_row = lm_ptq.wanda(w, h, 0.5)
    assert bool(((per_row == 0).sum(1) == 4).all())                      # Wanda: half of every row


def test_awq_is_never_worse_than_rtn_on_its_objective():
    w, h = _layer(3, n=8)
    mean_abs = h.diagonal().sqrt()
    (q,), alpha = lm_ptq.awq([w], [h], mean_abs, bits=2, group=4)
    assert _err(w, q, h) <= _err(w, lm_ptq.rtn(w, 2, 4), h) + 1e-12 and 0 <= alpha < 1


def test_layers_are_grouped_by_their_input_and_compressed_in_order():
    torch.manual_seed(0)
    net = GPT(GPTConfig(width=16, depth=2, heads=2, context=8, vocab=32))
    x = torch.randint(0, 32, (4, 8))
    names = [n for n, p in net.named_parameters() if p.dim() == 2 and n.startswith("blocks")]
    groups = lm_ptq.layer_groups(net, x, names)
    assert groups[0] == ["blocks.0.attn.q.weight", "blocks.0.attn.k.weight", "blocks.0.attn.v.weight"]
    assert groups[1:4] == [["blocks.0.attn.o.weight"], ["blocks.0.mlp.fc.weight"], ["blocks.0.mlp.proj.weight"]]
    seen = []
    lm_ptq.sequential(net, x, names, lambda g, ws, hs, xs: (seen.append(g), ([lm_ptq.rtn(w, 2) for w in ws], None))[1])
    assert seen == groups and all(r.unique().numel() <= 4 for r in net.blocks[1].mlp.fc.weight)
