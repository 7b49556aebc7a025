"""The modules that exported models are made of, beyond torch's own."""
from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["SparseLinear", "MicroBatched", "CSR_DTYPES"]

CSR_DTYPES = (torch.float32, torch.float64)      # torch.sparse.mm on CSR runs these on the CPU (not half types)


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W stored as a CSR sparse matrix (``torch.sparse.mm``)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        with warnings.catch_warnings():             # "sparse CSR support is in beta": we use mm only
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("weight", weight.detach().to_sparse_csr())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight.values().numel()}"


class MicroBatched(nn.Module):
    """Runs ``module`` on slices of at most ``size`` examples (dimension 0 of a single tensor input) and concatenates
    the outputs; ``size=None`` runs every batch whole. The same outputs (in eval mode no layer mixes examples);
    faster for convolutional nets at large batches because a slice's activations stay in cache (measured in
    ``docs/artifacts.md``)."""

    def __init__(self, module: nn.Module, size: int | None):
        super().__init__()
        self.module, self.size = module, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is None or x.shape[0] <= self.size:
            return self.module(x)
        return torch.cat([self.module(part) for part in x.split(self.size)])


