"""Chapter 1: the byte-level BPE tokenizer (bpe.py), the Qwen2 pre-tokenizer, the tokenizer files (files.py),
BPE training (bpe_training.py, command bpe_training_command.py) and the chat template (chat_template.py)."""
