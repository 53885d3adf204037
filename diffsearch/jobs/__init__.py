"""Jobs: the things a user runs (``diffsearch hparams`` ...), callable from Python with the CLI's options."""

JOBS = {
    "hparams": "tune the training hyperparameters of a diffusion model: PRDC on vectors, FID on images (seed 000)",
    "optimizer": "discover optimizer update rules for diffusion training (seed 004, chapter 3)",
    "prompt": "optimise a Stable Diffusion prompt: negative prompt or attack (seed 004 chapter 6, DPO-Diff)",
    "worker": "join an existing hparams study from any machine and run its trials",
}
