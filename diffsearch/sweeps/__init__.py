"""Sweeps: tune any training program (``diffsearch sweep sweep.yaml``) or Python function (``diffsearch.search``).

- ``schema``: a W&B-style sweep file read and checked into a ``Sweep`` (one line per mistake);
- ``space``: its ``parameters`` as Optuna distributions, with ``when`` conditionals;
- ``early_terminate``: W&B's early_terminate as our pruners (successive halving, Hyperband);
- ``program_trial``: one trial as a subprocess whose JSON-line reports (``report_lines``) drive pruning;
- ``warm_interpreter``: ``preload``, trials forked from an interpreter that imported torch & co. once;
- ``function_trial``: one trial as a call of a Python function;
- ``gpu_slots``: ``--gpus``, one device per worker process;
- ``python_api``: ``diffsearch.search``.

The job itself (studies, workers, results) is ``diffsearch.jobs.sweep``.
"""
