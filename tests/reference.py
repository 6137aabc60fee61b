"""Float64 NumPy brute force of every metric: C×C matrices, direct differences, no tricks.

Slow and memory-hungry on purpose: it is the definition (DESIGN §3) written out.
"""

from __future__ import annotations

import numpy as np


def brute_force(
    counts, means, m2, weight=None, min_count=1, k=2.0, centre="unweighted", variance="biased"
):
    counts, means, m2 = np.asarray(counts), np.asarray(means, float), np.asarray(m2, float)
    kept = np.nonzero(counts >= max(min_count, 1))[0]
    mu, n = means[kept], counts[kept].astype(float)
    sigma2 = m2[kept] / (np.maximum(n - 1, 1) if variance == "unbiased" else n)
    mbar = mu.mean(0) if centre == "unweighted" else (mu * n[:, None]).sum(0) / n.sum()
    z = mu - mbar
    norm = np.linalg.norm(z, axis=1)
    u = z / norm[:, None]
    c = len(kept)
    off = ~np.eye(c, dtype=bool)
    iu = np.triu_indices(c, 1)

    dist = np.linalg.norm(mu[:, None, :] - mu[None, :, :], axis=2)  # direct differences
    with np.errstate(divide="ignore", invalid="ignore"):
        cdnv = (sigma2[:, None] + sigma2[None, :]) / (2 * dist ** (2 + k))
        logk = -np.log(np.linalg.norm(u[:, None, :] - u[None, :, :], axis=2))
    cos = u @ u.T
    ok_c, ok_k = off & (dist > 0), off & np.isfinite(logk)
    pair_c, pair_k = ok_c[iu], ok_k[iu]

    out = {
        "n_classes": c,
        "nc1_cdnv": cdnv[iu][pair_c].mean(),
        "n_degenerate_pairs": int((~pair_c).sum()),
        "nc2_norm_mean": np.log(norm).mean(),
        "nc2_norm_std": np.log(norm).std(),
        "nc2_equinorm_cov": np.log(norm).std() / np.log(norm).mean(),
        "nc2_interference_mean": cos[iu].mean(),
        "nc2_interference_std": cos[iu].std(),
        "nc2_equiangular_cov": cos[iu].std() / cos[iu].mean(),
        "gnc2_logkernel_mean": logk[iu][pair_k].mean(),
        "gnc2_logkernel_std": logk[iu][pair_k].std(),
        "gnc2_uniformity_cov": logk[iu][pair_k].std() / logk[iu][pair_k].mean(),
    }
    etf = (np.eye(c) - np.ones((c, c)) / c) / np.sqrt(c - 1)
    gram = z @ z.T
    out["nc2_etf_error"] = np.linalg.norm(gram / np.linalg.norm(gram) - etf)
    rows = {
        "cdnv_mean": np.where(ok_c, cdnv, 0).sum(1) / ok_c.sum(1),
        "interference_mean": np.where(off, cos, 0).sum(1) / (c - 1),
        "logkernel_mean": np.where(ok_k, logk, 0).sum(1) / ok_k.sum(1),
        "log_norm": np.log(norm),
        "sigma2": sigma2,
    }
    if weight is not None:
        w = np.asarray(weight, float)[kept]
        wu = w / np.linalg.norm(w, axis=1, keepdims=True)
        dual = (wu * u).sum(1)
        dot = (w * z).sum(1)
        wz = w @ z.T
        out.update(
            {
                "nc3_duality_mean": dual.mean(),
                "nc3_duality_std": dual.std(),
                "unc3_duality_cov": dual.std() / dual.mean(),
                "nc3_distance_mean": np.linalg.norm(wu - u, axis=1).mean(),
                "nc3_dot_mean": dot.mean(),
                "nc3_dot_std": dot.std(),
                "nc3_papyan_error": np.linalg.norm(w / np.linalg.norm(w) - z / np.linalg.norm(z)),
                "nc3_zhu_error": np.linalg.norm(wz / np.linalg.norm(wz) - etf),
            }
        )
        rows.update(duality_cos=dual, dot=dot)
    return out, rows, kept


def covariance_reference(h, y, kept, z):
    """Papyan's tr(Σ_W Σ_B⁺)/C and tr(Σ_W)/tr(Σ_B) from raw samples."""
    h, y = np.asarray(h, float), np.asarray(y)
    mu = np.zeros((y.max() + 1, h.shape[1]))
    np.add.at(mu, y, h)
    mu /= np.maximum(np.bincount(y), 1)[:, None]
    dev = h - mu[y]
    sigma_w = dev.T @ dev / len(y)
    sigma_b = z.T @ z / len(kept)
    return (
        np.trace(sigma_w @ np.linalg.pinv(sigma_b)) / len(kept),
        np.trace(sigma_w) / np.trace(sigma_b),
    )


def simplex_etf(c: int, d: int, scale: float = 1.0, seed: int = 0, offset: float = 0.0):
    """C class means forming a simplex ETF in R^d (d ≥ C − 1), randomly rotated and
    shifted by a random vector of norm ``offset`` (the centre is then not the origin)."""
    rng = np.random.default_rng(seed)
    m = np.eye(c) - np.ones((c, c)) / c  # (C, C), rows sum to 0, rank C−1
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    basis = np.linalg.svd(m)[2][: c - 1]  # (C−1, C) orthonormal row space
    coords = m @ basis.T  # (C, C−1)
    shift = rng.standard_normal(d)
    return scale * coords @ q[: c - 1] + offset * shift / np.linalg.norm(shift)  # (C, d)
