"""Several tuning workers share one Optuna storage (autoflash/tuning/campaign.py): each trial
runs once, the campaign's entries equal a one-worker run's, and a dead worker costs only its
running trial, which is queued again. Driven through the stand-in GPU, so no GPU is needed;
the stand-in's test hook (standin_hooks.py) logs every trial it runs to prove "once"."""
import collections
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import optuna

from autoflash import store
from autoflash.ops.forward import FORWARD
from autoflash.runner.process import InlineRunner
from autoflash.runner.protocol import InfoRequest
from autoflash.runner.standin import StandInBackend
from autoflash.tuning import campaign
from autoflash.tuning.keys import StudyKey, TuneOptions
from autoflash.tuning.space import heuristic_default, params_of, suggest_config
from autoflash.tuning.storage import open_storage
from autoflash.tuning.tuner import Tuner
from standin_hooks import HOOK

ROOT = Path(__file__).resolve().parent.parent
# fp16 d64 non-causal at one bucket on the CUDA-core template: ~100 configs pass the rules;
# --trials 500 makes the sampler exhaustive, so one worker and three visit the same set and must agree.
PROBLEM = ["--dtype", "fp16", "--head-dim", "64", "--causal", "no", "--seq-len", "1024", "--trials", "500",
           "--template", "flash_fwd_simt"]
COMPARED = ("op", "device", "template", "dtype", "head_dim", "causal", "seq_bucket", "config", "ms", "tflops", "finalists",
            "default_ms")


def env(**extra):
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                AUTOFLASH_STANDIN_HOOK=HOOK, **extra)


def tune(out: Path, *args, extra_env=None, timeout=300, wait=True):
    cmd = [sys.executable, "-m", "autoflash.cli", "tune", "--stand-in", "--arch", "sm_90", "--out", str(out),
           "--log", str(out / "log.json"), "--workers", "1", *PROBLEM, *args]
    out.mkdir(parents=True, exist_ok=True)
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env(**(extra_env or {})))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(**(extra_env or {})), timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def records(path: Path) -> list[tuple[int, int, str]]:
    """(pid, device, config) of every trial the stand-in ran."""
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(int(pid), int(dev), name) for pid, dev, name, _ in rows]


def comparable(out: Path) -> list[dict]:
    """What must not depend on the number of workers. Not the complete/pruned split: a
    trial stops early when it is clearly slower than the best time known when it runs,
    which depends on the order trials finish in (never for a finalist)."""
    return [{k: e[k] for k in COMPARED} | {"run": e["trials"]["run"]} for e in store.read(out / "sm_90.json")]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """The reference: the same campaign on one worker, in memory."""
    out = tmp_path_factory.mktemp("one")
    tune(out, extra_env={"AUTOFLASH_TEST_RECORD": str(out / "runs.txt")})
    return out


def check_campaign(out: Path, reference: Path, workers: int, out_dirs=None) -> list:
    runs = records(out / "runs.txt")
    names = collections.Counter(name for _, _, name in runs)
    assert names and max(names.values()) == 1, [n for n, c in names.items() if c > 1]  # every config once
    assert set(names) == {name for _, _, name in records(reference / "runs.txt")}  # the same configs as one worker
    assert len({pid for pid, _, _ in runs}) == workers  # and every worker took a share
    for folder in out_dirs or [out]:
        assert comparable(folder) == comparable(reference)
    return runs


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_three_workers_run_every_trial_once_and_agree_with_one(tmp_path, one_worker, storage):
    url = str(tmp_path / "study.journal") if storage == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    out = tune(tmp_path, "--devices", "0,1,2", "--storage", url,
               extra_env={"AUTOFLASH_TEST_RECORD": str(tmp_path / "runs.txt"),
                          "AUTOFLASH_TEST_MEET": f"3:{tmp_path / 'met'}"})  # a late worker still gets a share
    assert "2 more worker(s)" in out
    runs = check_campaign(tmp_path, one_worker, workers=3)
    assert {dev for _, dev, _ in runs} == {0, 1, 2}  # each worker timed on its own device


def test_the_same_tune_command_twice_shares_the_campaign(tmp_path, one_worker):
    """As on two machines: two `tune` runs on one storage split the trials, and each
    writes the same entries to its own tuned_configs folder."""
    url = str(tmp_path / "study.journal")
    procs = [tune(tmp_path / name, "--storage", url, wait=False,
                  extra_env={"AUTOFLASH_TEST_RECORD": str(tmp_path / "runs.txt"),
                             "AUTOFLASH_TEST_MEET": f"2:{tmp_path / 'met'}"}) for name in ("a", "b")]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    check_campaign(tmp_path, one_worker, workers=2, out_dirs=[tmp_path / "a", tmp_path / "b"])


def test_killed_worker_costs_only_its_trial(tmp_path, one_worker):
    """Worker 1 hangs in its first trial and is killed: its trial is marked lost (its
    process is gone), queued again, run by another worker, and the campaign completes."""
    marker = tmp_path / "hung"
    proc = tune(tmp_path, "--devices", "0,1", "--storage", str(tmp_path / "study.journal"), wait=False,
                extra_env={"AUTOFLASH_TEST_RECORD": str(tmp_path / "runs.txt"),
                           "AUTOFLASH_TEST_HANG": f"1:{marker}",
                           # both workers reach their first trial: on a loaded machine worker 0 could otherwise run
                           # the whole campaign before worker 1 starts, and nothing would hang (seen once, 2026-11-30)
                           "AUTOFLASH_TEST_MEET": f"2:{tmp_path / 'met'}"})
    deadline = time.time() + 120
    while not (marker.exists() and marker.read_text()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), proc.communicate()[0]
    pid, hung_config = marker.read_text().split()
    os.kill(int(pid), signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "exited with status -9" in out and "lost" in out, out
    runs = records(tmp_path / "runs.txt")
    ran = [(p, name) for p, _, name in runs if name == hung_config]
    assert len(ran) == 2 and ran[0][0] == int(pid) and ran[1][0] != int(pid)  # hung once, then re-run elsewhere
    # apart from the lost one, every config ran once, and the result is the one-worker result
    assert collections.Counter(name for _, _, name in runs if name != hung_config).most_common(1)[0][1] == 1
    assert comparable(tmp_path) == comparable(one_worker)
    shown = subprocess.run([sys.executable, "-m", "autoflash.cli", "show", "--storage", str(tmp_path / "study.journal")],
                           capture_output=True, text=True, env=env(), check=True).stdout
    assert "lost: worker" in shown and "is gone" in shown


def test_trial_of_a_silent_remote_worker_is_lost_after_grace(tmp_path):
    """A worker on another machine stops sending heartbeats (its pid means nothing here):
    after --grace seconds its running trial is failed as lost and queued again."""
    spec = {"kind": "standin", "arch": "sm_90", "device_name": "Stand-in GPU"}
    key = StudyKey.of("forward", "sm_90", "Stand-in GPU", "flash_fwd_simt", dtype="fp32", head_dim=64, causal=False)
    opts = TuneOptions(trials=6, sampler="random", storage=str(tmp_path / "s.journal"), buckets=(1024,),
                              grace_s=2.0)
    storage = open_storage(opts.storage)
    name = key.study_name(opts.buckets, FORWARD.default_tokens)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    default = heuristic_default(key)
    study.enqueue_trial(params_of(default))
    remote = study.ask()  # a trial "running" on another host, which has just gone silent
    cfg = suggest_config(remote, key, None)
    assert cfg == default
    for k, v in {"worker": "elsewhere:1", "config": cfg.name, "counted": True, "heartbeat": time.time()}.items():
        remote.set_user_attr(k, v)

    runner = InlineRunner(StandInBackend(spec))
    started = time.monotonic()
    tuner = Tuner(opts, runner, runner.call(InfoRequest()), workers=0, standin=spec)
    [result] = tuner.run([key])
    assert time.monotonic() - started >= 1.5  # it waited for the grace period before taking the trial over
    rows = {r["number"]: r for r in result.trials}
    assert rows[remote.number]["state"] == "FAIL" and "no heartbeat from worker elsewhere:1" in rows[remote.number]["reason"]
    retried = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == remote.number]
    assert len(retried) == 1 and retried[0].user_attrs["config"] == cfg.name
    assert retried[0].user_attrs.get("stage") == "run"  # run again, here (it may stop early as clearly slower)
    assert result.counts["lost"] == 1 and result.entries
    # the budget (6 configs sent to a compiler) counts the re-run, not the lost trial
    assert sum(1 for t in study.get_trials() if t.user_attrs.get("counted") and "lost" not in t.user_attrs) == 6


def test_trial_nobody_claimed_is_lost_after_grace(tmp_path):
    """A worker killed between ask() and recording who it is leaves a RUNNING trial with no
    worker and no heartbeat: it is timed on this process's own clock and lost after grace."""
    spec = {"kind": "standin", "arch": "sm_90", "device_name": "Stand-in GPU"}
    key = StudyKey.of("forward", "sm_90", "Stand-in GPU", "flash_fwd_simt", dtype="fp32", head_dim=64, causal=False)
    opts = TuneOptions(trials=3, sampler="random", storage=str(tmp_path / "s.journal"), buckets=(1024,),
                              grace_s=1.0)
    study = optuna.create_study(study_name=key.study_name(opts.buckets, FORWARD.default_tokens),
                                storage=open_storage(opts.storage), direction="minimize")
    orphan = study.ask()  # no attributes at all
    runner = InlineRunner(StandInBackend(spec))
    [result] = Tuner(opts, runner, runner.call(InfoRequest()), workers=0, standin=spec).run([key])
    row = {r["number"]: r for r in result.trials}[orphan.number]
    assert row["state"] == "FAIL" and "no worker claimed it" in row["reason"] and result.entries


def test_worker_without_a_campaign_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-m", "autoflash.cli", "worker", "--stand-in", "--storage",
                           str(tmp_path / "empty.journal")], capture_output=True, text=True, env=env())
    assert done.returncode == 2 and "no autoflash campaign in storage" in done.stderr, done.stderr


def test_worker_of_another_gpu_model_does_not_join(tmp_path):
    url = str(tmp_path / "s.journal")
    keys = [StudyKey.of("forward", "sm_90", "NVIDIA H100 80GB HBM3", None, dtype="bf16", head_dim=128, causal=False)]
    campaign.publish(url, keys, TuneOptions())
    with pytest.raises(campaign.CampaignError, match="this GPU is Stand-in GPU"):
        campaign.load(url, "sm_90", "Stand-in GPU")
    name, loaded, opts = campaign.load(url, "sm_90", "NVIDIA H100 80GB HBM3")
    assert loaded == keys and opts.role == "search" and opts.storage == url and opts.buckets is None


def test_devices_flag_errors(tmp_path):
    for args, message in ((["--devices", "0", "--device", "1"], "not both"), (["--grace", "0"], "--grace")):
        done = subprocess.run([sys.executable, "-m", "autoflash.cli", "tune", "--stand-in", "--out", str(tmp_path),
                               *args], capture_output=True, text=True, env=env())
        assert done.returncode == 2 and message in done.stderr, done.stderr


# ------------------------------------------------------------- PostgreSQL
def _initdb() -> str | None:
    found = shutil.which("initdb") or sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on loopback, from the distribution's package."""
    initdb = _initdb()
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does it)")
    try:
        import psycopg2  # noqa: F401  (SQLAlchemy's PostgreSQL driver)
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install psycopg2-binary; the test extra has it)")
    bindir = Path(initdb).parent
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="autoflash-pg-"))
    os.chmod(home, 0o755)
    if as_user:
        shutil.chown(home, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = home / "data"
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w", "-o",
                              f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_three_workers_through_postgresql(tmp_path, one_worker, postgres_url):
    out = tune(tmp_path, "--devices", "0,1,2", "--storage", postgres_url,
               extra_env={"AUTOFLASH_TEST_RECORD": str(tmp_path / "runs.txt")})
    assert "2 more worker(s)" in out
    check_campaign(tmp_path, one_worker, workers=3)


def test_a_joining_worker_waits_until_the_creator_has_queued_the_configs(caplog):
    """The race CI hit: a second `tune` loaded the study between its creation and its
    seeding, saw an empty queue, and finalized with no trials. The joiner now waits for
    the creator's mark, and past the grace period goes on with a warning."""
    import threading

    from autoflash.tuning import shared

    study = optuna.create_study()
    threading.Timer(0.3, study.set_user_attr, (shared.SEEDED, True)).start()
    started = time.monotonic()
    shared.wait_until_seeded(study, grace_s=30)
    assert 0.25 < time.monotonic() - started < 10 and study.user_attrs[shared.SEEDED]

    unseeded = optuna.create_study(study_name="never-seeded")
    with caplog.at_level("WARNING", logger="autoflash"):
        shared.wait_until_seeded(unseeded, grace_s=0.2)
    assert "never-seeded: not marked seeded" in caplog.text
