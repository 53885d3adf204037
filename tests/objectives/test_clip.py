"""The CLIP objective: the spherical loss, loading (tiny model, a transformers directory) and its errors."""

import math

import pytest
import torch

from diffsearch.errors import UsageError
from diffsearch.objectives.clip import ClipObjective, spherical_loss


def test_spherical_loss_is_half_the_squared_angle(clip):
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    torch.testing.assert_close(spherical_loss(a, b), torch.tensor([(math.pi / 2) ** 2 / 2, (math.pi / 4) ** 2 / 2]))
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    loss = clip.loss(images, clip.text_features(["a cat"]))
    loss.sum().backward()
    assert loss.shape == (2,) and images.grad.abs().sum() > 0
    assert (clip.score(images, clip.text_features(["a cat"])) >= 0).all()


def test_missing_clip_weights_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot load CLIP"):
        ClipObjective(f"ViT-B-32:{tmp_path / 'missing.pt'}")
    with pytest.raises(UsageError, match="MODEL:TAG"):
        ClipObjective("no-such-spec")


def test_transformers_clip_directory_loads(clip, tmp_path):
    clip.model.save_pretrained(tmp_path / "clip")
    clip.tokenizer.save_pretrained(tmp_path / "clip")
    loaded = ClipObjective(str(tmp_path / "clip"))
    images = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded.image_features(images), clip.image_features(images))
    torch.testing.assert_close(loaded.text_features(["a cat"]), clip.text_features(["a cat"]))
