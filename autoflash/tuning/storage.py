"""Optuna storages and samplers, and who this worker is (trials record it)."""
from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

from autoflash.tuning.keys import TuneError

JOURNAL_LOCK_GRACE_S = 5  # a journal file's lock older than this is a dead worker's, and is broken

def open_storage(url: str | None):
    """Optuna storage from a URL: None (in memory), an RDB URL (sqlite:///x.db,
    postgresql://...), or a path to a journal file (*.log, *.journal, or journal:PATH)."""
    import optuna

    if url is None:
        return None
    if "://" in url and not url.startswith("journal:"):
        if not url.startswith("sqlite"):
            return optuna.storages.RDBStorage(url)
        # SQLite serialises writers; several workers need a longer wait than its 5 s default
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        _serialise_sqlite(storage.engine)
        return storage
    path = url[len("journal:"):] if url.startswith("journal:") else url
    if path.startswith("//"):
        path = path[2:]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage

    # A worker holds the lock for one append (milliseconds); one killed mid-append leaves it behind,
    # which Optuna's default would break only after 30 s (every resume after a SIGKILL waited that).
    lock = JournalFileSymlinkLock(path, grace_period=JOURNAL_LOCK_GRACE_S)
    return JournalStorage(JournalFileBackend(path, lock_obj=lock))


def storage_file(url: str) -> Path | None:
    """The local file behind a storage URL (journal path or sqlite:///PATH), None for a server URL."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    if "://" in url and not url.startswith("journal:"):
        return None
    path = url[len("journal:"):] if url.startswith("journal:") else url
    return Path(path[2:] if path.startswith("//") else path)


def _serialise_sqlite(engine) -> None:
    """Make each SQLite transaction take the write lock when it starts. Optuna hands a
    queued trial to one worker by SELECT ... FOR UPDATE, which SQLite ignores: two workers
    could both read the trial as waiting and both run it (seen in tests/test_distributed.py).
    BEGIN IMMEDIATE makes that read-then-write atomic, as the row lock does in PostgreSQL."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # the driver's own BEGIN would be DEFERRED

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners would miss them


def make_sampler(name: str, seed: int):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=8)
        if name in ("random", "exhaustive"):  # exhaustive: every config is enqueued, the sampler is not asked
            return optuna.samplers.RandomSampler(seed=seed)
    raise TuneError(f"unknown sampler {name!r} (auto, tpe, exhaustive, random)")


# Who runs a trial, as host:pid: a dead process of this host is seen at once; another
# host's worker by its heartbeat. AUTOFLASH_WORKER_HOST lets tests play another host.
HOST = os.environ.get("AUTOFLASH_WORKER_HOST") or socket.gethostname()
WORKER_ID = f"{HOST}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet (a zombie) still answers kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


