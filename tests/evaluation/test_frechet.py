"""The Fréchet distance against closed forms and an independent reference computation."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.frechet import FeatureStats, frechet_distance, trace_sqrt_product


def reference_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The same quantity by another route: with centred, scaled samples A and B (Σ₁ = AᵀA,
    Σ₂ = BᵀB), the eigenvalues of Σ₁Σ₂ are the squared singular values of ABᵀ, so
    tr (Σ₁Σ₂)^½ is the nuclear norm of ABᵀ (no d×d matrix, exact when n < d too)."""
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2 * cross)


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(64, 64)) / 8
    return rng.normal(size=(500, 64)) @ mixing, rng.normal(1.0, 1.5, size=(400, 64)) @ mixing.T


def test_a_set_against_itself_is_zero(features):
    x, _ = features
    assert abs(frechet_distance(FeatureStats.of(x), FeatureStats.of(x))) < 1e-6


def test_a_small_set_against_itself_is_zero_when_samples_are_fewer_than_dimensions():
    x = np.random.default_rng(1).normal(size=(10, 400))
    stats = FeatureStats.of(x)
    assert abs(frechet_distance(stats, stats)) < 1e-6


def test_symmetric_and_non_negative(features):
    x, y = (FeatureStats.of(f) for f in features)
    forward, backward = frechet_distance(x, y), frechet_distance(y, x)
    assert forward > 0
    assert forward == pytest.approx(backward, rel=1e-10)


def test_a_pure_mean_shift_gives_the_squared_shift(features):
    x, _ = features
    shift = np.random.default_rng(2).normal(size=x.shape[1])
    distance = frechet_distance(FeatureStats.of(x), FeatureStats.of(x + shift))
    assert distance == pytest.approx(float(shift @ shift), rel=1e-9)


def test_diagonal_gaussians_match_the_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=50), rng.normal(size=50)
    var1, var2 = rng.uniform(0.1, 4, size=50), rng.uniform(0.1, 4, size=50)
    a, b = FeatureStats(mu1, np.diag(var1), 100), FeatureStats(mu2, np.diag(var2), 100)
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(closed, rel=1e-10)


@pytest.mark.parametrize(("n1", "n2", "dim"), [(500, 400, 64), (12, 9, 400)])
def test_random_data_matches_the_reference(n1, n2, dim):
    rng = np.random.default_rng(n1)
    x = rng.normal(size=(n1, dim)) @ rng.normal(size=(dim, dim)) / np.sqrt(dim)
    y = rng.normal(0.3, 1.2, size=(n2, dim))
    value = frechet_distance(FeatureStats.of(x), FeatureStats.of(y))
    assert np.isfinite(value)
    assert value == pytest.approx(reference_distance(x, y), rel=1e-8, abs=1e-8)


def test_trace_term_matches_the_eigenvalues_of_the_product(features):
    """A second reference: the (real, non-negative) eigenvalues of the non-symmetric Σ₁Σ₂."""
    x, y = (np.cov(f, rowvar=False) for f in features)
    eigenvalues = np.linalg.eigvals(x @ y)
    assert np.abs(eigenvalues.imag).max() < 1e-8
    expected = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    assert trace_sqrt_product(x, y) == pytest.approx(expected, rel=1e-9)


def test_statistics_round_trip_through_npz(features):
    stats = FeatureStats.of(features[0])
    again = FeatureStats.from_npz(stats.to_npz())
    assert again.count == 500
    np.testing.assert_array_equal(again.mean, stats.mean)
    np.testing.assert_array_equal(again.cov, stats.cov)
    assert stats.mean.dtype == stats.cov.dtype == np.float64


def test_fewer_than_two_vectors_or_other_dimensions_are_refused():
    with pytest.raises(ValueError, match="N >= 2"):
        FeatureStats.of(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(FeatureStats.of(np.eye(3)), FeatureStats.of(np.eye(4)))
