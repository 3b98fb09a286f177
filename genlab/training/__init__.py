"""Training: `train` and `resume` a run folder; the loop in named parts.

    prepare.py   prepare_run: fresh or resumed, what may change (the one resume path)
    trainer.py   train / resume: data, model, devices, process group; start and end a run
    loop.py      the loop: training_step, then what is due (eval, log, sample, checkpoint)
    plan.py      what is due at a step; when to stop (signals, STOP file, hook, all ranks)
    state.py     TrainState: step, elapsed time, rng, optimizers; save / restore
    meter.py     averaged metrics, images/s, TrainingDiverged
    tasks.py     what each due task writes into the run folder
    devices.py   device, bf16 autocast, channels_last
    distributed.py  data-parallel training under torchrun
"""
from .devices import precision, resolve_device, use_bf16, use_channels_last
from .meter import TrainingDiverged
from .prepare import RESUMABLE_CHANGES, PreparedRun, build_for_data, make_config, prepare_run
from .trainer import resume, train

__all__ = ["train", "resume", "prepare_run", "PreparedRun", "RESUMABLE_CHANGES", "make_config", "build_for_data",
           "precision", "resolve_device", "use_bf16", "use_channels_last", "TrainingDiverged"]
