"""A small Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021).

``patches = conv(p x p, stride p)(x)`` -> tokens ``[B, N, D]``; prepend a learned
CLS token; add learned position embeddings; ``depth`` pre-LN encoder blocks

    h = h + Attn(LN(h)),    h = h + MLP(LN(h)),    MLP = Dense(mlp_dim) -> GELU -> Dense(D)

then a final LayerNorm and a linear head on the CLS token (as the SSD/JiT
``ViT`` wrapper does with ``final(last_hidden_state[:, 0])``). The SSD and JiT
papers use ViT-B/16 at 224x224 (``ViT(patch_size=16, hidden=768, depth=12,
num_heads=12, mlp_dim=3072)``); the defaults here are a small model for
32x32 or 8x8 inputs. All projections are plain ``nn.Dense`` (fused ``qkv``
and ``proj``) and the patch embedding a plain ``nn.Conv``, so the per-layer
Fisher fast path of :mod:`jaxunlearn.curvature.layerwise` covers them;
LayerNorm, CLS token and position embeddings go through its general path.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.models._common import check_images

_normal = nn.initializers.normal(0.02)


class SelfAttention(nn.Module):
    """Multi-head self-attention, ``softmax(q k^T / sqrt(d_head)) v``: ``[B, N, D] -> [B, N, D]``."""

    num_heads: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b, n, d = x.shape
        dh = d // self.num_heads
        qkv = nn.Dense(3 * d, name="qkv")(x).reshape(b, n, 3, self.num_heads, dh)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(dh).astype(x.dtype), axis=-1)
        weights = nn.Dropout(self.dropout_rate, deterministic=not train)(weights)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, d)
        return nn.Dense(d, name="proj")(out)


class EncoderBlock(nn.Module):
    """Pre-LN transformer block: ``h + Attn(LN(h))`` then ``h + MLP(LN(h))``; ``[B, N, D] -> [B, N, D]``."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        drop = nn.Dropout(self.dropout_rate, deterministic=not train)
        y = SelfAttention(self.num_heads, self.dropout_rate, name="attn")(nn.LayerNorm(name="norm1")(x), train)
        x = x + drop(y)
        y = nn.Dense(self.mlp_dim, name="mlp_fc1")(nn.LayerNorm(name="norm2")(x))
        y = nn.Dense(x.shape[-1], name="mlp_fc2")(drop(nn.gelu(y, approximate=False)))
        return x + drop(y)


class ViT(nn.Module):
    """Vision Transformer classifier: ``x`` ``[B, H, W, C]`` -> logits ``[B, num_classes]``.

    Attributes:
      num_classes: output width.
      patch_size: side of the square patches; must divide H and W.
      hidden: token width D; must be a multiple of ``num_heads``.
      depth: number of encoder blocks.
      num_heads: attention heads.
      mlp_dim: hidden width of the block MLPs.
      dropout_rate: dropout on embeddings, attention weights and residual branches (train mode only).
    """

    num_classes: int = 10
    patch_size: int = 4
    hidden: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 128
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_images(x, "ViT")
        p = self.patch_size
        if x.shape[1] % p or x.shape[2] % p:
            raise ValueError(f"ViT: patch_size={p} must divide the image size {x.shape[1:3]}; pick another patch_size.")
        if self.hidden % self.num_heads:
            raise ValueError(f"ViT: hidden={self.hidden} must be a multiple of num_heads={self.num_heads}.")
        x = nn.Conv(self.hidden, (p, p), strides=(p, p), padding="VALID", name="patch_embed")(x)
        b = x.shape[0]
        x = x.reshape(b, -1, self.hidden)
        cls = self.param("cls_token", _normal, (1, 1, self.hidden))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.hidden)).astype(x.dtype), x], axis=1)
        x = x + self.param("pos_embed", _normal, (1, x.shape[1], self.hidden))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        for i in range(self.depth):
            x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate, name=f"block_{i}")(x, train)
        x = nn.LayerNorm(name="norm")(x)
        return nn.Dense(self.num_classes, name="head")(x[:, 0])
