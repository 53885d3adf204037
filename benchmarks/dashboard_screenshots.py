"""Screenshots of optuna-dashboard on a short hparams run: do the studies explain themselves?

Not a test. Runs a short search (moons, random searcher, small data) with re-trainings into a temporary
folder, adds one trial lost with a dead worker (to show its reason and its retry), starts
``optuna-dashboard <storage> --artifact-dir <run>/artifacts`` and takes headless Chromium screenshots:

  benchmarks/results/dashboard_study.png      the search study's page (metric name, history, study artifacts)
  benchmarks/results/dashboard_note.png       the study's note
  benchmarks/results/dashboard_trial.png      a trial page (readable attrs: scores, seconds, config.*)
  benchmarks/results/dashboard_lost.png       the trial lost with its worker: its lost_reason
  benchmarks/results/dashboard_retry.png      its retry (retry_of)
  benchmarks/results/dashboard_repeats.png    the .repeats study's note (kind, roles; "best" does not apply)

    .venv/bin/python benchmarks/dashboard_screenshots.py [--keep DIR]   # DIR holding a run already: reused

Needs optuna-dashboard (the dev extra) and Chromium (apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def short_run(out: Path) -> str:
    from diffsearch.jobs.hparams import HparamsOptions, run_hparams

    run_hparams(
        HparamsOptions(
            dataset="moons",
            searcher="random",
            trials=8,
            epochs=8,
            min_epochs=1,
            n_points=3000,
            held_out=1000,
            repeats=2,
            baseline_runs=2,
            out=str(out),
            study="hparams-moons-random",
            heartbeat=10,
        )
    )
    return f"sqlite:///{out / 'study.db'}"


def add_lost_trial(storage_url: str) -> int:
    """A trial whose worker died mid-training, found by its dead pid: failed with a reason, retried."""
    import optuna

    from diffsearch.ledger import open_storage
    from diffsearch.ledger.dead_workers import fail_dead_workers_trials
    from diffsearch.spaces.training import TOY2D

    study = optuna.load_study(study_name="hparams-moons-random", storage=open_storage(storage_url, heartbeat=10))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = study.ask()
    TOY2D.suggest(trial)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}")
    (number,) = fail_dead_workers_trials(study)
    return number


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no Chromium: apt-get install -y chromium")


def screenshot(browser: str, url: str, path: Path, height: int = 1400) -> None:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size=1500,{height}",
            "--virtual-time-budget=15000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="run in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    browser = chromium()
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dashboard-run-"))
    if (out / "study.db").is_file():  # a kept run: screenshots only
        import optuna

        storage = f"sqlite:///{out / 'study.db'}"
        lost = next(
            t.number
            for t in optuna.load_study(study_name="hparams-moons-random", storage=storage).trials
            if "lost_reason" in t.user_attrs
        )
    else:
        storage = short_run(out)
        lost = add_lost_trial(storage)
    port = free_port()
    dashboard = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "optuna-dashboard"),
            storage,
            "--artifact-dir",
            str(out / "artifacts"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/dashboard"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        import optuna

        ids = {s.study_name: s._study_id for s in optuna.get_all_study_summaries(storage)}
        search, repeats = ids["hparams-moons-random"], ids["hparams-moons-random.repeats"]
        RESULTS.mkdir(exist_ok=True)
        screenshot(browser, f"{base}/studies/{search}", RESULTS / "dashboard_study.png", 2600)
        screenshot(browser, f"{base}/studies/{search}/note", RESULTS / "dashboard_note.png", 1700)
        screenshot(browser, f"{base}/studies/{search}/trials?numbers=0", RESULTS / "dashboard_trial.png", 1500)
        screenshot(browser, f"{base}/studies/{search}/trials?numbers={lost}", RESULTS / "dashboard_lost.png", 900)
        screenshot(browser, f"{base}/studies/{search}/trials?numbers={lost + 1}", RESULTS / "dashboard_retry.png", 900)
        screenshot(browser, f"{base}/studies/{repeats}/note", RESULTS / "dashboard_repeats.png", 1400)
    finally:
        dashboard.terminate()
        dashboard.wait()
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
