"""A real PostgreSQL server on loopback for the multi-worker tests (Debian's `postgresql` package)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


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
    subprocess.run(run_as + [str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "diffsearch",
                             "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    ctl = run_as + [str(bin_dir / "pg_ctl"), "-D", str(data / "db")]
    subprocess.run(ctl + ["-l", str(data / "server.log"), "-w", "-o",
                          f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="diffsearch", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE diffsearch")
        connection.close()
        yield f"postgresql+psycopg2://diffsearch@127.0.0.1:{port}/diffsearch"
    finally:
        subprocess.run(ctl + ["-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
