"""Remove machine-specific text from the committed outputs of the notebooks: local paths and pymatgen's noise.

Run it after executing a notebook in full mode and before `nbdev_clean` (CONTRIBUTING.md):

    python scripts/clean_outputs.py [nbs/03_vae.ipynb ...]     # default: every notebook in nbs/

Outputs keep their meaning: a temporary folder becomes `<tmp>/`, the project folder is dropped (paths become relative to
it), the datasets folder becomes `../shared/datasets`, a warning's `/tmp/ipykernel_*/N.py:L:` location and Python's own
install prefix are dropped, and pymatgen's "No Pauling electronegativity for He" warnings (two lines each) are removed.
`tests/test_notebooks.py` fails when a committed output still names a local folder.
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = re.compile(r'(/work/|/tmp/|/root/|/home/)')           # what tests/test_notebooks.py looks for
RULES = [
    (re.compile(r'^[^\n]*UserWarning: No Pauling electronegativity for \w+\.[^\n]*\n(  [^\n]*\n)?', re.M), ''),
    (re.compile(r'/tmp/ipykernel_\d+/\d+\.py:\d+: '), ''),
    (re.compile(r'/tmp/tmp[\w-]+/'), '<tmp>/'),
    (re.compile(re.escape(str(ROOT)) + r'/'), ''),
    (re.compile(re.escape(str(ROOT.parent / 'shared')) + r'\b'), '../shared'),
    (re.compile(r'/root/\.pyenv/versions/[\d.]+/lib/python[\d.]+/(site-packages/)?'), ''),
]


def clean_text(text: str) -> str:
    "`text` with every rule applied."
    for pattern, repl in RULES: text = pattern.sub(repl, text)
    return text


def _clean(value):
    if isinstance(value, list): return clean_text(''.join(value)).splitlines(keepends=True)
    return clean_text(value) if isinstance(value, str) else value


def clean_notebook(path: Path) -> bool:
    "Clean one notebook's outputs in place (an atomic write); whether anything changed."
    nb = json.loads(path.read_text())
    before = json.dumps(nb)
    for cell in nb['cells']:
        outputs = []
        for out in cell.get('outputs', []):
            if 'text' in out: out['text'] = _clean(out['text'])
            for k, v in out.get('data', {}).items():
                if k.startswith('text/'): out['data'][k] = _clean(v)
            if out.get('output_type') == 'stream' and not ''.join(out.get('text', [])): continue   # emptied
            outputs.append(out)
        if 'outputs' in cell: cell['outputs'] = outputs
    if json.dumps(nb) == before: return False
    tmp = path.with_suffix('.ipynb.tmp')
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    tmp.replace(path)
    return True


def local_paths(path: Path) -> list:
    "Output lines of a notebook that still name a local folder."
    found = []
    for cell in json.loads(path.read_text())['cells']:
        for out in cell.get('outputs', []):
            texts = [''.join(out.get('text', ''))] + [''.join(v) if isinstance(v, list) else str(v)
                                                     for k, v in out.get('data', {}).items() if k.startswith('text/')]
            found += [line for t in texts for line in t.splitlines() if LOCAL.search(line)]
    return found


if __name__ == '__main__':
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    for p in paths:
        if clean_notebook(p): print(f'cleaned {p.name}')
        for line in local_paths(p): print(f'{p.name}: still names a local folder: {line[:120]}')
