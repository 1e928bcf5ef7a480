"""The fit: power laws recovered from synthetic optima, the quadratic optimum of a synthetic loss surface, edges."""

import math

import numpy as np
import pytest

from qwen_min.scaling import fit
from qwen_min.scaling.sweep import BATCHES, LRS, SEQ_LEN


def bowl(lr0: float, b0: float, floor: float = 3.0, n: int = 1000, flops: float = 1e12) -> list[dict]:
    """Grid results of one size whose loss is an exact quadratic bowl in (log lr, log batch) around (lr0, b0)."""
    return [{"lr": lr, "batch_tokens": b * SEQ_LEN, "index": 0, "size": f"n{n}", "non_embedding_params": n, "flops": flops,
             "val_loss": floor + math.log(lr / lr0) ** 2 + 0.5 * math.log(b * SEQ_LEN / b0) ** 2}
            for lr in LRS for b in BATCHES]


def test_power_law_recovered_in_log_space():
    x = np.array([1e4, 3e4, 1e5, 3e5, 1e6])
    law = fit.fit_power_law(x, 0.5 * x ** -0.3)
    assert law["exponent"] == pytest.approx(-0.3) and law["coef"] == pytest.approx(0.5) and law["r2"] == pytest.approx(1)
    noisy = 0.5 * x ** -0.3 * np.exp(np.random.default_rng(0).normal(0, 0.05, len(x)))
    assert fit.fit_power_law(x, noisy)["exponent"] == pytest.approx(-0.3, abs=0.05)
    assert fit.predict(law, 1e8) == pytest.approx(0.5 * 1e8 ** -0.3)


def test_power_law_needs_two_different_x():
    with pytest.raises(ValueError, match="at least two different x"):
        fit.fit_power_law([1e4, 1e4], [0.1, 0.2])


def test_optimum_of_a_bowl_is_found_between_grid_points():
    opt = fit.optimum(bowl(lr0=7e-3, b0=300))
    assert opt["method"] == "quadratic" and not opt["edge"]
    assert opt["lr"] == pytest.approx(7e-3, rel=1e-6) and opt["batch_tokens"] == pytest.approx(300, rel=1e-6)
    assert opt["loss"] == pytest.approx(3.0)
    assert opt["grid_best"]["lr"] in LRS  # the grid's own best is reported next to it


def test_optimum_beyond_the_grid_falls_back_to_the_grid_edge():
    opt = fit.optimum(bowl(lr0=1.0, b0=300))  # far above the largest lr of the grid
    assert opt["method"] == "grid" and opt["edge"] and opt["lr"] == max(LRS)


def test_laws_recover_known_exponents_from_synthetic_sweeps():
    sizes = {"a": 1e4, "b": 4e4, "c": 1.6e5, "d": 6.4e5}
    results = []
    for name, n in sizes.items():
        for r in bowl(lr0=0.3 * n ** -0.25, b0=40 * n ** 0.2, n=int(n), flops=6 * n * 2**18):
            results.append(r | {"size": name})
    laws = fit.fit_laws(results, tuple(sizes))
    assert laws["laws"]["lr_vs_N"]["exponent"] == pytest.approx(-0.25, abs=1e-6)
    assert laws["laws"]["batch_tokens_vs_N"]["exponent"] == pytest.approx(0.2, abs=1e-6)
    assert laws["laws"]["lr_vs_C"]["exponent"] == pytest.approx(-0.25, abs=1e-6)  # C proportional to N here


def test_laws_need_two_sizes():
    with pytest.raises(ValueError, match="at least two sizes"):
        fit.fit_laws(bowl(5e-3, 1000), ("n1000", "other"))
    with pytest.raises(ValueError, match="no results"):
        fit.optimum([])
