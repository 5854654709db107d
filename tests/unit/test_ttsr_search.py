"""TTSR texture search: the chunked search equals upstream's plain computation, values and gradients."""
import pytest
import torch

from ext.archs.texture_search import (SearchTransfer, plan_chunks, search_transfer_chunked,
                                      search_transfer_plain)


def random_features(batch, channels, h, w, hr, wr, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_(True)

    query, key = rand(batch, channels, h, w), rand(batch, channels, hr, wr)
    values = [rand(batch, channels, hr, wr), rand(batch, channels // 2, 2 * hr, 2 * wr),
              rand(batch, channels // 4, 4 * hr, 4 * wr)]
    return query, key, values


@pytest.mark.parametrize('shape, chunk, key_chunk', [
    ((2, 8, 5, 7, 6, 9), None, None),  # odd shapes, automatic chunks (one chunk)
    ((2, 8, 5, 7, 6, 9), 3, 5),  # chunks that do not divide the sizes
    ((3, 4, 4, 4, 4, 4), 1, 1),  # one position at a time
    ((1, 16, 9, 6, 7, 11), 10, 13),
    ((2, 8, 3, 11, 13, 2), 7, None),  # Ref much taller than wide
])
def test_chunked_equals_plain(shape, chunk, key_chunk):
    query, key, values = random_features(*shape)
    soft_ref, textures_ref = search_transfer_plain(query, key, values)
    soft, textures = search_transfer_chunked(query, key, values, chunk, key_chunk)
    assert soft.shape == soft_ref.shape == (shape[0], 1, shape[2], shape[3])
    torch.testing.assert_close(soft, soft_ref, rtol=0, atol=1e-12)
    for texture, texture_ref, scale in zip(textures, textures_ref, (1, 2, 4)):
        assert texture.shape == texture_ref.shape == (shape[0], texture.size(1), shape[2] * scale, shape[3] * scale)
        torch.testing.assert_close(texture, texture_ref, rtol=0, atol=1e-12)
    # gradients reach query, key (through the soft attention) and the values, as upstream
    weights = [torch.randn_like(t) for t in textures]
    inputs = [query, key, *values]
    grads_ref = torch.autograd.grad(soft_ref.sum() + sum((t * w).sum() for t, w in zip(textures_ref, weights)), inputs)
    grads = torch.autograd.grad(soft.sum() + sum((t * w).sum() for t, w in zip(textures, weights)), inputs)
    for grad, grad_ref in zip(grads, grads_ref):
        assert grad_ref.abs().sum() > 0
        torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-10)


def test_memory_budget_bounds_the_chunks():
    # the seeds' 512x512 FFHQ case: LR 128^2 -> 16384 query positions, Ref 512^2 -> 16384 keys
    query_chunk, key_chunk = plan_chunks(1, 256, 128 * 128, 128 * 128, memory_budget_mb=64)
    assert query_chunk < 128 * 128 and key_chunk < 128 * 128
    assert query_chunk * key_chunk * 4 < 64 * 2**20  # one relevance block, far below the full 1 GiB
    assert plan_chunks(1, 256, 100, 100, memory_budget_mb=256) == (100, 100)  # small inputs: one chunk
    # an automatically chunked run over several blocks still matches
    query, key, values = random_features(1, 256, 6, 5, 7, 8, dtype=torch.float64)
    with torch.no_grad():
        soft_ref, textures_ref = search_transfer_plain(query, key, values)
        soft, textures = search_transfer_chunked(query, key, values, memory_budget_mb=0.1)
    torch.testing.assert_close(soft, soft_ref, rtol=0, atol=1e-12)
    for texture, texture_ref in zip(textures, textures_ref):
        torch.testing.assert_close(texture, texture_ref, rtol=0, atol=1e-12)


def test_float32_matches_within_rounding():
    query, key, values = random_features(2, 32, 6, 6, 6, 6, dtype=torch.float32)
    with torch.no_grad():
        soft_ref, textures_ref = search_transfer_plain(query, key, values)
        soft, textures = SearchTransfer('chunked', chunk_size=5)(query, key, values)
    torch.testing.assert_close(soft, soft_ref, rtol=0, atol=1e-5)
    for texture, texture_ref in zip(textures, textures_ref):
        torch.testing.assert_close(texture, texture_ref, rtol=0, atol=1e-4)


def test_search_transfer_rejects_bad_options():
    with pytest.raises(ValueError, match='mode'):
        SearchTransfer(mode='tiled')
    with pytest.raises(ValueError, match='chunk_size'):
        SearchTransfer(chunk_size=0)
