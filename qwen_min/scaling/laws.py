"""The sweep's laws: fit the optima of the fitted sizes, predict the held-out size's, verify with runs, compare.

    summary = fit_and_verify("runs/sweep")     # runs/sweep/fit.json; trains the verification runs it needs
    print(summary_markdown(summary))

Design choices
- Verification is a run, not a claim: the held-out size (sweep.HELD_OUT) is trained at the fitted law's
  predicted lr and batch, and at DeepSeek LLM's (arXiv 2401.02954), and both losses are set against the best
  point of its own grid. Its best grid point is re-run with two more seeds, so "as good as the grid's best"
  means within the seed-to-seed spread measured here, not within an arbitrary margin.
- The prediction uses the law in C (FLOPs) for both hyper-parameters, the axis DeepSeek fits; the laws in N
  are reported too. A predicted batch is rounded to a whole number of 64-token windows.
- Every number the chapter quotes is in fit.json, which the notebook reads; nothing is re-derived by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qwen_min.scaling import sweep
from qwen_min.scaling.fit import DEEPSEEK, fit_laws, optima_by_size, predict
from qwen_min.train.flops import flops_per_token

NOISE_SEEDS = (1, 2)


def fit_and_verify(folder: str | Path, verify: bool = True, log=print) -> dict:
    """Fit the laws on sweep.FIT_SIZES; with `verify`, train the held-out size at the predicted settings."""
    folder = Path(folder)
    results = sweep.read_results(folder)
    if not results:
        raise ValueError(f"{folder}: no finished points (points/*/{sweep.RESULT}); run `qwen-min sweep --out {folder}` "
                         "or merge some with --merge")
    summary = fit_laws(results, sweep.FIT_SIZES)
    optima = optima_by_size(results)
    held = optima.get(sweep.HELD_OUT)
    c_held = held["C"] if held else float(np.mean([r["flops"] for r in results if r["size"] == sweep.HELD_OUT] or [0]))
    laws = summary["laws"]
    if held is None:  # the held-out grid is not there: its compute is known from its config all the same
        cfg = sweep.model_config(sweep.HELD_OUT)
        c_held = float(flops_per_token(cfg, sweep.SEQ_LEN) * sweep.TOKENS)
    predictions = {
        "fit": {"lr": predict(laws["lr_vs_C"], c_held), "batch_tokens": predict(laws["batch_tokens_vs_C"], c_held)},
        "deepseek": {"lr": predict(DEEPSEEK["lr"], c_held), "batch_tokens": predict(DEEPSEEK["batch_tokens"], c_held)},
    }
    summary |= {"held_out": sweep.HELD_OUT, "held_out_C": c_held, "predictions": predictions,
                "deepseek": DEEPSEEK, "n_results": len(results)}
    if verify:
        p = next(p for p in sweep.points() if p.size == sweep.HELD_OUT)
        runs = {}
        for who, pred in predictions.items():
            batch = max(1, round(pred["batch_tokens"] / sweep.SEQ_LEN))
            name = f"verify-{sweep.HELD_OUT}-{who}"
            runs[who] = sweep.run_point(p, folder, lr=pred["lr"], batch=batch, name=name, log=lambda *a, **k: None)
            log(f"{name}: lr {pred['lr']:.4g}, batch {batch} x {sweep.SEQ_LEN} tokens -> val loss {runs[who]['val_loss']:.4f}")
        if held is not None:
            best = held["grid_best"]
            q = next(p for p in sweep.points() if p.size == sweep.HELD_OUT and p.lr == best["lr"]
                     and p.batch * sweep.SEQ_LEN == best["batch_tokens"])
            noise = [best["loss"]] + [sweep.run_point(q, folder, name=f"{q.name}-seed{s}", seed=s,
                                                      log=lambda *a, **k: None)["val_loss"] for s in NOISE_SEEDS]
            summary["verification"] = {
                "grid_best": best, "seed_losses": noise, "seed_std": float(np.std(noise, ddof=1)),
                "runs": {who: {"lr": r["lr"], "batch_tokens": r["batch_tokens"], "val_loss": r["val_loss"],
                               "gap_to_grid_best": r["val_loss"] - best["loss"]} for who, r in runs.items()}}
    (folder / "fit.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def summary_markdown(summary: dict) -> str:
    """Tables of the optima per size, the laws next to DeepSeek's, and the verification."""
    lines = ["| size | N (non-embedding) | C (FLOPs) | best grid lr | best grid batch (tokens) | loss | "
             "fitted lr | fitted batch | method |", "|---|---|---|---|---|---|---|---|---|"]
    for s, o in summary["optima"].items():
        g = o["grid_best"]
        lines.append(f"| {s}{' (held out)' if s == summary['held_out'] else ''} | {o['N']:,} | {o['C']:.2e} | {g['lr']:g} | "
                     f"{g['batch_tokens']:,} | {g['loss']:.4f} | {o['lr']:.4g} | {o['batch_tokens']:,.0f} | "
                     f"{o['method']}{', edge' if o['edge'] else ''} |")
    laws, ds = summary["laws"], summary["deepseek"]
    lines += ["", "| law (fitted on " + ", ".join(summary["sizes"]) + ") | coefficient | exponent | r2 | DeepSeek LLM |",
              "|---|---|---|---|---|"]
    for key, law in laws.items():
        what, axis = key.split("_vs_")
        ref = ds[what] if axis == "C" else None
        lines.append(f"| {what} vs {axis} | {law['coef']:.4g} | {law['exponent']:+.3f} | {law['r2']:.2f} | "
                     + (f"{ref['coef']} C^{ref['exponent']:+.4f}" if ref else "-") + " |")
    v = summary.get("verification")
    if v:
        lines += ["", f"Held-out size {summary['held_out']} (C = {summary['held_out_C']:.2e}): grid best loss "
                      f"{v['grid_best']['loss']:.4f} (lr {v['grid_best']['lr']:g}, "
                      f"batch {v['grid_best']['batch_tokens']} tokens); "
                      f"seed-to-seed std of that point {v['seed_std']:.4f} ({len(v['seed_losses'])} seeds).", "",
                  "| settings from | lr | batch (tokens) | val loss | minus grid best |", "|---|---|---|---|---|"]
        for who, r in v["runs"].items():
            lines.append(f"| {who} | {r['lr']:.4g} | {r['batch_tokens']} | {r['val_loss']:.4f} | {r['gap_to_grid_best']:+.4f} |")
    return "\n".join(lines) + "\n"
