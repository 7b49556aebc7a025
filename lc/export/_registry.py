"""Export handlers by compression type: how a layer whose weight one compression holds is rebuilt for inference
(low rank → two layers; later, removed channels and integer kernels). Each handler lives beside the export code
of its compression and reads the state only through that compression's own accessors."""
from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["register", "handler_for", "Handler"]

Handler = Callable[..., "nn.Module | None"]     # handler(layer, view, compression, state, ctx) -> new layer or None
_HANDLERS: dict[type, Handler] = {}


def register(*compression_types: type) -> Callable[[Handler], Handler]:
    """``@register(MyCompression)``: ``handler(layer, view, compression, state, ctx)`` is called by
    :func:`lc.export` for every task that is one compression of that type (or a subclass) on the ``weight`` of a
    layer (``ctx``: the export's options, :class:`lc.export.Context`); it returns the module that replaces the
    layer, or None to keep the layer (dense, holding Δ(Θ))."""
    def decorate(handler: Handler) -> Handler:
        for t in compression_types:
            _HANDLERS[t] = handler
        return handler
    return decorate


def handler_for(compression) -> Handler | None:
    for cls in type(compression).__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls]
    return None
