"""Every preset builds on the meta device (no memory) with the published parameter counts."""
import pytest
import torch

from transformer_book.models import PRESETS, build
from transformer_book.models import count_params

# Published sizes: GPT-2 (Radford et al. 2019, as released), GPT-1, BERT encoder + pooler
# (Devlin et al. 2019, without the MLM head), T5 (Raffel et al. 2020, shared embedding once).
REFERENCE = {
    "gpt1": 116_534_784,
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "bert-base": 109_482_240,
    "bert-large": 335_141_888,
    "t5-small": 60_506_624,
    "t5-base": 222_903_552,
    "t5-v1_1-small": 76_961_152,  # the released v1.1 checkpoints (HF's count of the same
    "t5-v1_1-base": 247_577_856,  # config): untied head, gated-GELU FFN
    # HF's count of the same configs (the paper: "around 2.8 billion", "about 11 billion")
    "t5-3b": 2_851_598_336,
    "t5-11b": 11_307_321_344,
    # GPT2LMHeadModel's count of Megatron-LM's shape (the paper: 8.3B)
    "megatron-8.3b": 8_314_143_744,
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_parameter_count_equals_reference(name):
    model = build(name, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())  # nothing allocated
    assert count_params(model) == REFERENCE[name]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_the_model_its_config_describes(name):
    """Not just a name: the built model has the registered class and config, its layer
    counts and widths follow the config, and overrides reach the model."""
    cls, cfg = PRESETS[name]
    model = build(name, device="meta")
    assert type(model) is cls and model.config == cfg
    width = getattr(cfg, "d_model", None)
    if hasattr(cfg, "n_layers") and hasattr(model, "blocks"):  # GPT
        assert len(model.blocks) == cfg.n_layers
    if hasattr(model, "bert"):
        model = model.bert
    if hasattr(model, "blocks") and hasattr(model, "seg_emb"):  # Bert
        assert len(model.blocks) == cfg.n_layers and model.tok_emb.weight.shape == (
            cfg.vocab_size, width)
    if hasattr(model, "encoder") and hasattr(model, "shared"):  # T5
        assert len(model.encoder.blocks) == cfg.n_layers
        assert len(model.decoder.blocks) == (cfg.n_decoder_layers or cfg.n_layers)
    other = build(name, device="meta", **({"d_model": 2 * width} if width and not
                                           hasattr(cfg, "d_hidden") else {}))
    if width and not hasattr(cfg, "d_hidden"):
        assert other.config.d_model == 2 * width


SMALL = [n for n in sorted(PRESETS) if "tiny" in n or n == "rnn-classifier"]


@pytest.mark.parametrize("name", SMALL)
def test_small_presets_run_forward_with_the_contract(name):
    """Every small preset runs on the CPU and returns a ModelOutput whose loss is the
    cross-entropy of its logits (or, for the bare encoder, hidden states)."""
    from transformer_book.models import ModelOutput
    torch.manual_seed(0)
    # GPT-1's classifier adds lm_weight x its LM loss; with 0 its loss is the class loss alone
    no_aux = {"lm_weight": 0.0} if name.startswith("gpt1") and "classifier" in name else {}
    model = build(name, **no_aux).eval()
    cfg = model.config
    V = next(getattr(c, f) for c in (cfg, getattr(cfg, "gpt", None))
             for f in ("vocab_size", "src_vocab_size") if hasattr(c, f))
    ids = torch.randint(1, min(V, 50), (2, 6))
    if hasattr(model, "encode"):
        args = (ids, ids[:, :4])
        y = torch.randint(0, 5, (2, 4))
    else:
        args = (ids,)
        y = torch.randint(0, 2, (2,) if "classifier" in name else (2, 6))
    if name.startswith("bert-") and not name.endswith(("-mlm", "-classifier")):
        out = model(*args)  # the bare encoder: no head, no targets
        assert isinstance(out, ModelOutput) and out.logits is None
        assert out.hidden.shape == (2, 6, model.config.d_model)
        return
    out = model(*args, targets=y)
    assert isinstance(out, ModelOutput) and out.weights is None
    flat = out.logits.reshape(-1, out.logits.shape[-1])
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(flat, y.reshape(-1)))


def test_bert_count_by_hand():
    """bert-base: embeddings + 12 layers + pooler, each part from the formula."""
    V, P, S, C, F, L = 30522, 512, 2, 768, 3072, 12
    embeddings = (V + P + S) * C + 2 * C
    layer = 4 * (C * C + C) + 2 * C + (C * F + F) + (F * C + C) + 2 * C
    pooler = C * C + C
    assert embeddings + L * layer + pooler == count_params(build("bert-base", device="meta"))


def test_t5_count_by_hand():
    """t5-small: shared embedding (tied head, counted once), no biases, RMSNorm weights only,
    one relative-bias table per stack."""
    V, C, F, H, L, buckets = 32128, 512, 2048, 8, 6, 32
    enc_layer = 4 * C * C + 2 * C * F + 2 * C
    dec_layer = 8 * C * C + 2 * C * F + 3 * C
    total = V * C + L * (enc_layer + dec_layer) + 2 * (buckets * H + C)
    assert total == count_params(build("t5-small", device="meta"))


def test_untied_t5_counts_its_head():
    tied = count_params(build("t5-tiny", device="meta"))
    untied = count_params(build("t5-tiny", device="meta", tie_embeddings=False))
    assert untied - tied == 256 * 128


def test_small_presets_build_and_run_on_cpu():
    torch.manual_seed(0)
    ids = torch.randint(0, 256, (2, 9))
    bert = build("bert-tiny").eval()
    assert bert(ids).hidden.shape == (2, 9, 128)
    t5 = build("t5-v1_1-tiny").eval()
    assert t5(ids, ids[:, :4]).logits.shape == (2, 4, 256)


def test_build_rejects_unknown_names_and_fields():
    with pytest.raises(ValueError, match="t5-huge"):
        build("t5-huge", device="meta")
    with pytest.raises(ValueError, match="n_experts"):
        build("bert-base", device="meta", n_experts=8)
