"""Appending a benchmark's figures to a `*_measures.json` beside the shipped weights, with the command and the weights'
SHA-256 (so that a notebook or card shows only figures of the weights it ships). Imported by the scripts beside it."""
import json
import shlex
import sys
import time

from crystal_tutorial.core import file_sha256, write_text_atomic


def append_measure(file, model: str, weights, **figures) -> dict:
    "Append {model, weights_sha256, date, command, **figures} to the JSON list in `file` (atomically)."
    entries = json.loads(file.read_text()) if file.exists() else []
    entry = {'model': model, 'weights_sha256': file_sha256(weights), 'date': time.strftime('%Y-%m-%d'),
             'command': 'python ' + ' '.join(shlex.quote(a) for a in sys.argv), **figures}
    write_text_atomic(file, json.dumps(entries + [entry], indent=1) + '\n')
    print(f'recorded in {file.name}')
    return entry
