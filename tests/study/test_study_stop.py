"""Stopping ``python -m lada.study`` (lada/study/stopping.py): a terminal's Ctrl-C, or a
SIGTERM to the study's process alone, reaches each running training exactly once, queued
runs do not start, and the study ends with one line and 128 + the signal. The training is
a stand-in that logs the signals it gets and exits as train_net.py does after saving its
checkpoint (130); train_net.py's own stop is tested in tests/engine/test_interrupt.py."""
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

STAND_IN = """#!{python}
import os, signal, sys, time
log = os.environ["STAND_IN_LOG"]
def write(line):
    with open(log, "a") as f:
        f.write(line + "\\n")
def stop(number, frame):
    write(f"signal {{number}}")
    time.sleep(0.5)  # the iteration and the checkpoint
    write("saved")
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
write("started")
while True:
    time.sleep(0.05)
"""


def _stop_study(tmp_path, send):
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    log = tmp_path / "trainings.log"
    study = subprocess.Popen(
        [sys.executable, "-m", "lada.study", "--quick", "--configs", "configs/quick/fcos.yaml",
         "configs/quick/atss.yaml", "--seeds", "0", "--output-dir", str(tmp_path / "study"),
         "--jobs", "1", "--python", str(stand_in)],
        cwd=REPO, env=dict(os.environ, STAND_IN_LOG=str(log)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,  # as a terminal's job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (log.is_file() and "started" in log.read_text()):
        assert study.poll() is None and time.monotonic() < deadline, study.communicate()
        time.sleep(0.1)
    send(study)
    _, stderr = study.communicate(timeout=60)
    return study.returncode, stderr, log.read_text().splitlines()


@pytest.mark.parametrize("signal_name, send", [
    ("SIGINT", lambda study: os.killpg(study.pid, signal.SIGINT)),  # Ctrl-C: the whole job
    ("SIGTERM", lambda study: study.send_signal(signal.SIGTERM)),  # the study alone
])
def test_a_signal_stops_the_running_training_once_and_starts_no_other(tmp_path, signal_name, send):
    returncode, stderr, trainings = _stop_study(tmp_path, send)
    assert trainings == ["started", "signal 2", "saved"]  # one SIGINT; atss never started
    assert returncode == 128 + signal.Signals[signal_name].value
    assert stderr.strip().splitlines()[-1] == (
        f"lada.study: stopped by {signal_name}: fcos seed 0 saved a checkpoint. Run the same "
        "command again to continue")
    assert "Traceback" not in stderr
    record = (tmp_path / "study/fcos/seed0/study_run.json").read_text()
    assert '"status": "started"' in record  # resumed by the same command
    assert not (tmp_path / "study/atss").exists()
