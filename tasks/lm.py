"""The causal language-model adapter (:class:`tasks.adapter.Adapter`): a reference decoder trained here on byte-level
tokens (or your model, used as it is), one L step for every compression (AdamW with the LC penalty decoupled, gradient
clipping, a constant learning rate), and an evaluation in perplexity and bits per token.

    import lc
    from tasks.lm import LanguageModel, LMConfig
    task = LanguageModel(LMConfig())                          # GPT of 3.2M weights on the stdlib's source
    net = task.reference(cache_dir=".cache/references")      # trained (~20 CPU-minutes), or loaded
    tasks = {lc.Param(n): (lc.AsVector, lc.AdaptiveQuantization(k=8)) for n in lc.match(net, "blocks.*.weight")}
    lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 1.4, 20), task.l_step(), task.evaluate,
                 example_input=task.calibration()).run()

A ``transformers`` causal LM (or any module mapping token ids (batch, time) to logits, or to an output with
``.logits``) is accepted as it is: ``LanguageModel(config, model=hf_model, tokens=Tokens.from_ids(...))``, with its
parameters named as it names them.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lc import CompressionError
from lc._io import write_atomic

from . import adapter
from .custom import weights_sha256
from .gpt import GPT, GPTConfig
from .text import Tokens, stdlib_corpus, text_corpus

__all__ = ["LMConfig", "LanguageModel", "LStep", "logits_of", "matrix_names"]

log = logging.getLogger(__name__)


def _field(default, help: str):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class LMConfig:
    """A language-model task: the corpus, the reference decoder and its training, the L step (the same for every
    compression scheme) and the evaluation. Each field's ``metadata["help"]`` documents it."""

    corpus: list[str] = _field([], "text files or directories (byte-level tokens, split by file); empty: the Python "
                                   "standard library's .py files")
    width: int = _field(256, "reference decoder: residual width d")
    depth: int = _field(4, "reference decoder: blocks")
    heads: int = _field(4, "reference decoder: attention heads")
    context: int = _field(128, "tokens per sequence (training, evaluation, calibration)")
    seed: int = _field(0, "seed of the initialisation and of the batches")
    batch: int = _field(16, "sequences per minibatch (reference and L step)")
    ref_iterations: int = _field(3000, "reference training: AdamW iterations")
    ref_lr: float = _field(1e-3, "reference training: peak learning rate (100 warm-up iterations, then a cosine to "
                                 "a tenth of it)")
    ref_weight_decay: float = _field(0.1, "reference training: AdamW's weight decay on matrices (the L step has none)")
    lr: float = _field(3e-4, "L step: AdamW's learning rate, constant, one optimizer for the whole LC run")
    iterations: int = _field(30, "L step: AdamW iterations per LC step")
    clip: float = _field(1.0, "gradient clipping: the largest gradient norm (reference and L step)")
    eval_tokens: int = _field(16384, "tokens of the split that an evaluation predicts (windows spread evenly over "
                                     "the whole split)")
    calibration: int = _field(128, "calibration sequences (from the training split) for data-aware C steps and "
                                   "post-training methods")

    def reference_fields(self) -> dict:
        keep = ("width", "depth", "heads", "context", "seed", "batch", "ref_iterations", "ref_lr", "ref_weight_decay",
                "clip")
        return {k: getattr(self, k) for k in keep}

    def gpt(self, vocab: int) -> GPTConfig:
        return GPTConfig(vocab=vocab, context=self.context, width=self.width, depth=self.depth, heads=self.heads)


def logits_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The logits (batch, time, vocab) of ``model`` on token ids: its output, or the output's ``.logits``
    (``transformers``), or the first element of a tuple."""
    out = model(ids)
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise CompressionError(f"{type(model).__name__} returned a {type(out).__name__}; a language model must return "
                           "logits (batch, time, vocab), or an output with .logits")


def matrix_names(model: nn.Module) -> list[str]:
    """The weights of the model's linear layers (``nn.Linear`` and ``transformers``' ``Conv1D``) in its blocks: every
    2-D parameter except embeddings (and a head tied to one), in the model's order."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [n for n, p in model.named_parameters() if p.dim() == 2 and id(p) not in embeddings]


def _windows(tokens: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    return tokens[starts[:, None] + torch.arange(length)].long()


class LStep:
    """``l_step(model, lc_penalty, step)``: ``iterations`` AdamW iterations on random windows of the training split
    (batches drawn from a generator seeded by the seed and the step, so a resumed run draws the same ones), gradient
    norm clipped, then ``lc_penalty.step(optimizer)``: the penalty μ/2‖w − Δ(Θ) − λ/μ‖² applied decoupled, as the
    exact proximal step in Adam's own metric. One optimizer for the whole run (checkpointed with it)."""

    def __init__(self, task: "LanguageModel"):
        self.task, self.optimizer = task, None
        self._pending = None

    def _make(self, model):
        c = self.task.config
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.9, 0.95), weight_decay=0.0)
        if self._pending is not None:
            self.optimizer.load_state_dict(self._pending)
            self._pending = None

    def __call__(self, model: nn.Module, lc_penalty, step: int) -> None:
        if self.optimizer is None:
            self._make(model)
        c = self.task.config
        g = torch.Generator().manual_seed(c.seed * 1_000_003 + step)
        model.train()
        for _ in range(c.iterations):
            loss = self.task.loss(model, self.task.batch(g))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), c.clip)
            self.optimizer.step()
            if lc_penalty is not None:
                lc_penalty.step(self.optimizer)                   # μ/2‖w − Δ(Θ) − λ/μ‖², decoupled
        model.eval()

    def state_dict(self) -> dict:
        return {"optimizer": None if self.optimizer is None else self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._pending = state.get("optimizer")


class LanguageModel:
    """The adapter: ``reference()``, ``l_step()``, ``evaluate(model)`` (metric ``perplexity``, lower is better, on
    :attr:`split`), ``compression_tasks(...)``, ``example_input()``, ``calibration()``; and ``evaluate_split``.

    ``tokens``: the corpus (default: :func:`tasks.text.stdlib_corpus`, or ``config.corpus``'s files).
    ``model``: your trained causal LM, used as it is (never retrained); default: the GPT of the config, trained."""

    metric = "perplexity"
    higher_is_better = False

    def __init__(self, config: LMConfig = LMConfig(), *, tokens: Tokens | None = None, model: nn.Module | None = None,
                 split: str = "validation"):
        for name in ("width", "depth", "heads", "context", "batch", "iterations", "eval_tokens", "calibration"):
            if not getattr(config, name) > 0:
                raise CompressionError(f"LMConfig.{name}={getattr(config, name)!r} must be > 0")
        if not (config.lr > 0 and config.ref_lr > 0 and config.clip > 0):
            raise CompressionError("LMConfig: lr, ref_lr and clip must be > 0")
        self.config = config
        self.tokens = tokens if tokens is not None else (text_corpus(config.corpus) if config.corpus
                                                         else stdlib_corpus())
        for s in ("train", "validation", "test"):
            if len(self.tokens.split(s)) <= config.context:
                raise CompressionError(f"the {s} split holds {len(self.tokens.split(s))} tokens, not more than one "
                                       f"context of {config.context}; give more text or a shorter context")
        self._model = model
        self.split, self.seed = split, config.seed
        self.name = f"{self.tokens.name}/{'gpt' if model is None else type(model).__name__}"

    # ------------------------------------------------------------------------------------------- data
    def batch(self, generator: torch.Generator, split: str = "train") -> torch.Tensor:
        """``batch`` random windows of ``context + 1`` tokens of ``split`` (inputs and their next tokens)."""
        t = self.tokens.split(split)
        starts = torch.randint(0, len(t) - self.config.context - 1, (self.config.batch,), generator=generator)
        return _windows(t, starts, self.config.context + 1)

    def calibration(self, n: int | None = None) -> torch.Tensor:
        """``n`` (default ``config.calibration``) windows of ``context`` tokens of the training split, at positions
        fixed by the seed: the calibration batch of data-aware C steps (``example_input``) and of the
        post-training methods, the same for all of them."""
        n = self.config.calibration if n is None else n
        g = torch.Generator().manual_seed(self.config.seed + 7919)
        t = self.tokens.train
        return _windows(t, torch.randint(0, len(t) - self.config.context, (n,), generator=g), self.config.context)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return self.calibration(batch_size)

    # ------------------------------------------------------------------------------------------- model
    def loss(self, model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats per token) of predicting each window's next tokens."""
        logits = logits_of(model, windows[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), windows[:, 1:].reshape(-1))

    def reference_key(self) -> str:
        spec = {**self.config.reference_fields(), "corpus_sha256": self.tokens.sha256, "vocab": self.tokens.vocab}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def reference(self, cache_dir: str | Path | None = None) -> nn.Module:
        """The reference: your model (a copy, as it is), or the config's GPT loaded from ``cache_dir`` if trained
        before with the same key (config and corpus hash), else trained and saved there."""
        if self._model is not None:
            return copy.deepcopy(self._model)
        path = Path(cache_dir) / f"gpt-{self.reference_key()[:16]}.pt" if cache_dir is not None else None
        torch.manual_seed(self.config.seed)
        net = GPT(self.config.gpt(self.tokens.vocab))
        if path is not None and path.is_file():
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            log.info("reference: loaded %s", path)
            return net.eval()
        self.train_reference(net)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda f: torch.save(net.state_dict(), f), replace=False, what="the reference")
        return net.eval()

    def train_reference(self, net: nn.Module, on_log=None) -> None:
        """``ref_iterations`` of AdamW (β = (0.9, 0.95), weight decay on matrices), 100 warm-up iterations then a
        cosine from ``ref_lr`` to a tenth of it, gradient norm clipped. ``on_log(iteration, loss)`` every 100."""
        c = self.config
        decay = [p for p in net.parameters() if p.dim() == 2]
        rest = [p for p in net.parameters() if p.dim() != 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.ref_weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=c.ref_lr, betas=(0.9, 0.95))
        g = torch.Generator().manual_seed(c.seed)
        net.train()
        for i in range(c.ref_iterations):
            warm = min(1.0, (i + 1) / 100)
            cosine = 0.1 + 0.45 * (1 + math.cos(math.pi * i / max(c.ref_iterations - 1, 1)))
            for group in opt.param_groups:
                group["lr"] = c.ref_lr * warm * cosine
            loss = self.loss(net, self.batch(g))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), c.clip)
            opt.step()
            if on_log is not None and (i % 100 == 0 or i == c.ref_iterations - 1):
                on_log(i, float(loss.detach()))
        net.eval()

    def l_step(self, reference: nn.Module | None = None) -> LStep:
        return LStep(self)

    # ------------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate_split(self, model: nn.Module, split: str, tokens: int | None = None) -> dict[str, float]:
        """Perplexity, bits per token and loss (nats per token) on ``tokens`` (default ``eval_tokens``) tokens of
        ``split``: windows of ``context`` predicted tokens at evenly spaced positions over the whole split, every
        token predicted from the earlier tokens of its window."""
        c = self.config
        t = self.tokens.split(split)
        n = max(1, min((tokens or c.eval_tokens) // c.context, (len(t) - 1) // c.context))
        starts = torch.linspace(0, len(t) - c.context - 1, n).long()
        was = model.training
        model.eval()
        total = 0.0
        for chunk in starts.split(64):
            w = _windows(t, chunk, c.context + 1)
            logits = logits_of(model, w[:, :-1])
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1),
                                           reduction="sum"))
        model.train(was)
        loss = total / (n * c.context)
        return {"perplexity": math.exp(loss), "bits_per_token": loss / math.log(2), "loss": loss}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self.evaluate_split(model, self.split)

    # ------------------------------------------------------------------------------------------- protocol
    def fingerprint(self) -> dict:
        spec = {"name": self.name, "config": asdict(self.config), "corpus_sha256": self.tokens.sha256,
                "split": self.split}
        if self._model is not None:
            spec["reference_sha256"] = weights_sha256(self._model)
        return spec

    def compression_tasks(self, model: nn.Module, make, *, joint: bool = False, names=None) -> dict:
        """As :func:`tasks.adapter.compression_tasks`, over :func:`matrix_names` by default."""
        return adapter.compression_tasks(model, make, joint=joint,
                                         names=names if names is not None else matrix_names(model))
