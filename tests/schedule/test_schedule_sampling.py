"""A found schedule given to the family's own diffusers pipeline gives our loop's images; teacher matching
at N equal to the teacher's steps is zero; the UNet's reproduction snippet runs and gives the same image."""

import json

import numpy as np
import pytest
import torch

from diffsearch.tasks.schedule_sampler import DPM_OVERRIDES, PipelineSampler, dpm_settings
from diffsearch.backends.stable_diffusion import load_backend
from diffsearch.jobs.schedule import Prepared, ScheduleOptions, reproduction, run_schedule, start_points
from diffsearch.spaces.schedules import Schedule

PROMPTS = ["a photo of a cat", "a red boat on a lake"]


def tiny_search(searcher: str, budget: int, out, **prompts) -> ScheduleOptions:
    """A 3-step search on the tiny SD pipeline: 2 search images, a 6-step teacher, no baselines judged."""
    return ScheduleOptions(
        model="tiny",
        nfe=3,
        searcher=searcher,
        budget=budget,
        search_images=2,
        teacher_steps=6,
        baselines=False,
        out=str(out),
        **prompts,
    )


def pipeline_images(pipe, schedule: Schedule, seeds, guidance, size):
    from diffusers import DPMSolverMultistepScheduler

    if schedule.solver != "euler":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            pipe.scheduler.config, solver_order=schedule.order, **DPM_OVERRIDES
        )
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    return pipe(
        [PROMPTS[i % 2] for i in range(len(seeds))],
        generator=generators,
        output_type="pt",
        guidance_scale=guidance,
        height=size,
        width=size,
        **schedule.call_kwargs(),
    ).images


def test_found_schedule_reproduces_with_the_pipeline(tmp_path):
    """A real (tiny) search: its schedule.json, passed to StableDiffusionPipeline(timesteps=...), gives the
    images of our loop."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    out = tmp_path / "run"
    results = run_schedule(tiny_search("evolution", 3, out, prompts_file=str(prompts)))
    found = Schedule.from_dict(json.loads((out / "schedule.json").read_text()))
    assert found.nfe == 3 and results["trials"] == 3 and (out / "schedules_nfe3.png").is_file()
    assert "timesteps=[" in results["call"]
    backend = load_backend("tiny")
    ours = PipelineSampler(backend, PROMPTS).images(found, [5, 6])
    theirs = pipeline_images(backend.pipe, found, [5, 6], backend.guidance, backend.height)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_flow_schedule_reproduces_with_the_pipeline():
    backend = load_backend("tiny-sd3")
    schedule = Schedule("euler", sigmas=(1.0, 0.62, 0.3, 0.05))
    ours = PipelineSampler(backend, PROMPTS).images(schedule, [1, 2])
    theirs = pipeline_images(backend.pipe, schedule, [1, 2], backend.guidance, backend.height)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_teacher_matching_is_zero_at_the_teachers_steps():
    o = ScheduleOptions(model="tiny", nfe=5, teacher_steps=5, search_images=2, prompt=PROMPTS[0]).resolved()
    p = Prepared(o)
    student = p.space.decode(p.space.encode(p.teacher))  # the teacher's schedule as a point of the space
    assert student == p.teacher
    value, _ = p.score(p.sampler.images(student, p.search_seeds), p.search_seeds, "teacher")
    assert value == 0.0
    other = p.space.decode(p.space.centre())
    assert p.score(p.sampler.images(other, p.search_seeds), p.search_seeds, "teacher")[0] > 0


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    folder = tmp_path_factory.mktemp("unet")
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2")).save_pretrained(folder)
    return folder


def test_unet_reproduction_snippet_gives_our_image(unet_dir):
    o = ScheduleOptions(model=str(unet_dir), nfe=4, teacher_steps=8, search_images=1).resolved()
    p = Prepared(o)
    schedule = Schedule("dpm++", timesteps=(999, 600, 250, 30), order=3)
    ours = p.sampler.images(schedule, [0])
    scope: dict = {}
    exec(reproduction(o, p, schedule), scope)  # the lines written to schedule.json
    assert torch.allclose(ours, scope["image"].float(), atol=1e-5)
    for name in p.sampler.baselines(4):  # every baseline runs on the UNet too
        assert p.sampler.baseline_images(name, 4, [0]).isfinite().all()
    assert np.isfinite(float(p.score(ours, [0], "teacher")[0]))


def test_gradient_searcher_descends_and_records_every_step(tmp_path):
    """LD3-style search: each Adam step on the timesteps is a trial of the ledger with a valid schedule, and
    the steps end below the best start point (the baselines' points) on the teacher-matching loss."""
    import optuna

    from diffsearch.spaces.schedules import ModelRange, ScheduleSpace

    options = tiny_search("gradient", 6, tmp_path, prompt=PROMPTS[0])
    n_start = len(start_points(Prepared(options.resolved())))
    options.budget = n_start + 3
    results = run_schedule(options)
    trials = optuna.load_study(study_name=results["study"], storage=results["storage"]).trials
    space = ScheduleSpace(3, "dpm++", ModelRange("epsilon", 1000))
    for t in trials:
        space.check(Schedule.from_dict(t.user_attrs["schedule"]))
    starts, steps = trials[:n_start], trials[n_start:]
    assert len(steps) == 3 and all(t.params["order"] == 1 for t in steps)
    assert min(t.value for t in steps) < min(t.value for t in starts)


def test_dpm_solver_clips_x0_where_the_models_scheduler_does():
    """A DDPM-trained pixel model (clip_sample) gets DPM-Solver++'s thresholding at 1: its x0 prediction is
    the unclipped one clamped to [-1, 1]; a model that does not clip (Stable Diffusion's config) gets none."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    config = dict(DDPMScheduler(beta_schedule="squaredcos_cap_v2").config)
    assert config["clip_sample"] and dpm_settings({**config, "clip_sample": False}) == DPM_OVERRIDES
    x, eps = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.randn(2, 1, 4, 4)
    x0 = {}
    for name, settings in (("clip", dpm_settings(config)), ("plain", DPM_OVERRIDES)):
        scheduler = DPMSolverMultistepScheduler.from_config(config, **settings)
        scheduler.set_timesteps(timesteps=[999, 500, 10])
        scheduler._step_index = 0  # convert_model_output reads the current step's sigma
        x0[name] = scheduler.convert_model_output(eps, sample=x)
    assert x0["plain"].abs().max() > 1  # at the top of a cosine schedule the x0 prediction explodes
    assert torch.allclose(x0["clip"], x0["plain"].clamp(-1, 1))
