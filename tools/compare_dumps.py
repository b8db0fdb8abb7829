"""Compare `glint probe --dump` files from two devices or dtypes.

Usage: python tools/compare_dumps.py REFERENCE.safetensors OTHER.safetensors [...]

For each OTHER it prints the residual's relative error (max |a-b| / max |a|) and the share of
SAE top-k indices that agree with the reference (as sets per token), and exits non-zero when
a bound given by --max-rel-err / --min-topk-agreement is broken.
"""
import argparse
import sys

import numpy as np
from safetensors.numpy import load_file


def compare(ref, other):
    a, b = ref["residual"].astype(np.float64), other["residual"].astype(np.float64)
    rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
    ia, ib = ref["top_indices"], other["top_indices"]
    agree = np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(ia, ib)])
    same_ids = bool((ref["input_ids"] == other["input_ids"]).all())
    return rel, float(agree), same_ids


def main():
    p = argparse.ArgumentParser()
    p.add_argument("reference")
    p.add_argument("others", nargs="+")
    p.add_argument("--max-rel-err", type=float, nargs="*", default=None)
    p.add_argument("--min-topk-agreement", type=float, default=0.99)
    args = p.parse_args()
    ref = load_file(args.reference)
    ok = True
    for i, path in enumerate(args.others):
        rel, agree, same = compare(ref, load_file(path))
        bound = args.max_rel_err[i] if args.max_rel_err else None
        good = same and agree >= args.min_topk_agreement and (bound is None or rel <= bound)
        ok &= good
        print(f"{path}: residual rel err {rel:.3e} (bound {bound}), top-k agreement {agree:.4f}, ids equal {same}: {'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
