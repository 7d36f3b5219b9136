"""Text-guided generation (notebook 25) and `crystal-tutorial generate` (notebook 27): checkpoints, bad requests, files."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from crystal_tutorial.chameleon import (SHIPPED_CHAMELEON_MODELS, Chameleon, PromptError, prompt_elements,
                                        save_chameleon)
from crystal_tutorial.adherence import generation_summary, prompt_adherence
from crystal_tutorial.clip import CrystalCLIP, CrystalCLIPConfig
from crystal_tutorial.core import CheckpointError
from crystal_tutorial.core import WEIGHTS_DIR
from crystal_tutorial.crystal_diffusion import CrystalDiffusion, config_for_data
from crystal_tutorial.crystal_sampling import sample_crystals
from crystal_tutorial.crystals import toy_dataset

CLI = [sys.executable, '-c', 'import sys; from crystal_tutorial.cli import main; sys.exit(main())']
SHIPPED = all((WEIGHTS_DIR / f).exists() for f in SHIPPED_CHAMELEON_MODELS.values())


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A tiny untrained text-conditioned model on the toy crystals, saved as a Chameleon checkpoint."
    ds = toy_dataset()
    torch.manual_seed(0)                                                          # the same tiny weights in every run
    clip = CrystalCLIP(CrystalCLIPConfig(hidden=16, n_layers=1, embed_dim=8, max_atoms=int(ds.num_atoms.max())))
    model = CrystalDiffusion(config_for_data(ds, task='dng', hidden=16, n_layers=1, cond_dim=8, n_steps=20)).set_data_stats(ds)
    path = tmp_path_factory.mktemp('tiny') / 'tiny.pt'
    save_chameleon(path, model, clip, 'composition', ['elements'], history=[])
    return path


def test_prompt_elements():
    assert prompt_elements('Ti O S') == ['Ti', 'O', 'S']
    assert prompt_elements('Ba2TiO4') == ['Ba', 'Ti', 'O']
    assert prompt_elements('a hexagonal binary sulfide') is None
    assert prompt_elements('Hexagonal crystal structure of GaN compound') == ['Ga', 'N']
    for bad in ('Ti O Xx', '', '  ', None, 'Ab'):
        with pytest.raises(PromptError):
            prompt_elements(bad)


def test_checkpoint_round_trip_and_sampling(tiny):
    model = Chameleon.load(tiny)
    assert model.kind == 'composition' and model.trained_max_atoms == 12 and model.max_atoms == 40
    a = model.sample('Na Cl', n_atoms=4, n_samples=3, steps=5, seed=1)
    b = model.sample('Na Cl', n_atoms=4, n_samples=3, steps=5, seed=1)
    assert len(a) == 3 and all(len(x) == 4 for x in a)
    assert all(set(x.get_chemical_symbols()) == {'Na', 'Cl'} for x in a)          # exactly the prompt's elements, each at least once
    from crystal_tutorial.evaluation import composition_validity
    assert all(composition_validity(x.get_chemical_formula()) for x in a)        # charge-balanced by default: Na2Cl2
    three = model.sample('Na Cl O', n_atoms=3, n_samples=4, steps=5, seed=3)     # as many elements as atoms: one of each
    assert all(sorted(x.get_chemical_symbols()) == ['Cl', 'Na', 'O'] for x in three)
    assert [x.get_chemical_symbols() for x in a] == [x.get_chemical_symbols() for x in b]
    np.testing.assert_allclose([x.cell[:] for x in a], [x.cell[:] for x in b], atol=1e-5)
    atoms, frames = model.sample('Na Cl', n_atoms=4, n_samples=2, steps=5, seed=1, return_trajectory=True)
    assert len(frames) == len(atoms) and frames[0][-1].get_chemical_symbols() == atoms[0].get_chemical_symbols()


def test_overlapping_atoms_are_drawn_again(tiny):
    from crystal_tutorial.chameleon import needs_redraw
    model = Chameleon.load(tiny)                                   # untrained, 5 steps: many samples put atoms on top of each other
    raw = model.sample('Na Cl', n_atoms=12, n_samples=8, steps=5, seed=2, retries=0)
    fixed = model.sample('Na Cl', n_atoms=12, n_samples=8, steps=5, seed=2, retries=3)
    again = model.sample('Na Cl', n_atoms=12, n_samples=8, steps=5, seed=2, retries=3)
    n_raw, n_fixed = sum(map(needs_redraw, raw)), sum(map(needs_redraw, fixed))
    assert n_raw > 0, 'the test needs invalid first draws'
    assert n_fixed < n_raw
    assert [a.info.get('attempt', 0) > 0 for a in fixed] == [needs_redraw(a) for a in raw]      # exactly the bad ones were redrawn
    for first, final in zip(raw, fixed):
        if not needs_redraw(first): np.testing.assert_allclose(first.cell[:], final.cell[:])
    np.testing.assert_allclose([a.cell[:] for a in fixed], [a.cell[:] for a in again])           # still reproducible with a seed
    with pytest.raises(PromptError, match='retries'):
        model.sample('Na Cl', n_atoms=4, steps=2, retries=-1)


def test_step_lr_reaches_the_sampler(tiny):
    model = Chameleon.load(tiny)
    cell = lambda **kw: [a.cell[:] for a in model.sample('Na Cl', n_atoms=4, n_samples=2, steps=5, seed=3, retries=0, **kw)]
    default, own, predictor = cell(), cell(step_lr=model.diffusion.config.step_lr), cell(step_lr=0)
    np.testing.assert_allclose(default, own)                       # None means the model's configured γ
    assert not np.allclose(default, predictor)                     # and 0 switches the corrector off


def test_guidance_scale_zero_is_the_unconditional_model(tiny):
    model = Chameleon.load(tiny)
    torch.manual_seed(0)
    for p in model.diffusion.net.cond_in.parameters(): p.data.normal_()          # make the condition matter
    u = model.sample('Na Cl', n_atoms=4, n_samples=2, steps=5, seed=2, guidance_scale=0, restrict_elements=False, charge_balanced=False)
    null = sample_crystals(model.diffusion, num_atoms=[4, 4], steps=5, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose([x.cell[:] for x in u], [c.lattice.numpy() for c in null], atol=1e-4)
    assert [x.get_chemical_symbols() for x in u] == [c.to_atoms().get_chemical_symbols() for c in null]
    crystals = toy_dataset().batch([0, 1])                                       # and the condition does change the prediction
    d = model.diffusion
    t = torch.full((2,), 10)
    args = (torch.randn(len(crystals.atom_types), 100), crystals.frac_coords, crystals.lattice / d.config.lattice_scale, crystals.num_atoms, crystals.batch, t)
    out_c, out_u = d.denoise(*args, model.embed(['Na Cl', 'Na Cl'])), d.denoise(*args, torch.zeros(2, 8))
    assert (out_c['types'] - out_u['types']).abs().max() > 1e-3


@pytest.mark.parametrize('kwargs, message', [
    (dict(prompt='Ti O Xx', n_atoms=8), "unknown element 'Xx'"),
    (dict(prompt='', n_atoms=8), 'empty prompt'),
    (dict(prompt='Na Cl', n_atoms=0), 'out of range'),
    (dict(prompt='Na Cl', n_atoms=41), 'out of range'),
    (dict(prompt='Na Cl', n_atoms=4, n_samples=0), 'n_samples'),
    (dict(prompt='Na Cl O', n_atoms=2), 'names 3 elements'),
    (dict(prompt='Na Cl', n_atoms=4, guidance_scale=float('nan')), 'guidance_scale'),
    (dict(prompt='a cubic crystal', n_atoms=4), 'needs element symbols'),
    (dict(prompt='U O', n_atoms=4), 'never saw U'),
    (dict(prompt='Na Cl', n_atoms=4, step_lr=-1e-5), 'step_lr'),
])
def test_bad_requests_are_clear_errors(tiny, kwargs, message):
    with pytest.raises(PromptError, match=message):
        Chameleon.load(tiny).sample(**kwargs, steps=2)


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='corrupt'):
        Chameleon.load(bad)
    with pytest.raises(ValueError, match='neither a shipped'):
        Chameleon.load(tmp_path / 'missing.pt')
    if (WEIGHTS_DIR / 'crystal_diffusion_perov5_csp.pt').exists():
        with pytest.raises(ValueError, match='not a Chameleon checkpoint'):
            Chameleon.load(WEIGHTS_DIR / 'crystal_diffusion_perov5_csp.pt')


def test_summary_and_adherence(tiny):
    toy = toy_dataset()
    atoms = [toy[i].to_atoms() for i in range(3)]                               # real crystals: the metrics are known
    s = generation_summary(atoms, ['Na', 'Cl'], n_requested=4)
    assert s['n_samples'] == 4 and s['n_generated'] == 3 and s['struct_valid'] == 0.75 and s['unique'] <= 0.75
    assert prompt_adherence([], ['Na']) != prompt_adherence([], ['Na'])           # nan for nothing generated
    assert prompt_adherence(atoms[:1], set(atoms[0].get_chemical_symbols())) == 1.0


@pytest.mark.skipif(not SHIPPED, reason='the Chameleon weights are not shipped in this checkout')
def test_shipped_weights_load_with_weights_only():
    for kind, file in SHIPPED_CHAMELEON_MODELS.items():
        state = torch.load(WEIGHTS_DIR / file, weights_only=True, map_location='cpu')
        assert state['kind'] == kind and state['config']['cond_dim'] > 0
        assert (WEIGHTS_DIR / file).stat().st_size < 20 * 2**20
        assert (WEIGHTS_DIR / file.replace('.pt', '.md')).exists(), f'{file} needs a model card'


@pytest.mark.skipif(not SHIPPED, reason='the Chameleon weights are not shipped in this checkout')
def test_cli_generate_end_to_end(tmp_path):
    out = tmp_path / 'gen'
    r = subprocess.run(CLI + ['generate', 'Ti O S', '--n-atoms', '6', '--n-samples', '2', '--steps', '10', '--seed', '0',
                              '--out', str(out), '--device', 'cpu', '--quiet'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ['overview.png', 'structure_1.cif', 'structure_2.cif', 'summary.json']
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['n_samples'] == 2 and summary['prompt'] == 'Ti O S'
    assert summary['retries'] == 4 and 0 <= summary['redrawn'] <= 2
    from ase.io import read
    assert set(read(out / 'structure_1.cif').get_chemical_symbols()) == {'Ti', 'O', 'S'}
    assert summary['charge_balanced'] is True and summary['comp_valid'] == 1.0           # Ti O S balances in 6 atoms
    r = subprocess.run(CLI + ['generate', 'Ti O S', '--n-atoms', '6', '--n-samples', '1', '--steps', '5', '--seed', '0',
                              '--out', str(tmp_path / 'free'), '--device', 'cpu', '--quiet', '--no-charge-balance', '--step-lr', '1e-5'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    free = json.loads((tmp_path / 'free' / 'summary.json').read_text())
    assert free['charge_balanced'] is False and free['step_lr'] == 1e-5
    assert summary['step_lr'] == torch.load(WEIGHTS_DIR / SHIPPED_CHAMELEON_MODELS['composition'], weights_only=True)['config']['step_lr']
    assert summary['steps'] == 10 and free['steps'] == 5


@pytest.mark.skipif(not SHIPPED, reason='the Chameleon weights are not shipped in this checkout')
def test_cli_generate_samples_with_the_api_default_steps(tmp_path):
    "Without --steps, generate samples as many steps as Chameleon.sample does by default, and its help says how many."
    from crystal_tutorial.chameleon import DEFAULT_STEPS, SampleOptions
    from crystal_tutorial.cli import build_parser
    assert SampleOptions().steps == DEFAULT_STEPS < 1000
    assert f'default: {DEFAULT_STEPS} of' in build_parser()._subparsers._group_actions[0].choices['generate'].format_help()
    r = subprocess.run(CLI + ['generate', 'Ti O', '--n-atoms', '2', '--n-samples', '1', '--seed', '0', '--out', str(tmp_path / 'g'),
                              '--device', 'cpu', '--quiet'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / 'g' / 'summary.json').read_text())['steps'] == DEFAULT_STEPS


@pytest.mark.skipif(not SHIPPED, reason='the Chameleon weights are not shipped in this checkout')
@pytest.mark.parametrize('argv, message', [
    (['Ti O Xx', '--n-atoms', '8'], "unknown element 'Xx'"),
    (['', '--n-atoms', '8'], 'empty prompt'),
    (['Ti O S', '--n-atoms', '0'], 'out of range'),
    (['Ti O S', '--n-atoms', '2'], 'names 3 elements'),
    (['Ti O S', '--n-samples', '-1'], '--n-samples'),
    (['Ti O S', '--steps', '0'], '--steps'),
    (['a cubic oxide'], 'needs element symbols'),
    (['Ti O S', '--retries', '-1'], '--retries'),
    (['Ti O S', '--step-lr', '-1'], '--step-lr'),
])
def test_cli_generate_bad_requests_write_nothing(tmp_path, argv, message):
    r = subprocess.run(CLI + ['generate', *argv, '--out', str(tmp_path / 'out')], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr
    assert not (tmp_path / 'out').exists()


@pytest.mark.skipif(not SHIPPED, reason='the Chameleon weights are not shipped in this checkout')
def test_cli_generate_never_overwrites(tmp_path):
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'structure_1.cif').write_text('my own file\n')
    r = subprocess.run(CLI + ['generate', 'Ti O', '--n-atoms', '4', '--n-samples', '1', '--steps', '2', '--out', str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and 'already holds results' in r.stderr
    assert (out / 'structure_1.cif').read_text() == 'my own file\n'
    r = subprocess.run(CLI + ['generate', 'Ti O', '--n-atoms', '4', '--n-samples', '1', '--steps', '2', '--quiet'],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / 'chameleon_structures' / 'keep.txt').write_text('x')
    r = subprocess.run(CLI + ['generate', 'Ti O', '--n-atoms', '4', '--n-samples', '1', '--steps', '2', '--quiet'],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / 'chameleon_structures-2' / 'structure_1.cif').exists()
    assert (tmp_path / 'chameleon_structures' / 'keep.txt').read_text() == 'x'


@pytest.mark.skipif(not SHIPPED, reason='the shipped Crystal CLIP makes the conditions')
def test_training_script_runs_stops_on_budget_and_resumes(tmp_path):
    from pathlib import Path
    out = tmp_path / 'chameleon.pt'
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / 'scripts' / 'train_chameleon.py'), '--kind', 'composition',
           '--dataset', 'toy', '--limit', '40', '--epochs', '3', '--hidden', '16', '--n-layers', '1', '--device', 'cpu',
           '--max-minutes', '0', '--out', str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert 'after 1 epochs' in first.stdout and 'not finished' in first.stdout                # the budget stops it after one epoch
    second = subprocess.run([a for a in cmd if a not in ('--max-minutes', '0')], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and 'resuming' in second.stdout, second.stderr[-3000:]
    assert 'epoch 3/3' in second.stdout and torch.load(out, weights_only=True)['epochs_done'] == 3
    assert Chameleon.load(out).sample('Na Cl', n_atoms=2, steps=2, seed=0)[0].get_chemical_symbols() in (['Na', 'Cl'], ['Cl', 'Na'])


def test_tuned_text_side_conditions_trains_and_round_trips(tmp_path):
    "Chapter 21's tuned Crystal CLIP as Chameleon's text side: conditions from the texts, a step, save and load."
    from crystal_tutorial.chameleon import chameleon_learner, conditioned_pairs
    from crystal_tutorial.texts import MiniLM, _package_folder, dataset_facts
    from crystal_tutorial.text_tuning import TunedCrystalCLIP
    ds = toy_dataset().subset(range(16))
    torch.manual_seed(0)
    clip = TunedCrystalCLIP(CrystalCLIP(CrystalCLIPConfig(hidden=16, n_layers=1, embed_dim=8, max_atoms=12)),
                            MiniLM.from_folder(_package_folder()), 2)
    with torch.no_grad():                                      # a "tuned" top layer, unlike the packaged one
        for p in clip.text.layers[5].parameters(): p.add_(0.01 * torch.randn_like(p))
    pairs = conditioned_pairs(ds, dataset_facts(ds), ['elements', 'formula'], clip)
    assert pairs.embeddings.shape == (len(pairs.vocab), 8)
    assert torch.allclose(pairs.embeddings, clip.encode_texts(pairs.vocab), atol=1e-6)   # the texts, not a cache
    config = config_for_data(ds, task='dng', hidden=16, n_layers=1, cond_dim=8, n_steps=20, batch_size=8, epochs=1)
    learn = chameleon_learner(config, pairs)
    learn.fit(1)
    path = save_chameleon(tmp_path / 'tuned.pt', learn.model, clip, 'composition', ['elements'], history=[])
    state = torch.load(path, weights_only=True)
    assert state['clip']['tuned_layers'] == 2 and state['clip']['model']['text.layers.5.ff2.weight'].dtype == torch.float16
    assert not any(k.startswith('text.layers.3.') for k in state['clip']['model'])      # only what was tuned
    model = Chameleon.load(path)
    assert (model.embed(['Na Cl', 'Ti O S']) - clip.encode_texts(['Na Cl', 'Ti O S'])).abs().max() < 1e-3   # fp16 layers
    atoms = model.sample('Na Cl', n_atoms=4, n_samples=2, steps=3, seed=0)
    assert all(set(a.get_chemical_symbols()) == {'Na', 'Cl'} for a in atoms)
    state['clip']['model'].pop('text.layers.5.ff2.weight'); torch.save(state, tmp_path / 'cut.pt')
    with pytest.raises(CheckpointError) as e: Chameleon.load(tmp_path / 'cut.pt')
    assert 'lacks' in str(e.value) and '\n' not in str(e.value)
