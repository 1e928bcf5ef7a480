"""Power laws of the optimal learning rate and batch size, fitted in log space to a sweep's results.

    opt = optimum(results_of_one_size)     # {"lr": 0.011, "batch_tokens": 930, "loss": 4.12, "method": "quadratic", ...}
    law = fit_power_law(x=[1e4, 1e5, 1e6], y=[0.03, 0.018, 0.011])   # {"coef": ..., "exponent": -0.22, "r2": ...}
    predict(law, 3e6)                      # coef * 3e6 ** exponent
    laws = fit_laws(results)               # lr and batch vs N (non-embedding parameters) and vs C (FLOPs)

Design choices
- The optimum of one size: a quadratic surface in (log lr, log batch) fitted by least squares to all of
  its grid points (6 coefficients, 20 points), minimised in closed form. The grid's best point alone moves in
  factors of 2; the surface interpolates between them. When the surface is not a bowl (its Hessian is not
  positive definite) or its minimum falls more than half a grid step outside the grid, the grid's best point
  is used and `method` says "grid" (and `edge` whether it sits on the border: the true optimum may be beyond).
- A power law y = a x^b is a straight line in log-log axes: log y = log a + b log x, fitted by least squares
  on the logs (np.polyfit, degree 1). Fitting a x^b directly in linear space weighs the largest y most and,
  with optima spread over decades, is dominated by one point: that is the chapter's debug exercise.
- DeepSeek LLM's laws (arXiv 2401.02954 §3.1) are kept here as DEEPSEEK for comparison; C in FLOPs, B in tokens.
"""

from __future__ import annotations

import math

import numpy as np

DEEPSEEK = {"lr": {"coef": 0.3118, "exponent": -0.1250}, "batch_tokens": {"coef": 0.2920, "exponent": 0.3271}}


def optimum(results: list[dict]) -> dict:
    """The optimal lr and batch (tokens) of one size's grid results (each with lr, batch_tokens, val_loss)."""
    if not results:
        raise ValueError("no results to find an optimum in")
    x = np.log([r["lr"] for r in results])
    y = np.log([r["batch_tokens"] for r in results])
    loss = np.array([r["val_loss"] for r in results])
    best = int(np.argmin(loss))
    grid = {"lr": results[best]["lr"], "batch_tokens": results[best]["batch_tokens"], "loss": float(loss[best])}
    on_edge = bool(x[best] in (x.min(), x.max()) or (len(set(y)) > 1 and y[best] in (y.min(), y.max())))
    out = {**grid, "method": "grid", "edge": on_edge, "grid_best": grid}
    if len(set(x)) < 3 or len(set(y)) < 3:
        return out
    design = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)  # (n, 6)
    c, *_ = np.linalg.lstsq(design, loss, rcond=None)
    hessian = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
    if np.all(np.linalg.eigvalsh(hessian) > 0):
        xs, ys = np.linalg.solve(hessian, -c[1:3])
        half_step_x = (x.max() - x.min()) / (len(set(x)) - 1) / 2
        half_step_y = (y.max() - y.min()) / (len(set(y)) - 1) / 2
        if x.min() - half_step_x <= xs <= x.max() + half_step_x and y.min() - half_step_y <= ys <= y.max() + half_step_y:
            predicted = float(c @ np.array([1, xs, ys, xs * xs, ys * ys, xs * ys]))
            out |= {"lr": float(math.exp(xs)), "batch_tokens": float(math.exp(ys)), "loss": predicted,
                    "method": "quadratic"}
    return out


def fit_power_law(x, y) -> dict:
    """y = coef * x ** exponent, fitted as a line in log-log space; r2 of that line."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if len(lx) < 2 or np.ptp(lx) == 0:
        raise ValueError(f"a power law needs at least two different x, got {list(x)}")
    exponent, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (intercept + exponent * lx)
    r2 = 1 - residual.var() / ly.var() if ly.var() > 0 else 1.0
    return {"coef": float(math.exp(intercept)), "exponent": float(exponent), "r2": float(r2)}


def predict(law: dict, x: float) -> float:
    return law["coef"] * x ** law["exponent"]


def optima_by_size(results: list[dict]) -> dict[str, dict]:
    """size -> optimum (with the size's N and C: non_embedding_params and the FLOPs of its points)."""
    sizes: dict[str, list[dict]] = {}
    for r in results:
        if r.get("index") is not None:  # grid points only (verification runs have no index)
            sizes.setdefault(r["size"], []).append(r)
    return {s: optimum(rs) | {"N": rs[0]["non_embedding_params"], "C": float(np.mean([r["flops"] for r in rs])),
                              "points": len(rs)} for s, rs in sorted(sizes.items())}


def fit_laws(results: list[dict], sizes: tuple[str, ...]) -> dict:
    """Power laws of the optimal lr and batch (tokens) against N and against C, fitted on `sizes`' optima."""
    optima = optima_by_size(results)
    missing = [s for s in sizes if s not in optima]
    if len(sizes) - len(missing) < 2:
        raise ValueError(f"the fit needs the grid of at least two sizes; missing {', '.join(missing)}")
    used = [optima[s] for s in sizes if s in optima]
    laws = {f"{what}_vs_{axis}": fit_power_law([o[axis] for o in used], [o[what] for o in used])
            for what in ("lr", "batch_tokens") for axis in ("N", "C")}
    return {"sizes": [s for s in sizes if s in optima], "missing": missing, "optima": optima, "laws": laws}
