"""Rank helpers that work with and without a process group (BasicSR's ``get_dist_info`` underneath)."""
import torch.distributed as torch_dist
from basicsr.utils import dist_util, get_root_logger


def rank():
    return dist_util.get_dist_info()[0]


def world_size():
    return dist_util.get_dist_info()[1]


def distributed():
    """True inside an initialised process group."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def gather_on_rank0(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` on rank 0 (``None`` elsewhere); ``[obj]`` without DDP.
    A collective: every rank calls it."""
    if not distributed():
        return [obj]
    gathered = [None] * torch_dist.get_world_size() if torch_dist.get_rank() == 0 else None
    torch_dist.gather_object(obj, gathered, dst=0)
    return gathered


def own_rank_entry(entries, this_rank, what):
    """``entries[this_rank]`` of a per-rank list saved by a run; a warning (resume not exact) and rank 0's
    entry when the saved run had fewer processes than this one."""
    if len(entries) != world_size() and this_rank == 0:
        get_root_logger().warning(f'Resume: the saved run had {len(entries)} process(es), this one has '
                                  f'{world_size()}; {what} of ranks without a saved one start from rank 0\'s: the run '
                                  'does not continue exactly')
    return entries[this_rank] if this_rank < len(entries) else entries[0]
