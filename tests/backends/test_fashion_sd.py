"""The Fashion-MNIST judges that ship in diffsearch/models/fashion (built by benchmarks/build_fashion_sd.py).

The miniature pipeline itself is not shipped yet (its first build did not follow prompts: see
benchmarks/results/fashion_sd.md), so ``--model fashion`` must say how to build it, in one line.
"""

import torch

from diffsearch.backends import fashion_sd as fs
from diffsearch.cli.main import main
from diffsearch.objectives.clip import ClipObjective


def test_the_judge_clip_loads_by_short_name_and_tells_classes_apart():
    clip = ClipObjective("fashion")
    assert clip.kind == "transformers" and clip.image_size == 32
    prompts = [f"a photo of a {name}" for name in ("sneaker", "bag", "pair of trousers")]
    text = clip.text_features(prompts)
    text = text / text.norm(dim=-1, keepdim=True)
    cosine = text @ text.T
    assert torch.isfinite(text).all() and (cosine[~torch.eye(3, dtype=bool)] < 0.95).all()


def test_an_unbuilt_fashion_model_is_refused_with_the_way_to_build_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fs, "PIPELINE_DIR", tmp_path / "not-built")  # as in a clean clone
    assert main(["prompt", "a dark sneaker", "--model", "fashion", "--clip", "fashion",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "build_fashion_sd.py" in err
