"""Chapter 7: weight-only quantisation. int8 absmax per output channel (absmax.py), int4 in groups with scales and
zero points (groups.py), GPTQ (gptq.py), linear layers on torch's int8 / int4 CPU kernels (linear.py), `qm.quantize`
(quantize.py) and which format decodes fastest here (fastest.py). The GGUF block formats are qwen_min/gguf/blocks.py."""
