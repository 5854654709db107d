"""Out of memory on a tile: the same image again with half the tile, down to a smallest tile, before giving up.

Device memory grows with the tile window (the tile plus ``tile_pad`` context on each side), so a smaller tile
often fits where a larger one did not. Each retry is logged (logger ``ext.inference.oom_retry``, WARNING); the
retried tile size holds for that image only, the next image starts again at the tile asked for. With
``tile=0`` (no tiling) nothing is retried: the error says to pass ``--tile``, since untiled output is what
was asked for and a tile padding for this network has not been chosen.
"""
import copy
import logging

from ext.inference.tiling import MIN_TILE, TileOutOfMemoryError

logger = logging.getLogger(__name__)

__all__ = ['retry_tile_sizes', 'upscale_with_smaller_tiles']


def retry_tile_sizes(tile, image_side, smallest=MIN_TILE):
    """The tile sizes to try after ``tile`` ran out of memory on an image whose larger side is ``image_side``:
    halved each time, the last one ``smallest``; a tile larger than the image counts as the image's size."""
    sizes = []
    current = min(tile, image_side)
    while current > smallest:
        current = max(current // 2, smallest)
        sizes.append(current)
    return sizes


def upscale_with_smaller_tiles(run, tiler, image_side, smallest=MIN_TILE):
    """``run(tiler)``, and when it raises :class:`TileOutOfMemoryError`, ``run`` again with copies of ``tiler``
    whose tile is halved (:func:`retry_tile_sizes`) until one fits.

    Args:
        run (callable): upscales the image with the :class:`~ext.inference.tiling.TiledUpscaler` it is given
            and returns the result.
        tiler (TiledUpscaler): the configured upscaler; not modified (threads may share it).
        image_side (int): the larger side of the image, in input pixels.
        smallest (int): the smallest tile to try (at least the network's minimum input size).

    Raises:
        TileOutOfMemoryError: the smallest tile ran out of memory too; the message lists the sizes tried.
    """
    sizes = retry_tile_sizes(tiler.tile, image_side, smallest) if tiler.tile else []
    failure = None
    for tile in [tiler.tile] + sizes:
        attempt = tiler
        if failure is not None:
            logger.warning('%s; retrying this image with tile %d', failure, tile)
            attempt = copy.copy(tiler)
            attempt.tile = tile
        try:
            return run(attempt)
        except TileOutOfMemoryError as error:
            if not sizes:
                raise
            # keep the message only: the error's traceback holds the failed forward's device tensors
            failure = str(error)
    tried = ', '.join(str(tile) for tile in [tiler.tile] + sizes)
    raise TileOutOfMemoryError(f'{failure} (tried tile sizes {tried})')
