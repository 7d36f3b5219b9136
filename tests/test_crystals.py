"""Crystals as data: lossless round trips, periodic distances and graphs against pymatgen, batching, and the dataset
loader's failure modes (local copies, the cache, checksums, offline use, bad rows, files that are not CSVs).

Tests on real crystals read a few rows of the shared datasets in place and skip when that folder is absent.
"""
import http.server
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import crystal_tutorial.crystal_data as cr
from crystal_tutorial.crystals import Crystal, CrystalDataset, distance_matrix, make_toy_crystals
from crystal_tutorial.crystal_data import CACHE_FORMAT, ChecksumError, DatasetError, MalformedRowWarning, dataset_csv, datasets_root, download_file, load_csv, load_dataset, parse_cif, sha256_file
from crystal_tutorial.crystal_graphs import collate_crystals, edge_mismatches, radius_graph_pbc, scatter_sum

pytestmark = pytest.mark.filterwarnings("ignore:No Pauling electronegativity:UserWarning")

SHARED = datasets_root()
REAL_FILES = [('perov_5', 'val'), ('carbon_24', 'val'), ('mp_mix_20', 'train')]


def _shared_file(name, split):
    for ext in ('.csv', '.csv.gz'):
        if SHARED is not None and (SHARED / name / f'{split}{ext}').is_file(): return SHARED / name / f'{split}{ext}'
    return None


needs_real = pytest.mark.skipif(SHARED is None or any(_shared_file(*f) is None for f in REAL_FILES),
                                reason='the shared crystal datasets are not on this machine')


@pytest.fixture(autouse=True)
def isolated_data(tmp_path, monkeypatch):
    "Every test gets its own empty data_dir(); the shared datasets stay reachable only where a test asks for them."
    monkeypatch.setenv('CRYSTAL_TUTORIAL_DATA', str(tmp_path / 'data'))
    return tmp_path / 'data'


@pytest.fixture
def no_network(monkeypatch):
    "Every download fails at once, as on a machine without internet; counts the attempts."
    attempts = []
    def refuse(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError('network disabled by the test')
    monkeypatch.setattr(urllib.request, 'urlopen', refuse)
    return attempts


@pytest.fixture(scope='module')
def toy():
    return make_toy_crystals()


@pytest.fixture(scope='module')
def real_crystals():
    "The first 25 crystals of each real dataset file, read in place (nothing is copied)."
    if SHARED is None or any(_shared_file(*f) is None for f in REAL_FILES): pytest.skip('the shared crystal datasets are not on this machine')
    out = []
    for name, split in REAL_FILES:
        df = pd.read_csv(_shared_file(name, split), nrows=25)
        out += [parse_cif(text, niggli=False, canonical=False) for text in df['cif']]
    return out


def random_crystal(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = 3 + 4 * torch.rand(3, generator=g, dtype=torch.float64)
    angles = 70 + 40 * torch.rand(3, generator=g, dtype=torch.float64)
    frac = 1.4 * torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.2      # some atoms outside the cell
    return Crystal.from_params(lengths, angles, frac, torch.randint(1, 95, (n,), generator=g))


def assert_same(a, b, atol):
    assert torch.equal(a.atom_types, b.atom_types)
    torch.testing.assert_close(a.lattice, b.lattice, atol=atol, rtol=0)
    torch.testing.assert_close(a.frac_coords, b.frac_coords, atol=atol, rtol=0)


def write_csv(path, crystals, broken_rows=(), **extra_columns):
    rows = [{'material_id': f'x-{k}', 'cif': c.to_cif(), 'energy': float(k), **extra_columns} for k, c in enumerate(crystals)]
    for k in broken_rows: rows[k]['cif'] = 'data_broken\n_cell_length_a 3.0\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# --- representation and conversions ---------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', range(5))
def test_round_trips_tensor_structure_atoms_cif(seed):
    c = random_crystal(n=3 + seed, seed=seed)
    assert_same(c, Crystal.from_structure(c.to_structure()), atol=0)
    assert_same(c, Crystal.from_atoms(c.to_atoms()), atol=1e-12)
    assert_same(c, Crystal.from_atoms(Crystal.from_structure(c.to_structure()).to_atoms()), atol=1e-12)
    # CIF keeps 8 decimals, the standard orientation and coordinates in [0, 1); atoms stay in order
    back = Crystal.from_cif(c.to_cif())
    assert_same(back, c.canonical().wrapped(), atol=2e-7)
    again = Crystal.from_cif(back.to_cif())
    assert_same(again, back, atol=2e-8)


def test_left_handed_cells_are_not_mirrored():
    c = random_crystal(n=6, seed=7)
    left = Crystal(c.frac_coords, c.atom_types, c.lattice * torch.tensor([[1.], [-1.], [1.]], dtype=torch.float64))
    assert torch.linalg.det(left.lattice) < 0
    for out in (left.canonical(), Crystal.from_cif(left.to_cif())):
        assert torch.linalg.det(out.lattice) > 0
        R = torch.linalg.solve(-left.lattice, out.canonical().lattice)      # the map from the old cell to the new
        torch.testing.assert_close(torch.linalg.det(R), torch.tensor(1.0, dtype=torch.float64))
    back = Crystal.from_cif(left.to_cif())
    assert_same(back, left.canonical().wrapped(), atol=2e-7)
    np.testing.assert_allclose(distance_matrix(back.frac_coords, back.lattice).numpy(), left.to_structure().distance_matrix, atol=1e-6)


def test_round_trips_on_real_crystals(real_crystals):
    for c in real_crystals:
        assert_same(Crystal.from_structure(c.to_structure()), c, atol=0)
        assert_same(Crystal.from_atoms(c.to_atoms()), c, atol=1e-12)
        assert_same(Crystal.from_cif(c.to_cif()), c.canonical().wrapped(), atol=2e-7)


def test_conversions_copy_rather_than_share_memory():
    c = random_crystal()
    atoms, structure = c.to_atoms(), c.to_structure()
    numbers, positions, frac = atoms.numbers.copy(), atoms.positions.copy(), structure.frac_coords.copy()
    for c2 in (Crystal.from_atoms(atoms), Crystal.from_structure(structure)):
        c2.frac_coords += 0.1; c2.atom_types[0] = 1; c2.lattice *= 2
    assert np.array_equal(atoms.numbers, numbers) and np.array_equal(atoms.positions, positions)
    assert np.array_equal(structure.frac_coords, frac)


def test_bad_crystals_are_refused():
    from pymatgen.core import Lattice, Structure
    with pytest.raises(ValueError, match='partially occupied'):
        Crystal.from_structure(Structure(Lattice.cubic(4), [{'Fe': 0.5, 'Co': 0.5}], [[0, 0, 0]]))
    with pytest.raises(ValueError, match='finite'):
        Crystal(torch.full((1, 3), float('nan')), [1], torch.eye(3))
    with pytest.raises(ValueError, match=r'atom_types \[N\]'):
        Crystal(torch.zeros(1, 3), 5, torch.eye(3))


def test_minimum_image_distances_on_a_very_skewed_cell():
    c = Crystal.from_params([3.0, 9.0, 4.0], [50, 115, 70], torch.rand(6, 3, generator=torch.Generator().manual_seed(1)), [6] * 6)
    np.testing.assert_allclose(distance_matrix(c.frac_coords, c.lattice).numpy(), c.to_structure().distance_matrix, atol=1e-9)


def test_minimum_image_distances_against_pymatgen_on_real_crystals(real_crystals):
    for c in real_crystals:
        np.testing.assert_allclose(distance_matrix(c.frac_coords, c.lattice).numpy(), c.to_structure().distance_matrix, atol=1e-9)


# --- batching and graphs --------------------------------------------------------------------------------------------

def test_batching_a_mix_of_cell_sizes(toy):
    ds = CrystalDataset.from_crystals(toy, name='toy')
    sizes = {}
    for i, c in enumerate(toy): sizes.setdefault(c.num_atoms, i)
    assert sorted(sizes) == [2, 5, 8, 12]
    idx = [sizes[12], sizes[2], sizes[8], sizes[5], sizes[2]]
    crystals = [ds[i] for i in idx]
    for b in (collate_crystals(crystals, dtype=torch.float64), ds.batch(idx, dtype=torch.float64)):
        assert b.num_atoms.tolist() == [12, 2, 8, 5, 2]
        assert b.batch.tolist() == sum(([k] * n for k, n in enumerate([12, 2, 8, 5, 2])), [])
        assert b.ptr.tolist() == [0, 12, 14, 22, 27, 29]
        for k, c in enumerate(crystals):
            assert_same(b.crystal(k), c, atol=0)
            torch.testing.assert_close(b.cart_coords[b.ptr[k]:b.ptr[k + 1]], c.cart_coords)
        torch.testing.assert_close(scatter_sum(torch.ones(len(b.atom_types), dtype=torch.long), b.batch, len(b)), b.num_atoms)
        torch.testing.assert_close(b.volume, torch.tensor([c.volume for c in crystals], dtype=torch.float64))
        edges = b.fully_connected_edges()
        assert edges.shape[1] == sum(n * (n - 1) for n in b.num_atoms.tolist())
        assert torch.equal(b.batch[edges[0]], b.batch[edges[1]])          # no edge between crystals
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, collate_fn=collate_crystals,
                                         generator=torch.Generator().manual_seed(0))
    seen = torch.cat([b.props['lattice_constant'] for b in loader])
    assert len(seen) == len(ds) and torch.equal(seen.sort().values, ds.props['lattice_constant'].sort().values)


def test_radius_graph_matches_pymatgen_on_toy_crystals(toy):
    for cutoff in (3.0, 6.0):
        bad, total = edge_mismatches(toy[::3], cutoff)
        assert total > 0 and bad == 0


def test_radius_graph_matches_pymatgen_on_real_crystals(real_crystals):
    for cutoff in (4.0, 7.0):
        bad, total = edge_mismatches(real_crystals, cutoff)
        assert total > 1000 and bad == 0


def test_radius_graph_edges_carry_the_lattice_shift(real_crystals):
    b = collate_crystals(real_crystals[:10], dtype=torch.float64)
    g = b.radius_graph(5.0)
    i, j = g.edge_index
    expected = torch.einsum('ei,eij->ej', b.frac_coords[j] + g.images - b.frac_coords[i], b.lattice[b.batch[i]])
    torch.testing.assert_close(g.edge_vec, expected)
    assert (g.distances <= 5.0).all() and (g.distances > 0.5).all()
    small = radius_graph_pbc(b.frac_coords, b.lattice, b.num_atoms, 5.0, max_candidates=1000)   # many chunks, same graph
    assert torch.equal(small.edge_index, g.edge_index) and torch.equal(small.images, g.images)


# --- the loader ------------------------------------------------------------------------------------------------------

def test_local_copy_via_root_and_via_environment(tmp_path, toy, no_network, monkeypatch):
    copies = tmp_path / 'copies'
    write_csv(copies / 'perov_5' / 'val.csv', toy[:6])
    ds = load_dataset('perov_5', 'val', root=copies, verbose=False)
    assert len(ds) == 6 and ds.props['material_id'] == [f'x-{k}' for k in range(6)]
    monkeypatch.setenv(cr.DATASETS_ENV, str(copies))
    assert dataset_csv('perov_5', 'val') == copies / 'perov_5' / 'val.csv'
    assert len(load_dataset('perov_5', 'val', verbose=False)) == 6
    # gzip too, found as <split>.csv.gz
    import gzip
    (copies / 'carbon_24').mkdir()
    (copies / 'carbon_24' / 'val.csv.gz').write_bytes(gzip.compress((copies / 'perov_5' / 'val.csv').read_bytes()))
    assert len(load_dataset('carbon_24', 'val', verbose=False)) == 6
    assert no_network == [], 'a local copy must never trigger a download'


def test_environment_variable_naming_a_missing_folder_is_ignored_with_a_warning(monkeypatch, no_network):
    monkeypatch.setenv(cr.DATASETS_ENV, '/nonexistent/datasets')
    with pytest.warns(UserWarning, match='is not a folder'):
        assert datasets_root() is None
    with pytest.raises(DatasetError, match='is not a folder'):
        dataset_csv('perov_5', 'val', root='/nonexistent/datasets')


def test_cache_hit_is_faster_and_equal(tmp_path, toy, isolated_data):
    csv = write_csv(tmp_path / 'set' / 'val.csv', toy[:60])
    cold = load_csv(csv, verbose=False)
    warm = load_csv(csv, verbose=False)
    assert not cold.info['from_cache'] and warm.info['from_cache']
    assert Path(warm.info['cache']).parent == isolated_data / 'parsed' and Path(warm.info['cache']).exists()
    assert sorted(p.name for p in csv.parent.iterdir()) == ['val.csv']        # a user's data folder is never written to
    assert warm.info['seconds'] < cold.info['seconds'] / 3
    for k in ('frac_coords', 'atom_types', 'lattice', 'num_atoms'):
        assert torch.equal(getattr(warm, k), getattr(cold, k))
    assert torch.equal(warm.props['energy'], cold.props['energy']) and warm.props['material_id'] == cold.props['material_id']
    # a changed file has a new hash: the old cache is not used
    write_csv(csv, toy[:61])
    assert len(load_csv(csv, verbose=False)) == 61
    # a cache_dir of one's own
    ds = load_csv(csv, verbose=False, cache_dir=tmp_path / 'elsewhere')
    assert Path(ds.info['cache']).parent == tmp_path / 'elsewhere'


def test_read_only_folder_gets_its_cache_in_data_dir(tmp_path, toy, isolated_data):
    csv = write_csv(tmp_path / 'ro' / 'val.csv', toy[:5])
    (tmp_path / 'ro').chmod(0o555)
    try:
        ds = load_csv(csv, verbose=False)
        assert Path(ds.info['cache']).parent == isolated_data / 'parsed'
        assert sorted(p.name for p in (tmp_path / 'ro').iterdir()) == ['val.csv']
        assert load_csv(csv, verbose=False).info['from_cache']
    finally:
        (tmp_path / 'ro').chmod(0o755)


@pytest.mark.parametrize('content', [b'', b'garbage', b'\x80\x02' + bytes(range(256))], ids=['empty', 'text', 'binary'])
def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, toy, content):
    csv = write_csv(tmp_path / 'set' / 'val.csv', toy[:8])
    first = load_csv(csv, verbose=False)
    Path(first.info['cache']).write_bytes(content)
    with pytest.warns(UserWarning, match='unreadable'):
        again = load_csv(csv, verbose=False)
    assert not again.info['from_cache'] and torch.equal(again.frac_coords, first.frac_coords)
    assert load_csv(csv, verbose=False).info['from_cache']                    # and the rebuilt cache is good


class _Server:
    "A local HTTP server in a thread, serving `files` {path: bytes}; counts the requests."
    def __init__(self, files):
        self.files, self.requests = files, []
        outer = self
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None: self.send_error(404); return
                self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args): pass
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self): self.thread.start(); return self
    def __exit__(self, *exc): self.httpd.shutdown(); self.httpd.server_close()


def test_download_checksum_mismatch_leaves_nothing(tmp_path, toy, monkeypatch, isolated_data):
    for var in ('no_proxy', 'NO_PROXY'): monkeypatch.setenv(var, '*')        # talk to 127.0.0.1 even behind a proxy
    body = write_csv(tmp_path / 'upstream.csv', toy[:4]).read_bytes()
    with _Server({'/data/perov_5/val.csv': body, '/data/carbon_24/val.csv': body}) as server:
        monkeypatch.setattr(cr, 'CDVAE_URL', server.url + '/data/{name}/{split}.csv')
        monkeypatch.setitem(cr.CDVAE_SHA256, ('perov_5', 'val'), '0' * 64)
        (tmp_path / 'empty_root').mkdir()
        with pytest.raises(ChecksumError, match='nothing was saved') as err:
            dataset_csv('perov_5', 'val', root=tmp_path / 'empty_root')
        assert '\n' not in str(err.value)
        assert list((isolated_data / 'perov_5').iterdir()) == []             # no partial file left
        # a file the user already has is never replaced by a bad download
        mine = isolated_data / 'mine' / 'val.csv'; mine.parent.mkdir(parents=True); mine.write_bytes(b'my own data')
        with pytest.raises(ChecksumError):
            download_file(server.url + '/data/perov_5/val.csv', mine, sha256='f' * 64)
        assert mine.read_bytes() == b'my own data' and [p.name for p in mine.parent.iterdir()] == ['val.csv']
        # the right checksum: downloaded into data_dir() and loaded
        monkeypatch.setitem(cr.CDVAE_SHA256, ('carbon_24', 'val'), sha256_file(tmp_path / 'upstream.csv'))
        ds = load_dataset('carbon_24', 'val', root=tmp_path / 'empty_root', verbose=False)
        assert len(ds) == 4 and Path(ds.info['path']) == isolated_data / 'carbon_24' / 'val.csv'
        assert sorted(p.name for p in (isolated_data / 'carbon_24').iterdir())[0] == 'val.csv'
        n = len(server.requests)
        load_dataset('carbon_24', 'val', root=tmp_path / 'empty_root', verbose=False)
        assert len(server.requests) == n, 'the second load must not download again'
        # a 404 is a DatasetError that says where to put the file
        with pytest.raises(DatasetError, match='HTTP 404.*put test.csv'):
            dataset_csv('perov_5', 'test', root=tmp_path / 'empty_root')


def test_offline_without_a_copy_is_one_clear_line(tmp_path, no_network, isolated_data):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset('mp_20', 'val', root=tmp_path / 'empty')
    msg = str(err.value)
    assert '\n' not in msg and 'offline?' in msg and str(isolated_data / 'mp_20') in msg and cr.DATASETS_ENV in msg
    assert len(no_network) == 1 and list((isolated_data / 'mp_20').iterdir()) == []
    with pytest.raises(DatasetError, match='not downloadable') as err:
        load_dataset('mp_mix_20', 'train', root=tmp_path / 'empty')
    assert '\n' not in str(err.value) and str(isolated_data / 'mp_mix_20') in str(err.value)
    with pytest.raises(DatasetError, match='download=False'):
        dataset_csv('perov_5', 'val', root=tmp_path / 'empty', download=False)
    assert len(no_network) == 1


def test_malformed_rows_are_skipped_with_a_warning_naming_them(tmp_path, toy):
    csv = write_csv(tmp_path / 'set' / 'val.csv', toy[:10], broken_rows=[3, 8])
    df = pd.read_csv(csv); df.loc[5, 'cif'] = np.nan; df.to_csv(csv, index=False)      # and an empty cell
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ds = load_csv(csv, verbose=False)
    msgs = [str(w.message) for w in caught if issubclass(w.category, MalformedRowWarning)]
    assert len(msgs) == 3 and 'row 3 (material_id x-3)' in msgs[0] and 'row 5 (material_id x-5)' in msgs[1]
    assert len(ds) == 7 and [s[:2] for s in ds.info['skipped']] == [(3, 'x-3'), (5, 'x-5'), (8, 'x-8')]
    assert ds.props['material_id'] == [f'x-{k}' for k in (0, 1, 2, 4, 6, 7, 9)]
    torch.testing.assert_close(ds.props['energy'], torch.tensor([0., 1, 2, 4, 6, 7, 9], dtype=torch.float64))
    with pytest.raises(DatasetError, match=r'row 3 \(material_id x-3\) is not a valid crystal') as err:
        load_csv(csv, on_error='raise', cache=False)
    assert '\n' not in str(err.value)
    with pytest.raises(ValueError, match="on_error must be 'skip' or 'raise'"):
        load_csv(csv, on_error='ignore')


def test_partially_occupied_row_is_skipped(tmp_path):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter
    cif = str(CifWriter(Structure(Lattice.cubic(4), [{'Fe': 0.5, 'Co': 0.5}, 'O'], [[0, 0, 0], [.5, .5, .5]])))
    pd.DataFrame({'material_id': ['ok', 'alloy'], 'cif': [random_crystal().to_cif(), cif]}).to_csv(tmp_path / 'p.csv', index=False)
    with pytest.warns(MalformedRowWarning, match='row 1 .*alloy.*partially occupied'):
        ds = load_csv(tmp_path / 'p.csv', verbose=False)
    assert len(ds) == 1


@pytest.mark.parametrize('content, match', [
    (b'', 'not a readable CSV'),
    (b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * 4, 'not a readable CSV|no \'cif\' column'),
    (b'{"cif": "data_x"}', "no 'cif' column"),
    (b'material_id,formula\nmp-1,NaCl\n', "no 'cif' column"),
], ids=['empty', 'binary', 'json', 'csv-without-cif'])
def test_non_csv_input_is_a_clear_error(tmp_path, content, match):
    path = tmp_path / 'weird.csv'; path.write_bytes(content)
    with pytest.raises(DatasetError, match=match) as err:
        load_csv(path, verbose=False)
    assert '\n' not in str(err.value)
    with pytest.raises(DatasetError, match='does not exist'):
        load_csv(tmp_path / 'missing.csv')


def test_gzip_is_recognized_by_content(tmp_path, toy):
    import gzip
    plain = write_csv(tmp_path / 'a.csv', toy[:3])
    (tmp_path / 'b.dat').write_bytes(gzip.compress(plain.read_bytes()))
    assert len(load_csv(tmp_path / 'b.dat', verbose=False)) == 3


@needs_real
def test_real_files_load_with_a_limit_into_a_private_cache(tmp_path, isolated_data):
    before = {p for f in REAL_FILES for p in _shared_file(*f).parent.iterdir()}
    for name, split in REAL_FILES:
        ds = load_dataset(name, split, limit=30, verbose=False)
        assert len(ds) == 30 and Path(ds.info['cache']).is_relative_to(isolated_data)
        assert load_dataset(name, split, limit=30, verbose=False).info['from_cache']
    after = {p for f in REAL_FILES for p in _shared_file(*f).parent.iterdir()}
    assert after == before, 'the shared folder must not be written to'


def test_wrap_frac_stays_below_one_in_float32():
    from crystal_tutorial.crystals import wrap_frac
    x = torch.tensor([-1e-9, -1e-7, 1.0, 2.5, -0.25, 0.999999], dtype=torch.float32)
    w = wrap_frac(x)
    assert bool(((w >= 0) & (w < 1)).all()), w
    assert torch.allclose(w, torch.tensor([0.0, 1 - 1e-7, 0.0, 0.5, 0.75, 0.999999]), atol=1e-6)
