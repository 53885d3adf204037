import numpy as np
import pytest
from prdc import compute_prdc

from diffsearch.objectives.prdc import prdc, prdc_loss


@pytest.mark.parametrize("dim", [1, 2, 8, 64])
@pytest.mark.parametrize("k", [3, 5])
def test_matches_reference_package(dim, k):
    rng = np.random.default_rng(dim * 10 + k)
    real = rng.normal(size=(700, dim))
    fake = rng.normal(size=(500, dim)) * 1.3 + 0.2
    ours = prdc(real, fake, k=k)
    reference = compute_prdc(real, fake, nearest_k=k)
    for name in ours:
        assert ours[name] == pytest.approx(float(reference[name]), abs=1e-12), name


def test_identical_distributions_score_near_ideal_and_shifted_far():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(3000, 2))
    same = prdc_loss(prdc(real, rng.normal(size=(3000, 2))))
    shifted = prdc_loss(prdc(real, rng.normal(size=(3000, 2)) + 3.0))
    assert same < 0.1
    assert shifted > 0.5


def test_loss_is_mean_distance_from_one():
    parts = {"precision": 0.9, "recall": 1.0, "density": 1.2, "coverage": 0.7}
    assert prdc_loss(parts) == pytest.approx((0.1 + 0.0 + 0.2 + 0.3) / 4)


def test_full_size_without_dense_matrix():
    # 20,000 x 20,000 as in the seed: a dense float64 matrix would be 3.2 GB
    import tracemalloc

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(20_000, 2)), rng.normal(size=(20_000, 2))
    tracemalloc.start()
    parts = prdc(real, fake)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6
    assert 0.9 < parts["precision"] <= 1.0


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        prdc(np.zeros((10, 2)), np.zeros((10, 3)))
