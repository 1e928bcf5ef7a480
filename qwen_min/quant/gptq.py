"""GPTQ (Frantar et al. 2022, arXiv 2210.17323): int4 codes chosen column by column, each rounding error
pushed onto the columns not yet quantised, so that the layer's *output* on real inputs changes least.

    ids = calibration_ids(tok)                         # training documents of data/corpora, never the held-out ones
    qm.quantize(model, "int4", calibration=ids)        # GPTQ instead of round-to-nearest, same kernel and format

Design choices
- Round-to-nearest (groups.py) minimises the error of each weight on its own. What matters is
  the output x @ W.T on the inputs the layer really sees: with H = X^T X over calibration
  inputs X (tokens, in), the output error of a weight error row e is e H e^T. GPTQ quantises
  the columns of W in order and, after rounding column i, adds to the columns j > i the
  correction that best cancels that column's error given H (the optimal-brain-surgeon update,
  read off the Cholesky factor of H^-1). Codes, scales and zeros end up in exactly the format
  of round-to-nearest int4 (w = (q - 8) * scale + zero per group of 128, bf16 scale and zero),
  so the kernel and `QuantLinear` are unchanged: only *which* codes are chosen differs.
- Groups: with `act_order` (the default in `gptq_quantize_layers`) the columns with the largest
  H_ii, the most used inputs, go first while the most columns remain to absorb their errors,
  and every group's scale and zero are fixed up front from the uncorrected weights ("static
  groups"), so groups stay contiguous for the kernel. Without it, columns go in order and a
  group's grid is chosen when GPTQ reaches it, from the weights as corrected so far.
- Damping: H + damp * mean(diag H) * I. The paper's 0.01 overfits a CPU-sized calibration set:
  8,192 tokens barely give a 4864-input down_proj a full-rank H. Chapter 7, layer 3's down_proj:
  0.01 with columns in order cuts the output error on the calibration text to 0.29x
  round-to-nearest's but raises it to 1.26x on held-out Python; 0.1 with act_order gives 0.24x
  and 0.83x (0.77x on held-out Shakespeare). Hence the defaults of `gptq_quantize_layers`.
- Layers reading the same input (q/k/v; gate/up) share one H, so their rows are stacked and go
  through GPTQ together: the same result as one by one, a third of the column steps.
- Sequential, layer by layer: the calibration activations are pushed through the *already
  quantised* decoder layers, so layer l's H describes the inputs it will see after
  quantisation (the reference implementation's order). The calibration batch lives in memory
  as (sequences, tokens, hidden) float32: 8,192 tokens of the 0.5B are 29 MB.
- Only the decoder layers' linear layers use GPTQ; the LM head keeps round-to-nearest int8
  (quantize.py), where it is within 0.2% of bf16 perplexity already.
- Cost on 2 CPU cores, 0.5B, 8,192 calibration tokens: about 3.5 minutes, mostly the 7,552
  column steps per layer (a Python loop, as in the reference implementation).

>>> w = torch.tensor([[1.0, -2.0, 0.5, 3.0]]); x = torch.randn(64, 4)
>>> q, scale, minimum = gptq_int4(w, x.T @ x, group_size=4)
>>> q.shape, scale.shape, bool(((q.float() * scale + minimum) - w).abs().max() < scale.max())
(torch.Size([1, 4]), torch.Size([1, 1]), True)
"""

from __future__ import annotations

import torch
from torch import nn

from qwen_min.model.attention import attention_mask_for
from qwen_min.model.dual_chunk import DualChunkPass
from qwen_min.progress import progress_bar
from qwen_min.quant.groups import INT4_LEVELS
from qwen_min.quant.linear import QuantLinear, int4_grid


def gptq_int4(weight: torch.Tensor, hessian: torch.Tensor, group_size: int = 128, damp: float = 0.01,
              act_order: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, in) weight and its (in, in) H = X^T X -> int4 (q uint8 (out, in), scale, minimum (out, in / g)), float32,
    on the kernel's grid (bf16 scale and zero, as `int4_grid`): w ~ q * scale + minimum.

    act_order: quantise the columns with the largest H_ii (the most used inputs) first, while the most
    columns remain to absorb their errors; each group's grid is then fixed up front from the uncorrected
    weights ("static groups"), so groups stay contiguous for the kernel.
    """
    out_features, in_features = weight.shape
    if in_features % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {in_features} input features")
    if hessian.shape != (in_features, in_features):
        raise ValueError(f"hessian has shape {tuple(hessian.shape)}, expected {(in_features, in_features)}")
    w = weight.detach().float().clone()  # (out, in), corrected as the columns before are quantised
    h = hessian.detach().float().clone()
    dead = torch.diag(h) == 0  # inputs that are never non-zero: their weights do not matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    n_groups = in_features // group_size
    scale = torch.zeros(out_features, n_groups)
    zero = torch.zeros(out_features, n_groups)  # the kernel's zero point: w = (q - 8) * scale + zero
    if act_order:
        _, scale, minimum = int4_grid(w, group_size)  # static groups, from the uncorrected weights
        zero = minimum + 8 * scale
        order = torch.argsort(torch.diag(h), descending=True)
    else:
        order = torch.arange(in_features)
    w, h = w[:, order], h[order][:, order]  # columns in the order they are quantised
    group_of = order // group_size  # (in,): the group of each column, in that order
    h += damp * torch.diag(h).mean() * torch.eye(in_features)
    h_inv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)  # (in, in), upper

    q = torch.zeros(out_features, in_features, dtype=torch.uint8)  # in quantisation order
    for lo in range(0, in_features, group_size):
        hi = lo + group_size
        block = w[:, lo:hi].clone()  # (out, g)
        if not act_order:  # this group's grid, from the weights as corrected so far
            _, s, minimum = int4_grid(block, group_size)
            scale[:, lo // group_size], zero[:, lo // group_size] = s[:, 0], minimum[:, 0] + 8 * s[:, 0]
        errors = torch.zeros_like(block)  # (out, g): each column's rounding error / its H^-1 pivot
        block_inv = h_inv[lo:hi, lo:hi]  # (g, g)
        for i in range(group_size):
            s, z = scale[:, group_of[lo + i]], zero[:, group_of[lo + i]]  # (out,)
            col = block[:, i]
            code = torch.round((col - z) / s + 8).clamp(0, INT4_LEVELS)
            err = (col - ((code - 8) * s + z)) / block_inv[i, i]
            block[:, i:] -= err[:, None] * block_inv[i, i:][None, :]  # spread this column's error over the block
            errors[:, i] = err
            q[:, lo + i] = code.to(torch.uint8)
        w[:, hi:] -= errors @ h_inv[lo:hi, hi:]  # ... and over the columns not yet quantised
    codes = torch.empty_like(q)
    codes[:, order] = q  # back to the input order
    return codes, scale, zero - 8 * scale


def _decoder_linears(layer: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


@torch.no_grad()
def gptq_quantize_layers(model: nn.Module, calibration: torch.Tensor, group_size: int = 128, damp: float = 0.1,
                         act_order: bool = True, batch_size: int = 4, progress: bool = True) -> None:
    """Replace every nn.Linear of the decoder layers by an int4 `QuantLinear` chosen by GPTQ, layer by layer, in place.

    calibration: (sequences, tokens) ids. The LM head and embeddings are left alone (quantize.py handles them).
    """
    calibration = torch.as_tensor(calibration, dtype=torch.long)
    if calibration.dim() != 2 or calibration.shape[1] < 2:
        raise ValueError(f"calibration must be (sequences, tokens) ids, got shape {tuple(calibration.shape)}")
    inner = model.model
    device = inner.embed_tokens.weight.device
    x = inner.embed_tokens(calibration.to(device)).float()  # (n, t, hidden)
    t = calibration.shape[1]
    positions = torch.arange(t, device=device)[None]  # (1, t)
    cos = sin = mask = dca = None
    if dca_config := model.config.dual_chunk_attention_config:  # the layers see what the model's forward gives them
        dca = DualChunkPass.build(dca_config, inner.rotary_emb, positions, t, x.dtype)
    else:
        cos, sin = inner.rotary_emb(positions, x.dtype)  # (1, t, head_dim)
        mask = attention_mask_for(t, 0, None, device)  # (1, 1, t, t): causal, no padding

    def run(layer):  # the layer on every calibration sequence, a few at a time
        return torch.cat([layer(xb, cos, sin, mask, None, dca)[0] for xb in x.split(batch_size)])

    for layer in progress_bar(inner.layers, desc="GPTQ", unit="layer", enabled=progress):
        linears = _decoder_linears(layer)
        inputs: dict[str, torch.Tensor] = {}  # each linear layer's input on the current batch

        def capture(name):
            def hook(module, args, output):
                inputs[name] = args[0]
            return hook

        handles = [m.register_forward_hook(capture(name)) for name, m in linears.items()]
        hessians: dict[str, torch.Tensor] = {}  # keyed by the first linear layer reading each distinct input
        shared: dict[str, list[str]] = {}  # that layer -> all linear layers reading the same input (q/k/v; gate/up)
        for xb in x.split(batch_size):
            inputs.clear()
            layer(xb, cos, sin, mask, None, dca)
            if not shared:
                for name, inp in inputs.items():
                    owner = next(n for n, other in inputs.items() if other is inp)
                    shared.setdefault(owner, []).append(name)
            for owner in shared:
                inp = inputs[owner].reshape(-1, inputs[owner].shape[-1]).float()  # (tokens, in)
                hessians[owner] = hessians.get(owner, 0) + inp.T @ inp
        for h in handles:
            h.remove()
        for owner, names in shared.items():  # one GPTQ per input: the rows of q, k, v (or gate, up) stacked
            weights = [linears[n].weight.detach().cpu() for n in names]
            q, scale, minimum = gptq_int4(torch.cat(weights), hessians[owner].cpu(), group_size, damp, act_order)
            rows = 0
            for n, w in zip(names, weights):
                grid = q[rows:rows + len(w)], scale[rows:rows + len(w)], minimum[rows:rows + len(w)]
                _set_module(layer, n, QuantLinear.from_linear(linears[n], "int4", group_size, grid=grid))
                rows += len(w)
        x = run(layer)  # what the next layer sees: this layer's output after quantisation
