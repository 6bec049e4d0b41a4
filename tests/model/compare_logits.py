#!/usr/bin/python3
"""Compares two float32 LE [T][vocab] logits files position by position.

usage: compare_logits.py GOT REF --vocab V [--tol 1e-4] [--label NAME]
For every position t: err_t = max_v |got[t,v] - ref[t,v]| / max_v |ref[t,v]|. Prints the worst
position, its error and the argmax agreement; exits 1 if any err_t > tol or the shapes differ.
"""
import argparse
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("got")
    ap.add_argument("ref")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    lab = f"{a.label}: " if a.label else ""
    for p in (a.got, a.ref):
        if not os.path.exists(p):
            print(f"FAIL {lab}{p} does not exist")
            return 1
    got = np.fromfile(a.got, dtype="<f4").astype(np.float64)
    ref = np.fromfile(a.ref, dtype="<f4").astype(np.float64)
    if ref.size == 0 or ref.size % a.vocab:
        print(f"FAIL {lab}reference has {ref.size} values, not a multiple of vocab {a.vocab}")
        return 1
    if got.size != ref.size:
        print(f"FAIL {lab}got {got.size} values ({got.size / a.vocab:g} rows), reference {ref.size} "
              f"({ref.size // a.vocab} rows of {a.vocab})")
        return 1
    got, ref = got.reshape(-1, a.vocab), ref.reshape(-1, a.vocab)
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0]
        print(f"FAIL {lab}non-finite logit at position {bad[0]}, id {bad[1]}")
        return 1
    err = np.abs(got - ref).max(1) / np.maximum(np.abs(ref).max(1), 1e-30)
    t = int(err.argmax())
    argmax_same = int((got.argmax(1) == ref.argmax(1)).sum())
    ok = bool(err.max() <= a.tol)
    print(f"{'ok  ' if ok else 'FAIL'} {lab}worst rel err {err.max():.3e} at position {t} of {len(err)} "
          f"(tol {a.tol:g}); first position over tol: "
          f"{int(np.argmax(err > a.tol)) if not ok else '-'}; argmax equal at {argmax_same}/{len(err)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
