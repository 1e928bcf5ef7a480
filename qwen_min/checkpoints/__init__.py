"""Chapters 6-7: Hugging Face folders (hf.py: from_pretrained / save_pretrained), the GGUF reader (gguf_file.py),
loader (gguf_loader.py) and writer (gguf_writer.py), and the official checkpoints fetched from the package registry (fetch.py)."""
