"""C source of an :class:`lc.export.integer.IntegerNet`: one self-contained file (``stdint.h`` only), weights as const
arrays, one function ``void <name>(const int8_t *input, int32_t *output)`` for a single example, integer arithmetic
only — what a microcontroller without a floating-point unit runs. ``compile_shared`` builds it with the system C
compiler into a shared library that :class:`CompiledNet` calls through ctypes (tests, and the Python harness that
plays an agent with it)."""
from __future__ import annotations

import ctypes
import hashlib
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .._errors import CompressionError

__all__ = ["c_source", "compile_shared", "CompiledNet"]

_HELPERS = """
static int32_t srdhm(int32_t a, int32_t b) {            /* saturating rounding doubling high multiply */
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31));
}

static int32_t rdbpot(int32_t x, int exponent) {        /* rounding divide by a power of two */
    int32_t mask = (int32_t)((1LL << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static int32_t requantize(int64_t acc, int32_t m0, int shift, int32_t lo, int32_t hi) {
    if (shift < 0) acc *= (int64_t)1 << -shift;            /* a multiplier ≥ 1: shift left first, saturated */
    if (acc > INT32_MAX) acc = INT32_MAX;
    if (acc < INT32_MIN) acc = INT32_MIN;
    int32_t y = rdbpot(srdhm((int32_t)acc, m0), shift > 0 ? shift : 0);
    return y < lo ? lo : (y > hi ? hi : y);
}
"""


def _array(ctype: str, name: str, values) -> str:
    flat = np.asarray(values).reshape(-1)
    body = ",".join(str(int(v)) for v in flat)
    return f"static const {ctype} {name}[{max(flat.size, 1)}] = {{{body if flat.size else '0'}}};\n"


def c_source(net, name: str = "lc_net") -> str:
    """The C file of ``net`` (see the module docstring)."""
    if not name.isidentifier():
        raise CompressionError(f"c_source(name={name!r}): give a C identifier")
    shape = tuple(net.input_shape)
    consts, body, size = [], [], math.prod(shape)
    largest = size
    current = "input"
    buffers = 0
    for i, layer in enumerate(net.layers):
        out_name = f"a{buffers % 2}"
        if layer.kind == "flatten":
            shape = (math.prod(shape),)
            continue
        if layer.kind == "linear":
            o, k = layer.weight.shape
            consts += [_array("int8_t", f"w{i}", layer.weight), _array("int32_t", f"b{i}", layer.bias),
                       _array("int32_t", f"m{i}", layer.m0), _array("int8_t", f"s{i}", layer.shift)]
            body.append(f"""    for (int j = 0; j < {o}; j++) {{
        int64_t acc = b{i}[j];
        for (int k = 0; k < {k}; k++) acc += (int32_t)w{i}[j * {k} + k] * {current}[k];
        {out_name}[j] = requantize(acc, m{i}[j], s{i}[j], {layer.lo}, {layer.hi});
    }}""")
            shape = (o,)
        elif layer.kind == "conv":
            o, c, kh, kw = layer.weight.shape
            (sh, sw), (ph, pw) = layer.params["stride"], layer.params["padding"]
            _, h, w = shape
            ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            consts += [_array("int8_t", f"w{i}", layer.weight), _array("int32_t", f"b{i}", layer.bias),
                       _array("int32_t", f"m{i}", layer.m0), _array("int8_t", f"s{i}", layer.shift)]
            body.append(f"""    for (int oc = 0; oc < {o}; oc++) for (int y = 0; y < {ho}; y++) for (int x = 0; x < {wo}; x++) {{
        int64_t acc = b{i}[oc];
        for (int ic = 0; ic < {c}; ic++) for (int u = 0; u < {kh}; u++) for (int v = 0; v < {kw}; v++) {{
            int yy = y * {sh} + u - {ph}, xx = x * {sw} + v - {pw};
            if (yy < 0 || yy >= {h} || xx < 0 || xx >= {w}) continue;
            acc += (int32_t)w{i}[((oc * {c} + ic) * {kh} + u) * {kw} + v] * {current}[(ic * {h} + yy) * {w} + xx];
        }}
        {out_name}[(oc * {ho} + y) * {wo} + x] = requantize(acc, m{i}[oc], s{i}[oc], {layer.lo}, {layer.hi});
    }}""")
            shape = (o, ho, wo)
        elif layer.kind == "maxpool":
            (kh, kw), (sh, sw) = layer.params["kernel"], layer.params["stride"]
            c, h, w = shape
            ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
            body.append(f"""    for (int ch = 0; ch < {c}; ch++) for (int y = 0; y < {ho}; y++) for (int x = 0; x < {wo}; x++) {{
        int32_t best = INT32_MIN;
        for (int u = 0; u < {kh}; u++) for (int v = 0; v < {kw}; v++) {{
            int32_t a = {current}[(ch * {h} + y * {sh} + u) * {w} + x * {sw} + v];
            if (a > best) best = a;
        }}
        {out_name}[(ch * {ho} + y) * {wo} + x] = best;
    }}""")
            shape = (c, ho, wo)
        largest = max(largest, math.prod(shape))
        current, buffers = out_name, buffers + 1
    copy_out = f"    for (int j = 0; j < {math.prod(shape)}; j++) output[j] = {current}[j];"
    return ("/* Generated by lc (lc.export.integer): integer-only inference, int8 activations and weights, int32\n"
            "   accumulators, fixed-point requantization: integer arithmetic only. */\n#include <stdint.h>\n"
            + _HELPERS + "\n" + "".join(consts)
            + f"\nvoid {name}(const int8_t *input, int32_t *output) {{\n"
            + f"    static int32_t a0[{largest}], a1[{largest}];\n"
            + "\n".join(body).replace("input[", "(int32_t)input[") + "\n" + copy_out + "\n}\n")


def compile_shared(source: str, directory, name: str = "lc_net") -> Path:
    """Compile ``source`` with the system C compiler (cc, gcc or clang) into a shared library in ``directory``,
    named by a hash of the source (a process loads a library path once: another source needs another name)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise CompressionError("no C compiler (cc, gcc or clang) on PATH: install one to compile the integer net")
    directory = Path(directory)
    tag = hashlib.sha256(source.encode()).hexdigest()[:12]
    c, lib = directory / f"{name}-{tag}.c", directory / f"lib{name}-{tag}.so"
    c.write_text(source)
    r = subprocess.run([compiler, "-O2", "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", str(c), "-o", str(lib)],
                       capture_output=True, text=True)
    if r.returncode:
        raise CompressionError(f"the C compiler refused the generated source: {r.stderr[:2000]}")
    return lib


class CompiledNet:
    """The compiled integer net, called per example through ctypes: ``net(q)`` for an int8 array (batch first)."""

    def __init__(self, library: Path, input_size: int, output_size: int, name: str = "lc_net"):
        self._lib = ctypes.CDLL(str(library))
        self._f = getattr(self._lib, name)
        self._f.argtypes = [ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int32)]
        self._f.restype = None
        self.input_size, self.output_size = input_size, output_size

    def __call__(self, q: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(q, dtype=np.int8).reshape(-1, self.input_size)
        out = np.empty((q.shape[0], self.output_size), dtype=np.int32)
        for b in range(q.shape[0]):
            self._f(q[b].ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
                    out[b].ctypes.data_as(ctypes.POINTER(ctypes.c_int32)))
        return out
