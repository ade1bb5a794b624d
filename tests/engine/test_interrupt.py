"""SIGINT / SIGTERM handling of training processes (lada.engine.interrupt): the first
signal asks for a stop, a second aborts at once, forked data loader workers ignore Ctrl-C,
and a signal seen by one process of a run stops every process."""
import os
import signal
import time

import pytest

from lada.engine import interrupt
from lada.engine.interrupt import StopOnSignal, StopSignals


@pytest.fixture
def signals():
    # Ctrl-C as Python starts in a terminal, whatever started the tests (a job started in
    # the background by a shell without job control inherits SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    handlers = StopSignals()
    assert handlers.install()
    yield handlers
    handlers.restore()
    signal.signal(signal.SIGINT, previous)


def _deliver(signum):
    """Sends ``signum`` to this process and lets Python run its handler."""
    os.kill(os.getpid(), signum)
    for _ in range(100):
        time.sleep(0.001)


def test_first_signal_asks_for_a_stop_and_a_second_aborts_at_once(signals, capfd):
    assert signals.arm()
    _deliver(signal.SIGINT)
    assert signals.received == signal.SIGINT
    assert "SIGINT: stopping after the iteration in progress" in capfd.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        _deliver(signal.SIGINT)


def test_before_training_ctrl_c_interrupts_as_usual(signals):
    with pytest.raises(KeyboardInterrupt):
        _deliver(signal.SIGINT)
    assert signals.received is None


def test_restore_puts_the_previous_handlers_back(signals):
    signals.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def _in_child(body) -> int:
    """Runs ``body`` in a forked child; its wait status."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
            os._exit(0)
        except BaseException:  # noqa: BLE001 -- whatever happens, the child leaves here
            os._exit(3)
    return os.waitpid(pid, 0)[1]


def test_a_forked_worker_ignores_ctrl_c_but_not_sigterm(signals):
    """Data loader workers get a terminal's Ctrl-C too; they keep feeding the iteration in
    progress and end with the trainer. SIGTERM (how the loader ends them) still ends them."""
    assert signals.arm()

    def sigint():
        _deliver(signal.SIGINT)
        assert signals.received is None
    assert os.waitstatus_to_exitcode(_in_child(sigint)) == 0
    assert os.waitstatus_to_exitcode(_in_child(lambda: _deliver(signal.SIGTERM))) == -signal.SIGTERM


def test_second_sigterm_kills_at_once():
    def body():
        handlers = StopSignals()
        handlers.install()
        handlers.arm()
        _deliver(signal.SIGTERM)
        assert handlers.received == signal.SIGTERM  # the first asks for a stop
        _deliver(signal.SIGTERM)
    assert os.waitstatus_to_exitcode(_in_child(body)) == -signal.SIGTERM


class _Trainer:
    iter, max_iter = 4, 10


def test_a_signal_seen_by_one_process_stops_all(signals, monkeypatch):
    """Rank 1 got SIGTERM (a scheduler signalling one process), rank 0 none: both stop."""
    hook = StopOnSignal(checkpointer=None, signals=signals)
    hook.trainer = _Trainer()
    assert signals.arm()
    monkeypatch.setattr(interrupt.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(interrupt.comm, "all_gather", lambda value: [value, signal.SIGTERM])
    assert hook._agreed_signal() == signal.SIGTERM
    monkeypatch.setattr(interrupt.comm, "all_gather", lambda value: [value, None])
    assert hook._agreed_signal() is None


class _Checkpointer:
    """Records the saves asked for."""

    def __init__(self, save_dir):
        self.save_dir, self.saved = str(save_dir), []

    def save(self, name, **extra):
        self.saved.append((name, extra))


def test_the_stop_saves_the_iteration_then_exits_128_plus_the_signal(signals, tmp_path, caplog):
    hook = StopOnSignal(_Checkpointer(tmp_path), signals=signals)
    hook.trainer = _Trainer()
    signals.arm()
    signals.received = signal.SIGTERM
    with pytest.raises(SystemExit) as stop:
        hook.after_step()
    assert stop.value.code == 143
    assert hook.checkpointer.saved == [("model_0000004", {"iteration": 4})]
    hook.after_train()
    assert caplog.records[-1].getMessage() == (
        f"stopped by SIGTERM after iteration 4: checkpoint {tmp_path / 'model_0000004.pth'} saved; "
        "continue with the same command and --resume")


def test_no_second_save_of_an_iteration_the_periodic_checkpointer_saved(signals, tmp_path):
    (tmp_path / "last_checkpoint").write_text("model_0000004.pth")
    hook = StopOnSignal(_Checkpointer(tmp_path), signals=signals)
    hook.trainer = _Trainer()
    signals.arm()
    signals.received = signal.SIGINT
    with pytest.raises(SystemExit):
        hook.after_step()
    assert hook.checkpointer.saved == []


def test_after_the_last_iteration_a_signal_interrupts_at_once(signals, tmp_path):
    """The final checkpoint is written; a signal during the final evaluation interrupts it."""
    hook = StopOnSignal(_Checkpointer(tmp_path), signals=signals)
    hook.trainer = _Trainer()
    hook.trainer.iter = hook.trainer.max_iter - 1
    signals.arm()
    hook.after_step()
    assert not signals.armed and hook.checkpointer.saved == []
    with pytest.raises(KeyboardInterrupt):
        _deliver(signal.SIGINT)
