"""lc.save / lc.load: bit-exact round trips and size bounds for every compression of the conformance registry (and
additive mixes of them), the bit-level codings against their definitions, and every error path."""
import hashlib
import json
import math
import struct
from dataclasses import dataclass
import zlib

import pytest
import torch
from torch import nn

import lc
from lc import _packing
from lc.compression._coding import position_bits
from lc.storage import MAGIC, artifact_bytes, realised_ratio, size_bound
from tests import digits
from tests.lc.compression.cases import CASES


class Holder(nn.Module):
    """One compressed parameter ``w`` of the case's shape, plus an uncompressed layer and buffers of other dtypes."""

    def __init__(self, shape, seed=1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(shape, generator=g))
        self.fc = nn.Linear(5, 3)
        self.register_buffer("steps", torch.tensor([7, -3], dtype=torch.int64))
        self.register_buffer("scale", torch.randn(4, generator=g).double())


def _case_tasks(case):
    return {lc.Param("w"): (lc.AsIs, case.compression)}


def _mix_tasks(case):
    """The case's compression plus ℓ0 pruning of the same tensor: an additive combination."""
    kappa = max(1, math.prod(case.shape) // 10)
    return {lc.Param("w"): [(lc.AsIs, case.compression), (lc.AsVector, lc.ConstraintL0Pruning(kappa=kappa))]}


def _streams(state):
    return len(state.tensors) + sum(_streams(p) for p in state.parts)


def _stream_bytes(state):
    """Σ ⌈bits / 8⌉ over the state's packed streams, from the encodings alone (the realised payload)."""
    total = 0
    for name, t in state.tensors.items():
        enc = state.meta["encoding"][name]
        if enc in ("f32", "float"):
            total += t.numel() * t.element_size()
        elif enc.startswith("uint:"):
            total += math.ceil(t.numel() * int(enc[5:]) / 8)
        else:
            bits, _, _ = position_bits(t.reshape(-1), math.prod(state.meta["shape"]))
            total += math.ceil(bits / 8)
    return total + sum(_stream_bytes(p) for p in state.parts)


def _round_trip(tmp_path, case, tasks):
    model = Holder(case.shape)
    compressed = lc.Compressed.direct(model, tasks, mu=case.mu)
    path = tmp_path / "model.lc"
    written = lc.save(path, model, compressed)
    fresh = Holder(case.shape, seed=2)
    loaded = lc.load(path, fresh)
    return model, compressed, path, written, fresh, loaded


@pytest.mark.parametrize("mix", [False, True], ids=["alone", "additive"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_round_trip_is_bit_exact_and_within_the_size_bound(tmp_path, case, mix):
    if mix and getattr(case.compression, "coupling", None) is not None:
        pytest.skip("a compression coupled with other tasks (a shared budget) cannot be a part of a mix")
    model, compressed, path, written, fresh, loaded = _round_trip(tmp_path, case, (_mix_tasks if mix else
                                                                                    _case_tasks)(case))
    assert written == path.stat().st_size
    delta = compressed.deltas()["w"]
    assert torch.equal(fresh.w, delta)                                  # Δ(Θ), bit for bit
    for name, t in model.state_dict().items():
        if name != "w":
            assert torch.equal(fresh.state_dict()[name], t) and fresh.state_dict()[name].dtype == t.dtype
    (state,), (back,) = compressed.states, loaded.states
    assert back.bits == state.bits
    assert torch.equal(loaded.deltas()["w"], delta)
    # realised = Σ ⌈stream bits / 8⌉ + JSON header + 48 fixed bytes, exactly
    (n,) = struct.unpack("<Q", path.read_bytes()[8:16])
    dense_bytes = sum(t.numel() * t.element_size() for k, t in model.state_dict().items() if k != "w")
    assert written == _stream_bytes(state) + dense_bytes + n + 48
    streams = _streams(state) + 4
    assert written <= lc.nominal_bits(model, compressed) / 8 + streams + n + 48
    assert written <= size_bound(model, compressed)
    assert n <= 512 + 128 * streams                                    # the stated header bound


@pytest.mark.parametrize("compression", [lc.ConstraintL0Pruning(kappa=1200), lc.PenaltyL1Pruning(alpha=0.3),
                                         lc.LowRank(10), lc.LowRank(30), lc.RankSelection(alpha=1e-3)], ids=repr)
def test_a_float64_model_stays_within_the_size_bound(tmp_path, compression):
    """"float" tensors are written in their own dtype and counted at its width: a float64 model's artifact stays
    within the stated bound, and loads back bit for bit."""
    model = Holder((60, 40)).double()
    compressed = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, compression)})
    (state,) = compressed.states
    assert "float" in state.meta["encoding"].values() and set(state.meta["encoding"].values()) <= {"float",
                                                                                                    "positions"}
    written = lc.save(tmp_path / "m.lc", model, compressed)
    assert written == _stream_bytes(state) + sum(t.numel() * t.element_size() for k, t in
                                                  model.state_dict().items() if k != "w") + \
        struct.unpack("<Q", (tmp_path / "m.lc").read_bytes()[8:16])[0] + 48
    assert written <= size_bound(model, compressed)
    fresh = Holder((60, 40), seed=2).double()
    lc.load(tmp_path / "m.lc", fresh)
    assert fresh.w.dtype == torch.float64 and torch.equal(fresh.w, compressed.deltas()["w"])


def test_nominal_bits_count_every_tensor_in_its_dtype():
    model = Holder((6, 4))
    c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=3))})
    rest = 32 * (15 + 3) + 64 * 2 + 64 * 4
    assert lc.nominal_bits(model, c) == c.states[0].bits + rest


def test_realised_ratio_is_float32_parameter_bytes_over_the_file(tmp_path):
    model = Holder((6, 4))
    c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=3))})
    size = lc.save(tmp_path / "m.lc", model, c)
    n = sum(p.numel() for p in model.parameters())
    assert size == artifact_bytes(tmp_path / "m.lc") and realised_ratio(model, size) == 4 * n / size


@pytest.fixture
def one_thread():
    """Tiny models train 100× faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_after_the_lc_loop_the_loaded_model_is_the_compressed_model(tmp_path, one_thread):
    net = digits.make_net()
    digits.train(net, epochs=1, lr=0.1)
    alg = lc.Algorithm(net, {lc.Param("0.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=200)),
                             lc.Param("2.weight"): [(lc.AsVector, lc.ConstraintL0Pruning(kappa=20)),
                                                    (lc.AsIs, lc.ConstraintL1Pruning(kappa=2.0))]},
                       lc.geometric_mu(1e-2, 2.0, 1), digits.l_step(epochs=1))
    alg.run()
    lc.save(tmp_path / "digits.lc", net, alg)
    fresh = digits.make_net(seed=5)
    lc.load(tmp_path / "digits.lc", fresh)
    for (n, a), b in zip(net.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), n
    assert digits.test_error(fresh) == digits.test_error(net)


# ------------------------------------------------------------------------------------------------ codings
@pytest.mark.parametrize("width", [0, 1, 2, 3, 5, 8, 13, 32])
def test_uint_packing_round_trips_at_exactly_n_times_width_bits(width):
    g = torch.Generator().manual_seed(width)
    for n in (0, 1, 7, 100):
        codes = torch.randint(0, 2 ** width, (n,), generator=g, dtype=torch.int64)
        data = _packing.pack_uint(codes, width)
        assert len(data) == math.ceil(n * width / 8)
        assert torch.equal(_packing.unpack_uint(data, width, n), codes)
    # LSB first: codes 1, 2 at width 2 are the bits 1 0 | 0 1 → 0b1001
    assert _packing.pack_uint(torch.tensor([1, 2]), 2) == bytes([0b1001])


def test_gap_code_matches_its_definition_by_hand():
    # positions 2, 3, 12 with width 2 (M = 3): gaps 2, 0, 8 → [2], [0], [3, 3, 2]
    codes = _packing.gap_codes(torch.tensor([2, 3, 12]), 2)
    assert codes.tolist() == [2, 0, 3, 3, 2]
    assert _packing.positions_from_gap_codes(codes, 2).tolist() == [2, 3, 12]


@pytest.mark.parametrize("density", [0.0, 0.003, 0.05, 0.5, 1.0])
def test_positions_round_trip_in_exactly_the_counted_bits(density):
    n = 5000
    g = torch.Generator().manual_seed(0)
    idx = torch.nonzero(torch.rand(n, generator=g) < density, as_tuple=True)[0]
    bits, coding, width = position_bits(idx, n)
    meta = {"shape": [n], "coding": coding, "width": width}
    data, info = _packing.encode(idx, "positions", meta)
    assert len(data) == math.ceil(bits / 8)
    assert torch.equal(_packing.decode(data, "positions", info, meta, torch.int64, list(idx.shape)), idx)


def test_codes_that_do_not_fit_their_width_are_refused():
    with pytest.raises(lc.CompressionError, match="does not fit uint:2"):
        _packing.encode(torch.tensor([0, 4]), "uint:2", {})
    with pytest.raises(lc.CompressionError, match="unknown tensor encoding 'int:3'; known: 'f32', 'float',"):
        _packing.encode(torch.tensor([0, 4]), "int:3", {})


# ------------------------------------------------------------------------------------------------ errors
def _saved(tmp_path):
    model = Holder((20, 6))
    c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, lc.ConstraintL0Pruning(kappa=30))})
    path = tmp_path / "m.lc"
    lc.save(path, model, c)
    return model, path


def _untouched(model_factory, path, match):
    target = model_factory()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(lc.CompressionError, match=match):
        lc.load(path, target)
    for k, v in target.state_dict().items():                            # never a partial load
        assert torch.equal(v, before[k])


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    model, path = _saved(tmp_path)
    c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, lc.ConstraintL0Pruning(kappa=3))})
    with pytest.raises(lc.CompressionError, match="exists; pass overwrite=True"):
        lc.save(path, model, c)
    size = lc.save(path, model, c, overwrite=True)
    assert size == path.stat().st_size and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("cut", [1, 40, 100, 10_000])
def test_truncated_files_are_refused(tmp_path, cut):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:max(len(data) - cut, 0)])
    _untouched(lambda: Holder((20, 6), seed=3), path, "truncated")


@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_a_flipped_byte_fails_the_checksum(tmp_path, where):
    _, path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[int(where * len(data))] ^= 0x10
    path.write_bytes(bytes(data))
    _untouched(lambda: Holder((20, 6), seed=3), path, "damaged|not an lc artifact")


def test_a_different_architecture_is_refused_with_the_differences(tmp_path):
    _, path = _saved(tmp_path)
    _untouched(lambda: Holder((20, 5)), path, r"different architecture: w: artifact torch.float32\[20, 6\], "
                                               r"model torch.float32\[20, 5\]")

    class Other(Holder):
        def __init__(self):
            super().__init__((20, 6))
            self.extra = nn.Linear(2, 2)
    _untouched(Other, path, "not in the artifact: extra.weight")
    with pytest.raises(lc.CompressionError, match="missing in the model: w"):
        lc.load(path, nn.Linear(5, 3))


def _rewrite_header(path, edit):
    """Edit the JSON header and write a file with a valid checksum: what a crafted file could hold."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[8:16])
    header = json.loads(zlib.decompress(data[16:16 + n]))
    edit(header)
    new = zlib.compress(json.dumps(header).encode())
    body = MAGIC + struct.pack("<Q", len(new)) + new + data[16 + n:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_a_crafted_header_cannot_name_an_arbitrary_class(tmp_path):
    _, path = _saved(tmp_path)
    _rewrite_header(path, lambda h: h["tasks"][0]["step"]["fields"]["compression"].update({"class": "os.system",
                                                                                "fields": {"command": "true"}}))
    _untouched(lambda: Holder((20, 6)), path, "uses os.system, which is not an lc view or compression")


def test_inconsistent_offsets_and_hyperparameters_are_refused(tmp_path):
    _, path = _saved(tmp_path)
    _rewrite_header(path, lambda h: h["tasks"][0]["state"]["tensors"][0].update({"offset": 10 ** 6}))
    _untouched(lambda: Holder((20, 6)), path, "outside the payload")
    path.unlink()
    _, path = _saved(tmp_path)
    _rewrite_header(path, lambda h: h["tasks"][0]["step"]["fields"]["compression"]["fields"].update({"kappa": 10 ** 6}))
    _untouched(lambda: Holder((20, 6)), path, "kappa must be an integer between 0 and 120")


def test_not_an_artifact(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(3)}, path)
    _untouched(lambda: Holder((20, 6)), path, "not an lc artifact")
    with pytest.raises(lc.CompressionError, match="cannot read the artifact"):
        lc.load(tmp_path / "missing.lc", Holder((20, 6)))


def test_save_refuses_a_model_that_was_not_compressed(tmp_path):
    model = Holder((20, 6))
    c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, lc.ConstraintL0Pruning(kappa=3))})
    with pytest.raises(lc.CompressionError, match="not a parameter of the model given to lc.save"):
        lc.save(tmp_path / "m.lc", Holder((20, 7)), c)
    with pytest.raises(lc.CompressionError, match="expected an lc.Algorithm or an lc.Compressed"):
        lc.save(tmp_path / "m.lc", model, {"w": c})
    assert not any(tmp_path.iterdir())


@dataclass(frozen=True)
class Shifted(lc.Compression):
    """Test fixture: Δ = ℓ0 pruning of w − shift, plus shift. Its fields: another compression (stored as a nested
    object), a tuple, and a tag of any type."""

    inner: lc.Compression
    shift: tuple = (0.5,)
    tag: object = None

    def compress(self, w, mu, previous=None):
        return self.inner.compress(w - self.shift[0], mu)

    def decompress(self, state):
        return self.inner.decompress(state) + self.shift[0]


@dataclass(frozen=True)
class Opaque:
    value: float


def test_dataclass_fields_round_trip_and_unknown_classes_are_refused_at_save(tmp_path):
    model = Holder((5, 4))
    shifted = Shifted(lc.ConstraintL0Pruning(kappa=4), (0.25,))
    c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, shifted)})
    lc.save(tmp_path / "m.lc", model, c)
    loaded = lc.load(tmp_path / "m.lc", Holder((5, 4), seed=4))
    assert loaded.tasks[0].step.compression == shifted
    assert torch.equal(loaded.deltas()["w"], c.deltas()["w"])
    for tag in (Opaque(1.0), {"a": 1}):
        c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, Shifted(lc.ConstraintL0Pruning(kappa=4), tag=tag))})
        with pytest.raises(lc.CompressionError, match="cannot be stored in an artifact"):
            lc.save(tmp_path / "n.lc", model, c)
    assert not (tmp_path / "n.lc").exists()


def test_layers_sharing_a_rank_budget_round_trip(tmp_path):
    """Tasks solved together (one lc.RankBudget), and a FLOPs criterion bound to its layer by example_input."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Conv1d(1, 4, 3))
    budget = lc.RankBudget(ratio=3.0)
    tasks = {lc.Param("0.weight"): (lc.AsIs, lc.RankSelection(budget=budget)),
             lc.Param("2.weight"): (lc.AsIs, lc.RankSelection(budget=budget)),
             lc.Param("4.weight"): (lc.AsIs, lc.RankSelection(alpha=1e-3, criterion="flops"))}
    c = lc.Compressed.direct(net, tasks, example_input=torch.zeros(1, 1, 30))
    ranks = [s.meta["rank"] for s in c.states[:2]]
    assert 50 * ranks[0] + 40 * ranks[1] <= (600 + 400) / 3    # the joint budget holds
    lc.save(tmp_path / "m.lc", net, c)
    fresh = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Conv1d(1, 4, 3))
    loaded = lc.load(tmp_path / "m.lc", fresh)
    assert [s.meta["rank"] for s in loaded.states[:2]] == ranks
    for n, d in c.deltas().items():
        assert torch.equal(fresh.get_parameter(n), d)


def test_tied_weights_are_stored_once_and_restored_compressed(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.out = nn.Linear(6, 8, bias=False), nn.Linear(6, 8, bias=False)
            self.out.weight = self.embed.weight
    model = Tied()
    c = lc.Compressed.direct(model, {lc.Param("embed.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))})
    assert set(model.state_dict()) == {"embed.weight", "out.weight"}
    assert lc.nominal_bits(model, c) == c.states[0].bits                  # the tied name costs nothing
    path = tmp_path / "tied.lc"
    lc.save(path, model, c)
    fresh = Tied()
    lc.load(path, fresh)
    assert torch.equal(fresh.out.weight, c.deltas()["embed.weight"]) and fresh.out.weight is fresh.embed.weight


# ------------------------------------------------------------------------------------------------ hostile files
def test_a_claimed_size_beyond_what_the_task_can_hold_is_refused_before_allocating(tmp_path):
    """A 1-entry codebook stores its codes in 0 bits a code, so a crafted count costs no payload: 10⁸ codes
    allocated ~1.5 GB before the error. Every claimed size is bounded by the task's weights."""
    model = Holder((20, 6))
    lc.save(tmp_path / "m.lc", model, lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs,
                                                                                  lc.AdaptiveQuantization(k=1))}))

    def claim(h):
        (codes,) = [t for t in h["tasks"][0]["state"]["tensors"] if t["name"] == "codes"]
        assert codes["encoding"] == "uint:0"
        codes["shape"], codes["info"]["count"] = [10 ** 8], 10 ** 8
    _rewrite_header(tmp_path / "m.lc", claim)
    _untouched(lambda: Holder((20, 6)), tmp_path / "m.lc", "claims 100000000 values, more than the 1264 its task")


def test_a_dense_entry_of_another_shape_is_refused_not_broadcast(tmp_path):
    _, path = _saved(tmp_path)

    def reshape(h):
        (bias,) = [d for d in h["dense"] if d["name"] == "fc.bias"]
        bias["shape"] = [1]                      # 4 of its 12 bytes: would broadcast over the 3 biases
        bias["nbytes"] = 4
    _rewrite_header(path, reshape)
    _untouched(lambda: Holder((20, 6)), path, r"dense entry 'fc.bias' \(torch.float32\[1\]\) does not match")


class _TiedPlus(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.out = nn.Linear(6, 8, bias=False), nn.Linear(6, 8, bias=False)
        self.out.weight = self.embed.weight
        self.other = nn.Linear(3, 2)


def test_a_misshaped_alias_is_refused_before_anything_is_written(tmp_path):
    model = _TiedPlus()
    c = lc.Compressed.direct(model, {lc.Param("embed.weight"): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5))})
    lc.save(tmp_path / "t.lc", model, c)
    _rewrite_header(tmp_path / "t.lc", lambda h: h["aliases"].update({"out.weight": "other.weight"}))
    _untouched(_TiedPlus, tmp_path / "t.lc", r"alias 'out.weight' → 'other.weight' does not match")


@pytest.mark.parametrize("edit,match", [
    (lambda h: [h], "top level is not an object"),
    (lambda h: {k: v for k, v in h.items() if k != "payload"}, "'payload' size"),
    (lambda h: {**h, "tasks": {"a": 1}}, "'tasks' is not a list"),
    (lambda h: {**h, "dense": [{"name": "fc.bias"}]}, "dense entries"),
])
def test_a_header_of_the_wrong_shape_is_a_clear_error(tmp_path, edit, match):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[8:16])
    new = zlib.compress(json.dumps(edit(json.loads(zlib.decompress(data[16:16 + n])))).encode())
    body = MAGIC + struct.pack("<Q", len(new)) + new + data[16 + n:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())
    _untouched(lambda: Holder((20, 6)), path, match)


def test_loading_into_a_meta_device_model_is_refused(tmp_path):
    _, path = _saved(tmp_path)
    with torch.device("meta"):
        empty = Holder((20, 6))
    with pytest.raises(lc.CompressionError, match="on the meta device .* model.to_empty"):
        lc.load(path, empty)
    fresh = empty.to_empty(device="cpu")
    lc.load(path, fresh)
    assert int((fresh.w != 0).sum()) <= 30


def test_save_into_a_missing_directory_or_onto_a_directory(tmp_path):
    model = Holder((20, 6))
    c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, lc.ConstraintL0Pruning(kappa=30))})
    with pytest.raises(lc.CompressionError, match="its directory .*missing does not exist"):
        lc.save(tmp_path / "missing" / "m.lc", model, c)
    with pytest.raises(lc.CompressionError, match="is a directory: give lc.save a file name"):
        lc.save(tmp_path, model, c)
    assert list(tmp_path.iterdir()) == []


def test_shared_budgets_survive_a_save_and_load_as_one_object(tmp_path):
    net = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 20))
    shared, alone = lc.RankBudget(ratio=3.0), lc.RankBudget(ratio=3.0)
    tasks = {lc.Param("0.weight"): (lc.AsIs, lc.RankSelection(budget=shared)),
             lc.Param("2.weight"): (lc.AsIs, lc.RankSelection(budget=shared)),
             lc.Param("4.weight"): (lc.AsIs, lc.RankSelection(budget=alone))}
    lc.save(tmp_path / "m.lc", net, lc.Compressed.direct(net, tasks))
    loaded = lc.load(tmp_path / "m.lc", net)
    budgets = [t.step.compression.budget for t in loaded.tasks]
    assert budgets[0] is budgets[1] and budgets[2] is not budgets[0] and budgets[2] == budgets[2]


def test_a_version_1_artifact_still_loads(tmp_path):
    """Files written before the step interface hold each task's C step as "c" (a view and a compression named by
    their module path, or a combination of such parts)."""
    model = Holder((12, 5))
    tasks = {lc.Param("w"): [(lc.AsIs, lc.LowRank(target_rank=2)), (lc.AsVector, lc.ConstraintL0Pruning(kappa=6))]}
    c = lc.Compressed.direct(model, tasks)
    lc.save(tmp_path / "m.lc", model, c)

    def old(spec):
        fields = spec["fields"]
        if spec["class"] == "lc.AdditiveStep":
            return {"combination": "lc.compression.additive.AdditiveStep",
                    "fields": {k: v for k, v in fields.items() if k != "parts"},
                    "parts": [old(p) for p in fields["parts"]["tuple"]]}
        module = {"lc.LowRank": "lc.compression.lowrank.", "lc.ConstraintL0Pruning": "lc.compression.pruning.",
                  "lc.AsIs": "lc.params.", "lc.AsVector": "lc.params."}
        named = lambda o: {**o, "class": module[o["class"]] + o["class"][3:]}  # noqa: E731
        return {"view": named(fields["view"]), "compression": named(fields["compression"])}

    def to_v1(h):
        h["version"] = 1
        for t in h["tasks"]:
            t["c"] = old(t.pop("step"))
    _rewrite_header(tmp_path / "m.lc", to_v1)
    fresh = Holder((12, 5), seed=3)
    loaded = lc.load(tmp_path / "m.lc", fresh)
    assert torch.equal(fresh.w, c.deltas()["w"]) and loaded.states[0].bits == c.states[0].bits


def test_numpy_hyperparameters_are_accepted_and_stored_as_plain_numbers(tmp_path):
    import numpy as np
    model = Holder((20, 6))
    c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, lc.ConstraintL0Pruning(kappa=np.int64(10)))})
    lc.save(tmp_path / "m.lc", model, c)
    loaded = lc.load(tmp_path / "m.lc", Holder((20, 6), seed=3))
    assert loaded.tasks[0].step.compression == lc.ConstraintL0Pruning(kappa=10)
    assert type(loaded.tasks[0].step.compression.kappa) is int


def test_ratios_count_each_parameter_at_its_dtypes_width(tmp_path):
    """A float64 model's dense bits are 64 a value: pruning it to 5 % compresses it as much as a float32 one."""
    ratios = {}
    for dtype in (torch.float32, torch.float64):
        model = Holder((20, 6)).to(dtype)
        c = lc.Compressed.direct(model, {lc.Param("w"): (lc.AsIs, lc.ConstraintL0Pruning(kappa=6))})
        ratios[dtype] = c.ratio(model)
        size = lc.save(tmp_path / f"{dtype}.lc", model, c)
        assert realised_ratio(model, size) == sum(p.numel() * p.element_size() for p in model.parameters()) / size
    # the same values and positions; positions weigh a little less against 64-bit values
    assert ratios[torch.float32] < ratios[torch.float64] < 1.05 * ratios[torch.float32]
