"""SDXL, SD3 and FLUX backends on tiny random pipelines saved with ``save_pretrained`` and loaded as a user
loads them: our loop reproduces each pipeline's own ``__call__``, the encoders match ``encode_prompt``,
the shortcut gradient with its window at the end of the schedule is full backpropagation, and
unserved pipelines and negative prompts that cannot act are refused."""

import json

import pytest
import torch

from diffsearch.backends.families import FluxBackend, PipelineBackend
from diffsearch.backends.stable_diffusion import load_backend, load_pipeline, pipeline_class_name
from diffsearch.backends.tiny_families import TINY_PIPELINES, t5_tokenizer
from diffsearch.errors import UsageError

STEPS = 4
FAMILIES = ("tiny-sdxl", "tiny-sd3", "tiny-flux")
pytestmark = pytest.mark.slow  # three pipelines saved and reloaded: ~10 s each on 2 shared cores


@pytest.fixture(scope="module")
def saved(family_dirs):
    return family_dirs


def _backend(saved, name, **kw):
    extra = {"true_cfg": 3.0, "size": 16} if name == "tiny-flux" else {}
    return load_backend(saved[name], steps=STEPS, **{**extra, **kw})


def _call(backend, cond, uncond, latents):
    """The pipeline's own ``__call__`` on our embeddings and initial latents."""
    n = len(latents)
    (c, cp), (u, up) = backend._expand(cond, n), backend._expand(uncond, n)
    kwargs = dict(
        prompt_embeds=c,
        pooled_prompt_embeds=cp,
        negative_prompt_embeds=u,
        negative_pooled_prompt_embeds=up,
        latents=latents.clone(),
        num_inference_steps=STEPS,
        guidance_scale=backend.guidance,
        output_type="pt",
        height=backend.height,
        width=backend.width,
    )
    if isinstance(backend, FluxBackend):
        kwargs.update(true_cfg_scale=backend.true_cfg, max_sequence_length=backend.max_sequence_length)
    elif backend.family == "sd3":
        kwargs.update(max_sequence_length=backend.max_sequence_length)
    return backend.pipe(**kwargs).images


@pytest.mark.parametrize("name", FAMILIES)
def test_loop_and_encoders_reproduce_the_pipeline(saved, name):
    assert pipeline_class_name(saved[name]) == type(TINY_PIPELINES[name](0)).__name__
    backend = _backend(saved, name)
    cond, uncond = backend.encode(["a red boat on a calm lake"]), backend.encode(["blurry, dark"])
    pipe = backend.pipe
    if backend.family == "sdxl":
        theirs = pipe.encode_prompt(
            "a red boat on a calm lake", device="cpu", do_classifier_free_guidance=True, negative_prompt="blurry, dark"
        )
        ours = (cond[0], uncond[0], cond[1], uncond[1])
    elif backend.family == "sd3":
        theirs = pipe.encode_prompt(
            "a red boat on a calm lake",
            None,
            None,
            device="cpu",
            negative_prompt="blurry, dark",
            max_sequence_length=backend.max_sequence_length,
        )
        ours = (cond[0], uncond[0], cond[1], uncond[1])
    else:
        theirs = pipe.encode_prompt(
            "a red boat on a calm lake", None, device="cpu", max_sequence_length=backend.max_sequence_length
        )[:2]
        ours = cond
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    latents = backend.initial_latents([3, 4])
    mine = backend.generate(cond, uncond, [3, 4], latents=latents.clone())
    torch.testing.assert_close(mine, _call(backend, cond, uncond, latents), atol=1e-5, rtol=1e-4)
    assert mine.shape == (2, 3, 16, 16) and mine.std() > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_shortcut_at_the_end_of_the_schedule_is_full_backprop(saved, name, clip):
    backend = _backend(saved, name)
    target = clip.text_features(["a red boat"])
    cond = backend.encode(["a red boat"])
    grads = {}
    for kind in ("full", "shortcut_T", "shortcut_1"):
        uncond = tuple(x.clone().requires_grad_(True) for x in backend.encode(["blurry, dark"]))
        if kind == "full":  # backpropagation through the whole generation (the loop tested against __call__)
            images = PipelineBackend.generate.__wrapped__(backend, cond, uncond, [0, 1])
        else:
            k = STEPS if kind == "shortcut_T" else 1
            images = backend.shortcut_images(cond, uncond, [0, 1], t_index=0 if k == STEPS else 1, k=k)
        clip.loss(images, target).mean().backward()
        grads[kind] = torch.cat([u.grad.flatten() for u in uncond])
    assert grads["full"].abs().sum() > 0
    torch.testing.assert_close(grads["shortcut_T"], grads["full"], atol=1e-6, rtol=1e-4)
    assert grads["shortcut_1"].abs().sum() > 0 and not torch.allclose(grads["shortcut_1"], grads["full"], rtol=1e-2)


@pytest.mark.parametrize("name", FAMILIES)
def test_relaxed_one_hot_prompt_is_the_discrete_prompt(saved, name):
    """A one-hot Gumbel-softmax mix through every encoder gives the discrete prompt's conditioning."""
    from diffsearch.searchers.prompt.gpo import SoftPrompt
    from diffsearch.spaces.prompts import PromptSpace, Slot

    backend = _backend(saved, name)
    space = PromptSpace(
        "synonym", "a red boat", [Slot("syn:red", ["red", "crimson", "scarlet"])], ["a ", 0, " boat"], []
    )
    onehot = [torch.tensor([0.0, 1.0, 0.0])]
    soft_pos, soft_neg = SoftPrompt(backend, space).encode(onehot)
    positive, negative = space.texts((1,))
    assert (positive, negative) == ("a crimson boat", "")
    for soft, text in ((soft_pos, positive), (soft_neg, negative)):
        for a, b in zip(soft, backend.encode([text])):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_negative_prompts_that_cannot_act_are_refused(saved):
    flux = _backend(saved, "tiny-flux", true_cfg=1.0)
    assert "--true-cfg" in flux.negative_prompt_refusal()
    assert _backend(saved, "tiny-flux").negative_prompt_refusal() is None
    turbo = _backend(saved, "tiny-sdxl", guidance=0.0)  # SDXL-Turbo's setting
    assert "--space synonym" in turbo.negative_prompt_refusal()
    with pytest.raises(UsageError, match="FLUX"):
        _backend(saved, "tiny-sdxl", true_cfg=2.0)


def test_unserved_pipeline_is_refused_in_one_line(saved, tmp_path):
    import shutil

    shutil.copytree(saved["tiny-sd3"], tmp_path / "upscaler")
    index = tmp_path / "upscaler" / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "_class_name": "StableDiffusionUpscalePipeline"}))
    with pytest.raises(UsageError, match="StableDiffusionUpscalePipeline is not served"):
        load_pipeline(str(tmp_path / "upscaler"))


def test_t5_tokenizer_is_built_offline_and_saved(tmp_path):
    from transformers import AutoTokenizer

    tok = t5_tokenizer()
    ids = tok("a red boat").input_ids
    assert ids[-1] == tok.eos_token_id == 1 and tok.pad_token_id == 0 and tok.unk_token_id not in ids
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(str(tmp_path))("a red boat").input_ids == ids
