"""The conformance checks every C step passes, shipped so that anyone can test a compression of their own:

    import lc.testing
    lc.testing.check_compression(MyCompression(k=3), (12, 8), feasible=lambda d: d.unique().numel() <= 3)

:func:`check_compression` runs every check below on random inputs of ``shape`` in each dtype (float32, float64,
bfloat16) and device, and raises ``AssertionError`` naming the check, the dtype and what differed. Each check is
also a function of its own (``CHECKS``), as the project's own suite runs them.

- **feasible**: Δ(Θ) has the input's shape, dtype and device, is finite, satisfies ``feasible`` (the
  compression's constraint), and the input is not modified;
- **idempotent**: compressing Δ(Θ) again returns it unchanged, with the same bits (a projection; pass
  ``idempotent=False`` for C steps that are not, such as soft thresholding);
- **warm start**: compressing a perturbed input from the previous state gives the answer of a cold start;
- **bits**: an integer ≥ 0, at most the dense tensor's bits (+512);
- **state as data**: the state survives ``State.to_dict``/``from_dict``;
- **artifact**: ``lc.save``/``lc.load`` of a model holding the tensor restores Δ(Θ) bit for bit, the loaded state
  has the same bits, and the file is within ``lc.compressed.size_bound``;
- **export**: for a matrix (a ``Linear`` weight) or a 4-D kernel (a ``Conv2d`` weight), ``lc.export`` computes the
  same outputs as the model holding Δ(Θ), within the dtype's tolerance;
- **oracle** (given ``oracle(w, mu) -> Δ*``, e.g. a brute force on tiny inputs): the C step's objective
  ``α·C + μ/2‖w − Δ‖²`` is no worse than the oracle's; ``objective(w, delta, mu)`` (default ``‖w − Δ‖²``, the
  constraint forms') computes it.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .compressed import Compressed, size_bound
from .compression._base import Compression, State
from .params import AsIs, Param
from .storage import load, save

__all__ = ["check_compression", "CHECKS", "DTYPES", "tolerance"]

DTYPES = (torch.float32, torch.float64, torch.bfloat16)


_TOLERANCE = {  # (rtol, atol) per dtype, for: the same Δ computed twice; a warm start; the exported model's outputs
    torch.float64: {"same": (1e-6, 1e-6), "warm": (1e-5, 1e-6), "export": (1e-7, 1e-9)},
    torch.float32: {"same": (1e-5, 1e-5), "warm": (1e-5, 1e-6), "export": (1e-4, 1e-5)},   # (a GPU's SVD: ~4e-6)
    torch.float16: {"same": (1e-2, 1e-2), "warm": (1e-2, 1e-2), "export": (2e-2, 2e-2)},
    torch.bfloat16: {"same": (2e-2, 2e-2), "warm": (2e-2, 2e-2), "export": (3e-2, 3e-2)},
}


def tolerance(dtype: torch.dtype, what: str = "same") -> dict:
    """``rtol``/``atol`` for comparing two computations in ``dtype``: of the same Δ (``"same"``), of a warm and a
    cold start (``"warm"``), of the exported model and the model holding Δ (``"export"``)."""
    rtol, atol = _TOLERANCE[dtype][what]
    return {"rtol": rtol, "atol": atol}


def _input(shape, dtype, device, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def _close(actual, expected, dtype, what, kind="same"):
    torch.testing.assert_close(actual, expected, **tolerance(dtype, kind), msg=lambda m: f"{what}: {m}")


def check_feasible(c: Compression, w: torch.Tensor, mu: float, feasible=None, **_) -> None:
    w0 = w.clone()
    c.check(w.shape)
    out = c.decompress(c.compress(w, mu))
    assert out.shape == w.shape, f"Δ has shape {tuple(out.shape)}, the input {tuple(w.shape)}"
    assert out.dtype == w.dtype and out.device == w.device, \
        f"Δ is {out.dtype} on {out.device}, the input {w.dtype} on {w.device}"
    assert bool(torch.isfinite(out).all()), "Δ holds NaN or inf"
    assert torch.equal(w, w0), "the C step modified its input"
    assert feasible is None or feasible(out), f"Δ does not satisfy the constraint (feasible(Δ) is False): {out}"


def check_idempotent(c: Compression, w: torch.Tensor, mu: float, idempotent=True, **_) -> None:
    if not idempotent:
        return
    state = c.compress(w, mu)
    first = c.decompress(state)
    again = c.compress(first, mu)
    _close(c.decompress(again), first, w.dtype, "compressing Δ(Θ) again changed it")
    assert again.bits == state.bits, f"the same Θ costs {state.bits} bits, then {again.bits}"


def check_warm_start(c: Compression, w: torch.Tensor, mu: float, **_) -> None:
    cold = c.compress(w, mu)
    g = torch.Generator().manual_seed(7)
    w2 = w + (0.01 * torch.randn(w.shape, generator=g, dtype=torch.float64)).to(w.dtype).to(w.device)
    _close(c.decompress(c.compress(w2, mu, previous=cold)), c.decompress(c.compress(w2, mu)), w.dtype,
           "a warm start gave another answer than a cold start", "warm")


def check_bits(c: Compression, w: torch.Tensor, mu: float, **_) -> None:
    s = c.compress(w, mu)
    assert isinstance(s.bits, int) and s.bits >= 0, f"bits = {s.bits!r}, not an integer ≥ 0"
    dense = w.numel() * w.element_size() * 8
    assert s.bits <= max(dense, 32 * w.numel()) + 512, f"{s.bits} bits, more than the dense tensor's {dense}"


def check_state_as_data(c: Compression, w: torch.Tensor, mu: float, **_) -> None:
    s = c.compress(w, mu)
    back = State.from_dict(s.to_dict())
    assert torch.equal(c.decompress(back), c.decompress(s)), "the state changed through to_dict/from_dict"
    assert back.bits == s.bits


class _Holder(nn.Module):
    """The tensor under test as parameter ``w`` (a Linear/Conv2d weight where its shape allows), plus a dense
    layer, so that artifacts and export see a model with compressed and uncompressed tensors."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        if w.dim() == 2:
            self.layer = nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype, device=w.device)
        elif w.dim() == 4:
            self.layer = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), dtype=w.dtype, device=w.device)
        else:
            self.layer = None
            self.w = nn.Parameter(w.clone())
        if self.layer is not None:
            with torch.no_grad():
                self.layer.weight.copy_(w)
        self.other = nn.Linear(3, 2, dtype=w.dtype, device=w.device)

    @property
    def name(self) -> str:
        return "w" if self.layer is None else "layer.weight"

    def forward(self, x):
        return self.layer(x)


def _direct(c: Compression, w: torch.Tensor, mu: float) -> tuple[_Holder, Compressed]:
    model = _Holder(w)
    return model, Compressed.direct(model, {Param(model.name): (AsIs, c)}, mu=mu)


def check_artifact(c: Compression, w: torch.Tensor, mu: float, **_) -> None:
    model, compressed = _direct(c, w, mu)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.lc"
        written = save(path, model, compressed)
        fresh = _Holder(torch.zeros_like(w))
        loaded = load(path, fresh)
    delta = compressed.deltas()[model.name]
    assert torch.equal(fresh.get_parameter(model.name), delta), "lc.load did not restore Δ(Θ) bit for bit"
    assert loaded.states[0].bits == compressed.states[0].bits, "the loaded state's bits differ"
    bound = size_bound(model, compressed)
    assert written <= bound, f"the artifact has {written} bytes, more than the stated bound {bound}"


def check_export(c: Compression, w: torch.Tensor, mu: float, **_) -> None:
    if w.dim() not in (2, 4):
        return
    from .export import export
    model, compressed = _direct(c, w, mu)
    exported = export(model, compressed, sparse="never", micro_batch=None)
    reference = compressed.apply(copy.deepcopy(model)).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn((4, w.shape[1]) if w.dim() == 2 else (2, w.shape[1], w.shape[2] + 2, w.shape[3] + 2),
                    generator=g, dtype=torch.float64).to(w.dtype).to(w.device)
    with torch.no_grad():
        scale = float(reference(x).abs().max()) + 1.0
        torch.testing.assert_close(exported(x) / scale, reference(x) / scale, **tolerance(w.dtype, "export"),
                                   msg=lambda m: f"the exported model's outputs differ from Δ(Θ)'s: {m}")


def check_oracle(c: Compression, w: torch.Tensor, mu: float, oracle=None, objective=None, **_) -> None:
    if oracle is None:
        return
    objective = objective or (lambda w, d, mu: float(((w.double() - d.double()) ** 2).sum()))
    mine, best = objective(w, c.decompress(c.compress(w, mu)), mu), objective(w, oracle(w, mu), mu)
    assert mine <= best * (1 + 1e-5) + 1e-6, f"the C step's objective {mine:.8g} is worse than the oracle's {best:.8g}"


CHECKS: dict[str, Callable] = {"feasible": check_feasible, "idempotent": check_idempotent,
                               "warm start": check_warm_start, "bits": check_bits, "state as data": check_state_as_data,
                               "artifact": check_artifact, "export": check_export, "oracle": check_oracle}


def check_compression(compression: Compression, shape: Sequence[int], *,
                      feasible: Callable[[torch.Tensor], bool] | None = None, mu: float = 1.0, idempotent: bool = True,
                      oracle: Callable | None = None, objective: Callable | None = None,
                      dtypes: Sequence[torch.dtype] = DTYPES, devices: Sequence[str] = ("cpu",),
                      checks: Sequence[str] = tuple(CHECKS)) -> None:
    """Run the conformance ``checks`` (default: all of :data:`CHECKS`) on ``compression`` for random inputs of
    ``shape``, in every dtype and device given; raises ``AssertionError`` saying which check failed, where.
    ``feasible(Δ) -> bool`` states the constraint; ``oracle(w, mu) -> Δ*`` an independent solution for tiny inputs
    (with ``objective(w, Δ, mu)`` if the C step is a penalty form)."""
    unknown = [k for k in checks if k not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose among {list(CHECKS)}")
    for device in devices:
        for dtype in dtypes:
            w = _input(tuple(shape), dtype, device)
            for name in checks:
                try:
                    CHECKS[name](compression, w, mu, feasible=feasible, idempotent=idempotent, oracle=oracle,
                                 objective=objective)
                except AssertionError as e:
                    raise AssertionError(f"{compression!r} on {list(shape)} {dtype} ({device}): check "
                                         f"{name!r} failed: {e}") from None
