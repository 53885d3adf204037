"""Jobs: the things a user runs (``diffsearch hparams`` ...), callable from Python with the CLI's options."""

JOBS = {
    "hparams": "tune the training hyperparameters of a diffusion model (seed 000)",
}
