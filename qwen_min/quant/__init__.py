"""Chapter 7: weight-only quantisation. int8 absmax per output channel (absmax.py), int4 in groups with scales and
zero points (groups.py), the GGUF block formats, encoded (Q8_0, Q4_0) and decoded (every type of the official files:
gguf_blocks.py), linear layers on torch's int8 / int4 CPU kernels (linear.py) and `qm.quantize` (quantize.py)."""
