"""The OUTPUT_DIR lock on its own: one holder, the refusal names it, a killed run's lock
is taken over with a warning, only rank 0 locks. (Through train_net.py:
tests/engine/test_failure_catalogue.py; a 2-process run in one folder:
tests/engine/test_distributed.py::test_torchrun_with_env_url.)"""
import logging
import os
import socket

import pytest
from detectron2.utils import comm

from lada.engine.output_lock import LOCK_FILE, OutputDirInUseError, output_dir_lock


def test_a_held_folder_is_refused_naming_it_and_the_holder(tmp_path):
    with output_dir_lock(tmp_path / "run"):
        holder = (tmp_path / "run" / LOCK_FILE).read_text()
        assert holder.startswith(f"pid {os.getpid()} on {socket.gethostname()}, since ")
        with pytest.raises(OutputDirInUseError) as error:
            with output_dir_lock(tmp_path / "run"):
                pass
        assert str(error.value).startswith(
            f"OUTPUT_DIR {tmp_path / 'run'} is in use by another run (pid {os.getpid()} on ")
    assert (tmp_path / "run" / LOCK_FILE).read_text() == ""  # released, emptied
    with output_dir_lock(tmp_path / "run"):  # free again
        pass


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with output_dir_lock(tmp_path):
            1 / 0
    with output_dir_lock(tmp_path):
        pass


def test_a_killed_runs_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    (tmp_path / LOCK_FILE).write_text("pid 4242 on elsewhere, since 2026-01-01 00:00:00\n")
    with caplog.at_level(logging.WARNING, logger="lada"):
        with output_dir_lock(tmp_path):
            assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} ")
    assert (f"OUTPUT_DIR {tmp_path}: took over the lock left by a run that did not release it "
            "(pid 4242 on elsewhere, since 2026-01-01 00:00:00;") in caplog.text


def test_other_ranks_do_not_lock(tmp_path, monkeypatch):
    with output_dir_lock(tmp_path):
        monkeypatch.setattr(comm, "get_rank", lambda: 1)
        holder = (tmp_path / LOCK_FILE).read_text()
        with output_dir_lock(tmp_path):  # a worker of the run holding the lock: no refusal
            assert (tmp_path / LOCK_FILE).read_text() == holder  # and it writes nothing
