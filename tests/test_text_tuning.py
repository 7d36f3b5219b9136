"""Fine-tuned Crystal CLIP text side (notebook 21): a training step moves only the unlocked layers and lowers the loss,
the shipped delta loads offline over the packaged MiniLM and reproduces its reference embeddings, bad deltas are one-line
errors, and the texts and batches behave."""
import pytest
import torch

from crystal_tutorial.clip import CrystalCLIP, CrystalCLIPConfig
from crystal_tutorial.texts import MiniLM, _package_folder, crystal_facts, dataset_facts, load_text_encoder
from crystal_tutorial.core import WEIGHTS_DIR, CheckpointError, save_checkpoint
from crystal_tutorial.learner import loss_drops_on_batch
from crystal_tutorial.crystals import Crystal, toy_dataset
from crystal_tutorial import text_tuning as tt
from crystal_tutorial.text_tuning import (
    REFERENCE_TEXTS, SHIPPED_TUNED_MODELS, PolymorphBatches, TextTuningConfig, TokenizedTexts, TunedCrystalCLIP,
    lecture_group, load_tuned_clip, role_texts, same_group_accuracy, save_tuned_clip, silhouette, tuned_loss, tuning_texts)

TINY = dict(hidden=16, n_layers=1, n_freq=4, time_dim=8, embed_dim=16)


@pytest.fixture(scope='module')
def toy():
    ds = toy_dataset().subset(range(24))
    return ds, dataset_facts(ds)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return TunedCrystalCLIP(CrystalCLIP(CrystalCLIPConfig(**TINY)), MiniLM.from_folder(_package_folder()), 2)


def fixed_batch(model, toy):
    ds, facts = toy
    pairs = TokenizedTexts(ds, [tuning_texts(f) for f in facts], model.text.tokenizer, [f['formula'] for f in facts])
    return pairs.__getitems__(list(range(16)))


def one_line(e):
    msg = str(e.value)
    assert msg and '\n' not in msg, msg
    return msg


def test_step_changes_only_unlocked_layers_and_loss_drops(toy):
    model = tiny_model()
    batch = fixed_batch(model, toy)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    out = tuned_loss(model.train(), batch)
    opt.zero_grad(); out['loss'].backward(); opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    text_changed = {n for n in changed if n.startswith('text.')}
    assert text_changed and all(n.startswith(('text.layers.4.', 'text.layers.5.')) for n in text_changed)
    assert all(n in changed for n in before if n.startswith('text.layers.5.'))
    assert not any(p.requires_grad for n, p in model.text.named_parameters() if not n.startswith(('layers.4.', 'layers.5.')))
    b, a = loss_drops_on_batch(model, tuned_loss, batch, steps=8, lr=3e-4)
    assert a < b


def test_untrained_tower_is_the_baseline():
    model = tiny_model()
    texts = ['Ti O S', 'tetragonal TiO2']
    assert torch.allclose(model.text_features(*tt.tokenize(model.text.tokenizer, texts)), load_text_encoder().encode(texts), atol=1e-5)


def test_delta_round_trip(tmp_path):
    model = tiny_model(1)
    with torch.no_grad():                       # a "trained" model: move the unlocked layers
        for p in model.text.layers[5].parameters(): p.add_(0.01 * torch.randn_like(p))
    path = save_tuned_clip(tmp_path / 'delta.pt', model, TextTuningConfig(init=''))
    state = torch.load(path, weights_only=True)
    assert list(state['reference_texts']) == list(REFERENCE_TEXTS) and state['reference_embeddings'].shape == (5, 16)
    assert not any(k.startswith(('text.layers.0.', 'text.token')) for k in state['delta']['model'])
    loaded = load_tuned_clip(path)
    assert torch.allclose(loaded.encode_texts(list(REFERENCE_TEXTS)), state['reference_embeddings'], atol=1e-5)
    assert (loaded.encode_texts(list(REFERENCE_TEXTS)) - model.encode_texts(list(REFERENCE_TEXTS))).abs().max() < 1e-3   # fp16


@pytest.mark.skipif(not (WEIGHTS_DIR / SHIPPED_TUNED_MODELS['mp_mix_20']).exists(), reason='no shipped delta')
def test_shipped_delta_reproduces_reference_embeddings():
    state = torch.load(WEIGHTS_DIR / SHIPPED_TUNED_MODELS['mp_mix_20'], weights_only=True)
    model = load_tuned_clip()
    assert torch.allclose(model.encode_texts(state['reference_texts']), state['reference_embeddings'], atol=1e-5)
    assert (WEIGHTS_DIR / SHIPPED_TUNED_MODELS['mp_mix_20']).stat().st_size < 20 * 2**20


def test_corrupt_or_missing_delta_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / 'bad.pt'; bad.write_bytes(b'\x00garbage')
    with pytest.raises(CheckpointError) as e: load_tuned_clip(bad)
    assert 'corrupt' in one_line(e)
    with pytest.raises(ValueError) as e: load_tuned_clip(tmp_path / 'missing.pt')
    assert 'neither a shipped' in one_line(e)
    monkeypatch.setitem(SHIPPED_TUNED_MODELS, 'mp_mix_20', 'no_such_delta.pt')
    with pytest.raises(FileNotFoundError) as e: load_tuned_clip('mp_mix_20')
    assert 'train_text_tuning.py' in one_line(e)
    save_checkpoint(tmp_path / 'other.pt', None, something=1)
    with pytest.raises(CheckpointError) as e: load_tuned_clip(tmp_path / 'other.pt')
    one_line(e)
    model = tiny_model()
    path = save_tuned_clip(tmp_path / 'cut.pt', model, TextTuningConfig(init=''))
    state = torch.load(path, weights_only=True)
    state['delta']['model'].pop('text.layers.5.ff2.weight')
    torch.save(state, tmp_path / 'cut.pt')
    with pytest.raises(CheckpointError) as e: load_tuned_clip(tmp_path / 'cut.pt')
    assert 'lacks' in one_line(e)


def test_role_texts_and_groups():
    bto = crystal_facts(Crystal(torch.rand(5, 3), [56, 22, 8, 8, 8], 4 * torch.eye(3), {}), 221)
    assert role_texts(bto) == {'roles': 'an oxide of an alkaline-earth metal and a transition metal',
                               'roles_system': 'a cubic oxide of an alkaline-earth metal and a transition metal'}
    assert lecture_group(57) == lecture_group(92) == 'transition metal' and lecture_group(2) == 'noble gas'
    assert set(map(lecture_group, range(1, 95))) == set(tt.EIGHT_GROUPS)


def test_polymorph_batches_cover_each_index_once():
    formulas = ['A', 'B', 'A', 'C', 'B', 'D', 'A', 'E'] * 3
    s = PolymorphBatches(formulas, 4, seed=0, drop_last=False)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(len(formulas)))
    assert tt.polymorph_pairs(batches, formulas) > 0


def test_group_measures():
    e = torch.tensor([[1., 0], [1, 0.05], [0, 1], [0.05, 1]])
    assert same_group_accuracy(e, ['a', 'a', 'b', 'b']) == 1.0
    assert same_group_accuracy(e, ['a', 'b', 'a', 'b']) == 0.0
    assert silhouette(e, ['a', 'a', 'b', 'b']) > 0.9 and silhouette(e, ['a', 'b', 'a', 'b']) < 0


def test_system_term_trains_the_crystal_side_towards_its_system(toy):
    "L_system on a fixed batch: a few steps lower it, and crystals of unknown system (None -> -1) are left out."
    ds, facts = toy
    model = tiny_model(2)
    pairs = TokenizedTexts(ds, [tuning_texts(f) for f in facts], model.text.tokenizer, [f['formula'] for f in facts],
                           systems=[f['system'] for f in facts[:-1]] + [None])
    batch = pairs.__getitems__(list(range(len(ds))))
    assert batch[4][-1].item() == -1 and (batch[4][:-1] >= 0).all()
    system = tt.SystemAlignment(model.text.tokenizer)
    before, after = loss_drops_on_batch(model, lambda m, b: system.loss(m, m.encode_crystals(b[0]), b[4]), batch,
                                        steps=10, lr=1e-3)
    assert after < before
    terms = tt.TunedLoss(systems=system, system_weight=0.5)(model.train(), batch)
    assert torch.isclose(terms['loss'], tuned_loss(model, batch)['loss'] + 0.5 * terms['system_loss'], atol=1e-4)


def test_training_script_with_the_system_term(tmp_path):
    "train_text_tuning.py on the toy set with --system-weight: logs the term and writes a delta that loads."
    import subprocess, sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / 'tuned.pt'
    r = subprocess.run([sys.executable, str(root / 'scripts' / 'train_text_tuning.py'), '--dataset', 'toy',
                        '--split', 'train', '--init', '', '--epochs', '1', '--batch-size', '16', '--system-weight', '1',
                        '--role-weight', '0', '--threads', '1',
                        '--out', str(out)], capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    state = torch.load(out, weights_only=True)
    assert state['config']['system_weight'] == 1.0
    assert 'train_system_loss' in state['history'][-1]
    assert load_tuned_clip(out).encode_texts(['Ti O S']).shape[0] == 1
