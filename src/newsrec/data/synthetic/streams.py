"""Random streams and the small sampling tools of the synthetic world.

One independent stream per purpose (and per block), so adding or resizing one part of the
story never shifts the draws of another: this is what keeps a world byte-identical for a seed.
"""

from __future__ import annotations

import numpy as np

from newsrec.data.synthetic.config import CODAS, ONSETS, VOWELS

STREAMS = {
    "topics": 1,
    "words": 2,
    "entities": 3,
    "news": 4,
    "users": 5,
    "history": 6,
    "calibration": 7,
    "relations": 8,
    "train": 10,
    "dev": 11,
    "test": 12,
    # the EB-NeRD layout's own draws (newsrec.data.ebnerd.synthetic); the xMIND translation
    "ebnerd-articles": 20,
    "ebnerd-document-vectors": 21,
    "ebnerd-beyond-accuracy": 22,
    "ebnerd-history-times": 23,
    "ebnerd-history-reading": 24,
    "ebnerd-behaviors": 25,
    "xmind-translation": 30,
}


def stream(seed: int, stream: str, *index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, STREAMS[stream], *index]))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def random_units(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return unit(rng.standard_normal((n, d)))


def zipf_cdf(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return np.cumsum(w) / w.sum()


def draw_from_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: indices into `cdf` for uniforms `u` in [0, 1)."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def pseudo_words(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """`n` new pronounceable made-up words (2-3 syllables), none of them in `taken`."""
    out: list[str] = []
    while len(out) < n:
        m = 2 * (n - len(out)) + 16
        syll = rng.integers(2, 4, m)
        on = rng.integers(0, len(ONSETS), (m, 3))
        vo = rng.integers(0, len(VOWELS), (m, 3))
        co = rng.integers(0, len(CODAS), m)
        for i in range(m):
            parts = [ONSETS[on[i, j]] + VOWELS[vo[i, j]] for j in range(syll[i])]
            word = "".join(parts) + CODAS[co[i]]
            if word not in taken and len(out) < n:
                taken.add(word)
                out.append(word)
    return out


def alias_table(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table: O(1) draws from a discrete distribution (see `alias_draw`).

    Binary search in a long cdf costs a cache miss per step; this costs two lookups.
    """
    n = len(weight)
    scaled = (weight * (n / weight.sum())).tolist()
    prob, alias = [1.0] * n, list(range(n))
    small = [i for i, x in enumerate(scaled) if x < 1.0]
    large = [i for i, x in enumerate(scaled) if x >= 1.0]
    while small and large:
        lo, hi = small.pop(), large.pop()
        prob[lo], alias[lo] = scaled[lo], hi
        scaled[hi] += scaled[lo] - 1.0
        (small if scaled[hi] < 1.0 else large).append(hi)
    return np.array(prob), np.array(alias, dtype=np.int64)


def alias_draw(
    prob: np.ndarray, alias: np.ndarray, start: np.ndarray, size: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """Draws from alias tables stored back to back: table k holds rows start[k]:start[k]+size[k].

    `u` holds two uniforms per draw, shape [n, 2]; `alias` holds row numbers (global).
    """
    row = start + np.minimum((u[:, 0] * size).astype(np.int64), size - 1)
    return np.where(u[:, 1] < prob[row], row, alias[row])


def seen_before(group: np.ndarray, item: np.ndarray, num_items: int) -> np.ndarray:
    """True for every (group, item) pair already seen earlier in the arrays."""
    key = group.astype(np.int64) * num_items + item
    order = np.argsort(key, kind="stable")
    dup = np.zeros(len(key), dtype=bool)
    dup[order[1:]] = key[order[1:]] == key[order[:-1]]
    return dup
