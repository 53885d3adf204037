"""Plain helpers shared by tests in several folders (tests/conftest.py puts this folder on sys.path).

Fixtures live in conftest.py; what is here is ordinary code a test calls or reads: ``from helpers import ...``.

- ``tiny_task``: the real 2-D training task on a small moons set (a trial takes well under a second);
- ``MIXED_SPACE`` and ``fast_config``: a float / int / categorical space and a quick generative-model config;
- ``postgres_server``: a real PostgreSQL server on loopback (the ``postgres_url`` fixture wraps it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

# diffsearch is imported inside the helpers: conftest.py imports this module before any test module


def tiny_task(epochs=2):
    """The real 2-D training task on a small moons set (a trial takes well under a second)."""
    from diffsearch.datasets import load_vector_data
    from diffsearch.tasks.vector_diffusion import VectorDiffusionTask

    return VectorDiffusionTask(load_vector_data("moons", n_points=3000, held_out=1000), epochs=epochs)


# a space with every kind of parameter: log and linear floats, a stepped float, ints, a categorical
MIXED_SPACE = {
    "lr": FloatDistribution(1e-5, 1e-2, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "ratio": FloatDistribution(0.0, 0.2, step=0.05),
    "layers": IntDistribution(1, 8),
    "width": IntDistribution(16, 1024, log=True),
    "optimizer": CategoricalDistribution(["adam", "adamw", "sgd"]),
}


def fast_config(**changes):
    """A generative-model config small enough for a test (fewer timesteps and fit steps)."""
    from diffsearch.searchers.hparams.generative import GenerativeConfig

    return GenerativeConfig(**{"timesteps": 100, "first_fit_steps": 200, "refit_steps": 20, **changes})


# A real PostgreSQL server on loopback for the multi-worker tests (Debian's `postgresql` package).


def _as_root() -> bool:
    return os.geteuid() == 0


def _install() -> None:
    """Install Debian's PostgreSQL server if its binaries are absent (root or passwordless sudo)."""
    prefix = [] if _as_root() else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = prefix + ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(prefix + ["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def server_bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        _install()
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found after installing the Debian package")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_CTL: dict[str, tuple[list[str], list[str]]] = {}  # each running server's pg_ctl command and options, by URL


def pg_ctl(url: str, action: str) -> None:
    """``restart``, ``stop`` (fast: open connections are cut) or ``start`` the server of ``url`` (one started
    by ``postgres_server``), and wait until it is done."""
    ctl, options = _CTL[url]
    fast = ["-m", "fast"] if action in ("restart", "stop") else []
    subprocess.run(ctl + options + fast + [action], check=True, capture_output=True)


def kill_connections(port: int | str) -> int:
    """Terminate every connection to the ``diffsearch`` database of the test server on ``port`` (as a server
    restart or a network cut would); how many there were."""
    import psycopg2

    admin = psycopg2.connect(host="127.0.0.1", port=port, user="diffsearch", dbname="postgres")
    admin.autocommit = True
    cursor = admin.cursor()
    cursor.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = 'diffsearch' AND pid <> pg_backend_pid()"
    )
    killed = len(cursor.fetchall())
    admin.close()
    return killed


@contextmanager
def postgres_server():
    """Start a throw-away server; yield an SQLAlchemy URL for an empty database; stop and delete it."""
    bin_dir = server_bin_dir()
    data = Path(tempfile.mkdtemp(prefix="diffsearch-pg-"))
    # the server refuses to run as root: run it as Debian's `postgres` user then
    run_as = ["runuser", "-u", "postgres", "--"] if _as_root() else []
    if _as_root():
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    subprocess.run(
        run_as + [str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "diffsearch", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    ctl = run_as + [str(bin_dir / "pg_ctl"), "-D", str(data / "db")]
    options = [
        "-l",
        str(data / "server.log"),
        "-w",
        "-o",
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
    ]
    subprocess.run(ctl + options + ["start"], check=True, capture_output=True)
    try:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="diffsearch", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE diffsearch")
        connection.close()
        url = f"postgresql+psycopg2://diffsearch@127.0.0.1:{port}/diffsearch"
        _CTL[url] = (ctl, options)
        yield url
    finally:
        subprocess.run(ctl + ["-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def tiny_png(path, colour=(255, 0, 0)):
    """A 1x1 PNG of ``colour`` at ``path``, written without an image library; the path."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes([0, *colour])))
        + chunk(b"IEND", b"")
    )
    return path


def running_trial(study, worker: str):
    """A trial left RUNNING as a worker named ``worker`` (``host:pid``) would leave it, one param drawn."""
    import warnings

    with warnings.catch_warnings():  # "Heartbeat of storage is supposed to be used with Study.optimize"
        warnings.simplefilter("ignore")
        trial = study.ask()
    trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    trial.set_user_attr("worker", worker)
    return trial


def wait_for_a_complete_trial(db: Path, seconds: float, poll: float = 0.1) -> bool:
    """Poll a job's sqlite study read-only (never racing the job creating its schema) until a trial is
    COMPLETE; False after ``seconds``."""
    import sqlite3
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(poll)
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                if conn.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]:
                    return True
        except sqlite3.Error:
            continue
    return False


def write_dist_info(root: Path, name: str, entry_points: str) -> Path:
    """A distribution as pip leaves it in site-packages, without its modules: ``NAME-0.1.dist-info`` with
    METADATA and entry_points.txt, under ``root`` (put ``root`` on the path to install it)."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root
