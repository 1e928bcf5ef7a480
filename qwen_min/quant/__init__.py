"""Chapter 7: weight-only quantisation. int8 absmax per output channel (absmax.py), int4 in groups with scales and
zero points (groups.py), the GGUF Q8_0 / Q4_0 block formats (gguf_blocks.py), linear layers on torch's int8 / int4 CPU
kernels (linear.py) and `qm.quantize` (quantize.py)."""
