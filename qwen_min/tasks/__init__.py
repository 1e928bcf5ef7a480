"""Chapters 9-11: checkable tasks with verifiable answers (checkable.py) and preference pairs sampled from a model (pairs.py)."""
