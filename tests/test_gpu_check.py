"""benchmarks/gpu_check.py (`make gpu-check`) run on the CPU as a user runs it: the tiny archs through every
configuration, each printed with a positive images/s and its ratios, the JSON written; a failing configuration is
reported in its row and the others go on."""
import re, sys, json, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).parents[1]
KEYS = {'date', 'commit', 'dirty', 'torch', 'device', 'device_name', 'tiny', 'winners', 'settings', 'train', 'mae',
        'tta', 'failed', 'elapsed_s', 'section_s'}
ROW = re.compile(r'^\s+(?P<arch>\S+)\s+(?P<size>\d+|-)\s+(?P<bs>\d+)\s+(?P<config>\S+(?: flip)?)\s+'
                 r'(?:FAILED (?P<error>.+)|(?P<img_s>[\d.]+)\s+(?P<s_step>[\d.]+)\s+(?P<first>[\d.]+)s\s+'
                 r'(?P<mem>[\d,]+)\s+(?P<x_plain>[\d.]+|-)\s+(?P<x_winners>[\d.]+|-))$')

def gpu_check(*args):
    p = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'gpu_check.py'), '--tiny', *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    rows = [m.groupdict() for m in map(ROW.match, p.stdout.splitlines()) if m]
    return p, rows

def test_gpu_check_tiny_prints_every_configuration(tmp_path):
    out = tmp_path/'gpu_check.json'
    p, rows = gpu_check('--json', str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    configs = ['bf16', 'bf16+cl', 'bf16+cl+compile']
    archs = ['swinv2_demo', 'vit_demo']
    want = [(a, c) for a in archs for c in configs] + [('vit_demo', 'bf16')] + [(a, 'bf16+cl flip') for a in archs]
    assert [(r['arch'], r['config']) for r in rows] == want, p.stdout
    for r in rows:
        assert r['error'] is None and float(r['img_s']) > 0 and float(r['s_step']) > 0, r
    for r in rows[:6]:                                  # training: both ratios; the baseline is 1
        assert float(r['x_plain']) > 0 and float(r['x_winners']) > 0, r
    assert rows[0]['x_plain'] == rows[3]['x_plain'] == '1.00'
    assert 'CPU/tiny' in p.stdout and 'A100' in p.stdout and 'indicative' in p.stdout and 'steps/s' in p.stdout
    res = json.loads(out.read_text())
    assert KEYS <= set(res) and res['tiny'] is True and res['failed'] == []
    assert res['winners']['img_s'] == pytest.approx(16 / 0.72, abs=0.01)
    assert [(t['arch'], t['config']) for t in res['train']] == want[:6]
    for t in res['train']:
        assert t['img_s'] > 0 and t['peak_mem_mb'] > 0 and t['first_step_s'] > 0 and len(t['segments_s']) == 2
        assert t['x_winners'] == pytest.approx(t['img_s'] / res['winners']['img_s'])
        assert t['compile'] == t['config'].endswith('compile') and t['channels_last'] == ('+cl' in t['config'])
    (m,) = res['mae']
    assert m['method'] == 'MAE' and m['steps_s'] > 0 and m['img_s'] == pytest.approx(m['steps_s'] * m['bs'])
    assert [t['arch'] for t in res['tta']] == archs and all(t['img_s'] > 0 for t in res['tta'])

def test_gpu_check_reports_a_failure_and_goes_on(tmp_path):
    "A compile that fails (an unknown backend) and an arch that does not exist: their rows say so, the rest runs."
    out = tmp_path/'gpu_check.json'
    out.write_text(json.dumps({'tiny': False, 'train': 'a GPU run'}))     # a GPU run's figures are never overwritten
    p, rows = gpu_check('--sections', 'train,tta', '--archs', 'vit_demo,no_such_arch', '--configs', 'bf16,bf16+compile',
                        '--compile-backend', 'no_such_backend', '--steps', '1', '--repeats', '1', '--json', str(out))
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    got = {(r['arch'], r['config']): r for r in rows}
    assert list(got) == [('vit_demo', 'bf16'), ('vit_demo', 'bf16+compile'), ('no_such_arch', 'bf16'),
                         ('no_such_arch', 'bf16+compile'), ('vit_demo', 'bf16+cl flip'),
                         ('no_such_arch', 'bf16+cl flip')]
    assert float(got['vit_demo', 'bf16']['img_s']) > 0 and float(got['vit_demo', 'bf16+cl flip']['img_s']) > 0
    assert 'no_such_backend' in got['vit_demo', 'bf16+compile']['error']
    assert all('Unknown arch' in r['error'] for (a, _), r in got.items() if a == 'no_such_arch')
    assert '4 configuration(s) failed' in p.stdout
    assert json.loads(out.read_text())['train'] == 'a GPU run'
    res = json.loads((tmp_path/'gpu_check.tiny.json').read_text())
    assert len(res['failed']) == 4 and res['mae'] == [] and res['train'][0]['img_s'] > 0
    assert 'error' in res['train'][1] and res['train'][1]['config'] == 'bf16+compile'
