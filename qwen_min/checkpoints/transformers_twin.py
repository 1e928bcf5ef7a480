"""transformers' `Qwen2ForCausalLM` holding the very tensors of a qwen_min model: the reference engine, no copy.

    hf = transformers_twin(model)          # same weights, transformers' code
    hf(input_ids).logits                   # == model(input_ids) within fp32 rounding (tests/model, tests/checkpoints)

Design choices
- The state dicts share names (qwen_min uses transformers' names), so `load_state_dict(assign=True)` on a
  model built on the meta device hands over the tensors themselves: a 1.5B in fp32 exists once, not twice.
- The rotary table is a buffer outside the state dict: it is rebuilt on the weights' device from the config
  (`to_hf_dict`), so rope scaling reaches transformers through the config, as in a saved folder.
- No stop token and pad id 0: used to compare engines, both write exactly the tokens they are asked for.
"""

from __future__ import annotations

import torch


def transformers_twin(model):
    """transformers' Qwen2ForCausalLM holding the very tensors of `model` (no copy)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM  # transformers is the reference, imported only when asked

    config = Qwen2Config(**model.config.to_hf_dict())
    with torch.device("meta"):
        hf = Qwen2ForCausalLM(config)
    hf.load_state_dict(model.state_dict(), assign=True, strict=False)  # strict=False: a tied lm_head is not listed twice
    hf.tie_weights()
    weight = model.model.embed_tokens.weight
    hf.model.rotary_emb = type(hf.model.rotary_emb)(config=config).to(weight.device)  # a buffer: not in the state dict
    hf.generation_config.eos_token_id = None  # no stop token: both engines write exactly new_tokens
    hf.generation_config.pad_token_id = 0
    return hf.eval()
