"""count_params_by_part against Hugging Face's models of the same configs, split by their
own module names (built on the meta device, offline, random weights)."""
import pytest
import torch

from transformer_book.models import PRESETS, build, count_params, count_params_by_part

transformers = pytest.importorskip("transformers")


def hf_parts(model, rules):
    """Sum HF's parameters by the first rule (substring -> part) that matches the name."""
    counts = dict.fromkeys(["embeddings", "attention", "FFN", "norms", "other"], 0)
    for name, p in model.named_parameters():  # a tied tensor is listed once
        part = next((part for key, part in rules if key in name), "other")
        counts[part] += p.numel()
    return counts


GPT2_RULES = [("wte", "embeddings"), ("wpe", "embeddings"), (".attn.", "attention"),
              (".mlp.", "FFN"), ("ln_", "norms")]
BERT_RULES = [("LayerNorm", "norms"), ("embeddings.", "embeddings"),
              ("attention.", "attention"), ("intermediate.", "FFN"), ("output.dense", "FFN")]
T5_RULES = [("shared", "embeddings"), ("relative_attention_bias", "embeddings"),
            ("layer_norm", "norms"), ("Attention.", "attention"), ("DenseReluDense", "FFN")]


def test_gpt2_parts_equal_hf():
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    assert count_params_by_part(build("gpt2", device="meta")) == hf_parts(hf, GPT2_RULES)


def test_bert_base_parts_equal_hf_with_the_pooler_as_other():
    with torch.device("meta"):
        hf = transformers.BertModel(transformers.BertConfig())
    ours = count_params_by_part(build("bert-base", device="meta"))
    assert ours == hf_parts(hf, BERT_RULES)
    assert ours["other"] == 768 * 768 + 768  # the pooler


@pytest.mark.parametrize("name, hf_config", [
    ("t5-small", {}),
    ("t5-v1_1-small", dict(d_model=512, num_heads=6, d_ff=1024, num_layers=8,
                           feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    ("t5-3b", dict(d_model=1024, num_heads=32, d_kv=128, d_ff=16384, num_layers=24)),
])
def test_t5_parts_equal_hf(name, hf_config):
    with torch.device("meta"):
        hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**hf_config))
    ours = count_params_by_part(build(name, device="meta"))
    assert ours == hf_parts(hf, T5_RULES)
    # the untied output layer is the only part outside the four
    assert ours["other"] == (0 if hf_config.get("tie_word_embeddings", True) else 32128 * 512)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parts_sum_to_count_params_for_every_preset(name):
    model = build(name, device="meta")
    parts = count_params_by_part(model)
    assert sum(parts.values()) == count_params(model)
    assert all(v >= 0 for v in parts.values())


def test_a_tied_output_layer_counts_once_in_embeddings():
    tied = count_params_by_part(build("t5-tiny", device="meta"))
    untied = count_params_by_part(build("t5-tiny", device="meta", tie_embeddings=False))
    assert untied["other"] - tied["other"] == 256 * 128
    assert untied["embeddings"] == tied["embeddings"]


def test_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        count_params_by_part({"weight": torch.zeros(3)})
