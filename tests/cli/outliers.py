#!/usr/bin/env python3
"""Gives a checkpoint's MoE inputs outlier channels, as trained LLMs have (the reason AWQ exists): multiplies
channels 0, 7, 13, ... (every 7th) of every post_attention_layernorm weight by FACTOR, in place (bf16 or f32).
usage: outliers.py CHECKPOINT_DIR FACTOR"""
import json
import os
import struct
import sys

d, factor = sys.argv[1], float(sys.argv[2])
n_done = 0
for f in sorted(os.listdir(d)):
    if not f.endswith(".safetensors"):
        continue
    path = os.path.join(d, f)
    b = bytearray(open(path, "rb").read())
    n = struct.unpack_from("<Q", b, 0)[0]
    hdr = json.loads(b[8:8 + n])
    for k, v in hdr.items():
        if not k.endswith("post_attention_layernorm.weight"):
            continue
        s, e = v["data_offsets"]
        o = 8 + n + s
        size = 2 if v["dtype"] == "BF16" else 4
        for i in range(0, (e - s) // size, 7):
            p = o + i * size
            if size == 2:
                x = struct.unpack("<f", struct.pack("<I", struct.unpack_from("<H", b, p)[0] << 16))[0] * factor
                u = struct.unpack("<I", struct.pack("<f", x))[0]
                struct.pack_into("<H", b, p, ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)
            else:
                struct.pack_into("<f", b, p, struct.unpack_from("<f", b, p)[0] * factor)
        n_done += 1
    open(path, "wb").write(b)
print("%d norms given outlier channels (x%g)" % (n_done, factor))
