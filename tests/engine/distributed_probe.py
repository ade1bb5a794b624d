"""``train_net.py`` with a probe: the training processes of tests/engine/test_distributed.py.

Same command line as train_net.py plus ``--probe-dir DIR``. Every process writes
``DIR/rank<R>.json``: per step, the files of its images, its own positive count (read off
the matcher's result, before any all-reduce), the ``normalizer`` it logged and a SHA-256
of its parameters after the optimizer step; rank 0 adds the logged (all-worker mean)
losses. ``DIR/grads_rank<R>.pt`` holds the flattened gradients of the first step.
"""
import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for lada

import lada  # noqa: E402,F401
from detectron2.engine import HookBase  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from lada.engine import (  # noqa: E402
    Trainer, build_argument_parser, launch, register_datasets, setup_cfg,
)


class Probe(HookBase):
    def __init__(self, model: torch.nn.Module, probe_dir: Path):
        self.module = getattr(model, "module", model)  # inside DistributedDataParallel
        self.probe_dir = probe_dir
        self.records = []
        self.step = {}
        matcher = self.module.matcher

        def recording_matcher(inputs):
            result = matcher(inputs)
            self.step["local_positives"] = int(result.foreground.sum())
            return result

        self.module.matcher = recording_matcher
        self.module.register_forward_pre_hook(
            lambda module, args: self.step.update(images=[d["file_name"] for d in args[0]])
        )

    def after_step(self):
        storage = self.trainer.storage
        params = torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])
        self.step.update(
            iter=self.trainer.iter,
            normalizer=storage.history("normalizer").latest(),
            param_sha256=hashlib.sha256(params.numpy().tobytes()).hexdigest(),
        )
        if comm.is_main_process():
            self.step["losses"] = {
                k: storage.history(k).latest() for k in storage.histories() if k.startswith("loss_")
            }
        if self.trainer.iter == 0:
            grads = torch.cat([p.grad.reshape(-1) for p in self.module.parameters()])
            torch.save(grads, self.probe_dir / f"grads_rank{comm.get_rank()}.pt")
        self.records.append(self.step)
        self.step = {}

    def after_train(self):
        path = self.probe_dir / f"rank{comm.get_rank()}.json"
        path.write_text(json.dumps(self.records))


def main(args):
    cfg = setup_cfg(args)
    register_datasets(cfg, args)
    probe_dir = Path(args.probe_dir)

    class ProbedTrainer(Trainer):
        def build_hooks(self):
            return super().build_hooks() + [Probe(self.model, probe_dir)]

    trainer = ProbedTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()


if __name__ == "__main__":
    parser = build_argument_parser()
    parser.add_argument("--probe-dir", required=True)
    args = parser.parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
