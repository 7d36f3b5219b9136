"""read_prompt on Chemeleon's MP-40 prompts: how many give the row's composition, how many warn or raise.

    python benchmarks/read_prompts.py [--root DATASETS] [--files test.csv random_split/test.csv] [--show 10]

Reads mp_40_chemeleon/<file> (columns `prompt` and `composition`, e.g. 'Ca1 O10') from the local copies
(`--root`, else $CRYSTAL_TUTORIAL_DATASETS, else ../shared/datasets) and writes nothing. A formula counts as
equal when it has the same amounts as the composition (pymatgen `Composition` equality); 'same reduced
formula' counts the others that differ only by a factor. Prompts without a formula name elements only
('Erbium compound ...'); the last figure counts the prompts whose elements are exactly the composition's,
formula or not.
"""
import argparse
import time
import warnings
from collections import Counter

import pandas as pd
from pymatgen.core import Composition

from crystal_tutorial.crystal_data import datasets_root
from crystal_tutorial.prompts import read_prompt
from crystal_tutorial.prompt_words import PromptError, PromptWarning, formula_text

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--root', default=None, help='folder holding mp_40_chemeleon/ (default: datasets_root())')
p.add_argument('--files', nargs='+', default=['test.csv'], help='files under mp_40_chemeleon/')
p.add_argument('--show', type=int, default=10, help='print up to this many prompts of each kind but a match')
args = p.parse_args()


def read(prompt: str):
    "(reading or None, warning text or None, error text or None) of one prompt."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try: r = read_prompt(prompt)
        except PromptError as e: return None, None, str(e)
    warned = [str(w.message) for w in caught if issubclass(w.category, PromptWarning)]
    return r, (warned[0] if warned else None), None


def outcome(r, composition: str) -> str:
    if r is None: return 'raised'
    if r.formula is None: return 'no formula'
    got, want = Composition(r.formula), Composition(composition)
    if got == want: return 'equal'
    return 'same reduced formula' if got.reduced_formula == want.reduced_formula else 'other formula'


root = args.root or datasets_root()
if root is None: raise SystemExit('needs the shared datasets (set CRYSTAL_TUTORIAL_DATASETS or pass --root)')
for name in args.files:
    df = pd.read_csv(f'{root}/mp_40_chemeleon/{name}', usecols=['prompt', 'composition'])
    t0, counts, n_warn, n_elements, shown = time.time(), Counter(), 0, 0, Counter()
    for prompt, composition in zip(df.prompt, df.composition):
        r, warned, error = read(prompt)
        kind = outcome(r, composition)
        counts[kind] += 1; n_warn += warned is not None
        n_elements += r is not None and set(r.elements) == {e.symbol for e in Composition(composition)}
        if kind != 'equal' and shown[kind] < args.show:
            shown[kind] += 1
            got = error or (formula_text(r.formula) if r.formula else f"elements {' '.join(r.elements)}")
            print(f'  {kind:20} {prompt!r} → {got} (row: {composition})')
    n = len(df)
    same, other = counts['same reduced formula'], counts['other formula']
    equal, sec = counts['equal'], time.time() - t0
    print(f'mp_40_chemeleon/{name}: {n} prompts in {sec:.1f} s; formula equal to the composition {equal} '
          f'({equal / n:.1%}), same reduced formula {same}, another formula {other}, '
          f'no formula {counts["no formula"]}; {n_warn} warn, {counts["raised"]} raise; '
          f"the elements equal to the composition's in {n_elements}")
