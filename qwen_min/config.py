"""Model configuration: every official Qwen2.5 size, small teaching sizes and MoE variants.

Design choices
- Field names follow Hugging Face's `Qwen2Config` / `Qwen2MoeConfig`, so a
  `config.json` maps onto `QwenConfig` one key at a time (see `from_hf_dict`).
- One config class covers dense and MoE models: `num_experts == 0` means dense.
- `num_parameters()` counts analytically from the fields, no model is built;
  tests check it against a model built on the meta device and against the
  exact counts implied by the official config.json files (checked against transformers' Qwen2ForCausalLM).
- An unknown name or field fails with one line listing what is known.
- Long context (model/rope.py, model/dual_chunk.py): `rope_scaling` names a training-free change of the RoPE
  frequencies ("linear" = Position Interpolation, "ntk" = static NTK-aware base change, "yarn"), and
  `dual_chunk_attention_config` switches attention to Dual Chunk Attention, with the field name and keys of
  the official Qwen2.5-1M config.json. Raising `rope_theta` and training on ("ABF") needs no field of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def ntk_theta(head_dim: int, theta: float, factor: float) -> float:
    """NTK-aware base: b * s^(d / (d - 2)). The slowest pair (exponent (d - 2) / d) then turns s times slower,
    the fastest (exponent 0) not at all, and the pairs between are interpolated less the faster they turn.

    >>> ntk_theta(4, 10_000.0, 4.0)             # 1e4 * 4^(4/2)
    160000.0
    """
    return theta * factor ** (head_dim / (head_dim - 2))

@dataclass
class QwenConfig:
    """Hyper-parameters of a Qwen2 / Qwen2.5 decoder (dense or mixture-of-experts)."""

    vocab_size: int = 151936  # rows of the embedding: 151,643 BPE tokens + 22 control tokens, padded to a multiple of 128
    hidden_size: int = 896  # width of the residual stream, d_model
    intermediate_size: int = 4864  # hidden width of the dense SwiGLU MLP
    num_hidden_layers: int = 24  # number of decoder blocks
    num_attention_heads: int = 14  # query heads
    num_key_value_heads: int = 2  # key/value heads shared by groups of query heads (GQA); == heads is MHA, 1 is MQA
    head_dim: int | None = None  # width of one head; None means hidden_size // num_attention_heads
    max_position_embeddings: int = 32768  # context length: the training length, or the reach of a position extension
    rope_theta: float = 1_000_000.0  # RoPE base (raised from 1e4 to 1e6 for long context, "ABF")
    rope_scaling: dict | None = None  # None, or {"rope_type": "yarn" | "linear" | "ntk", "factor": f, ...} (model/rope.py)
    # None, or {"chunk_size": c, "local_size": l, "original_max_position_embeddings": n (optional)}: model/dual_chunk.py
    dual_chunk_attention_config: dict | None = None
    rms_norm_eps: float = 1e-6  # epsilon inside RMSNorm
    tie_word_embeddings: bool = True  # lm_head shares the token-embedding matrix
    attention_bias: bool = True  # bias on q/k/v projections (Qwen2 quirk); o_proj never has one
    initializer_range: float = 0.02  # std of the normal init of linear and embedding weights
    # Mixture-of-experts (Qwen2-MoE); all ignored while num_experts == 0
    num_experts: int = 0  # routed experts per sparse layer; 0 = dense model
    num_experts_per_tok: int = 0  # experts chosen per token (top-k)
    moe_intermediate_size: int = 0  # hidden width of one routed expert's SwiGLU
    shared_expert_intermediate_size: int = 0  # hidden width of the always-on shared expert (0 = none)
    norm_topk_prob: bool = False  # renormalise the top-k router probabilities to sum to 1
    decoder_sparse_step: int = 1  # layer i is sparse when (i + 1) % decoder_sparse_step == 0
    mlp_only_layers: list[int] = field(default_factory=list)  # layers forced dense even if the step says sparse
    router_aux_loss_coef: float = 0.001  # weight of the load-balancing loss added to the LM loss

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        problems = []
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            problems.append(f"head_dim ({self.head_dim}) must be even for RoPE")
        if self.num_experts and not 0 < self.num_experts_per_tok <= self.num_experts:
            problems.append(f"num_experts_per_tok ({self.num_experts_per_tok}) must be in 1..num_experts ({self.num_experts})")
        problems += rope_scaling_problems(self.rope_scaling)
        problems += dual_chunk_problems(self.dual_chunk_attention_config)
        if problems:
            raise ValueError("invalid QwenConfig: " + "; ".join(problems))

    # ------------------------------------------------------------------ structure
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def extends_context(self) -> bool:
        """True when a position-extension method is configured (rope_scaling or Dual Chunk Attention): the model
        may then run past `max_position_embeddings`, otherwise a longer sequence is refused (model/qwen.py)."""
        return bool(self.rope_scaling and self.rope_scaling.get("rope_type", "default") != "default"
                    or self.dual_chunk_attention_config)

    def is_sparse_layer(self, layer_idx: int) -> bool:
        """True when decoder layer `layer_idx` uses the MoE block instead of the dense MLP."""
        return (
            self.is_moe
            and layer_idx not in self.mlp_only_layers
            and (layer_idx + 1) % self.decoder_sparse_step == 0
        )

    # ------------------------------------------------------------------ counting
    def num_parameters(self, non_embedding: bool = False, active: bool = False) -> int:
        """Exact number of parameters, counted from the fields.

        non_embedding: leave out the token embedding (and an untied lm_head), as the report does.
        active: count only the experts one token uses (top-k routed + shared), for MoE models.

        >>> QwenConfig.from_name("0.5B").num_parameters()
        494032768
        """
        d, hd = self.hidden_size, self.head_dim
        q_out, kv_out = self.num_attention_heads * hd, self.num_key_value_heads * hd
        attn = d * q_out + 2 * d * kv_out + q_out * d  # q, k, v, o weights
        if self.attention_bias:
            attn += q_out + 2 * kv_out
        per_layer_fixed = attn + 2 * d  # + input and post-attention RMSNorm weights

        def swiglu(width: int) -> int:
            return 3 * d * width  # gate, up, down

        total = 0
        for i in range(self.num_hidden_layers):
            total += per_layer_fixed
            if self.is_sparse_layer(i):
                experts = self.num_experts_per_tok if active else self.num_experts
                total += d * self.num_experts  # router
                total += experts * swiglu(self.moe_intermediate_size)
                if self.shared_expert_intermediate_size:
                    total += swiglu(self.shared_expert_intermediate_size) + d  # + its sigmoid gate
            else:
                total += swiglu(self.intermediate_size)
        total += d  # final norm
        if not non_embedding:
            total += self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return total

    def kv_cache_bytes_per_token(self, bytes_per_element: int = 2) -> int:
        """Bytes the KV cache holds per token of context (keys + values, all layers)."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * bytes_per_element

    # ------------------------------------------------------------------ names
    @classmethod
    def from_name(cls, name: str, **overrides) -> "QwenConfig":
        """A named configuration, e.g. "0.5B", "7B", "tiny", "tiny-moe"; keyword overrides win."""
        key = name.strip()
        if key not in CONFIGS:
            raise ValueError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}")
        return cls(**{**CONFIGS[key], **overrides})

    def replace(self, **changes) -> "QwenConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ HF config.json
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "QwenConfig":
        """Build from a Hugging Face `config.json` dict (model_type qwen2 or qwen2_moe)."""
        model_type = d.get("model_type")
        if model_type not in ("qwen2", "qwen2_moe"):
            raise ValueError(f"{source}: unsupported model_type {model_type!r} (qwen_min loads 'qwen2' and 'qwen2_moe')")
        required = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"]
        if model_type == "qwen2_moe":
            required += ["moe_intermediate_size", "num_experts", "num_experts_per_tok"]
        else:
            required += ["intermediate_size"]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{source}: missing key(s) {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names and v is not None}
        kwargs.setdefault("num_key_value_heads", d["num_attention_heads"])
        kwargs.setdefault("attention_bias", d.get("qkv_bias", True))  # Qwen2Config: always a q/k/v bias; Qwen2MoeConfig: qkv_bias
        kwargs.setdefault("tie_word_embeddings", False)  # transformers' default (Qwen2 and Qwen2-MoE) when the key is absent
        # transformers >= 5 folds rope_theta and rope_scaling into one "rope_parameters" dict
        rope = d.get("rope_parameters") or d.get("rope_scaling")
        if rope:
            if "rope_theta" in rope:
                kwargs["rope_theta"] = rope["rope_theta"]
            rope_type = rope.get("rope_type", rope.get("type", "default"))
            if rope_type != "default":
                scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")}
                kwargs["rope_scaling"] = scaling | {"rope_type": rope_type}
            else:
                kwargs.pop("rope_scaling", None)
        if model_type == "qwen2":
            for k in ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size"):
                kwargs.pop(k, None)
        return cls(**kwargs)

    def to_hf_dict(self) -> dict[str, Any]:
        """The `config.json` transformers needs to build the same model.

        transformers has no static NTK-aware scaling (its "dynamic" recomputes the base at every length): "ntk" is
        written as what it is, default RoPE with the raised base `ntk_theta` (below), the same frequencies.
        """
        rope_theta, rope_scaling = self.rope_theta, self.rope_scaling
        if rope_scaling and rope_scaling.get("rope_type") == "ntk":
            rope_theta, rope_scaling = ntk_theta(self.head_dim, self.rope_theta, rope_scaling["factor"]), None
        d = {
            "architectures": ["Qwen2MoeForCausalLM" if self.is_moe else "Qwen2ForCausalLM"],
            "model_type": "qwen2_moe" if self.is_moe else "qwen2",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": rope_theta,
            "rope_parameters": {"rope_theta": rope_theta, "rope_type": "default"} | (rope_scaling or {}),
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "initializer_range": self.initializer_range,
            "attention_dropout": 0.0,
            "use_sliding_window": False,
            "use_cache": True,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "torch_dtype": "float32",
        }
        if self.vocab_size <= d["eos_token_id"]:  # the official tokenizer's ids mean nothing to a smaller vocabulary
            del d["bos_token_id"], d["eos_token_id"]
        if rope_scaling:
            d["rope_scaling"] = dict(rope_scaling)
        if self.dual_chunk_attention_config:
            d["dual_chunk_attention_config"] = dict(self.dual_chunk_attention_config)
        if self.is_moe:
            d.update(
                num_experts=self.num_experts,
                num_experts_per_tok=self.num_experts_per_tok,
                moe_intermediate_size=self.moe_intermediate_size,
                shared_expert_intermediate_size=self.shared_expert_intermediate_size,
                norm_topk_prob=self.norm_topk_prob,
                decoder_sparse_step=self.decoder_sparse_step,
                mlp_only_layers=list(self.mlp_only_layers),
                router_aux_loss_coef=self.router_aux_loss_coef,
                output_router_logits=False,
                qkv_bias=self.attention_bias,
            )
        return d


ROPE_TYPES = ("default", "linear", "ntk", "yarn")  # model/rope.py: default, Position Interpolation, NTK-aware, YaRN
DUAL_CHUNK_KEYS = ("chunk_size", "local_size", "original_max_position_embeddings")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def rope_scaling_problems(scaling: dict | None) -> list[str]:
    """What is wrong with a `rope_scaling` dict (empty list: nothing).

    >>> rope_scaling_problems({"rope_type": "dynamic", "factor": 2.0})
    ["rope_scaling type 'dynamic' is not supported (choose from default, linear, ntk, yarn)"]
    """
    if scaling is None:
        return []
    rope_type = scaling.get("rope_type", "default")
    if rope_type not in ROPE_TYPES:
        return [f"rope_scaling type {rope_type!r} is not supported (choose from {', '.join(ROPE_TYPES)})"]
    problems = []
    factor = scaling.get("factor")
    if rope_type in ("linear", "ntk") and not (isinstance(factor, (int, float)) and factor >= 1):
        problems.append(f"rope_scaling {rope_type!r} needs a numeric factor >= 1, got {factor!r}")
    if rope_type == "yarn" and not _is_int(scaling.get("original_max_position_embeddings")):
        # transformers falls back to max_position_embeddings, which silently makes YaRN a no-op on Qwen's stock
        # config (transformers issues #33783, #38224): the training length is asked for, never guessed
        problems.append("rope_scaling 'yarn' needs original_max_position_embeddings (the length the model was trained at)")
    return problems


def dual_chunk_problems(dca: dict | None) -> list[str]:
    """What is wrong with a `dual_chunk_attention_config` dict (empty list: nothing).

    >>> dual_chunk_problems({"chunk_size": 64, "local_size": 64})
    ['dual_chunk_attention_config: local_size (64) must be smaller than chunk_size (64)']
    """
    if dca is None:
        return []
    if not isinstance(dca, dict):
        return [f"dual_chunk_attention_config must be a dict, got {type(dca).__name__}"]
    unknown = [k for k in dca if k not in DUAL_CHUNK_KEYS]
    if unknown:
        return [f"dual_chunk_attention_config: unknown key(s) {', '.join(map(str, unknown))} "
                f"(known: {', '.join(DUAL_CHUNK_KEYS)})"]
    chunk, local = dca.get("chunk_size"), dca.get("local_size")
    original = dca.get("original_max_position_embeddings", 0)
    if not (_is_int(chunk) and chunk > 0 and _is_int(local) and local > 0):
        return [f"dual_chunk_attention_config: chunk_size and local_size must be positive integers, got {chunk!r} and {local!r}"]
    problems = []
    if local >= chunk:
        problems.append(f"dual_chunk_attention_config: local_size ({local}) must be smaller than chunk_size ({chunk})")
    if not (_is_int(original) and original >= 0):
        problems.append("dual_chunk_attention_config: original_max_position_embeddings must be an integer >= 0, "
                        f"got {original!r}")
    return problems


def _official(layers, hidden, intermediate, heads, kv_heads, tied, vocab=151936, eps=1e-6, context=32768):
    return dict(
        num_hidden_layers=layers, hidden_size=hidden, intermediate_size=intermediate,
        num_attention_heads=heads, num_key_value_heads=kv_heads, tie_word_embeddings=tied,
        vocab_size=vocab, rms_norm_eps=eps, max_position_embeddings=context,
    )


# name -> fields. The seven official Qwen2.5 sizes (the config.json of each Qwen/Qwen2.5-* model), then small
# sizes for teaching and tests, then MoE variants. 0.5B-3B pad the vocabulary to 151,936 rows, 7B-72B to
# 152,064; the 32B base model's config.json has rms_norm_eps 1e-5 (its instruct model's says 1e-6).
CONFIGS: dict[str, dict[str, Any]] = {
    "0.5B": _official(24, 896, 4864, 14, 2, True),
    "1.5B": _official(28, 1536, 8960, 12, 2, True),
    "3B": _official(36, 2048, 11008, 16, 2, True),
    "7B": _official(28, 3584, 18944, 28, 4, False, vocab=152064),
    "14B": _official(48, 5120, 13824, 40, 8, False, vocab=152064),
    "32B": _official(64, 5120, 27648, 40, 8, False, vocab=152064, eps=1e-5),
    "72B": _official(80, 8192, 29568, 64, 8, False, vocab=152064),
    # Teaching sizes: the same architecture, small enough to train on 2 CPU cores.
    # vocab 151936 keeps the official tokenizer usable; pass vocab_size=... for a trained one.
    "tiny": dict(num_hidden_layers=2, hidden_size=64, intermediate_size=172, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024, rope_theta=10_000.0),
    "small": dict(num_hidden_layers=4, hidden_size=128, intermediate_size=344, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10_000.0),
    "medium": dict(num_hidden_layers=8, hidden_size=256, intermediate_size=688, num_attention_heads=8,
                   num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10_000.0),
    # MoE: a teaching size, then the open Qwen MoE designs the Turbo/Plus models follow.
    "tiny-moe": dict(num_hidden_layers=2, hidden_size=64, intermediate_size=172, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=1024, rope_theta=10_000.0,
                     num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                     shared_expert_intermediate_size=64, norm_topk_prob=False),
    "MoE-A2.7B": dict(num_hidden_layers=24, hidden_size=2048, intermediate_size=5632, num_attention_heads=16,
                      num_key_value_heads=16, max_position_embeddings=8192, tie_word_embeddings=False,
                      num_experts=60, num_experts_per_tok=4, moe_intermediate_size=1408,
                      shared_expert_intermediate_size=5632, norm_topk_prob=False),  # Qwen1.5-MoE-A2.7B
    "57B-A14B": dict(num_hidden_layers=28, hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                     num_key_value_heads=4, max_position_embeddings=32768, tie_word_embeddings=False,
                     num_experts=64, num_experts_per_tok=8, moe_intermediate_size=2560,
                     shared_expert_intermediate_size=20480, norm_topk_prob=False),  # Qwen2-57B-A14B
}

OFFICIAL_SIZES = ["0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B"]

# Published parameter counts (Qwen2.5 technical report, table 1): total / non-embedding, in billions.
PUBLISHED_PARAMS = {
    "0.5B": (0.49, 0.36), "1.5B": (1.54, 1.31), "3B": (3.09, 2.77), "7B": (7.61, 6.53),
    "14B": (14.7, 13.1), "32B": (32.5, 31.0), "72B": (72.7, 70.0),
}
