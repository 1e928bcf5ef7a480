"""Chapters 2-5 and 11: RMSNorm and the SwiGLU MLP (layers.py), rotary embeddings (rope.py), grouped-query
attention and the KV cache (attention.py), mixture-of-experts (moe.py), the Qwen decoder (qwen.py), and the
reward model (reward.py)."""
