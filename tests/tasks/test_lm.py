"""The language-model task in seconds: a corpus split by file, a tiny decoder that trains, LC runs that end in the
declared structure (plain and data-weighted C steps, bound from a calibration batch), patterns over its matrices;
and transformers' models accepted as they are, with their own names (skipped without transformers)."""
import math

import pytest
import torch

import lc
from tasks.gpt import GPT, GPTConfig
from tasks.lm import LanguageModel, LMConfig, logits_of, matrix_names
from tasks.text import Tokens, split_of, stdlib_corpus, text_corpus

TINY = LMConfig(width=32, depth=2, heads=2, context=16, batch=8, ref_iterations=80, ref_lr=3e-3, lr=1e-3,
                iterations=4, eval_tokens=512, calibration=16)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for i in range(40):
        (root / f"f{i:02d}.txt").write_text("def f(x):\n    return x + %d\n" % i * 20)
    return text_corpus([root], validation=0.2, test=0.2)


@pytest.fixture(scope="module")
def trained(corpus):
    task = LanguageModel(TINY, tokens=corpus)
    torch.manual_seed(0)
    net = GPT(TINY.gpt(256))
    before = task.evaluate(net)["loss"]
    task.train_reference(net)
    return task, net, before


def test_split_by_file_is_deterministic_and_hashed(corpus, tmp_path):
    assert sorted(sum(corpus.files.values(), [])) == [f"f{i:02d}.txt" for i in range(40)]
    assert all(split_of(n, 0.2, 0.2) == s for s, names in corpus.files.items() for n in names)
    assert all(corpus.files[s] for s in ("train", "validation", "test"))
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(lc.CompressionError, match="split empty"):
        text_corpus([tmp_path])
    with pytest.raises(lc.CompressionError, match="integer token ids"):
        Tokens.from_ids(torch.zeros(3), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), 10)


def test_the_stdlib_corpus_leaves_out_tests_and_fills_every_split():
    c = stdlib_corpus()
    names = sum(c.files.values(), [])
    assert all("test" not in n.split("/")[:-1] for n in names) and len(c.train) > 5_000_000
    assert len(c.validation) > 100_000 and len(c.test) > 100_000 and len(c.sha256) == 64


def test_the_reference_trains_and_is_evaluated_in_perplexity(trained):
    task, net, before = trained
    after = task.evaluate(net)
    assert after["loss"] < before - 1.0 and after["perplexity"] == pytest.approx(math.exp(after["loss"]))
    assert after["bits_per_token"] == pytest.approx(after["loss"] / math.log(2))
    assert task.evaluate_split(net, "test")["loss"] < before - 1.0


def test_patterns_resolve_and_the_tied_head_is_compressed_once(trained):
    _, net, _ = trained
    assert lc.match(net, "blocks.*.attn.*.weight") == [f"blocks.{b}.attn.{m}.weight" for b in range(2)
                                                      for m in "qkvo"]
    assert "tok.weight" not in matrix_names(net) and len(matrix_names(net)) == 12
    with pytest.raises(lc.CompressionError, match="same tensor as 'tok.weight'"):
        lc.Compressed.direct(net, {lc.Param("head.weight"): (lc.AsIs, lc.LowRank(2))})
    with pytest.raises(lc.CompressionError, match="matches no parameter"):
        lc.match(net, "blocks.*.atn.*.weight")


@pytest.mark.parametrize("scheme", ["kmeans", "weighted-kmeans", "grouped-affine", "2:4-weighted", "whitened-rank"])
def test_lc_ends_in_the_declared_structure(trained, scheme):
    task, ref, _ = trained
    net = GPT(TINY.gpt(256))
    net.load_state_dict(ref.state_dict())
    make = {"kmeans": lambda: (lc.AsIs, lc.AdaptiveQuantization(k=4)),
            "weighted-kmeans": lambda: (lc.AsIs, lc.WeightedAdaptiveQuantization(k=4)),
            "grouped-affine": lambda: (lc.AsGroups(16), lc.AffineQuantization(bits=2, symmetric=False,
                                                                               per_channel=True)),
            "2:4-weighted": lambda: (lc.AsIs, lc.WeightedNMPruning(n=2, m=4)),
            "whitened-rank": lambda: (lc.AsIs, lc.WhitenedLowRank(target_rank=4))}[scheme]
    tasks = {lc.Param(n): make() for n in matrix_names(net)}
    history = lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 4.0, 3), task.l_step(), task.evaluate,
                           example_input=task.calibration()).run()
    assert len(history) == 4 and all(math.isfinite(r.evaluation["perplexity"]) for r in history)
    for n in matrix_names(net):
        w = net.get_parameter(n).detach()
        if scheme in ("kmeans", "weighted-kmeans"):
            assert w.unique().numel() <= 4
        elif scheme == "grouped-affine":
            assert all(g.unique().numel() <= 4 for g in w.reshape(-1, 16))
        elif scheme == "2:4-weighted":
            assert bool(((w.reshape(-1, 4) != 0).sum(1) <= 2).all())
        else:
            assert int(torch.linalg.matrix_rank(w.double(), rtol=1e-5)) <= 4


def test_the_l_step_is_checkpointed_and_resumes_the_same(trained, tmp_path):
    task, ref, _ = trained
    tasks = lambda net: {lc.Param(n): (lc.AsIs, lc.AdaptiveQuantization(k=4)) for n in matrix_names(net)}  # noqa
    runs = []
    for kill in (None, 2):
        net = GPT(TINY.gpt(256))
        net.load_state_dict(ref.state_dict())
        step, calls = task.l_step(), []

        def l_step(model, pen, j, step=step, calls=calls):
            calls.append(j)
            if kill is not None and len(calls) == kill:
                raise KeyboardInterrupt
            step(model, pen, j)
        l_step.state_dict, l_step.load_state_dict = step.state_dict, step.load_state_dict
        algo = lc.Algorithm(net, tasks(net), lc.geometric_mu(1e-2, 4.0, 3), l_step, task.evaluate,
                            checkpoint_dir=tmp_path / f"run{kill}")
        if kill is not None:
            with pytest.raises(KeyboardInterrupt):
                algo.run()
            kill = None
            net2 = GPT(TINY.gpt(256))
            net2.load_state_dict(ref.state_dict())
            step2 = task.l_step()
            algo = lc.Algorithm(net2, tasks(net2), lc.geometric_mu(1e-2, 4.0, 3), step2, task.evaluate,
                                checkpoint_dir=tmp_path / "run2")
            net = net2
        algo.run()
        runs.append({n: p.detach().clone() for n, p in net.named_parameters()})
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])


# ---------------------------------------------------------------------------------------------- transformers
def _hf(kind):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=256, n_positions=16, n_embd=32,
                                                                     n_layer=2, n_head=2, bos_token_id=0,
                                                                     eos_token_id=0))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=16, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_transformers_model_is_accepted_as_it_is(corpus, kind):
    model = _hf(kind)
    task = LanguageModel(TINY, tokens=corpus, model=model)
    net = task.reference()
    names = matrix_names(net)
    pattern = "transformer.h.*.attn.*.weight" if kind == "gpt2" else "model.layers.*.self_attn.*.weight"
    assert lc.match(net, pattern) == [n for n in names if "attn." in n] and len(names) == (8 if kind == "gpt2" else 14)
    assert logits_of(net, task.calibration(2)).shape == (2, 16, 256)
    first = names[0]                                   # GPT-2: c_attn, a Conv1D stored (in, out)
    tasks = {lc.Param(first): (lc.AsIs, lc.WhitenedLowRank(target_rank=3)),
             **{lc.Param(n): (lc.AsIs, lc.WeightedAdaptiveQuantization(k=4)) for n in names[1:]}}
    history = lc.Algorithm(net, tasks, lc.geometric_mu(1e-2, 4.0, 2), task.l_step(), task.evaluate,
                           example_input=task.calibration()).run()
    assert math.isfinite(history[-1].evaluation["perplexity"])
    assert int(torch.linalg.matrix_rank(net.get_parameter(first).detach().double(), rtol=1e-5)) <= 3
    assert all(net.get_parameter(n).unique().numel() <= 4 for n in names[1:])
    embedding = "transformer.wte.weight" if kind == "gpt2" else "model.embed_tokens.weight"
    lc.Compressed.direct(net, {lc.Param(embedding): (lc.AsIs, lc.WeightedL0Pruning(kappa=100))},
                         example_input=task.calibration())       # the tied head's inputs weigh the embedding
