"""Text generation with a KV cache: greedy or sampled, batched with left padding, streamed as text.

    tok = qm.Tokenizer.from_pretrained("data/qwen2.5")
    model = qm.from_pretrained(qm.default_checkpoint())
    prompt = tok.encode(tok.render_chat([{"role": "user", "content": "Hi!"}], add_generation_prompt=True), allowed_special="all")
    reply = qm.generate(model, prompt, max_new_tokens=64)                      # greedy
    reply = qm.generate(model, prompt, **chat_defaults(), seed=0)              # Qwen's recommended sampling
    qm.generate(model, prompt, tokenizer=tok, on_text=lambda s: print(s, end="", flush=True))   # streamed

Design choices
- Two phases. *Prefill* runs the whole prompt once and fills the preallocated `KVCache`;
  *decode* then feeds one token per step, each attending to the cached keys/values, so a
  step costs one pass over the weights (memory-bound: see `qwen-min bench generate`).
- Prefill needs the logits of the last position only: a forward hook cuts the final norm's
  output to that position, so the LM head (151,936 x 896) runs on one row, not on the
  whole prompt (transformers' `logits_to_keep=1`). A 2,000-token prompt would otherwise
  allocate 1.2 GB of fp32 logits.
- The logits pipeline follows transformers' order: repetition penalty, temperature,
  top-k, top-p, then softmax and a draw (`candidate_logits`, `pick`). Temperature 0 is greedy.
  Top-k keeps exactly k tokens (transformers also keeps ties with the k-th: with float logits, rare).
  The repetition penalty divides positive logits and multiplies negative ones of every
  token already in the row (prompt included, padding not: a quirk of transformers, which
  counts padding, that only matters for batched prompts).
- Batched prompts are left-padded so every row's last prompt token sits in the last
  column; the padding mask gives each row its own positions (model/qwen.py), so a row gets the
  same tokens as when generated alone. A row that stops leaves the batch: its cache,
  mask and penalty rows are dropped (`KVCache.keep_rows`), so the remaining rows decode at
  a smaller batch. In HumanEval batches one long answer used to keep seven finished rows
  decoding padding for hundreds of steps.
- Returned ids exclude the prompt and the stop token that ended a row (transformers keeps
  it), so `tok.decode(generate(...))` is just the reply.
- Sampling draws from a `torch.Generator` (`seed=`): the same seed gives the same tokens.
- `chat_defaults()` reads Qwen's recommended chat settings from the official
  generation_config.json (temperature 0.7, top-p 0.8, top-k 20, repetition penalty 1.1).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from qwen_min.model.attention import KVCache
from qwen_min.paths import official_tokenizer_dir, read_json
from qwen_min.tokenizer.bpe import StreamingDecoder

QWEN_STOP_IDS = (151645, 151643)  # <|im_end|>, <|endoftext|>
PAD_ID = 0  # fills left padding: masked out, so its value never matters


def chat_defaults(path: str | Path | None = None) -> dict:
    """Qwen's recommended sampling settings, as keyword arguments of `generate`.

    >>> chat_defaults()
    {'temperature': 0.7, 'top_k': 20, 'top_p': 0.8, 'repetition_penalty': 1.1, 'stop_ids': (151645, 151643)}
    """
    path = Path(path) if path is not None else official_tokenizer_dir() / "generation_config.json"
    g = read_json(path, "Qwen's generation_config.json holds the recommended chat settings")
    eos = g.get("eos_token_id", QWEN_STOP_IDS)
    return {
        "temperature": float(g.get("temperature", 1.0)) if g.get("do_sample") else 0.0,
        "top_k": g.get("top_k"),
        "top_p": g.get("top_p"),
        "repetition_penalty": float(g.get("repetition_penalty", 1.0)),
        "stop_ids": tuple(eos) if isinstance(eos, list) else (eos,),
    }


# ---------------------------------------------------------------------------- one step of sampling
def candidate_logits(logits: torch.Tensor, seen: torch.Tensor | None = None, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, repetition_penalty: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Next-token logits (b, vocab) -> (values, ids): the logits sampling draws from (removed ones at -inf)
    and their token ids; ids is None when no top-k / top-p applies (values are then the whole vocabulary).

    Top-k keeps the k best as a (b, k) tensor rather than masking 151,936 entries, so top-p then
    sorts k values, not the vocabulary, and the draw is over k probabilities (~50x less work per step).
    seen: bool (b, vocab), the tokens the repetition penalty applies to.

    >>> candidate_logits(torch.tensor([[2.0, 1.0, -1.0, 0.5]]), top_k=2)
    (tensor([[2., 1.]]), tensor([[0, 1]]))
    """
    logits = logits.float()
    if repetition_penalty != 1.0 and seen is not None:
        penalised = torch.where(logits < 0, logits * repetition_penalty, logits / repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    ids = None
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        logits, ids = torch.topk(logits, top_k, dim=-1)  # (b, k), best first
    if top_p is not None and top_p < 1.0:
        if ids is None:
            logits, ids = torch.sort(logits, dim=-1, descending=True)
        probs = logits.softmax(-1)
        mass_before = probs.cumsum(-1) - probs  # probability of the better candidates
        logits = logits.masked_fill(mass_before >= top_p, float("-inf"))  # the best always stays (mass_before = 0)
    return logits, ids


def process_logits(logits: torch.Tensor, seen: torch.Tensor | None = None, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, repetition_penalty: float = 1.0) -> torch.Tensor:
    """`candidate_logits` spread back over the vocabulary: (b, vocab), removed tokens at -inf (for plots and checks).

    >>> process_logits(torch.tensor([[2.0, 1.0, -1.0, 0.5]]), top_k=2)
    tensor([[2., 1., -inf, -inf]])
    """
    values, ids = candidate_logits(logits, seen, temperature, top_k, top_p, repetition_penalty)
    if ids is None:
        return values
    return torch.full(logits.shape, float("-inf"), device=logits.device).scatter(-1, ids, values)


def pick(values: torch.Tensor, ids: torch.Tensor | None, temperature: float,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """(b, n) candidate logits and their ids (or None: the whole vocabulary) -> (b,) token ids.

    Greedy (argmax) when temperature == 0, else one draw from softmax(values).
    """
    if temperature == 0:
        choice = values.argmax(-1)
    else:
        choice = torch.multinomial(values.softmax(-1), 1, generator=generator)[:, 0]
    return choice if ids is None else ids.gather(-1, choice[:, None])[:, 0]


# ---------------------------------------------------------------------------- the loop
@contextmanager
def last_position_logits(model):
    """Within this block, `model(...)` returns the logits of the last position only: (b, 1, vocab)."""
    handle = model.model.norm.register_forward_hook(lambda module, args, out: out[:, -1:])
    try:
        yield
    finally:
        handle.remove()


def left_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(b, t) ids left-padded with PAD_ID to the longest row, and the padding mask (None when no row is padded).

    >>> left_pad([[5, 6, 7], [8]])
    (tensor([[5, 6, 7],
            [0, 0, 8]]), tensor([[1, 1, 1],
            [0, 0, 1]]))
    """
    t = max(len(r) for r in rows)
    ids = torch.tensor([[PAD_ID] * (t - len(r)) + r for r in rows], dtype=torch.long)
    if all(len(r) == t for r in rows):
        return ids, None
    mask = torch.tensor([[0] * (t - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


@torch.inference_mode()
def generate(model, prompt_ids, max_new_tokens: int = 64, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, repetition_penalty: float = 1.0, stop_ids=QWEN_STOP_IDS,
             seed: int | None = None, generator: torch.Generator | None = None,
             on_text: Callable[[str], None] | None = None, tokenizer=None,
             stop_when: Callable[[list[int]], bool] | None = None):
    """Continue `prompt_ids` (a list of ids, or a list of such lists for a batch); return the new ids.

    Stops at `max_new_tokens` or at a token of `stop_ids` (not returned). Greedy when
    temperature == 0, else sampled (seeded by `seed` or `generator`). `on_text(str)` receives
    the reply as text while it is generated (single prompt; needs `tokenizer`); the pieces
    join to `tokenizer.decode(result)`. `stop_when(ids)` is asked after each new token of a
    row (ids: that row's reply so far): True ends the row, keeping the token (e.g. a closing
    code fence, chapter 12). The model is used as it is given: its format is chosen when it is
    loaded (`qm.load(..., format="auto", batch=...)`), never here.

    >>> cfg = qm.QwenConfig.from_name("tiny", vocab_size=300)
    >>> model = qm.Qwen(cfg).eval()
    >>> len(generate(model, [1, 2, 3], max_new_tokens=5, stop_ids=()))
    5
    >>> [len(r) for r in generate(model, [[1, 2, 3], [4]], max_new_tokens=4, stop_ids=())]
    [4, 4]
    """
    if hasattr(prompt_ids, "tolist"):
        prompt_ids = prompt_ids.tolist()
    batched = len(prompt_ids) > 0 and isinstance(prompt_ids[0], (list, tuple))
    rows = [list(r) for r in prompt_ids] if batched else [list(prompt_ids)]
    cfg = model.config
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("generate needs a non-empty prompt (at least one token per row)")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    longest = max(len(r) for r in rows)
    if longest + max_new_tokens > cfg.max_position_embeddings:
        raise ValueError(f"prompt of {longest} tokens + max_new_tokens {max_new_tokens} = {longest + max_new_tokens} exceeds "
                         f"the model's context length of {cfg.max_position_embeddings} tokens; "
                         "shorten the prompt or lower max_new_tokens")
    bad = next((i for r in rows for i in r if not 0 <= i < cfg.vocab_size), None)
    if bad is not None:
        raise ValueError(f"token id {bad} is outside the model's vocabulary (0..{cfg.vocab_size - 1})")
    if on_text is not None and (batched or tokenizer is None):
        raise ValueError("on_text streams a single prompt and needs tokenizer=")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        top_k = top_p = None  # greedy: the best token survives any filtering, so skip it (as transformers does)
    weight = model.model.embed_tokens.weight
    if generator is None and seed is not None:
        generator = torch.Generator(weight.device).manual_seed(seed)

    b = len(rows)
    ids, mask = left_pad(rows)  # (b, t), (b, t) or None
    ids = ids.to(weight.device)
    cache = KVCache(cfg, b, longest + max_new_tokens, dtype=weight.dtype, device=weight.device)
    if mask is not None:  # grows by one column of ones per step: new tokens are real for every row
        mask = torch.cat([mask, mask.new_ones(b, max_new_tokens)], dim=1).to(weight.device)
    seen = None
    if repetition_penalty != 1.0:
        seen = torch.zeros(b, cfg.vocab_size, dtype=torch.bool, device=weight.device)
        for row, prompt in enumerate(rows):
            seen[row, prompt] = True
    stream = None
    if on_text is not None:
        stream = StreamingDecoder(tokenizer)
    stop = set(stop_ids)
    out: list[list[int]] = [[] for _ in range(b)]
    active = list(range(b))  # the rows still generating, in batch order: batch row i is prompt active[i]
    step_ids = ids
    with last_position_logits(model):
        for _ in range(max_new_tokens):
            step_mask = None if mask is None else mask[:, :cache.length + step_ids.shape[1]]
            logits = model(step_ids, attention_mask=step_mask, cache=cache)[:, -1]  # (active, vocab)
            values, candidates = candidate_logits(logits, seen, temperature, top_k, top_p, repetition_penalty)
            next_ids = pick(values, candidates, temperature, generator)  # (active,)
            keep = []  # batch rows that go on
            for i, (row, token) in enumerate(zip(active, next_ids.tolist())):
                if token in stop:
                    continue
                out[row].append(token)
                if stop_when is None or not stop_when(out[row]):
                    keep.append(i)
                if stream is not None and (text := stream.push(token)):
                    on_text(text)
            if not keep:
                break
            if seen is not None:
                seen[torch.arange(len(active)), next_ids] = True
            if len(keep) < len(active):  # drop the finished rows from the batch
                index = torch.tensor(keep, device=next_ids.device)
                cache.keep_rows(index)
                next_ids = next_ids[index]
                mask = None if mask is None else mask[index]
                seen = None if seen is None else seen[index]
                active = [active[i] for i in keep]
            step_ids = next_ids[:, None]  # (active, 1)
    if stream is not None and (text := stream.flush()):
        on_text(text)
    return out if batched else out[0]
