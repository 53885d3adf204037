import numpy as np
import pytest

from diffsearch.datasets import TOY_DATASETS, load_vector_data, load_vector_file
from diffsearch.errors import UsageError


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_sets_are_fixed_and_standardised(name):
    a = load_vector_data(name, n_points=5000, held_out=1000)
    b = load_vector_data(name, n_points=5000, held_out=1000)
    assert a.train.shape == (4000, 2) and a.held_out.shape == (1000, 2)
    assert a.train.dtype == np.float32
    np.testing.assert_array_equal(a.held_out, b.held_out)
    np.testing.assert_allclose(a.train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(a.train.std(axis=0), 1, atol=1e-3)


def test_seed_protocol_sizes():
    data = load_vector_data("moons")
    assert len(data.train) == 80_000 and len(data.held_out) == 20_000


def test_npy_and_csv_files(tmp_path):
    points = np.random.default_rng(0).normal(size=(200, 3))
    np.save(tmp_path / "p.npy", points)
    np.savetxt(tmp_path / "p.csv", points, delimiter=",")
    for name in ("p.npy", "p.csv"):
        data = load_vector_data(str(tmp_path / name))
        assert data.dim == 3 and len(data.train) == 160 and len(data.held_out) == 40
    np.save(tmp_path / "one.npy", points[:, 0])
    assert load_vector_file(tmp_path / "one.npy").shape == (200, 1)


@pytest.mark.parametrize(
    "content, message",
    [
        ("1,2\n3,x\n", "cannot read"),
        ("1,2\n3,4\n", "only 2 rows"),
        ("\n".join(["1,2"] * 30 + ["nan,1"]), "NaN"),
    ],
)
def test_malformed_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_vector_file(path)


def test_wrong_shape_and_unknown(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((30, 2, 2)))
    with pytest.raises(UsageError, match="expected N x D"):
        load_vector_file(tmp_path / "cube.npy")
    with pytest.raises(UsageError, match="unknown dataset"):
        load_vector_data("mooons")
    with pytest.raises(UsageError, match="not found"):
        load_vector_data(str(tmp_path / "missing.npy"))
