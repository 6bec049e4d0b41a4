#!/usr/bin/env python3
"""Independent reference for `mimo perplexity`: perplexity (and KL from a base) computed in plain Python from
`mimo logits` dumps, one float32 [ctx][vocab] file per chunk.

usage: perplexity_ref.py VOCAB CTX SCORE_FROM IDS_CSV Q_FILES_CSV [BASE_FILES_CSV]
prints: ppl=<float> [kl=<float> same_top=<float> base_ppl=<float>]"""
import math
import struct
import sys


def rows(path, vocab):
    data = open(path, "rb").read()
    n = len(data) // (4 * vocab)
    vals = struct.unpack("<%df" % (n * vocab), data[: n * vocab * 4])
    return [vals[i * vocab:(i + 1) * vocab] for i in range(n)]


def log_softmax(x):
    m = max(x)
    z = math.fsum(math.exp(v - m) for v in x)
    lse = m + math.log(z)
    return [v - lse for v in x]


def main():
    vocab, ctx, first = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ids = [int(t) for t in sys.argv[4].split(",")]
    qf = sys.argv[5].split(",")
    bf = sys.argv[6].split(",") if len(sys.argv) > 6 else None
    nll, base_nll, kl, same, n = [], [], [], 0, 0
    for c, path in enumerate(qf):
        q = rows(path, vocab)
        b = rows(bf[c], vocab) if bf else None
        for j in range(first, ctx - 1):
            nxt = ids[c * ctx + j + 1]
            lq = log_softmax(q[j])
            nll.append(-lq[nxt])
            n += 1
            if b:
                lb = log_softmax(b[j])
                base_nll.append(-lb[nxt])
                kl.append(max(0.0, math.fsum(math.exp(p) * (p - r) for p, r in zip(lb, lq))))
                same += max(range(vocab), key=lambda v: lq[v]) == max(range(vocab), key=lambda v: lb[v])
    out = "ppl=%.12g" % math.exp(math.fsum(nll) / n)
    if bf:
        out += " kl=%.12g same_top=%.12g base_ppl=%.12g" % (
            math.fsum(kl) / n, 100.0 * same / n, math.exp(math.fsum(base_nll) / n))
    print(out)


main()
