"""Where a 2-D trial spends its time: training step, sampling, PRDC (ours vs the dense reference).

Side by side in one process; writes benchmarks/results/profile_toy2d.md. Run on a quiet machine.

    python benchmarks/profile_toy2d.py
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from diffsearch.backends.vector_trainer import TrainedDenoiser, make_noise_scheduler, make_optimizer
from diffsearch.backends.mlp_denoiser import MLPDenoiser
from diffsearch.objectives.prdc import prdc
from diffsearch.spaces.training import TOY2D

RESULTS = Path(__file__).parent / "results"


def step_ms(batch: int, threads: int, steps: int = 100) -> float:
    torch.set_num_threads(threads)
    config = TOY2D.complete(TOY2D.baseline())
    model = MLPDenoiser(2)
    optimizer = make_optimizer(config, model.parameters())
    sched = make_noise_scheduler(config)
    x0 = torch.randn(batch, 2)

    def step():
        noise = torch.randn_like(x0)
        t = torch.randint(0, 40, (batch,))
        loss = torch.nn.functional.mse_loss(model(sched.add_noise(x0, noise, t), t.float() / 40), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1000


def concurrent_step_ms(batch: int, processes: int = 2, steps: int = 300) -> float:
    """ms per step of each of ``processes`` trainings run at once, one thread each (how the benchmarks
    run trials in parallel): the cores share caches and memory, so this is measured, not divided."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        per_process = pool.starmap(step_ms, [(batch, 1, steps)] * processes)
    return sum(per_process) / processes


def op_breakdown(batch: int = 2048) -> list[tuple[str, float]]:
    from torch.profiler import profile

    torch.set_num_threads(1)
    model = MLPDenoiser(2)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    x, t = torch.randn(batch, 2), torch.rand(batch)

    def step():
        loss = ((model(x, t) - x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    with profile() as prof:
        for _ in range(30):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, 100 * e.self_cpu_time_total / total) for e in events[:8]]


def arithmetic_floor(
    one_thread_ms: float,
    study_trials: int = 50,
    epochs: int = 100,
    train_points: int = 80_000,
    batch: int = 2048,
    target_minutes: float = 15.0,
) -> list[str]:
    """How far the training is from the cores' arithmetic peak, and what a 15-minute study would need.

    The matmul FLOPs of one step (forward and backward, counted by torch's FlopCounterMode) against
    one thread's rate on a large square matmul, the best these cores do on any float32 work."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(1)
    model = MLPDenoiser(2)
    x, t = torch.randn(batch, 2), torch.rand(batch)
    with FlopCounterMode(display=False) as counter:
        ((model(x, t) - x) ** 2).mean().backward()
    step_flops = counter.get_total_flops()
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(20):
        a @ b
    peak = 2 * 1024**3 * 20 / (time.perf_counter() - start)
    achieved = step_flops / (one_thread_ms / 1000)  # the step time measured for the table above
    study_flops = study_trials * epochs * train_points / batch * step_flops
    needed = study_flops / (target_minutes * 60) / 2  # per core, two trials at once
    return [
        f"## Arithmetic floor of a {study_trials}-trial study ({epochs} epochs of {train_points:,} points, "
        f"training only)",
        "",
        "| | value |",
        "|---|---|",
        f"| matmul FLOPs per training step (batch {batch}, forward + backward) | {step_flops / 1e6:.0f} M |",
        f"| FLOPs of the study's training | {study_flops / 1e12:.0f} T |",
        f"| one core's float32 peak (1024 x 1024 matmul) | {peak / 1e9:.1f} GFLOP/s |",
        f"| one core's rate in a training step now (1 thread) | {achieved / 1e9:.1f} GFLOP/s "
        f"({100 * achieved / peak:.0f} % of peak) |",
        f"| rate per core a {target_minutes:.0f}-minute study needs (2 trials at once) | {needed / 1e9:.1f} GFLOP/s "
        f"({100 * needed / peak:.0f} % of peak) |",
        f"| study minutes if every FLOP ran at peak on both cores | {study_flops / (2 * peak) / 60:.1f} |",
        "",
        "The rate needed counts the matmuls only: LayerNorm, ReLU, the concatenations, Adam, noising, "
        "sampling and PRDC would have to cost nothing on top.",
        "",
    ]


def main() -> int:
    lines = ["# Where a 2-D trial's time goes (2 CPU cores)", ""]
    lines += [
        "## Training step (MLP denoiser, fused Adam), ms per step",
        "",
        "| batch | 1 thread | 2 threads | 2 trials at once, 1 thread each: ms per step of each (measured) "
        "| throughput of 2 trials at once vs 1 trial on 1 thread |",
        "|---|---|---|---|---|",
    ]
    one_thread_ms = {}
    for batch in (1024, 2048, 4096):
        one, two, each = step_ms(batch, 1), step_ms(batch, 2), concurrent_step_ms(batch)
        one_thread_ms[batch] = one
        lines.append(f"| {batch} | {one:.2f} | {two:.2f} | {each:.2f} | {2 * one / each:.2f}x |")
    epoch_steps = 80_000 / 2048
    lines += ["", f"A 100-epoch trial at batch 2048 is {100 * epoch_steps:.0f} steps.", ""]
    lines += arithmetic_floor(one_thread_ms[2048])
    lines += [
        "## Op breakdown of one training step (1 thread, batch 2048, self CPU time)",
        "",
        "| op | share |",
        "|---|---|",
    ]
    lines += [f"| {name} | {share:.1f} % |" for name, share in op_breakdown()]

    torch.set_num_threads(2)
    config = TOY2D.complete(TOY2D.baseline())
    lines += [
        "",
        "## Sampling 20,000 points (ancestral DDPM, every training timestep), seconds",
        "",
        "| timesteps | seconds |",
        "|---|---|",
    ]
    for steps in (40, 100):
        trained = TrainedDenoiser(MLPDenoiser(2), make_noise_scheduler({**config, "num_train_timesteps": steps}))
        start = time.perf_counter()
        trained.sample(20_000, torch.Generator().manual_seed(0))
        lines.append(f"| {steps} | {time.perf_counter() - start:.2f} |")

    from prdc import compute_prdc

    rng = np.random.default_rng(0)
    lines += [
        "",
        "## PRDC (k = 5): neighbour trees vs the dense reference package",
        "",
        "| points (real = fake) | ours, s | `prdc` package (dense), s | ratio |",
        "|---|---|---|---|",
    ]
    for n in (2_000, 5_000, 20_000):
        real, fake = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
        start = time.perf_counter()
        prdc(real, fake)
        ours = time.perf_counter() - start
        if n <= 5_000:
            start = time.perf_counter()
            compute_prdc(real, fake, 5)
            dense = time.perf_counter() - start
            lines.append(f"| {n:,} | {ours:.3f} | {dense:.3f} | {dense / ours:.1f}x |")
        else:
            lines.append(f"| {n:,} | {ours:.3f} | not run: 3.2 GB distance matrix | - |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "profile_toy2d.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
