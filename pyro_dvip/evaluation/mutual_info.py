"""Table 2: mutual information between factors across one time step, in bits.

KSG estimator (Kraskov, Stoegbauer & Grassberger 2004, algorithm 1) with k = 3 neighbours
and the max-norm, from ``infomeasure``, on whole factor vectors:

- same  = mean over factors i of I(z_t^i ; z_{t+1}^i): how much a factor predicts itself;
- cross = mean over ordered pairs i != j of I(z_t^i ; z_{t+1}^j): how much it predicts others.

A factored model that works has same >> cross. The estimate is computed on ``pairs``
(z_t, z_{t+1}) pairs of posterior samples (the authors used 1,000, which biases KSG badly in
20+ dimensions). The interval is a percentile bootstrap over pairs of the KSG local values
(neighbour counts held fixed): it shows the sampling noise of the average, not KSG's bias.

An entangled model has no factors. ``best_partition`` follows the paper: split its units at
random into groups of ``group_size`` 20 times and keep the split with the largest
same - cross, chosen on a subsample of the pairs and then estimated on all of them.
"""

from __future__ import annotations

import numpy as np

MIN_PAIRS = 3  # KSG finds k = 3 neighbours of each pair: it needs more pairs than that


def contiguous_groups(dim: int, group_size: int) -> list[np.ndarray]:
    """Units [0, g), [g, 2g), ...: the factors of a model with factor size ``group_size``.

    Raises ``ValueError`` when ``group_size`` does not divide ``dim`` (the authors' code
    silently returned zeros there).
    """
    if group_size < 1 or dim % group_size:
        raise ValueError(f"group_size: {group_size} does not divide z_dim {dim}")
    return [np.arange(k, k + group_size) for k in range(0, dim, group_size)]


def random_partition(dim: int, group_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random split of ``dim`` units into groups of ``group_size`` (sorted within a group)."""
    order = rng.permutation(dim)
    return [np.sort(order[g]) for g in contiguous_groups(dim, group_size)]


def ksg(x: np.ndarray, y: np.ndarray, k: int = 3) -> tuple[float, np.ndarray]:
    """KSG estimate of I(x; y) in bits and its local values (n,); x (n, dx), y (n, dy)."""
    import infomeasure

    estimator = infomeasure.estimator(
        np.ascontiguousarray(x, dtype=np.float64),
        np.ascontiguousarray(y, dtype=np.float64),
        measure="mi",
        approach="ksg",
        k=k,
        minkowski_p=np.inf,
        base=2,
    )
    return float(estimator.result()), np.asarray(estimator.local_vals())


def factor_mi(
    z_t: np.ndarray,
    z_next: np.ndarray,
    groups: list[np.ndarray],
    k: int = 3,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict:
    """Same- and cross-factor MI (bits) between z_t and z_{t+1} (each (n, D)) for unit
    ``groups``; ``matrix[i][j]`` = I(z_t^i ; z_{t+1}^j). See the module docstring."""
    K, n = len(groups), len(z_t)
    matrix = np.zeros((K, K))
    local = np.zeros((K, K, n))
    for i, gi in enumerate(groups):
        for j, gj in enumerate(groups):
            matrix[i, j], local[i, j] = ksg(z_t[:, gi], z_next[:, gj], k)
    off = ~np.eye(K, dtype=bool)
    result = {
        "pairs": n,
        "k": k,
        "groups": K,
        "group_size": len(groups[0]),
        "same": float(np.diag(matrix).mean()),
        "cross": float(matrix[off].mean()) if K > 1 else float("nan"),
        "matrix": matrix.tolist(),
    }
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        same_b, cross_b = np.zeros(bootstrap), np.zeros(bootstrap)
        for b in range(bootstrap):
            means = local[:, :, rng.integers(0, n, n)].mean(-1)  # (K, K)
            same_b[b] = np.diag(means).mean()
            cross_b[b] = means[off].mean() if K > 1 else np.nan
        result["same_interval"] = np.percentile(same_b, [2.5, 97.5]).tolist()
        result["cross_interval"] = np.percentile(cross_b, [2.5, 97.5]).tolist()
        result["bootstrap"] = bootstrap
    return result


def best_partition(
    z_t: np.ndarray,
    z_next: np.ndarray,
    group_size: int,
    partitions: int = 20,
    select_pairs: int = 1000,
    k: int = 3,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[float]]:
    """The paper's protocol for an entangled model: of ``partitions`` random splits into
    groups of ``group_size``, the one with the largest same - cross MI on ``select_pairs``
    random pairs. Returns that split and every split's same - cross."""
    rng = np.random.default_rng(seed)
    dim = z_t.shape[1]
    subset = rng.permutation(len(z_t))[:select_pairs]
    candidates = [random_partition(dim, group_size, rng) for _ in range(partitions)]
    scores = []
    for groups in candidates:
        mi = factor_mi(z_t[subset], z_next[subset], groups, k, bootstrap=0)
        scores.append(mi["same"] - mi["cross"])
    return candidates[int(np.argmax(scores))], scores
