"""The one table of what this package replaces in BasicSR 1.4.2: target, replacement, why, and its test.

:func:`ext.activate` calls :func:`apply` once. Each row replaces ``owner.name``; a row with ``wraps`` calls
its replacement with the function it replaces as the first argument (``original``), and ``also`` lists
the BasicSR modules that imported the name by value (``from x import name``), where it is replaced
too. The host fixes live in :mod:`ext.compat`, the package's own training engine in :mod:`ext.engine`.
:func:`original` gives a replaced function back, for tests that show what a fix fixes.

Two changes come before this table, at ``import ext`` (:mod:`ext.__init__`, :mod:`ext.import_hooks`): the
torchvision ``functional_tensor`` finder, and BasicSR's registry lookups wrapped so that the first one applies
this table.
"""
import functools
import sys
from dataclasses import dataclass

import basicsr.test
import basicsr.train
from basicsr.archs import vgg_arch
from basicsr.data import prefetch_dataloader
from basicsr.losses.basic_loss import PerceptualLoss
from basicsr.models import base_model, realesrgan_model, realesrnet_model, sr_model
from basicsr.utils import dist_util, file_client, img_process_util, img_util, options

from ext import compat
from ext.engine import bad_data, progress, resume, sampling, seeding, stopping

BaseModel = base_model.BaseModel
ALL_BASICSR_MODULES = 'every basicsr module that imported it'


@dataclass(frozen=True)
class Patch:
    owner: object  # a module or a class
    name: str
    replacement: object
    why: str
    test: str = ''  # the test (a function under tests/) that shows BasicSR's failure and the fix
    wraps: bool = False  # the replacement takes the replaced function first
    also: object = ()  # modules that imported the name by value, or ALL_BASICSR_MODULES

    @property
    def target(self):
        return f'{getattr(self.owner, "__name__", self.owner)}.{self.name}'


PATCHES = (
    # --- host fixes (ext.compat) ------------------------------------------------------------------------
    Patch(options, 'parse_options', compat.parse_options_safely, wraps=True, also=(basicsr.train, basicsr.test),
          test='test_force_yml_is_applied_as_data_never_executed',
          why="torch's launcher passes --local-rank (BasicSR: --local_rank); --force_yml went through exec and eval"),
    Patch(options, 'ordered_yaml', compat.ordered_yaml_safe, wraps=True,
          test='test_an_option_file_with_a_python_tag_runs_nothing_and_names_file_line_and_tag',
          why="option files were read with PyYAML's full Loader: a !!python tag ran code before any check"),
    Patch(dist_util, '_init_dist_pytorch', compat.init_dist_pytorch_cpu_aware,
          test='test_distributed_init_uses_gloo_without_cuda',
          why='DDP without CUDA: BasicSR hard-codes NCCL and torch.cuda.set_device'),
    Patch(dist_util, '_init_dist_slurm', compat.init_dist_slurm_cpu_aware,
          test='test_slurm_launcher_runs_on_cpus_with_gloo',
          why='--launcher slurm without CUDA: BasicSR divides by torch.cuda.device_count() and uses NCCL'),
    Patch(BaseModel, 'model_to_device', compat.model_to_device_cpu_ddp, wraps=True,
          test='test_distributed_init_uses_gloo_without_cuda',
          why='DDP without CUDA: BasicSR passes device_ids=[cuda device]'),
    Patch(sr_model.SRModel, 'test', compat.test_on_the_bare_network, wraps=True,
          test='test_distributed_init_uses_gloo_without_cuda',
          why="validation on rank 0 alone hangs in DDP's buffer broadcast"),
    Patch(BaseModel, 'get_optimizer', compat.get_optimizer_from_torch,
          test='test_get_optimizer_accepts_any_torch_optimizer',
          why='BasicSR 1.4.2 builds Adam only'),
    Patch(img_process_util, 'filter2D', compat.filter2d_any_memory_format, wraps=True,
          also=(realesrgan_model, realesrnet_model), test='test_filter2d_accepts_channels_last_tensors',
          why='filter2D fails on channels_last tensors (DiffJPEG output)'),
    Patch(vgg_arch.VGGFeatureExtractor, '__init__', compat.vgg_init_offline, wraps=True,
          test='test_vgg_feature_extractor_never_downloads',
          why='VGG weights from local files: BasicSR downloads them when a cwd-relative file is missing'),
    Patch(PerceptualLoss, '__init__', compat.perceptual_loss_init_with_l2, wraps=True,
          test='test_perceptual_loss_accepts_criterion_l2',
          why="criterion 'l2' calls the non-existent torch.nn.L2loss"),
    Patch(BaseModel, 'save_network', compat.save_network_atomically,
          test='test_network_checkpoints_are_written_atomically',
          why='a kill mid-write left a torn newest checkpoint; also safetensors and the network record'),
    Patch(BaseModel, 'load_network', compat.load_network_any_format,
          test='test_networks_load_from_safetensors_and_pth',
          why='.pth or .safetensors, loaded without running pickled code; a missing file says where it comes from'),
    # --- exact resume (ext.engine.resume, .sampling, .seeding, .progress) -------------------------------
    Patch(BaseModel, 'save_training_state', resume.save_training_state_resumable,
          test='test_sigkill_then_auto_resume_equals_an_uninterrupted_run',
          why='the .state lacks the random states, the loader position and the models\' extra state; '
              'none is written at the end of training'),
    Patch(BaseModel, 'resume_training', resume.resume_training_with_extra, wraps=True,
          test='test_each_rank_resumes_its_own_extra_state',
          why="restores each rank's extra state (training-pair queue, guards, GradScalers)"),
    Patch(basicsr.train, 'load_resume_state', resume.load_resume_state,
          test='test_auto_resume_finds_states_from_the_experiment_path_not_the_cwd',
          why='states found from the experiment path, loaded on CPU with weights_only, a torn newest one skipped'),
    Patch(BaseModel, 'validation', seeding.validation_keeping_random_states, wraps=True,
          test='test_sigkill_then_auto_resume_equals_an_uninterrupted_run',
          why='validation drew from the training random streams, so a resume at a validation iteration diverged'),
    Patch(basicsr.train, 'EnlargedSampler', sampling.ResumableEnlargedSampler,
          test='test_basicsr_resume_alone_would_not_reproduce_the_run',
          why='resume restarted the epoch\'s data order; the sampler now continues inside the epoch'),
    Patch(basicsr.train, 'build_dataset', sampling.build_dataset_seeded_for_training, wraps=True,
          test='test_per_sample_seeds_make_augmentation_independent_of_the_caller_streams',
          why='augmentations of a training sample come from a seed per draw, whatever the loader workers'),
    Patch(basicsr.train, 'create_train_val_dataloader', sampling.create_dataloaders_resumable, wraps=True,
          test='test_training_reaches_total_iter_when_the_data_is_not_a_multiple_of_the_batch',
          why='epochs that reach total_iter; the sampler placed at a resumed run\'s position'),
    Patch(BaseModel, 'update_learning_rate', progress.update_learning_rate_noting_the_iteration, wraps=True,
          test='test_sigterm_saves_exits_0_and_auto_resume_equals_an_uninterrupted_run',
          why='the engine needs the iteration being trained (the loop calls this first in each one)'),
    # --- stopping together (ext.engine.stopping) ----------------------------------------------------------
    Patch(prefetch_dataloader.CPUPrefetcher, 'next', stopping.next_batch_stopping_together, wraps=True,
          test='test_stop_requests_are_agreed_and_a_signal_asks_for_a_saved_stop',
          why='every rank stops after the same iteration on a signal, a guard or bad data'),
    Patch(prefetch_dataloader.CUDAPrefetcher, 'next', stopping.next_batch_stopping_together, wraps=True,
          test='test_stop_requests_are_agreed_and_a_signal_asks_for_a_saved_stop',
          why='every rank stops after the same iteration on a signal, a guard or bad data'),
    Patch(basicsr.train, 'train_pipeline', stopping.train_pipeline_stopping_cleanly, wraps=True,
          test='test_a_distributed_run_that_ends_normally_tears_its_process_group_down',
          why='SIGTERM/SIGINT save a checkpoint and exit 0; a stop exits with its status; DDP torn down'),
    # --- bad training files (ext.engine.bad_data) ---------------------------------------------------------
    Patch(file_client.FileClient, 'get', bad_data.file_client_get_naming_the_file, wraps=True,
          test='test_image_decoding_errors_name_the_file',
          why='a missing file or LMDB key is a BadImageFile naming it'),
    Patch(img_util, 'imfrombytes', bad_data.imfrombytes_naming_the_file, also=ALL_BASICSR_MODULES,
          test='test_image_decoding_errors_name_the_file',
          why='an empty, truncated or foreign file is a BadImageFile naming it (OpenCV: !buf.empty())'),
)

ORIGINALS = {}  # target -> the replaced function


def _wrapping(replacement, replaced):

    @functools.wraps(replaced)
    def patched(*args, **kwargs):
        return replacement(replaced, *args, **kwargs)

    patched.replacement = replacement
    return patched


def _apply(patch):
    replaced = getattr(patch.owner, patch.name)
    ORIGINALS[patch.target] = replaced
    new = _wrapping(patch.replacement, replaced) if patch.wraps else patch.replacement
    setattr(patch.owner, patch.name, new)
    if patch.also == ALL_BASICSR_MODULES:
        modules = [m for name, m in list(sys.modules.items()) if name.startswith('basicsr')]
    else:
        modules = patch.also
    for module in modules:
        if getattr(module, patch.name, None) is replaced:
            setattr(module, patch.name, new)


def apply():
    """Apply every row of :data:`PATCHES` (once; later calls do nothing)."""
    if ORIGINALS:
        return
    for patch in PATCHES:
        _apply(patch)


def original(owner, name):
    """The BasicSR function that ``owner.name`` was before :func:`apply` replaced it."""
    return ORIGINALS[Patch(owner, name, None, '', '').target]
