"""Chapters 2-5 and 11: RMSNorm and the SwiGLU MLP (layers.py), rotary embeddings and their training-free
extensions (rope.py), grouped-query attention and the KV cache (attention.py), Dual Chunk Attention for long
context (dual_chunk.py), mixture-of-experts (moe.py), the Qwen decoder (qwen.py), and the reward model (reward.py)."""
