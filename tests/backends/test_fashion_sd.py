"""The miniature Stable Diffusion on Fashion-MNIST and its judges, as they ship in diffsearch/models/fashion
(built by benchmarks/build_fashion_sd.py): diffusers loads the pipeline, our DDIM loop reproduces its own
``__call__``, class prompts give their class, and ``diffsearch prompt --model fashion --clip fashion`` runs.
A clean clone without the pipeline is told, in one line, how to build it.
"""

import json

import numpy as np
import pytest
import torch

from diffsearch.backends import fashion_sd as fs
from diffsearch.backends.stable_diffusion import SDBackend, load_pipeline
from diffsearch.cli.main import main
from diffsearch.objectives.clip import ClipObjective

STEPS = 5


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("fashion")  # the committed pipeline (fs.PIPELINE_DIR), as a user loads it


def test_diffusers_loads_the_committed_pipeline_as_any_sd_checkpoint():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(fs.PIPELINE_DIR), safety_checker=None, requires_safety_checker=False
    )
    parts = {name: type(getattr(pipe, name)).__name__ for name in ("unet", "vae", "text_encoder", "tokenizer")}
    assert parts == {
        "unet": "UNet2DConditionModel",
        "vae": "AutoencoderKL",
        "text_encoder": "CLIPTextModel",
        "tokenizer": "CLIPTokenizer",
    }
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 32 and pipe.unet.dtype == torch.float32


def test_our_ddim_loop_reproduces_the_pipeline_call(pipe):
    backend = SDBackend(pipe, steps=STEPS)
    cond, uncond = backend.encode(["a photo of a dark sneaker"]), backend.encode([""])
    latents = backend.initial_latents([0, 1])
    ours = backend.generate(cond, uncond, [0, 1], latents=latents.clone())
    theirs = pipe(
        prompt_embeds=cond.expand(2, -1, -1),
        negative_prompt_embeds=uncond.expand(2, -1, -1),
        latents=latents.clone(),
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        output_type="pt",
        height=backend.height,
        width=backend.width,
    ).images
    assert ours.shape == (2, 3, 32, 32)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_class_prompts_give_their_class_to_the_judge_classifier(pipe):
    backend = SDBackend(pipe, steps=20)
    seeds = [0, 1]
    labels = np.repeat(np.arange(10), len(seeds))
    with torch.no_grad():
        cond = backend.encode([fs.plain_prompt(c) for c in range(10)]).repeat_interleave(len(seeds), 0)
        images = backend.generate(cond, backend.encode([""]), seeds * 10)
    assert torch.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
    accuracy = (fs.Judge().classify(images) == labels).mean()
    assert accuracy >= 0.5, f"judge-classifier accuracy {accuracy:.0%} on plain class prompts (chance 10 %)"


def test_a_short_prompt_search_runs_on_the_fashion_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "prompt",
                "a photo of a dark sneaker",
                "--model",
                "fashion",
                "--clip",
                "fashion",
                "--space",
                "antonym",
                "--searcher",
                "random",
                "--budget",
                "3",
                "--steps",
                str(STEPS),
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    record = json.loads((out / "results.json").read_text())["prompts"][0]
    assert record["user_input"]["loss"] is not None and record["best"]["loss"] <= record["user_input"]["loss"]
    assert record["spent_generations"] <= 3 + 1e-9 and record["evaluations"] >= 2
    assert any("light" in c for c in record["slots"]["ant:dark"])  # the antonym of the asked brightness
    assert (out / "before_after.png").is_file()


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
    assert (
        main(["prompt", "a dark sneaker", "--model", "fashion", "--clip", "fashion", "--out", str(tmp_path / "run")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "build_fashion_sd.py" in err
