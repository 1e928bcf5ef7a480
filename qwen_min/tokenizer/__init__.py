"""Chapter 1: the byte-level BPE tokenizer (bpe.py), the Qwen2 pre-tokenizer, the tokenizer files (files.py),
BPE training (train.py, command train_command.py) and the chat template (chat_template.py)."""
