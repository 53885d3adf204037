"""Sweeps: tune any training program (``diffsearch sweep sweep.yaml``) or Python function (``diffsearch.search``).

- ``schema``: a W&B sweep file read and checked into a ``Sweep`` (one line per mistake);
- ``macros``: the command's macros (W&B's and ``${trial_dir}``);
- ``space``: its ``parameters`` as Optuna distributions, with ``when`` conditionals;
- ``early_terminate``: W&B's early_terminate as our pruners (successive halving, Hyperband);
- ``program_trial``: one trial as a subprocess in its own folder, whose reports drive pruning: JSON lines
  (``report_lines``), TensorBoard event files and wandb runs (``metric_sources``), read while it runs;
- ``warm_interpreter``: ``preload``, trials forked from an interpreter that imported torch & co. once;
- ``function_trial``: one trial as a call of a Python function;
- ``gpu_slots``: ``--gpus``, one device per worker process;

The job itself (studies, workers, budgets, results) is ``diffsearch.jobs.sweep``; ``diffsearch.search`` is
``diffsearch.jobs.python_api``.
"""
