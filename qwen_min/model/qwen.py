"""The Qwen2 / Qwen2.5 decoder: embeddings, N pre-norm blocks (attention + SwiGLU MLP), final norm, LM head.

    x = embed(ids)
    for block in layers:
        x = x + attn(rmsnorm(x))      # grouped-query attention with RoPE (attention.py)
        x = x + mlp(rmsnorm(x))       # SwiGLU: down(silu(gate(x)) * up(x))
    logits = lm_head(rmsnorm(x))

Design choices
- Parameter names are exactly those of transformers' `Qwen2ForCausalLM` state dict
  (`model.layers.3.self_attn.q_proj.bias`, `lm_head.weight`, ...), so a Hugging Face
  checkpoint loads with a plain `load_state_dict` and nothing is renamed anywhere.
- Tied embeddings (0.5B/1.5B/3B): `lm_head.weight` *is* `model.embed_tokens.weight`
  (one Parameter). Hugging Face files of tied models omit `lm_head.weight`; a
  load-state-dict hook fills it in, and re-ties after `load_state_dict(..., assign=True)`
  (which would otherwise leave two separate Parameters).
- Positions come from the padding mask (cumsum - 1, padding at 1), as transformers'
  `generate` computes them: a left-padded row gets the same positions, hence the same
  logits, as when it is run alone.
- The loss follows transformers: logits upcast to fp32, labels shifted inside (token t
  predicts label t + 1), -100 ignored, mean over the counted tokens.
- `make_mlp` is the one place that picks a layer's feed-forward block: the
  mixture-of-experts block of chapter 5 (moe.py) for the layers `cfg.is_sparse_layer(i)` names.
  A layer returns its router logits (None when dense). For MoE models the loss with labels is
  LM loss + router_aux_loss_coef * load-balancing loss over the real tokens (as transformers'
  Qwen2MoeForCausalLM with output_router_logits=True); the forward's return values stay the same
  for dense and MoE, and the last forward's (detached) router logits and auxiliary loss are kept in
  `model.last_router_logits` / `model.last_aux_loss` for logging and expert-load plots.
- Long context: a sequence longer than `max_position_embeddings` is refused unless the config names a
  position-extension method (`rope_scaling` or `dual_chunk_attention_config`): past its training length a
  model degrades silently, so running there is a choice the config has to state. With Dual Chunk Attention
  the forward pass builds one `DualChunkPass` (model/dual_chunk.py) for all layers instead of cos/sin; its
  key positions come from the padding mask, so explicit `position_ids` are refused there.
  `set_context_extension` switches the method of a loaded model in place (the weights stay).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qwen_min.config import QwenConfig
from qwen_min.model.attention import ATTN_IMPLS, Attention, KVCache, attention_mask_for
from qwen_min.model.dual_chunk import DualChunkPass
from qwen_min.model.layers import MLP, RMSNorm
from qwen_min.model.moe import SparseMoeBlock, load_balancing_loss
from qwen_min.model.rope import RotaryEmbedding

IGNORE_INDEX = -100  # label of a position that is not trained (transformers' and PyTorch's convention)


def make_mlp(cfg: QwenConfig, layer_idx: int) -> nn.Module:
    """The feed-forward block of layer `layer_idx`: dense SwiGLU, or mixture-of-experts where the config says so."""
    if cfg.is_sparse_layer(layer_idx):
        return SparseMoeBlock(cfg)
    return MLP(cfg.hidden_size, cfg.intermediate_size)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(.)); returns (x, router logits or None when dense)."""

    def __init__(self, cfg: QwenConfig, layer_idx: int, attn_impl: str = "sdpa"):
        super().__init__()
        self.self_attn = Attention(cfg, layer_idx, attn_impl)
        self.mlp = make_mlp(cfg, layer_idx)
        self.is_sparse = cfg.is_sparse_layer(layer_idx)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None, dca=None):  # x: (b, t, hidden)
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, dca)
        if self.is_sparse:
            out, router_logits = self.mlp(self.post_attention_layernorm(x))  # router_logits: (b * t, num_experts)
            return x + out, router_logits
        return x + self.mlp(self.post_attention_layernorm(x)), None


class QwenModel(nn.Module):
    """The decoder without its LM head (`model.` in Hugging Face names)."""

    def __init__(self, cfg: QwenConfig, attn_impl: str = "sdpa"):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, attn_impl) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg)


class Qwen(nn.Module):
    """Qwen2 / Qwen2.5 causal language model.

    >>> cfg = QwenConfig.from_name("tiny", vocab_size=100)
    >>> model = Qwen(cfg)
    >>> ids = torch.randint(0, 100, (2, 7))
    >>> model(ids).shape                               # (b, t, vocab)
    torch.Size([2, 7, 100])
    >>> logits, loss = model(ids, labels=ids)          # next-token cross-entropy
    >>> cache = KVCache(cfg, batch_size=2, max_seq_len=16)
    >>> prefill = model(ids[:, :6], cache=cache)       # cache.length == 6
    >>> step = model(ids[:, 6:], cache=cache)          # one new token, attends to the 6 cached ones
    >>> torch.allclose(step[:, -1], model(ids)[:, -1], atol=1e-5)
    True
    """

    def __init__(self, cfg: QwenConfig, attn_impl: str = "sdpa"):
        super().__init__()
        self.config = cfg
        self.model = QwenModel(cfg, attn_impl)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.last_router_logits: tuple[torch.Tensor, ...] = ()  # MoE: per sparse layer, from the last forward
        self.last_aux_loss: torch.Tensor | None = None  # MoE: load-balancing loss of the last forward with labels
        self.tie_weights()
        self.reset_parameters()
        self.register_load_state_dict_pre_hook(self._fill_tied_head)
        self.register_load_state_dict_post_hook(lambda module, incompatible_keys: module.tie_weights())

    # ------------------------------------------------------------------ weights
    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def _fill_tied_head(self, module, state_dict, prefix, *args) -> None:
        # Hugging Face files of tied models carry only the embedding; the head is the same matrix
        embed, head = prefix + "model.embed_tokens.weight", prefix + "lm_head.weight"
        if self.config.tie_word_embeddings and embed in state_dict and head not in state_dict:
            state_dict[head] = state_dict[embed]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """transformers' initialisation: normal(0, initializer_range) weights, zero biases, unit norms."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)

    def set_attn_impl(self, attn_impl: str) -> None:
        """Switch every layer between "sdpa" (fused) and "eager" (explicit) attention."""
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        for layer in self.model.layers:
            layer.self_attn.attn_impl = attn_impl

    def set_context_extension(self, rope_scaling: dict | None = None, dual_chunk_attention_config: dict | None = None,
                              max_position_embeddings: int | None = None) -> None:
        """Use a training-free position-extension method from now on (None: none), e.g. YaRN factor 4 on a model
        trained at 32,768 tokens: `set_context_extension({"rope_type": "yarn", "factor": 4.0,
        "original_max_position_embeddings": 32768}, max_position_embeddings=131072)`. The weights are untouched;
        the config is checked as a new one; `max_position_embeddings` (default: unchanged) is what `generate` allows."""
        cfg = self.config.replace(rope_scaling=rope_scaling, dual_chunk_attention_config=dual_chunk_attention_config,
                                  max_position_embeddings=max_position_embeddings or self.config.max_position_embeddings)
        self.config, self.model.rotary_emb = cfg, RotaryEmbedding(cfg)  # frequencies move to the input's device on use

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, labels: torch.Tensor | None = None, position_ids: torch.Tensor | None = None):
        """input_ids (b, t) -> logits (b, t, vocab); with labels, (logits, loss) (+ coef * aux loss for MoE).

        attention_mask: (b, past + t), 1 for real tokens and 0 for (left) padding, past = cache.length.
        cache: a `KVCache`; the new keys/values are appended and `cache.length` advances by t.
        position_ids: (b, t); by default derived from attention_mask (or past .. past + t - 1).
        """
        b, t = input_ids.shape
        cfg = self.config
        past = cache.length if cache is not None else 0
        if attention_mask is not None and attention_mask.shape != (b, past + t):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(b, past + t)} "
                             f"(batch, cached {past} + new {t} positions)")
        if past + t > cfg.max_position_embeddings and not cfg.extends_context:
            raise ValueError(f"{past + t} positions (cached {past} + new {t}) exceed max_position_embeddings "
                             f"{cfg.max_position_embeddings} and the config names no position-extension method: set "
                             "rope_scaling (linear, ntk, yarn) or dual_chunk_attention_config, or raise max_position_embeddings")
        x = self.model.embed_tokens(input_ids)  # (b, t, hidden)
        dca = None
        if cfg.dual_chunk_attention_config:
            if position_ids is not None:
                raise ValueError("with dual_chunk_attention_config the positions come from attention_mask; "
                                 "position_ids is not supported")
            key_positions = positions_from_mask(attention_mask, 0, past + t, input_ids.device)  # (b or 1, past + t)
            dca = DualChunkPass.build(cfg.dual_chunk_attention_config, self.model.rotary_emb, key_positions, t, x.dtype,
                                      attention_mask)
            cos = sin = mask = None  # the pass holds the positions and builds its masks block by block
        else:
            if position_ids is None:
                position_ids = positions_from_mask(attention_mask, past, t, input_ids.device)  # (b or 1, t)
            cos, sin = self.model.rotary_emb(position_ids, x.dtype)  # (b or 1, t, head_dim), shared by all layers
            mask = attention_mask_for(t, past, attention_mask, input_ids.device)  # (b or 1, 1, t, past + t) or None
        router_logits = []  # one (b * t, num_experts) per sparse layer
        for layer in self.model.layers:
            x, layer_router_logits = layer(x, cos, sin, mask, cache, dca)
            if layer_router_logits is not None:
                router_logits.append(layer_router_logits)
        if cache is not None:
            cache.advance(t)
        logits = self.lm_head(self.model.norm(x))  # (b, t, vocab)
        self.last_router_logits = tuple(r.detach() for r in router_logits)
        if labels is None:
            return logits
        loss = causal_lm_loss(logits, labels)
        if router_logits:
            token_mask = attention_mask[:, -t:] if attention_mask is not None else None  # (b, t): padding does not count
            aux = load_balancing_loss(router_logits, self.config.num_experts, self.config.num_experts_per_tok, token_mask)
            self.last_aux_loss = aux.detach()
            loss = loss + self.config.router_aux_loss_coef * aux
        return logits, loss

    def num_parameters(self) -> int:
        """Distinct parameters (a tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())


def positions_from_mask(attention_mask: torch.Tensor | None, past: int, t: int, device) -> torch.Tensor:
    """Position of each new token: its index among the real tokens of its row (padding gets 1, as in transformers).

    >>> positions_from_mask(torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]), 0, 4, "cpu")
    tensor([[1, 1, 0, 1],
            [0, 1, 2, 3]])
    """
    if attention_mask is None:
        return torch.arange(past, past + t, device=device)[None]  # (1, t)
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention_mask == 0, 1)
    return positions[:, -t:]  # (b, t)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy of predicting labels[:, i + 1] from logits[:, i]; labels equal to -100 are skipped."""
    shifted = F.pad(labels, (0, 1), value=ignore_index)[:, 1:]  # (b, t): the last position predicts nothing
    return F.cross_entropy(logits.float().flatten(0, 1), shifted.flatten().to(logits.device), ignore_index=ignore_index)
