"""Task adapters: one module per downstream protocol, run through :func:`run_task`."""
from mec_eval.tasks.base import Result, Task
from mec_eval.tasks.registry import TASKS
from mec_eval.tasks.runner import RunOutcome, TaskSpec, list_task_specs, load_task_spec, resolve_task, run_task
from mec_eval.tasks.runner import expand_task, run_task_all

__all__ = ["Result", "Task", "TASKS", "RunOutcome", "TaskSpec", "list_task_specs", "load_task_spec",
           "resolve_task", "run_task", "expand_task", "run_task_all"]
