"""Stable Diffusion backend on the tiny pipeline: our loop, the shortcut gradient (scored by the tiny CLIP
objective, the ``clip`` fixture of conftest.py), loading."""

import pytest
import torch

from diffsearch.backends.stable_diffusion import SDBackend, load_pipeline
from diffsearch.backends.tiny_sd import clip_tokenizer
from diffsearch.errors import UsageError

STEPS = 6


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("tiny", seed=0)


def test_tokenizer_matches_open_clip():
    import open_clip

    text = "a dedicated gardener tending a bonsai, blurry lowres"
    ids = clip_tokenizer()(text).input_ids
    assert ids == open_clip.tokenize([text])[0][: len(ids)].tolist()
    assert clip_tokenizer().model_max_length == 77


def test_generate_reproduces_the_pipeline_call(pipe):
    backend = SDBackend(pipe, steps=STEPS)
    cond, uncond = backend.encode(["a red boat"]), backend.encode(["blurry"])
    latents = backend.initial_latents([3])
    ours = backend.generate(cond, uncond, [3], latents=latents.clone())
    theirs = pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        latents=latents.clone(),
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        output_type="pt",
        height=backend.height,
        width=backend.width,
    ).images
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def _full_backprop_loss(pipe, backend, cond, uncond, seeds, clip, target):
    """Backpropagation through every sampling step, written plainly from the pipeline's components."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(STEPS)
    latents = backend.initial_latents(seeds)
    cond, uncond = cond.expand(len(seeds), -1, -1), uncond.expand(len(seeds), -1, -1)
    for t in scheduler.timesteps:
        eps = pipe.unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        e_u, e_c = eps.chunk(2)
        latents = scheduler.step(e_u + 7.5 * (e_c - e_u), t, latents).prev_sample
    images = (pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    return clip.loss(images, target).mean()


def test_shortcut_with_k_equal_t_is_full_backprop(pipe, clip):
    backend = SDBackend(pipe, steps=STEPS)
    target = clip.text_features(["a red boat"])
    cond = backend.encode(["a red boat"])
    grads = {}
    for name in ("full", "shortcut_T", "shortcut_1"):
        uncond = backend.encode(["blurry, dark"]).clone().requires_grad_(True)
        if name == "full":
            loss = _full_backprop_loss(pipe, backend, cond, uncond, [0, 1], clip, target)
        else:
            k = STEPS if name == "shortcut_T" else 1
            images = backend.shortcut_images(cond, uncond, [0, 1], t_index=0 if k == STEPS else 2, k=k)
            loss = clip.loss(images, target).mean()
        loss.backward()
        grads[name] = uncond.grad
    assert grads["full"].abs().sum() > 0
    torch.testing.assert_close(grads["shortcut_T"], grads["full"], atol=1e-6, rtol=1e-4)
    # a one-step shortcut is a different (cheaper) gradient, not a copy of the full one
    assert grads["shortcut_1"].abs().sum() > 0
    assert not torch.allclose(grads["shortcut_1"], grads["full"], rtol=1e-2)
    assert backend.shortcut_cost(2, 1) == pytest.approx(5 / STEPS)


def test_token_embeddings_run_the_whole_text_encoder(pipe):
    backend = SDBackend(pipe, steps=STEPS)
    encoder = backend.encoders[0]
    ids = encoder.ids(["a cat on a mat"])
    via_embeds = backend.encode_token_embeds([encoder.token_embedding()(ids)])
    torch.testing.assert_close(via_embeds, backend.encode(["a cat on a mat"]))


def test_saved_tiny_pipeline_loads_through_the_user_path(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "sd")
    loaded = load_pipeline(str(tmp_path / "sd"))
    a = SDBackend(pipe, steps=3)
    b = SDBackend(loaded, steps=3)
    cond, uncond = a.encode(["a cat"]), a.encode([""])
    torch.testing.assert_close(a.generate(cond, uncond, [0]), b.generate(b.encode(["a cat"]), b.encode([""]), [0]))
    with pytest.raises(UsageError, match="model_index.json"):
        load_pipeline(str(tmp_path))  # a directory that is no pipeline
    (tmp_path / "sd" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(UsageError, match="--model"):
        load_pipeline(str(tmp_path / "sd"))  # weights missing
