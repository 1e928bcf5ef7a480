"""Chapter 12: evaluation. pass@k (passk.py), isolated execution of generated programs (sandbox.py),
HumanEval through qwen_min (humaneval.py), perplexity (perplexity.py), passkey retrieval at long context
(passkey.py) and the `qwen-min eval` command (command.py)."""
