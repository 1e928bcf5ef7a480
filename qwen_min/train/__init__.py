"""Chapters 8-11: the training loop (trainer.py), its settings (settings.py, command.py), batches, pretraining data,
FLOPs and MFU, LoRA, and the recipes: pretraining, SFT, DPO and GRPO (each with its *_command.py)."""
