"""The models' policies and option keys: declared where they are read, once; nothing rewritten at class creation."""
import inspect

import pytest

import ext  # noqa: F401
from basicsr.utils.registry import MODEL_REGISTRY
from ext.models.ema_schedule import EMASchedule
from ext.models.option_keys import SECTIONS, OptionKeys, declared_option_keys, option_key_declarations
from ext.models.train_speed import SPEED_KEYS, TrainSpeed
from ext.registry import REGISTERED

MODELS = sorted({name for kind, name in REGISTERED if kind == 'model'})


def _model(name):
    return MODEL_REGISTRY.get(name)


@pytest.mark.parametrize('name', MODELS)
@pytest.mark.parametrize('section', SECTIONS)
def test_every_key_is_declared_once(name, section):
    declarations = list(option_key_declarations(_model(name), section))
    for index, (first, keys) in enumerate(declarations):
        for second, other in declarations[index + 1:]:
            assert not keys & other, f'{sorted(keys & other)} declared by both {first.__name__} and {second.__name__}'


@pytest.mark.parametrize('name', MODELS)
def test_a_model_reads_its_own_keys_and_its_policies(name):
    cls = _model(name)
    assert {TrainSpeed, EMASchedule} <= set(cls.policies)
    assert set(SPEED_KEYS) | {'ema_warmup'} <= cls.train_option_keys  # what the option check sees
    for section in SECTIONS:
        assert getattr(cls, section) == declared_option_keys(cls, section)
        own = vars(cls).get(section)
        assert own is None or isinstance(own, OptionKeys)


def test_a_subclass_declares_only_what_it_adds():
    ttsr, inpaint = _model('TTSRModel'), _model('TTSRInpaintModel')
    assert vars(inpaint)['train_option_keys'] == {'box_pixel_weight', 'saturation_guard'}
    assert ttsr.train_option_keys < inpaint.train_option_keys
    assert 'gt_usm' in _model('RealESRNetPretrainModel').option_keys
    assert {'queue_size', 'gt_size', 'resize_prob2', 'l1_gt_usm'} <= _model('MultiScaleRealESRGANModel').option_keys
    assert vars(_model('Pix2PixInpaintModel'))['val_option_keys'] == {'composite'}
    assert _model('Pix2PixInpaintModel').val_option_keys == {'composite', 'color_fix'}  # color_fix: PolicyHooks


@pytest.mark.parametrize('name', MODELS)
def test_optimize_parameters_is_the_one_the_model_wrote(name):
    """No wrapper installed when the class was created: each class's step is the function in its body."""
    for cls in _model(name).__mro__:
        if not cls.__module__.startswith('ext.'):
            continue
        assert '__init_subclass__' not in vars(cls), cls
        own = vars(cls).get('optimize_parameters')
        if own is not None:
            assert inspect.unwrap(own) is own and own.__qualname__ == f'{cls.__qualname__}.optimize_parameters'


def test_option_keys_name_their_section():
    with pytest.raises((TypeError, RuntimeError)) as raised:  # Python < 3.12 wraps it in a RuntimeError

        class Wrong:  # noqa: F841
            keys = OptionKeys({'x'})

    assert 'OptionKeys is for the attributes' in str(raised.value) + str(raised.value.__cause__)
