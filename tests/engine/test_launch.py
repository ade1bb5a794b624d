"""``--dist-url env://``: the process layout read from a launcher's environment, and the
errors for layouts detectron2 cannot use. (Processes: tests/engine/test_distributed.py.)"""
import importlib

import pytest

from lada.engine import launch
from lada.engine.launch import EnvLayout

MASTER = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def _env(rank, world, local_rank, local_world=None):
    env = {**MASTER, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local_rank)}
    if local_world is not None:
        env["LOCAL_WORLD_SIZE"] = str(local_world)
    return env


def test_torchrun_layout():
    # torchrun --nnodes 2 --nproc_per_node 4: the second process of the second machine.
    layout = EnvLayout.from_environ(_env(5, 8, 1, local_world=4))
    assert layout == EnvLayout(rank=5, world_size=8, local_rank=1, local_world_size=4)
    assert (layout.machine_rank, layout.num_machines) == (1, 2)


def test_slurm_style_layout_takes_processes_per_machine_from_num_gpus():
    # SLURM sets no LOCAL_WORLD_SIZE: --num-gpus gives the processes per machine.
    layout = EnvLayout.from_environ(_env(3, 4, 1), num_gpus_per_machine=2)
    assert (layout.local_world_size, layout.machine_rank, layout.num_machines) == (2, 1, 2)
    # Agreeing --num-machines / --machine-rank are accepted.
    EnvLayout.from_environ(_env(3, 4, 1), num_gpus_per_machine=2, num_machines=2, machine_rank=1)


def test_missing_variables_are_named():
    env = _env(0, 2, 0)
    del env["MASTER_PORT"], env["RANK"]
    with pytest.raises(ValueError, match="RANK, MASTER_PORT are not set"):
        EnvLayout.from_environ(env)


@pytest.mark.parametrize(
    "env, kwargs, message",
    [
        (_env(2, 2, 0, 1), {}, "RANK 2 is not in"),
        (_env(1, 2, 1), {}, "LOCAL_RANK 1 is not below the 1 processes per machine"),
        (_env(1, 4, 0, 2), {}, "consecutive ranks"),  # rank 1 would be local rank 1
        (_env(0, 3, 0, 2), {}, "consecutive ranks"),  # 3 processes, machines of 2
        (_env(0, 4, 0, 2), {"num_gpus_per_machine": 4}, "--num-gpus 4 but LOCAL_WORLD_SIZE is 2"),
        (_env(0, 4, 0, 2), {"num_machines": 4}, "--num-machines 4 but the environment has 2"),
        (_env(2, 4, 0, 2), {"machine_rank": 3}, "--machine-rank 3 but RANK 2 is on machine 1"),
        ({**_env(0, 2, 0), "WORLD_SIZE": "two"}, {}, "WORLD_SIZE='two' is not an integer"),
    ],
)
def test_inconsistent_layouts_are_refused(env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnvLayout.from_environ(env, **kwargs)


def test_launcher_environment_without_env_url_is_refused(monkeypatch):
    """Under torchrun, a tcp:// URL would start independent trainings in one OUTPUT_DIR."""
    for name, value in _env(0, 2, 0, 2).items():
        monkeypatch.setenv(name, value)
    calls = []
    with pytest.raises(ValueError, match="add `--dist-url env://`"):
        launch(calls.append, 1, dist_url="tcp://127.0.0.1:29500", args=("trained",))
    assert calls == []


def test_env_url_refuses_a_missing_layout_before_starting(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="start train_net.py with torchrun"):
        launch(print, 1, dist_url="env://")


@pytest.mark.parametrize("exit_code, signal_name, status, how", [
    (1, None, 1, "with exit status 1"),  # a refusal's one line (SystemExit) in the process
    (-11, "SIGSEGV", 139, "on signal SIGSEGV"),
])
def test_a_training_process_that_fails_ends_in_one_line_not_a_traceback(
        exit_code, signal_name, status, how, capsys):
    import torch.multiprocessing as mp

    def spawn_and_wait():
        raise mp.ProcessExitedException("process 1 terminated", error_index=1, error_pid=99,
                                        exit_code=exit_code, signal_name=signal_name)

    spawning = importlib.import_module("lada.engine.launch")._spawning  # the module, not
    with pytest.raises(SystemExit) as stop:  # lada.engine's launch function
        spawning(spawn_and_wait)
    assert stop.value.code == status
    assert capsys.readouterr().err == (
        f"training process 1 exited {how}; its output above says why\n")
