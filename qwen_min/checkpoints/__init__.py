"""Chapters 6-7: Hugging Face folders (hf.py: from_pretrained / save_pretrained), the GGUF loader (gguf_loader.py)
and writer (gguf_writer.py) on top of the GGUF format (qwen_min/gguf/), the official checkpoints fetched from the
package registry (fetch.py), transformers' model holding our weights (transformers_twin.py), and `qm.load`, the one
way to get a model in a number format (load.py)."""
