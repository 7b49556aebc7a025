"""A small GPT-style decoder, defined here: token and position embeddings, pre-norm blocks of multi-head causal
attention and an MLP, a final layer norm and an output head tied to the token embedding (Radford et al., GPT-2).

Parameter names are those a pattern reads easily: ``tok.weight``, ``pos.weight``, ``blocks.{i}.attn.{q,k,v,o}.weight``,
``blocks.{i}.mlp.{fc,proj}.weight``, layer norms ``blocks.{i}.ln{1,2}.*`` and ``ln.*``. The head is ``head.weight``,
the same tensor as ``tok.weight`` (listed once, under ``tok.weight``). The linear layers have no biases, so that
the matrices hold every weight worth compressing.

Why defined here rather than built from ``transformers``: no optional dependency for the default study, names that
match patterns such as ``blocks.*.attn.*.weight``, and q, k, v as separate matrices (each its own task). A
``transformers`` causal LM is accepted as it is by :class:`tasks.lm.LanguageModel` (HF names; its ``Conv1D``
weights, stored (in, out), are handled by the data-aware C steps).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GPTConfig", "GPT"]


@dataclass(frozen=True)
class GPTConfig:
    vocab: int = 256            # byte-level tokens
    context: int = 128          # the longest input, in tokens
    width: int = 256            # d: the residual stream's width
    depth: int = 4              # blocks
    heads: int = 4              # attention heads (width divisible by heads)
    mlp: int = 4                # the MLP's hidden width is mlp · width

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.heads = c.heads
        self.q, self.k, self.v, self.o = (nn.Linear(c.width, c.width, bias=False) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (f(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)           # softmax(qkᵀ/√d_h + causal mask) v
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(c.width, c.mlp * c.width, bias=False)
        self.proj = nn.Linear(c.mlp * c.width, c.width, bias=False)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(c.width), Attention(c)
        self.ln2, self.mlp = nn.LayerNorm(c.width), MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))                                           # pre-norm residual blocks
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """``GPT(config)(ids)`` → logits (batch, time, vocab) for token ids (batch, time), time ≤ ``config.context``."""

    def __init__(self, config: GPTConfig = GPTConfig()):
        super().__init__()
        if config.width % config.heads:
            raise ValueError(f"GPTConfig: width {config.width} is not divisible by heads {config.heads}")
        self.config = config
        self.tok = nn.Embedding(config.vocab, config.width)
        self.pos = nn.Embedding(config.context, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.ln = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab, bias=False)
        self.head.weight = self.tok.weight                                      # tied: one tensor, two uses
        for name, p in self.named_parameters():
            if p.dim() == 2:                                                    # GPT-2's initialisation
                std = 0.02 / math.sqrt(2 * config.depth) if name.endswith(("o.weight", "proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.config.context:
            raise ValueError(f"GPT: an input of {t} tokens is longer than the context of {self.config.context}")
        x = self.tok(ids) + self.pos.weight[:t]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))
