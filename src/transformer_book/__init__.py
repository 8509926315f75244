"""transformer_book: the package behind the book "Transformers, executed".

Each module is about one idea; the chapters import from it. The README says what the package
holds and how to run it; the book (book/, one notebook per chapter) teaches each module.

One contract for every model (GPT, Bert and its heads, T5, Transformer, the RNN baselines),
the token inputs positional and everything after them keyword-only:
    out = model(input_ids, attention_mask=m, targets=y)  # encoder-decoders: (src, tgt_in, src_mask=m)
    out.logits    # (B, T, V), or (B, n_classes) for a classifier
    out.loss      # mean cross-entropy over the targets != -100; None without targets
    out.weights   # with return_weights=True: {"self": [per layer], "cross": [per layer]}
                  # (encoder-decoders add "encoder")
    out.hidden    # the last hidden states (B, T, C)
    m: (B, T) bool or integer 0/1 (1 = real token; a float mask is refused), or bool
       (B, 1, 1, T); None: built from pad_id
"""
from .attention import MultiHeadAttention, scaled_dot_product_attention
from .cache import Cache, KVCache, LayerCache
from .layers import Block, FeedForward, LayerNorm, RMSNorm
from .masks import (as_padding_mask, causal_mask, combine_masks, padding_mask, to_additive,
                    to_torch_mha)
from .positional import (LearnedPositionalEmbedding, RelativePositionBias,
                         SinusoidalPositionalEncoding, relative_position_bucket,
                         sinusoidal_encoding)
from .device import autocast, autocast_dtype, get_device
from .runmode import book_seed, budget, scale, seed_everything, seed_offset, setup, smoke
from .models import count_params
from .models.output import ModelOutput

__version__ = "0.1.0"
