"""Jobs: the things a user runs (``diffsearch hparams`` ...), callable from Python with the CLI's options."""

JOBS = {
    "hparams": "tune the training hyperparameters of a diffusion model (seed 000)",
    "worker": "join an existing study from any machine and run its trials",
}
