"""Binning and the Population Stability Index: a column's values as shares over bins (quantile
edges of a reference, or known categories), and PSI = sum((a - e) * ln(a / e)) of two such
share vectors. np.searchsorted + np.bincount per column: about a second for 1M rows x 30
features (benchmarks/drift.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

EPSILON = 1e-4  # floor of a bin's share, so an empty bin gives a large but finite PSI


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner edges splitting the finite values into `bins` equal-count bins (repeats merged)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    inner = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return [float(edge) for edge in np.unique(inner)]


def numeric_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Share of values per bin: len(edges) + 1 value bins, then one bin for missing values."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    index[np.isnan(values)] = len(edges) + 1
    counts = np.bincount(index, minlength=len(edges) + 2)
    return counts / max(len(values), 1)


def categorical_shares(values: pd.Series, categories: list[Any]) -> np.ndarray:
    """Share of values per known category, then "other" (unseen values), then missing."""
    # Factorise once (fast on string columns), then map the few distinct values to bins:
    # about 6x faster than pd.Categorical(values, categories) on 1M strings.
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    position = {value: index for index, value in enumerate(categories)}
    to_bin = np.array(
        [position.get(value, len(categories)) for value in uniques] + [len(categories) + 1],
        dtype=np.int64,
    )
    counts = np.bincount(to_bin[codes], minlength=len(categories) + 2)  # code -1 -> missing
    return counts / max(len(values), 1)


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float]) -> float:
    """Population Stability Index of two share vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def as_float(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.asarray(frame[column].to_numpy(dtype=np.float64, na_value=np.nan))
