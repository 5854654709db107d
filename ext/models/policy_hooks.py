"""The BasicSR hooks through which a model's policy objects reach the training engine (not a component)."""
from ext.models.image_validation import validate_images
from ext.models.option_keys import OptionKeys
from ext.models.train_speed import TrainSpeed, uncompiled


class PolicyHooks:
    """Base of this package's training models, next to their BasicSR base (``SRModel``, ``SRGANModel``).

    It lets the objects a model owns act where BasicSR and :mod:`ext.engine.resume` call every model:
    ``get_bare_model`` sees through the ``torch.compile`` wrapper of :class:`TrainSpeed` (checkpoints and
    the EMA use the plain module), and the extra training state of the ``.state`` files gathers the state
    of each part :meth:`resumable_parts` names. Validation is the one loop of
    :func:`~ext.models.image_validation.validate_images`, with the hooks of :meth:`validation_extras`. Every model here owns a ``TrainSpeed`` as ``self.speed``.

    The option-key attributes are :class:`~ext.models.option_keys.OptionKeys`: a subclass declares the
    keys it reads itself, and reading the attribute on a model gives all of them, its policies' included.
    """

    option_keys = OptionKeys()
    train_option_keys = OptionKeys()
    val_option_keys = OptionKeys({'color_fix'})  # read by validate_images

    def validation_extras(self):
        """The :class:`~ext.models.image_validation.ValidationExtra` hooks of this model's validation."""
        return ()

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        validate_images(self, dataloader, current_iter, tb_logger, save_img, extras=self.validation_extras())

    def get_bare_model(self, net):
        return super().get_bare_model(uncompiled(net))

    def resumable_parts(self):
        """``{state key: part}`` of what the ``.state`` restores besides BasicSR's own state: objects with
        ``state_dict()`` / ``load_state_dict()``, or None for a part this run does not have."""
        return {TrainSpeed.state_key: self.speed}

    def extra_training_state(self):
        return {key: part.state_dict() for key, part in self.resumable_parts().items() if part is not None}

    def load_extra_training_state(self, state):
        for key, part in self.resumable_parts().items():
            if part is not None and key in state:
                part.load_state_dict(state[key])
