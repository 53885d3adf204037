"""The hparams searchers: Optuna samplers for `diffsearch hparams` and `diffsearch sweep`, and the pruners."""
