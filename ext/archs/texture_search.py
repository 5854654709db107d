"""TTSR's hard/soft-attention texture search and transfer, chunked so that memory stays bounded.

Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020.

Notation (feature maps from the texture extractor, coarse to fine):

* ``query``  = level-3 features of LR upsampled x4, ``[N, 256, H, W]``;
* ``key``    = level-3 features of Ref down x4 then up x4, ``[N, 256, Hr, Wr]``;
* ``values`` = level-3, -2, -1 features of Ref, ``[N, 256, Hr, Wr]``, ``[N, 128, 2Hr, 2Wr]``,
  ``[N, 64, 4Hr, 4Wr]``.

Relevance is the cosine similarity of 3x3 patches (unfold with padding 1, L2-normalised) between
every query and every key position. For every query position the best key (hard attention) and
its relevance (soft attention ``S``) are kept; the value patches at that key (3x3/s1 at level 3,
6x6/s2 at level 2, 12x12/s4 at level 1) are folded back and divided by 9, as upstream does.

:func:`search_transfer_plain` is the upstream computation (it materialises the ``[N, HrWr, HW]``
relevance matrix and the unfolded values: ~1.4 GB at LR 96^2 / Ref 384^2).
:func:`search_transfer_chunked` gives the same result but walks query positions in chunks, key
positions in chunks with a running max/argmax, and gathers/scatters the matching value patches by
index, so it never holds the relevance matrix or an unfolded value tensor.
"""
import torch
import torch.nn.functional as F

# (kernel, padding, stride) of the value patches at levels 3, 2, 1 (coarse to fine).
LEVEL_GEOMETRY = ((3, 1, 1), (6, 2, 2), (12, 4, 4))
DEFAULT_MEMORY_BUDGET_MB = 256
_NORM_EPS = 1e-12  # as F.normalize


def search_transfer_plain(query, key, values):
    """Upstream TTSR search and transfer (reference implementation, O(HW * HrWr) memory).

    Args:
        query (Tensor): ``[N, C, H, W]``.
        key (Tensor): ``[N, C, Hr, Wr]``.
        values (Sequence[Tensor]): level 3, 2, 1 features of Ref (coarse to fine).

    Returns:
        tuple: soft attention ``[N, 1, H, W]`` and the textures at levels 3, 2, 1.
    """
    n, _, h, w = query.shape
    query_unfold = F.normalize(F.unfold(query, kernel_size=3, padding=1), dim=1)
    key_unfold = F.normalize(F.unfold(key, kernel_size=3, padding=1).permute(0, 2, 1), dim=2)
    relevance = torch.bmm(key_unfold, query_unfold)  # [N, HrWr, HW]
    soft, hard = torch.max(relevance, dim=1)
    textures = []
    for value, (k, p, s) in zip(values, LEVEL_GEOMETRY):
        value_unfold = F.unfold(value, kernel_size=k, padding=p, stride=s)
        index = hard.unsqueeze(1).expand(-1, value_unfold.size(1), -1)
        gathered = torch.gather(value_unfold, 2, index)
        textures.append(F.fold(gathered, output_size=(h * s, w * s), kernel_size=k, padding=p, stride=s) / 9.)
    return soft.view(n, 1, h, w), textures


def _patch_pixel_offsets(kernel, padded_width, device):
    """Flat offsets of a ``kernel`` x ``kernel`` patch's pixels in a map of width ``padded_width``."""
    rows = torch.arange(kernel, device=device).view(-1, 1) * padded_width
    cols = torch.arange(kernel, device=device).view(1, -1)
    return (rows + cols).view(-1)


def _patch_pixel_index(positions, grid_width, kernel, stride, padded_width):
    """Flat pixel indices ``[len(positions) * kernel**2]`` of the patches at ``positions``.

    ``positions`` index a grid of patch positions of width ``grid_width``; the patch at grid
    position (i, j) covers rows ``i*stride .. i*stride+kernel-1`` of the padded map.
    """
    top_left = (positions // grid_width) * stride * padded_width + (positions % grid_width) * stride
    offsets = _patch_pixel_offsets(kernel, padded_width, positions.device)
    return (top_left.unsqueeze(-1) + offsets).flatten(-2)


def _gather_patches(padded_flat, pixel_index, kernel):
    """Patches ``[N, C*k*k, P]`` (unfold layout) from a padded map flattened to ``[N, C, L]``.

    ``pixel_index`` is ``[N, P*k*k]`` (or ``[P*k*k]`` for all samples alike).
    """
    n, c, _ = padded_flat.shape
    if pixel_index.dim() == 1:
        pixel_index = pixel_index.unsqueeze(0).expand(n, -1)
    patches = torch.gather(padded_flat, 2, pixel_index.unsqueeze(1).expand(-1, c, -1))
    num = pixel_index.size(1) // (kernel * kernel)
    return patches.view(n, c, num, kernel * kernel).permute(0, 1, 3, 2).reshape(n, c * kernel * kernel, num)


def _normalize_columns(patches):
    return patches / patches.norm(dim=1, keepdim=True).clamp_min(_NORM_EPS)


def plan_chunks(batch, channels, num_query, num_key, value_channels=(256, 128, 64), element_size=4,
                memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB):
    """Query and key chunk sizes (positions) whose working set fits ``memory_budget_mb``.

    Key blocks (``C*9`` floats per position, about 3 copies while unfolding and normalising) take
    half the budget and are built once each; a query chunk takes the other half: its patches, the
    relevance block against one key block, and later the selected key patches and the gathered
    value patches of one level (``C_l * k_l^2`` per position).
    """
    budget = memory_budget_mb * 2**20 / (batch * element_size)
    patch_len = channels * 9
    key_chunk = int(max(1, min(num_key, budget / 2 // (3 * patch_len))))
    per_query = max(3 * patch_len + key_chunk,
                    4 * patch_len + max(c * k * k for c, (k, _, _) in zip(value_channels, LEVEL_GEOMETRY)))
    query_chunk = int(max(1, min(num_query, budget / 2 // per_query)))
    return query_chunk, key_chunk


def _row_bands(num_rows, width, chunk_positions):
    """``[(first row, end row)]`` covering ``num_rows`` rows, ``chunk_positions // width`` rows each (>= 1)."""
    rows = max(1, min(num_rows, chunk_positions // width))
    return [(r, min(num_rows, r + rows)) for r in range(0, num_rows, rows)]


def _unfold_rows(padded, first, end):
    """L2-normalised 3x3 patches ``[N, C*9, (end-first)*W]`` of rows ``first..end-1`` of a map padded by 1."""
    return F.normalize(F.unfold(padded[:, :, first:end + 2], kernel_size=3), dim=1)


def search_transfer_chunked(query, key, values, chunk_size=None, key_chunk_size=None,
                            memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB):
    """Same result as :func:`search_transfer_plain` in bounded memory.

    Args:
        query, key, values: as :func:`search_transfer_plain`.
        chunk_size (int | None): query positions per chunk, rounded down to whole rows of the query
            map (at least one row); None sizes it from ``memory_budget_mb``.
        key_chunk_size (int | None): key positions per relevance block, likewise in whole rows.
        memory_budget_mb (float): working-set budget used when a chunk size is None.

    The search (running max/argmax over key blocks, each unfolded once) runs without autograd; the
    soft attention is then recomputed from the selected patch pairs and the textures are
    gathered/scattered by index, both differentiable, so gradients reach ``query``, ``key`` and
    ``values`` as upstream.
    """
    n, c, h, w = query.shape
    _, _, hr, wr = key.shape
    num_query, num_key = h * w, hr * wr
    auto_query, auto_key = plan_chunks(n, c, num_query, num_key, [v.size(1) for v in values],
                                       query.element_size(), memory_budget_mb)
    query_bands = _row_bands(h, w, chunk_size or auto_query)
    key_bands = _row_bands(hr, wr, key_chunk_size or auto_key)
    device = query.device

    query_pad, key_pad = F.pad(query, (1, 1, 1, 1)), F.pad(key, (1, 1, 1, 1))
    query_flat, key_flat = query_pad.flatten(2), key_pad.flatten(2)
    query_offsets = _patch_pixel_offsets(3, w + 2, device)
    key_offsets = _patch_pixel_offsets(3, wr + 2, device)

    # 1. hard attention: running max/argmax over key blocks, never the whole relevance matrix.
    best_value = torch.full((n, num_query), -float('inf'), dtype=query.dtype, device=device)
    hard = torch.zeros(n, num_query, dtype=torch.long, device=device)
    with torch.no_grad():
        cached_queries = [_unfold_rows(query_pad, *band) for band in query_bands] if len(key_bands) == 1 else None
        for key_first, key_end in key_bands:
            keys = _unfold_rows(key_pad, key_first, key_end).transpose(1, 2)  # [N, K, C*9]
            for index, (first, end) in enumerate(query_bands):
                queries = cached_queries[index] if cached_queries else _unfold_rows(query_pad, first, end)
                block_value, block_index = torch.max(torch.bmm(keys, queries), dim=1)
                done = slice(first * w, end * w)
                better = block_value > best_value[:, done]  # strict: the first maximum wins, as torch.max
                best_value[:, done] = torch.where(better, block_value, best_value[:, done])
                hard[:, done] = torch.where(better, block_index + key_first * wr, hard[:, done])
        del best_value

    # 2. soft attention and textures from the selected patches only (differentiable).
    soft_chunks = []
    outputs = []
    for value, (k, p, s) in zip(values, LEVEL_GEOMETRY):
        vw = value.shape[-1]
        out_h, out_w = h * s + 2 * p, w * s + 2 * p  # fold's padded canvas
        outputs.append((F.pad(value, (p, p, p, p)).flatten(2), vw + 2 * p,
                        value.new_zeros(n, value.size(1), out_h * out_w), out_w, k, s, p))
    for first, end in query_bands:
        positions = torch.arange(first * w, end * w, device=device)
        chosen = hard[:, first * w:end * w]  # [N, Q]
        q_index = ((positions // w) * (w + 2) + positions % w).unsqueeze(-1) + query_offsets
        query_patches = _gather_patches(query_flat, q_index.flatten(), 3)
        k_index = ((chosen // wr) * (wr + 2) + chosen % wr).unsqueeze(-1) + key_offsets
        key_patches = _gather_patches(key_flat, k_index.flatten(1), 3)
        soft_chunks.append((_normalize_columns(query_patches) * _normalize_columns(key_patches)).sum(1))
        for value_flat, padded_width, canvas, canvas_width, k, s, _ in outputs:
            src = _patch_pixel_index(chosen, wr, k, s, padded_width)  # [N, Q*k*k]
            dst = _patch_pixel_index(positions, w, k, s, canvas_width)  # [Q*k*k]
            gathered = torch.gather(value_flat, 2, src.unsqueeze(1).expand(-1, value_flat.size(1), -1))
            canvas.index_add_(2, dst, gathered)  # in place: one canvas per level, whatever the chunk count
    soft = torch.cat(soft_chunks, dim=1).view(n, 1, h, w)
    textures = []
    for _, _, canvas, canvas_width, _, s, p in outputs:
        canvas = canvas.view(n, canvas.size(1), -1, canvas_width)[:, :, p:p + h * s, p:p + w * s]
        textures.append(canvas / 9.)
    return soft, textures


class SearchTransfer(torch.nn.Module):
    """TTSR's search and transfer (no parameters).

    Args:
        mode (str): 'chunked' (default, bounded memory) or 'plain' (upstream's computation).
        chunk_size (int | None): query positions per chunk; None: sized from ``memory_budget_mb``.
        memory_budget_mb (float): working-set budget of the chunked search.
    """

    def __init__(self, mode='chunked', chunk_size=None, memory_budget_mb=DEFAULT_MEMORY_BUDGET_MB):
        super().__init__()
        if mode not in ('chunked', 'plain'):
            raise ValueError(f"SearchTransfer: mode must be 'chunked' or 'plain', got {mode!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f'SearchTransfer: chunk_size must be a positive int or None, got {chunk_size!r}')
        if not memory_budget_mb > 0:
            raise ValueError(f'SearchTransfer: memory_budget_mb must be > 0, got {memory_budget_mb!r}')
        self.mode, self.chunk_size, self.memory_budget_mb = mode, chunk_size, memory_budget_mb

    def forward(self, query, key, values):
        if self.mode == 'plain':
            return search_transfer_plain(query, key, values)
        return search_transfer_chunked(query, key, values, self.chunk_size, memory_budget_mb=self.memory_budget_mb)

    def extra_repr(self):
        return f'mode={self.mode!r}, chunk_size={self.chunk_size}, memory_budget_mb={self.memory_budget_mb}'


def relevance_bytes(batch, num_query, num_key, element_size=4):
    """Size of upstream's full relevance matrix, for messages and the benchmark."""
    return batch * num_query * num_key * element_size


__all__ = ['SearchTransfer', 'search_transfer_plain', 'search_transfer_chunked', 'plan_chunks',
           'relevance_bytes', 'LEVEL_GEOMETRY']
