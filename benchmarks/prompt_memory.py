"""Peak memory of the prompt gradient per pipeline family, counted under fake tensors (no compute).

What a gradient step w.r.t. the prompt embeddings keeps alive: the shortcut (DPO-Diff, Wang et al., ICML
2024: no gradient from T down to t = T/2, K = 1 denoiser step with gradient, closed-form x0, VAE decode)
against full backpropagation through all T sampling steps (t = 0, K = T), at T = 10 / 25 / 50, for SD 1.x
(512 px), SDXL, SD3 and FLUX.1 (1024 px) at their published architecture sizes with random weights, in the
dtype people run them in.

How: the pipeline is built and run under torch's ``FakeTensorMode`` (tensors carry shapes and dtypes but no
data: a 12B-parameter FLUX transformer costs no memory and an op costs no arithmetic), and ``LiveBytes``, a
``TorchDispatchMode``, sees every op's outputs: each new storage adds its bytes to the live count, a weakref
on the storage takes them off when it is freed (the autograd graph frees what it saved as the backward
passes), and the peak of the live count is recorded. Storages that existed before the measured step
(weights, the prompt embeddings, the scheduler's tables) count zero: the figure is the memory the step adds
on top of the loaded weights, the weights are listed separately. It is an allocation count, not a
measurement on hardware: a kernel's private workspace (cuDNN, oneDNN), allocator rounding and fragmentation
are not in it. ``benchmarks/gpu_check.sh`` measures the real peak (torch.cuda.max_memory_allocated) on a GPU.

Validation (``--validate``): on pipelines small enough to run for real on CPU, the same step is counted
under fake tensors and run on real tensors with the same counter, and the real run's rise of peak RSS over a
warm-up generation is read too; the counts and the RSS rise are written side by side.

The loss is the mean of the decoded image (the reward model's own activations are not counted: they are the
same for both columns). The gradient is taken w.r.t. the positive and negative prompt embeddings (sequence
and pooled parts), as the GPO searcher's Gumbel-softmax mix produces both.

    nice -n 10 python benchmarks/prompt_memory.py --validate     # fake vs real on small pipelines
    nice -n 10 python benchmarks/prompt_memory.py                # the table: sd1, sdxl, sd3, flux
    python benchmarks/prompt_memory.py --families flux --steps-list 10   # one family, one T

Results: benchmarks/results/prompt_memory.{md,json} (per-row cache: an interrupted run resumes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
import weakref
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MB = 2**20

# family -> (what it is, image size, the dtype people run it in)
FAMILIES = {
    "sd1": ("SD 1.x (860M UNet)", 512, "float16"),
    "sdxl": ("SDXL base (2.6B UNet)", 1024, "float16"),
    "sd3": ("SD3-medium (2B MMDiT)", 1024, "float16"),
    "flux": ("FLUX.1-dev (12B transformer)", 1024, "bfloat16"),
}


def live_bytes_mode():
    """A TorchDispatchMode that counts the bytes of storages created under it that are still alive, and their peak."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.weak import WeakIdKeyDictionary

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live = self.peak = self.allocated = 0
            self.known = WeakIdKeyDictionary()  # storage -> its weakref (kept so the callback fires)

        def _storages(self, tree):
            for t in tree_flatten(tree)[0]:
                if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                    yield t.untyped_storage()

        def _free(self, nbytes: int):
            def callback(_ref):
                self.live -= nbytes

            return callback

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            for st in self._storages((args, kwargs)):  # inputs made before the step (weights, embeddings): zero
                if st not in self.known:
                    self.known[st] = None
            out = func(*args, **kwargs)
            for st in self._storages(out):
                if st not in self.known:
                    n = st.nbytes()
                    self.known[st] = weakref.ref(st, self._free(n))
                    self.live += n
                    self.allocated += n
                    self.peak = max(self.peak, self.live)
            return out

    return LiveBytes()


def build(family: str, dtype: str, size: int | None):
    """The pipeline of a family name: sd1, sdxl, sd3, flux (published sizes, random weights; the image size is
    the backend's, so sd1 at 128 px is SD 1.x's real widths on a smaller image) or tiny, tiny-sdxl, tiny-sd3,
    tiny-flux (the test pipelines)."""
    import torch

    from diffsearch.backends.stable_diffusion import DTYPES
    from diffsearch.backends.tiny_families import TINY_PIPELINES, real_size_pipeline
    from diffsearch.backends.tiny_sd import sd_v1_size_pipeline, tiny_pipeline

    torch.set_default_dtype(DTYPES[dtype])  # weights drawn in the dtype they run in
    try:
        if family == "tiny":
            pipe = tiny_pipeline(0, size or 16)
        elif family in TINY_PIPELINES:
            pipe = TINY_PIPELINES[family](0)
        elif family == "sd1":
            pipe = sd_v1_size_pipeline()
        else:
            pipe = real_size_pipeline(family)
    finally:
        torch.set_default_dtype(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.requires_grad_(False)  # drawn in the dtype already (.to() cannot swap fake parameters)
    return pipe


def weights_mb(pipe) -> dict[str, float]:
    import torch

    out = {}
    for name, m in pipe.components.items():
        if isinstance(m, torch.nn.Module):
            out[name] = sum(p.numel() * p.element_size() for p in m.parameters()) / MB
    return out


def measure(
    family: str,
    steps: int,
    mode: str,
    fake: bool,
    dtype: str,
    size: int | None,
    true_cfg: float = 1.0,
    rss: bool = False,
) -> dict:
    """One gradient step's counted peak (and, on real tensors, the rise of peak RSS over a warm-up generation)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from diffsearch.backends.families import make_backend
    from diffsearch.backends.families.base import map_cond

    torch.manual_seed(0)
    start = time.perf_counter()
    # real tensors (the scheduler's tables, the timesteps) meet fake ones: FakeTensorMode takes them as constants
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    if fake:
        _real_schedulers()
    with fake_mode:
        pipe = build(family, dtype, size)
    # the scheduler's tables real: its step indexes them by timestep (data a fake tensor does not have)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    weights = weights_mb(pipe)
    backend = make_backend(pipe, steps=steps, true_cfg=true_cfg, size=size)
    _scalar_timesteps(backend.scheduler)  # fake and real runs alike: the same code path
    with fake_mode:
        with torch.no_grad():
            cond = backend.encode(["a red boat on a calm lake"])
            uncond = backend.encode(["blurry, dark"])
        if rss:
            backend.generate(cond, uncond, [0])  # warm-up: what a generation without gradient needs
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        leaves = []

        def leaf(c):
            c = c.detach().clone().requires_grad_(True)
            leaves.append(c)
            return c

        cond, uncond = map_cond(leaf, cond), map_cond(leaf, uncond)
        built = time.perf_counter() - start
        counter = live_bytes_mode()
        with counter:
            t_index, k = (steps // 2, 1) if mode == "shortcut" else (0, steps)
            images = backend.shortcut_images(cond, uncond, [0], t_index=t_index, k=k)
            images.float().mean().backward()
            grads = [c.grad is not None for c in leaves]
            del images
        row = {
            "family": family,
            "steps": steps,
            "mode": mode,
            "fake": fake,
            "dtype": dtype,
            "size": backend.height,
            "true_cfg": true_cfg,
            "peak_mb": counter.peak / MB,
            "allocated_mb": counter.allocated / MB,
            "weights_mb": weights,
            "grads": grads,
            "build_s": built,
            "seconds": time.perf_counter() - start - built,
        }
        if rss:
            row["rss_rise_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / MB
        return row


def _real_schedulers() -> None:
    """Schedulers build their tables on real tensors even under FakeTensorMode (FlowMatchEulerDiscreteScheduler
    reads ``sigmas[-1].item()`` in its constructor)."""
    import functools

    import diffusers
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    for cls in (diffusers.DDIMScheduler, diffusers.EulerDiscreteScheduler, diffusers.FlowMatchEulerDiscreteScheduler):
        init = cls.__init__

        @functools.wraps(init)  # from_config reads the signature
        def real_init(self, *args, _init=init, **kwargs):
            with unset_fake_temporarily():
                _init(self, *args, **kwargs)

        cls.__init__ = real_init


def _scalar_timesteps(scheduler) -> None:
    """DDIM's step looks its tables up by the timestep tensor; under FakeTensorMode that lookup would read
    data: the timesteps become a list of real 0-d tensors and the step gets each as a Python number (the same
    lookup, no tensor op). Applied to real runs too, so both take the same path."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily

    step = scheduler.step
    scheduler.timesteps = list(scheduler.timesteps)  # real 0-d tensors: indexing a tensor under the mode makes fakes

    def scalar_step(model_output, timestep, *args, **kwargs):
        if isinstance(timestep, torch.Tensor) and not isinstance(timestep, FakeTensor):
            with unset_fake_temporarily():
                timestep = timestep.item()
        return step(model_output, timestep, *args, **kwargs)

    scheduler.step = scalar_step


def run_child(args, **kw) -> dict:
    """Each measurement in a fresh process (peak RSS is per process; fake-mode state does not leak)."""
    cmd = [sys.executable, __file__, "--child", json.dumps(kw), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["(no output)"]
        return {**kw, "error": lines[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cached_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.exists() else []


def key(row: dict) -> tuple:
    return (
        row["family"],
        row["steps"],
        row["mode"],
        row["fake"],
        row["dtype"],
        row.get("size_arg"),
        row.get("true_cfg", 1.0),
        row.get("rss", False),
    )


def collect(args, specs: list[dict], path: Path, setting: dict) -> list[dict]:
    rows = [r for r in cached_rows(path) if "error" not in r]
    done = {key(r) for r in rows}
    for spec in specs:
        if key(spec) in done or args.report_only:
            continue
        kw = {k: v for k, v in spec.items() if k != "size_arg"} | {"size": spec.get("size_arg")}
        row = run_child(args, **kw) | {"size_arg": spec.get("size_arg"), "rss": spec.get("rss", False)}
        print(json.dumps({k: v for k, v in row.items() if k != "weights_mb"}), flush=True)
        rows.append(row)
        # merged with what other processes (other --families) wrote meanwhile; one write, a short window
        path.write_text(json.dumps({**setting, "rows": merged(path, rows)}, indent=1))
    return merged(path, rows)


def merged(path: Path, rows: list[dict]) -> list[dict]:
    """This process's rows over what other processes (other --families) wrote meanwhile; failed rows never
    replace measured ones (they are retried on the next run)."""
    out = {key(r): r for r in cached_rows(path)} | {key(r): r for r in rows}
    for r in cached_rows(path) + rows:
        if "error" not in r:
            out.setdefault(key(r), r)
            if "error" in out[key(r)]:
                out[key(r)] = r
    return list(out.values())


def validate(args) -> None:
    """Fake count vs real count vs RSS rise, on pipelines that run for real here."""
    cases = [
        ("tiny", 64, "float32"),
        ("tiny-sdxl", None, "float32"),
        ("tiny-sd3", None, "float32"),
        ("tiny-flux", 16, "float32"),
        ("sd1", 128, "float32"),
    ]
    steps_list = [int(s) for s in args.steps_list.split(",")]
    specs = []
    for family, size, dtype in cases:
        for steps in steps_list:
            for mode in ("shortcut", "full"):
                specs.append(
                    {"family": family, "steps": steps, "mode": mode, "fake": True, "dtype": dtype, "size_arg": size}
                )
                specs.append(
                    {
                        "family": family,
                        "steps": steps,
                        "mode": mode,
                        "fake": False,
                        "dtype": dtype,
                        "size_arg": size,
                        "rss": True,
                    }
                )
    path = RESULTS / "prompt_memory_validation.json"
    rows = collect(args, specs, path, {"what": "fake-tensor count vs real-tensor count vs peak-RSS rise"})
    by = {key(r): r for r in rows}
    lines = [
        "# Prompt-gradient memory: fake-tensor count vs real run (CPU, float32)",
        "",
        "| pipeline | px | T | mode | fake count MiB | real count MiB | real peak-RSS rise MiB | fake s | real s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in specs:
        if not spec["fake"]:
            continue
        f = by.get(key(spec), {})
        r = by.get(key({**spec, "fake": False, "rss": True}), {})
        if "peak_mb" not in f or "peak_mb" not in r:
            lines.append(
                f"| {spec['family']} | {spec['size_arg'] or ''} | {spec['steps']} | {spec['mode']} | "
                f"{f.get('error', '-')} | {r.get('error', '-')} | | | |"
            )
            continue
        lines.append(
            f"| {spec['family']} | {r['size']} | {spec['steps']} | {spec['mode']} | {f['peak_mb']:.1f} | "
            f"{r['peak_mb']:.1f} | {r['rss_rise_mb']:.1f} | {f['seconds']:.1f} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "fake count: peak of live storage bytes created during the gradient step, under FakeTensorMode "
        "(no data, no arithmetic); real count: the same counter on real tensors; peak-RSS rise: the real "
        "process's peak resident memory above a warm-up generation without gradient (coarse: allocator "
        "caching, oneDNN workspaces, Python objects). 'sd1' at 128 px: SD 1.x's real widths (860M UNet, "
        "84M VAE) at a reduced image size.",
        f"command: python benchmarks/prompt_memory.py {' '.join(sys.argv[1:])}; torch threads {args.threads}",
    ]
    (RESULTS / "prompt_memory_validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def family_weights(family: str) -> dict[str, float]:
    """MiB of each component's parameters, the pipeline built under fake tensors (no memory, no compute)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    _real_schedulers()
    with FakeTensorMode(allow_non_fake_inputs=True):
        return weights_mb(build(family, FAMILIES[family][2], FAMILIES[family][1]))


def _peak(row: dict) -> str:
    if "peak_mb" in row:
        return f"{row['peak_mb']:,.0f}"
    return f"failed: {row['error'][:80]}" if "error" in row else "not counted yet (the run resumes)"


def table(args) -> None:
    families = args.families.split(",")
    steps_list = [int(s) for s in args.steps_list.split(",")]
    specs = [
        {
            "family": f,
            "steps": s,
            "mode": m,
            "fake": True,
            "dtype": FAMILIES[f][2],
            "size_arg": FAMILIES[f][1],
            "true_cfg": 1.0,
        }
        for f in families
        for s in steps_list
        for m in args.modes.split(",")
    ]
    specs.sort(key=lambda spec: spec["steps"] if spec["mode"] == "full" else 0)  # cheap rows first
    path = RESULTS / "prompt_memory.json"
    rows = collect(args, specs, path, {"what": "fake-tensor allocation count of one prompt-gradient step"})
    by = {key(r): r for r in rows}
    weights = json.loads(path.read_text()).get("weights", {}) if path.exists() else {}
    lines = [
        "# Prompt-gradient memory per family: shortcut vs full backpropagation (fake-tensor count)",
        "",
        "| family | px | dtype | weights GiB (denoiser + VAE) | T | shortcut MiB | full backprop MiB | full / shortcut |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in families:
        for s in steps_list:
            spec = {
                "family": f,
                "steps": s,
                "dtype": FAMILIES[f][2],
                "size_arg": FAMILIES[f][1],
                "fake": True,
                "true_cfg": 1.0,
            }
            sc, fu = by.get(key({**spec, "mode": "shortcut"}), {}), by.get(key({**spec, "mode": "full"}), {})
            w = next(
                (r["weights_mb"] for r in rows if r["family"] == f and r.get("weights_mb")), None
            ) or weights.setdefault(f, family_weights(f))
            denoiser = sum(v for k, v in w.items() if k in ("unet", "transformer", "vae")) / 1024
            if "peak_mb" in sc and "peak_mb" in fu:
                lines.append(
                    f"| {FAMILIES[f][0]} | {FAMILIES[f][1]} | {FAMILIES[f][2]} | {denoiser:.2f} | {s} | "
                    f"{sc['peak_mb']:,.0f} | {fu['peak_mb']:,.0f} | {fu['peak_mb'] / sc['peak_mb']:.1f}x |"
                )
            else:
                lines.append(
                    f"| {FAMILIES[f][0]} | {FAMILIES[f][1]} | {FAMILIES[f][2]} | {denoiser:.2f} | {s} | "
                    f"{_peak(sc)} | {_peak(fu)} | |"
                )
    lines += [
        "",
        "Batch 1 image; shortcut: t = T/2, K = 1; full: t = 0, K = T. MiB: peak of the bytes the gradient "
        "step adds on top of the loaded weights (activations the autograd graph saves, temporaries, "
        "gradients), counted under torch's FakeTensorMode: an allocation count, not a measurement on "
        "hardware (no kernel workspaces, allocator rounding or fragmentation); benchmarks/gpu_check.sh "
        "measures the real GPU peak. Classifier-free guidance as each family runs by default (SD 1.x, "
        "SDXL, SD3: a batch of 2 through the denoiser; FLUX.1-dev: distilled guidance, one pass, no true "
        "CFG). Weights: denoiser + VAE parameters in that dtype; the text encoders are not counted (they "
        "run once, without gradient, before the step). Loss: mean of the decoded image (the reward "
        "model's activations are not counted). The counter agrees with the same counter on real tensors "
        "to within 1.5 % on pipelines that run here: prompt_memory_validation.md.",
        "Rows: `python benchmarks/prompt_memory.py` (split over processes with --families / --modes / "
        "--steps-list; each row in a fresh process, 1 torch thread; the per-row seconds in prompt_memory.json "
        "are fake-mode run times on cores shared with other jobs, not GPU times).",
        f"command: python benchmarks/prompt_memory.py {' '.join(sys.argv[1:])}; torch threads {args.threads}",
    ]
    if weights:
        path.write_text(json.dumps({**json.loads(path.read_text()), "weights": weights}, indent=1))
    (RESULTS / "prompt_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default="sd1,sdxl,sd3,flux", help="comma-separated: sd1, sdxl, sd3, flux")
    p.add_argument("--steps-list", default="10,25,50")
    p.add_argument("--modes", default="shortcut,full", help="which rows to measure (the table shows all cached)")
    p.add_argument("--report-only", action="store_true", help="write the tables from the cached rows, measure nothing")
    p.add_argument("--validate", action="store_true", help="fake count vs real run on small pipelines")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return
    unknown = [f for f in args.families.split(",") if f not in FAMILIES]
    if unknown:
        print(f"unknown --families {','.join(unknown)}; known: {', '.join(FAMILIES)}", file=sys.stderr)
        sys.exit(2)
    validate(args) if args.validate else table(args)


if __name__ == "__main__":
    main()
