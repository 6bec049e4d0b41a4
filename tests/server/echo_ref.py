#!/usr/bin/env python3
"""Reference for tests/server/test_echo.sh: the echoed prompt logprobs against log-softmax (plain Python, double)
of `mimo logits` rows of the same prompt. usage: echo_ref.py VOCAB IDS_CSV LOGITS_FILE ANSWERS_JSON"""
import json
import math
import struct
import sys

V, ids, path, ans = int(sys.argv[1]), [int(x) for x in sys.argv[2].split(",")], sys.argv[3], sys.argv[4]
data = open(path, "rb").read()
rows = [struct.unpack_from("<%df" % V, data, 4 * V * t) for t in range(len(ids))]
a = json.load(open(ans))
worst = 0.0
for i in range(1, len(ids)):
    x = rows[i - 1]
    m = max(x)
    lse = m + math.log(math.fsum(math.exp(v - m) for v in x))
    want = x[ids[i]] - lse
    top = sorted((v - lse for v in x), reverse=True)[:3]
    got = a["echo"]["token_logprobs"][i]
    worst = max(worst, abs(got - want), *(abs(g - w) for g, w in zip(sorted(a["echo"]["top"][i], reverse=True), top)))
    for choice in a["n2"]:  # the two-choice request's prompt part: the same numbers
        worst = max(worst, abs(choice[i] - want))
    rank = 1 + sum(1 for v in x if v > x[ids[i]])
    if abs(a["ranks"][i] - rank) > 1:  # (one off where two logits lie within the chunking's rounding)
        print("position %d: rank %d, reference %d" % (i, a["ranks"][i], rank))
        worst = 1.0
print("max |logprob - reference| = %.3g over %d prompt positions" % (worst, len(ids) - 1))
sys.exit(0 if worst <= 1e-5 else 1)  # (9 printed digits: the float32 itself)
