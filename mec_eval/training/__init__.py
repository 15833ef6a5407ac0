"""The one training engine shared by pre-training and every trained task (layer 3; imports only the bottom layer).

``optim``: ``build_optimizer`` (sgd / lars / adamw) and LARS; ``schedule``: ``scaled_lr`` (linear | none)
and ``LRSchedule`` (warm-up + cosine, cosine-epoch, constant, multistep); ``sampling``: the seeded,
resumable, per-process data order and per-item seeds; ``signals``: SIGTERM / SIGUSR1 -> save and
:class:`~mec_eval.training.signals.Preempted`; ``distributed``: SyncBN where asked, DDP, the
evaluation share; ``state``: a task's ``state.pt``; ``engine``: ``make_plan`` and the loop,
:class:`~mec_eval.training.engine.TrainingEngine`.
"""
