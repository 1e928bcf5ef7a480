"""Chapters 6-7: the GGUF file format on its own (numpy only, no torch, no model): the container (file.py:
header, metadata, tensor table, memory-mapped) and the quantised blocks (blocks.py: every type the official
files hold, decoded; Q8_0 and Q4_0 encoded). The tokenizer reads its vocabulary from it, the checkpoint
loader and writer their tensors."""
