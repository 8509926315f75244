"""transformer_book: the package behind the book "Transformers, executed".

Each module is about one idea; the chapters import from it. See DESIGN in the repository.
"""
from .attention import Cache, KVCache, MultiHeadAttention, scaled_dot_product_attention
from .layers import Block, FeedForward, LayerNorm, RMSNorm
from .masks import causal_mask, combine_masks, padding_mask, to_additive, to_torch_mha
from .positional import (LearnedPositionalEmbedding, RelativePositionBias,
                         SinusoidalPositionalEncoding, relative_position_bucket,
                         sinusoidal_encoding)
from .utils import count_params, get_device, scale, seed_everything, setup

__version__ = "0.1.0"
