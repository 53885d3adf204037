"""Rewards for `diffsearch prompt --reward`: PickScore and HPSv2 from tiny local models, a MODULE:FUNCTION
reward in a prompt run, and every bad --reward as one line, exit 2."""

import json
import textwrap

import optuna
import pytest
import torch
import torch.nn.functional as F

from diffsearch.cli.main import main
from diffsearch.errors import UsageError
from diffsearch.objectives.clip import ClipReward, clip_score, preprocess_images, spherical_loss
from diffsearch.objectives.rewards import RewardSpec

# a tiny open_clip architecture (random weights, CLIP's BPE vocabulary that ships with open_clip)
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
USER_REWARDS = textwrap.dedent("""
    import torch

    def brightness(images, prompt):      # differentiable: N scores with a grad_fn
        return images.mean(dim=(1, 2, 3))

    def constant(images, prompt):        # one float for the batch: no gradient
        return 0.5

    def wrong_shape(images, prompt):
        return torch.zeros(len(images), 2)

    not_a_function = 3
""")


@pytest.fixture(scope="module")
def pickscore_dir(tmp_path_factory, clip):
    """The tiny CLIP saved as PickScore is: a transformers CLIPModel + CLIPProcessor directory."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    path = tmp_path_factory.mktemp("pickscore")
    clip.model.save_pretrained(path)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=clip.tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hps_files(tmp_path_factory):
    """A tiny open_clip model's config and its state dict saved as HPSv2 ships it (under "state_dict")."""
    import open_clip

    path = tmp_path_factory.mktemp("hpsv2")
    config = path / "tiny-hps.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-hps").eval()
    torch.save({"state_dict": model.state_dict()}, path / "HPS_v2.1_compressed.pt")
    torch.save(model.state_dict(), path / "top_level.pt")
    return model, config, path


def test_pickscore_directory_scores_logit_scale_times_cosine(pickscore_dir, clip):
    reward = RewardSpec("pickscore", str(pickscore_dir)).load()
    images = torch.rand(3, 3, 16, 16, requires_grad=True)
    scores = reward.score(images, "a red boat")
    expected = clip.model.logit_scale.exp() * F.cosine_similarity(
        clip.image_features(images), clip.text_features(["a red boat"]), dim=-1
    )
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)
    reward.loss(images, "a red boat").sum().backward()  # loss = -score, differentiable in the image
    assert images.grad.abs().sum() > 0
    losses, again = reward.loss_and_score(images, "a red boat")
    torch.testing.assert_close(losses, -again) and torch.testing.assert_close(again, scores.detach())


def test_hpsv2_checkpoint_loads_into_its_architecture_and_scores_100_cosine(hps_files):
    model, config, path = hps_files
    images = torch.rand(2, 3, 40, 48, requires_grad=True)
    reward = RewardSpec("hpsv2", str(path / "HPS_v2.1_compressed.pt"), str(config)).load()
    top_level = RewardSpec("hpsv2", str(path / "top_level.pt"), str(config)).load()
    pixels = preprocess_images(images, 32, reward.mean, reward.std)
    import open_clip

    with torch.no_grad():
        text = model.encode_text(open_clip.get_tokenizer("tiny-hps")(["a red boat"]), normalize=True)
        expected = 100 * (model.encode_image(pixels, normalize=True) @ text.T).squeeze(-1)
    scores = reward.score(images, "a red boat")
    torch.testing.assert_close(scores.detach(), expected)
    torch.testing.assert_close(top_level.score(images, "a red boat").detach(), expected)
    reward.loss(images, "a red boat").sum().backward()
    assert images.grad.abs().sum() > 0


def test_clip_reward_keeps_dpo_diff_loss(clip):
    reward = RewardSpec("clip", clip="tiny").load()
    assert isinstance(reward, ClipReward) and reward.differentiable
    images = torch.rand(2, 3, 16, 16)
    text = clip.text_features(["a cat"])
    losses, scores = reward.loss_and_score(images, "a cat")
    torch.testing.assert_close(losses, spherical_loss(clip.image_features(images), text))
    torch.testing.assert_close(scores, clip_score(clip.image_features(images), text))


def test_module_function_rewards(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(USER_REWARDS)
    monkeypatch.chdir(tmp_path)  # the current directory is where MODULE is looked for
    bright = RewardSpec("my_rewards:brightness").load()
    images = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(bright.score(images, "x"), images.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(bright.loss(images, "x"), -images.mean(dim=(1, 2, 3)))
    assert bright.differentiable
    constant = RewardSpec("my_rewards:constant").load()
    assert not constant.differentiable and constant.score(images, "x").tolist() == [0.5] * 3
    with pytest.raises(UsageError, match=r"shape \(2, 2\)"):
        RewardSpec("my_rewards:wrong_shape").load()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--reward", "aesthetic"], "unknown --reward 'aesthetic'"),
        (["--reward", "MODULE:FUNCTION"], "unknown --reward"),
        (["--reward", "no_such_module_xyz:score"], "cannot import module 'no_such_module_xyz'"),
        (["--reward", "my_rewards:missing"], "has no 'missing'"),
        (["--reward", "my_rewards:not_a_function"], "not a function"),
        (["--reward", "my_rewards:wrong_shape", "--searcher", "random"], "want 2 scores"),
        (["--reward", "my_rewards:constant"], "not differentiable"),  # default searcher gpo+es
        (["--reward", "my_rewards:constant", "--searcher", "gpo"], "--searcher gpo backpropagates"),
        (["--reward", "pickscore", "--reward-model", "/nonexistent/pickscore"], "no such directory"),
        (["--reward", "pickscore", "--reward-model", "{empty}"], "no config.json"),
        (["--reward", "hpsv2"], "needs --reward-model"),
        (["--reward", "hpsv2", "--reward-model", "/nonexistent/HPS_v2.pt"], "no such checkpoint file"),
        (["--reward", "hpsv2", "--reward-model", "{hps}", "--reward-arch", "ViT-Nope"], "not an open_clip"),
        (
            ["--reward", "hpsv2", "--reward-model", "{hps}", "--reward-arch", "{other}"],
            "not an open_clip other-tiny state dict",
        ),  # another architecture's weights
        (["--reward", "clip", "--reward-model", "{hps}"], "--reward-model is for"),
        (["--reward", "pickscore", "--reward-arch", "ViT-H-14"], "--reward-arch is for"),
    ],
)
def test_bad_reward_is_one_line_exit_2(tmp_path, monkeypatch, capsys, hps_files, args, message):
    (tmp_path / "my_rewards.py").write_text(USER_REWARDS)
    (tmp_path / "empty").mkdir()
    (tmp_path / "other-tiny.json").write_text(json.dumps({**TINY_OPEN_CLIP, "embed_dim": 8}))
    monkeypatch.chdir(tmp_path)
    args = [
        a.format(
            empty=tmp_path / "empty", hps=hps_files[2] / "HPS_v2.1_compressed.pt", other=tmp_path / "other-tiny.json"
        )
        for a in args
    ]
    assert (
        main(
            [
                "prompt",
                "a red boat",
                "--model",
                "tiny",
                "--clip",
                "tiny",
                "--steps",
                "2",
                "--lexicon-cache",
                str(tmp_path / "lexicon.json"),
                "--out",
                str(tmp_path / "run"),
                *args,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "study.db").exists()  # refused before anything started


@pytest.mark.slow
def test_module_function_reward_in_a_prompt_run_with_a_worker(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_rewards.py").write_text(USER_REWARDS)
    monkeypatch.chdir(tmp_path)  # the spawned worker imports my_rewards again, from here
    out = tmp_path / "run"
    argv = [
        "prompt",
        "a red boat on a calm lake",
        "--model",
        "tiny",
        "--clip",
        "tiny",
        "--steps",
        "4",
        "--reward",
        "my_rewards:brightness",
        "--searcher",
        "gpo",
        "--budget",
        "3",
        "--iterations",
        "2",
        "--lexicon-cache",
        str(tmp_path / "lexicon.json"),
        "--out",
        str(out),
        "--workers",
        "2",
        "--json",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["reward"] == {"name": "my_rewards:brightness", "score": "reward", "loss": "-reward"}
    record = results["prompts"][0]
    assert record["gradient_steps"] and record["best"]["loss"] == pytest.approx(-record["best"]["score"])
    study = optuna.load_study(study_name=results["study"], storage=f"sqlite:///{out}/study.db")
    assert study.user_attrs["reward"] == "my_rewards:brightness" and "brightness" in results["study"]
    done = [t for t in study.trials if t.value is not None]
    assert done and all(t.value == pytest.approx(-t.user_attrs["score"]) for t in done)
    assert all(0 <= t.user_attrs["score"] <= 1 for t in done)  # mean brightness of [0, 1] images
    # the same study with another reward would read back scores of the first: refused
    capsys.readouterr()
    assert (
        main([*argv[:-3], "--reward", "my_rewards:constant", "--searcher", "random", "--study", results["study"]]) == 2
    )
    assert "reward='my_rewards:brightness'" in capsys.readouterr().err
