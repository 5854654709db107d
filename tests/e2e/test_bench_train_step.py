"""benchmarks/bench_train_step.py: the CLI runs each system with tiny sizes, writes finite figures, shows
failed configurations in the table, and says on the CPU that the GPU targets are still to be measured."""
import importlib.util
import json
import math
import os.path as osp
import subprocess
import sys

from helpers import REPO_ROOT, subprocess_env

BENCH = osp.join(REPO_ROOT, 'benchmarks', 'bench_train_step.py')
TINY = ['--device', 'cpu', '--no-vgg', '--iters', '2', '--warmup', '0', '--threads', '1',
        '--aesrgan-batch', '2', '--aesrgan-gt-size', '32', '--aesrgan-source-size', '80', '--aesrgan-num-feat', '8',
        '--aesrgan-num-block', '1', '--ttsr-batch', '1', '--ttsr-lr-size', '8', '--ttsr-mid-channels', '8',
        '--ttsr-num-blocks', '1,1,1,1']
FIELDS = ('iters_per_s', 'step_ms_median', 'feed_ms_median', 'peak_memory_bytes', 'loss_g', 'loss_g_last',
          'warmup_s', 'total_iterations')


def load_bench():
    spec = importlib.util.spec_from_file_location('bench_train_step', BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_runs_one_speed_config_per_system_and_writes_finite_figures(tmp_path):
    out = tmp_path / 'step.json'
    done = subprocess.run([sys.executable, BENCH, *TINY, '--systems', 'aesrgan,ttsr', '--configs', 'bf16_cl',
                           '--json', str(out)], cwd=str(tmp_path), env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['device_kind'] == 'cpu' and report['iters'] == 2
    assert set(report['systems']) == {'aesrgan', 'ttsr'}
    for system, entry in report['systems'].items():
        result = entry['results']['bf16_cl']
        assert result['ok'], result  # every model has the speed keys: TTSR's bf16 path must run too
        for field in FIELDS:
            assert isinstance(result[field], (int, float)) and math.isfinite(result[field]), (system, field, result)
        assert result['iters_per_s'] > 0 and result['total_iterations'] == 2
        assert result['output_dtype'] == 'bfloat16'  # the autocast really ran
        assert result['peak_memory_bytes'] > 0
    assert 'A-ESRGAN (MultiScaleRealESRGANModel)' in done.stdout and 'TTSR (TTSRModel)' in done.stdout


def test_ratios_to_fp32_and_a_failed_config_in_the_table(capsys):
    bench = load_bench()
    base = {'ok': True, 'iters_per_s': 2.0, 'peak_memory_bytes': 400, 'loss_g': 0.5, 'step_ms_median': 500.0,
            'feed_ms_median': 10.0, 'warmup_s': 1.0}
    results = {'fp32': dict(base), 'bf16': dict(base, iters_per_s=3.0, peak_memory_bytes=200, loss_g=0.51),
               'bf16_cl_compile': {'ok': False, 'error': 'RuntimeError: compile unavailable'}}
    bench.add_ratios(results)
    assert results['bf16']['throughput_ratio'] == 1.5 and results['bf16']['memory_ratio'] == 0.5
    assert math.isclose(results['bf16']['loss_rel_diff'], 0.02)
    args = bench.parse_args(['--iters', '4', '--warmup', '1', '--loss-window', '1'])
    bench.print_table('title', results, args, 'memory')
    table = capsys.readouterr().out
    assert 'bf16_cl_compile  FAILED: RuntimeError: compile unavailable' in table
    bf16_row = next(line for line in table.splitlines() if line.strip().startswith('bf16 '))
    assert '1.50' in bf16_row and '0.50' in bf16_row and '+2.00%' in bf16_row


def test_check_targets_on_cpu_says_the_gpu_figures_are_still_to_be_measured(capsys):
    bench = load_bench()
    assert bench.main(['--device', 'cpu', '--check-targets']) is None
    assert 'GPU figures are still to be measured' in capsys.readouterr().out
