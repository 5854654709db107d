"""What the running training job knows about its loader, its model and a pending resume.

BasicSR's loop is one function (``train_pipeline``) that keeps these in local variables; the engine's
replacements of its parts read and write them here. :data:`PROGRESS` is the one instance.
"""


class TrainProgress:
    iters_per_epoch = None
    batch_size = None
    pending_resume = None  # the loaded .state until its position is handed to the sampler
    train_sampler = None
    model = None
    current_iter = None  # the iteration being trained (set as it starts)


PROGRESS = TrainProgress()


def update_learning_rate_noting_the_iteration(original, self, current_iter, *args, **kwargs):
    """BasicSR's loop calls ``model.update_learning_rate(current_iter)`` first in every iteration."""
    PROGRESS.model, PROGRESS.current_iter = self, current_iter
    return original(self, current_iter, *args, **kwargs)
