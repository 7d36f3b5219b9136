"""Rewrite crystal_tutorial/weights/MANIFEST.json: the SHA-256 and size of every shipped .pt and .npz file.

Run it after retraining or rebuilding a shipped file on purpose; loading a shipped file that does not match its
entry is a CheckpointError. `--check` only compares, and exits 1 when a file is missing, extra or changed.

    python scripts/update_weights_manifest.py          # rewrite
    python scripts/update_weights_manifest.py --check  # compare (CI-style)
"""
import argparse, sys

from crystal_tutorial.core import build_weights_manifest, weights_manifest, write_weights_manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--check', action='store_true', help='compare only; exit 1 on any difference')
    args = p.parse_args(argv)
    now = {name: (e['size'], e['sha256']) for name, e in build_weights_manifest().items()}
    if not args.check:
        path = write_weights_manifest()
        print(f"wrote {path} ({len(now)} files, {sum(s for s, _ in now.values()) / 2**20:.1f} MB)")
        return 0
    recorded = weights_manifest()
    diff = sorted(n for n in now.keys() | recorded.keys() if now.get(n) != recorded.get(n))
    for n in diff:
        state = 'not in the manifest' if n not in recorded else 'missing' if n not in now else 'changed'
        print(f"{n}: {state}")
    print('manifest matches' if not diff else f'{len(diff)} difference(s): run python scripts/update_weights_manifest.py')
    return 1 if diff else 0


if __name__ == '__main__':
    sys.exit(main())
