"""benchmarks/gpu_suite.py cannot rot: --smoke runs every part on the CPU with tiny sizes and writes the JSON and
the markdown table; without CUDA the real run refuses with one line. benchmarks/bench_tiled_inference.py's
precision section runs in-process at a tiny size."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from helpers import REPO_ROOT, load_script, subprocess_env

SUITE = osp.join(REPO_ROOT, 'benchmarks', 'gpu_suite.py')
TILED = osp.join(REPO_ROOT, 'benchmarks', 'bench_tiled_inference.py')


@pytest.mark.slow
def test_smoke_run_writes_the_json_and_the_table(tmp_path):
    out_json, out_md = tmp_path / 'suite.json', tmp_path / 'suite.md'
    done = subprocess.run([sys.executable, SUITE, '--smoke', '--json', str(out_json), '--markdown', str(out_md)],
                          cwd=str(tmp_path), env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert report['smoke'] and report['device'] == 'CPU (--smoke)' and not report['errors']
    inference = report['parts']['inference']['results']
    assert inference['fp32']['ok'] and inference['bf16']['ok'] and inference['realesrganer']['ok']
    assert inference['bf16']['difference_to_fp32']['mean'] <= 1.0
    assert inference['realesrganer']['difference_to_fp32']['max'] <= 1  # the same tiles as the baseline
    assert not inference['fp16']['ok'] and 'needs a CUDA device' in inference['fp16']['error']
    ttsr = report['parts']['ttsr']['results']['fp32']
    assert ttsr['ok'] and ttsr['peak_memory_bytes'] > 0
    training = report['parts']['training']['results']
    assert training['fp32']['ok'] and training['bf16_cl']['ok'], training
    assert training['bf16_cl']['throughput_ratio'] > 0 and abs(training['bf16_cl']['loss_rel_diff']) < 0.5
    table = out_md.read_text()
    assert table.startswith('# GPU suite on CPU (--smoke)')
    for heading in ('## Tiled x4plus inference', '## TTSR (TTSRModel)', '## A-ESRGAN (MultiScaleRealESRGANModel)',
                    '| config | iterations/s | x fp32 |', '| bf16_cl |'):
        assert heading in table


@pytest.mark.skipif(torch.cuda.is_available(), reason='the refusal is for machines without CUDA')
def test_refuses_without_cuda_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, SUITE, '--json', str(tmp_path / 'x.json')], cwd=str(tmp_path),
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and not (tmp_path / 'x.json').exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and 'no CUDA device' in lines[0] and '--smoke' in lines[0]


def test_skipped_and_failed_runs_show_in_the_table():
    suite = load_script(SUITE)
    report = {'device': 'GPU X', 'smoke': False, 'torch': '2', 'cuda': '12', 'date': 'today', 'seconds': 530.0,
              'budget_s': 540, 'errors': {'ttsr': 'RuntimeError: boom'}, 'parts': {'training': {
                  'title': 'A-ESRGAN', 'iters': 30, 'warmup': 5, 'loss_window': 10, 'results': {
                      'fp32': {'ok': True, 'iters_per_s': 2.0, 'throughput_ratio': 1.0, 'step_ms_median': 500.0,
                               'peak_memory_bytes': 2**31, 'loss_g': 0.5, 'loss_rel_diff': 0.0},
                      'bf16_cl_compile': {'ok': False, 'skipped': True, 'error': 'skipped: the --budget was spent'}}}}}
    table = suite.markdown(report)
    assert table.startswith('# GPU suite on GPU X')
    assert '| fp32 | 2.000 | 1.00 | 500 | 2.00 | 0.5000 | +0.00 % |' in table
    assert '| bf16_cl_compile | skipped: skipped: the --budget was spent' not in table
    assert '| bf16_cl_compile | skipped: the --budget was spent |' in table
    assert 'ttsr: FAILED: RuntimeError: boom' in table


def test_tiled_inference_precision_section_in_process(tmp_path, capsys):
    bench = load_script(TILED)
    report = bench.main(['--sections', 'precision', '--quick', '--precision_size', '24', '--tile', '16',
                         '--threads', '1', '--variants', 'realesrganer', 'fp32_unstreamed', 'fp32', 'bf16_cl',
                         '--json', str(tmp_path / 'tiled.json')])
    printed = capsys.readouterr().out
    assert 'bf16 + channels_last:' in printed and 'streamed tail: time' in printed and 'CPU:' in printed
    figures = json.loads((tmp_path / 'tiled.json').read_text())
    assert figures['system']['torch'] == torch.__version__ and 'onednn_enabled' in figures['system']
    results = report['precision']['results']
    assert results['fp32_unstreamed']['difference_to_fp32']['max'] <= 1  # streaming changes float rounding only
    assert results['realesrganer']['difference_to_fp32']['max'] <= 1
    assert {'bf16_cl_vs_fp32_speed', 'streamed_time_ratio'} <= set(report['precision']['summary'])
