#!/usr/bin/env python3
"""Reference for tests/cli/test_quantize.sh: compressed-tensors' int4 group quantisation of every routed expert
(spec §6.3, written here from the spec in plain Python, no mimo code) against what `mimo quantize --method rtn`
wrote, and every other tensor (the ignored layers' experts too) copied as it was.
usage: quantize_ref.py SRC_DIR OUT_DIR GROUP sym|asym IGNORED_LAYERS (comma-separated)

Per (row, group): range [min(w, 0), max(w, 0)]; symmetric scale = max|w| / 7.5, asymmetric (max - min) / 15, the
scale rounded to bf16 (nearest even) and a zero scale replaced by 2^-7; zp = clamp(round(-8 - min / scale), -8, 7);
q = clamp(round(w / scale + zp), -8, 7), round half to even; stored u = q + 8, element c of a row in bits 4(c % 8)
of int32 word c / 8, zero points packed the same way down the rows. Prints the tensors compared; exits 1 on the
first difference."""
import json
import os
import re
import struct
import sys


def tensors(d):
    """name -> (dtype, shape, bytes) over every shard of checkpoint d"""
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack_from("<Q", b, 0)[0]
        hdr = json.loads(b[8:8 + n])
        for k, v in hdr.items():
            if k != "__metadata__":
                s, e = v["data_offsets"]
                out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bf16_round(x):
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", u))[0], u >> 16


def floats(dtype, raw):
    if dtype == "F32":
        return list(struct.unpack("<%df" % (len(raw) // 4), raw))
    assert dtype == "BF16"
    return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in struct.unpack("<%dH" % (len(raw) // 2), raw)]


def rnd(v):  # round half to even, then clamp to [-8, 7]
    return max(-8, min(7, round(v)))


def quantize(w, rows, cols, group, asym):
    ng = cols // group
    packed = [0] * (rows * cols // 8)
    scales = [0] * (rows * ng)
    zeros = [0] * (((rows + 7) // 8) * ng)
    for r in range(rows):
        for g in range(ng):
            x = w[r * cols + g * group:r * cols + (g + 1) * group]
            lo, hi = min(min(x), 0.0), max(max(x), 0.0)
            s = f32((hi - lo) / 15) if asym else f32(max(abs(lo), abs(hi)) / f32(7.5))
            s, bits = bf16_round(s)
            if s == 0.0:
                s, bits = 0.0078125, 0x3C00
            scales[r * ng + g] = bits
            zp = rnd(f32(-8 - f32(lo / s))) if asym else 0
            if asym:
                zeros[(r // 8) * ng + g] |= (zp + 8) << (4 * (r % 8))
            for i, v in enumerate(x):
                c = g * group + i
                q = rnd(f32(f32(v / s) + zp))
                packed[r * (cols // 8) + c // 8] |= (q + 8) << (4 * (c % 8))
    return packed, scales, zeros


def main():
    src, out, group, asym = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "asym"
    ignored = {int(x) for x in sys.argv[5].split(",") if x}
    a, b = tensors(src), tensors(out)
    n = 0
    for name, (dt, shape, raw) in sorted(a.items()):
        m = re.fullmatch(r"(model\.layers\.(\d+)\.mlp\.experts\.\d+\.(gate|up|down)_proj)\.weight", name)
        if not m or int(m.group(2)) in ignored:
            if b.get(name) != (dt, shape, raw):
                print("%s: not copied as it was" % name)
                sys.exit(1)
            continue
        p = m.group(1)
        rows, cols = shape
        packed, scales, zeros = quantize(floats(dt, raw), rows, cols, group, asym)
        want = {"weight_packed": ("I32", [rows, cols // 8], struct.pack("<%dI" % len(packed), *packed)),
                "weight_scale": ("BF16", [rows, cols // group], struct.pack("<%dH" % len(scales), *scales)),
                "weight_shape": ("I64", [2], struct.pack("<2q", rows, cols))}
        if asym:
            want["weight_zero_point"] = ("I32", [(rows + 7) // 8, cols // group], struct.pack("<%dI" % len(zeros), *zeros))
        if p + ".weight" in b or (not asym and p + ".weight_zero_point" in b):
            print("%s: unexpected tensors beside the int4 ones" % p)
            sys.exit(1)
        for k, v in want.items():
            got = b.get(p + "." + k)
            if got != v:
                print("%s.%s differs: %s" % (p, k, "absent" if got is None else (got[0], got[1])))
                sys.exit(1)
        n += 1
    print("%d expert projections bit-exact (%s, group %d)" % (n, "asym" if asym else "sym", group))


main()
