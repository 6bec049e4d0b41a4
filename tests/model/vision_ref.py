#!/usr/bin/env python3
"""Reference for tests/model/test_vision.sh: MiMo-V2.5's vision tower (spec §4.4) written here from the spec in
numpy, float64, no mimo code: dense masked attention (not an online softmax), RoPE by rotate-half on whole heads,
the merge-unit reorder as an argsort. Reads the checkpoint's visual.* tensors and config.json, the patch rows mimo
wrote (float32 [N][C*tp*p*p]) with each image's grid, and compares with mimo's embeddings.

usage: vision_ref.py MODEL_DIR PATCHES.bin EMBEDS.bin GRIDS (e.g. 8x12,16x16) key0|denominator layer|rms
Prints the max relative error (max |ref - mimo| / max |ref|) per image; exits 1 above 1e-4."""
import json
import math
import os
import struct
import sys

import numpy as np


def load_tensors(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for f in files:
        raw = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        hdr = json.loads(raw[8:8 + n])
        base = 8 + n
        for name, t in hdr.items():
            if not name.startswith("visual."):
                continue
            b, e = t["data_offsets"]
            buf = raw[base + b:base + e]
            if t["dtype"] == "BF16":
                a = (np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif t["dtype"] == "F32":
                a = np.frombuffer(buf, dtype=np.float32)
            elif t["dtype"] == "F16":
                a = np.frombuffer(buf, dtype=np.float16)
            else:
                raise SystemExit(f"{name}: dtype {t['dtype']}")
            out[name] = a.astype(np.float64).reshape(t["shape"])
    return out


def rms(x, w, eps):
    return w * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def layer_norm(x, w, eps):
    m = x - x.mean(axis=-1, keepdims=True)
    return w * m / np.sqrt(np.mean(m * m, axis=-1, keepdims=True) + eps)


def rope(x, hpos, wpos, theta):
    """x [N, heads, D]; angles [hpos·f, wpos·f] over D/2, f_i = theta^(-2i/(D/2))"""
    D = x.shape[-1]
    f = 1.0 / theta ** (np.arange(0, D // 2, 2) / (D // 2))
    ang = np.concatenate([np.outer(hpos, f), np.outer(wpos, f)], axis=1)  # [N, D/2]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=1)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=1)[:, None, :]
    rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], axis=-1)
    return x * cos + rot * sin


def attention(q, k, v, window, sink, sink_key0):
    """one frame-sequence: q [N, H, D], k/v [N, KV, D]"""
    N, H, D = q.shape
    group = H // k.shape[1]
    idx = np.arange(N)
    allowed = np.ones((N, N), bool) if window == 0 else np.abs(idx[:, None] - idx[None, :]) <= window
    out = np.zeros_like(q)
    for h in range(H):
        s = q[:, h] @ k[:, h // group].T / math.sqrt(D)
        if sink is not None and sink_key0:
            s[:, 0] += sink[h]
        s = np.where(allowed, s, -np.inf)
        if sink is not None and not sink_key0:
            s = np.concatenate([s, np.full((N, 1), sink[h])], axis=1)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out[:, h] = p[:, :N] @ v[:, h // group]
    return out


def tower(W, vc, patches, gh, gw, sink_key0, norm):
    H, heads, kvh, D = vc["hidden_size"], vc["num_heads"], vc["num_key_value_heads"], vc["qk_channels"]
    m = vc.get("spatial_merge_size", 2)
    types = vc["vit_window_attn_types"]
    win = vc.get("visual_token_window_size", 0)
    eps = 1e-6
    x = patches @ W["visual.patch_embed.proj.weight"].reshape(H, -1).T
    # row-major token order: units (bh, bw) raster, tokens (mh, mw) inside
    hpos, wpos, unit_h, unit_w = [], [], [], []
    for bh in range(gh // m):
        for bw in range(gw // m):
            for mh in range(m):
                for mw in range(m):
                    hpos.append(bh * m + mh)
                    wpos.append(bw * m + mw)
                    unit_h.append(bh)
                    unit_w.append(bw)
    hpos, wpos = np.array(hpos, float), np.array(wpos, float)
    col = np.lexsort((np.arange(len(hpos)), np.array(unit_h), np.array(unit_w)))  # units listed (bw, bh)
    order = np.arange(len(hpos))  # current order -> row-major index
    for i, t in enumerate(types):
        if t == 1 and (i == 0 or types[i - 1] != 1):
            x, order = x[np.argsort(order)][col], col  # to column-major
        if i > 0 and t != 1 and types[i - 1] == 1:
            x = x[np.argsort(order)]
            order = np.arange(len(hpos))
        p = f"visual.blocks.{i}."
        a = rms(x, W[p + "norm1.weight"], eps)
        qkv = a @ W[p + "attn.qkv.weight"].T + W[p + "attn.qkv.bias"]
        q = qkv[:, :heads * D].reshape(-1, heads, D)
        k = qkv[:, heads * D:(heads + kvh) * D].reshape(-1, kvh, D)
        v = qkv[:, (heads + kvh) * D:].reshape(-1, kvh, D)
        q = rope(q, hpos[order], wpos[order], 10000.0)
        k = rope(k, hpos[order], wpos[order], 10000.0)
        sink = W.get(p + "attn.sinks") if t != -1 else None
        o = attention(q, k, v, 0 if t == -1 else win, sink, sink_key0).reshape(-1, heads * D)
        x = x + o @ W[p + "attn.proj.weight"].T + W[p + "attn.proj.bias"]
        a = rms(x, W[p + "norm2.weight"], eps)
        g = a @ W[p + "mlp.gate_proj.weight"].T + W[p + "mlp.gate_proj.bias"]
        u = a @ W[p + "mlp.up_proj.weight"].T + W[p + "mlp.up_proj.bias"]
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T + W[p + "mlp.down_proj.bias"]
    x = x[np.argsort(order)]
    n = (layer_norm if norm == "layer" else rms)(x, W["visual.merger.ln_q.weight"], eps).reshape(-1, H * m * m)
    h = n @ W["visual.merger.mlp.0.weight"].T
    h = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))
    return h @ W["visual.merger.mlp.2.weight"].T


def main():
    d, pfile, efile, grids, sink, norm = sys.argv[1:7]
    cfg = json.load(open(os.path.join(d, "config.json")))
    vc = cfg["vision_config"]
    W = load_tensors(d)
    P = np.fromfile(pfile, dtype=np.float32).astype(np.float64)
    E = np.fromfile(efile, dtype=np.float32).astype(np.float64)
    row = W["visual.patch_embed.proj.weight"][0].size
    P = P.reshape(-1, row)
    out_h = cfg["hidden_size"]
    E = E.reshape(-1, out_h)
    po = eo = 0
    worst = 0.0
    for g in grids.split(","):
        gh, gw = map(int, g.split("x"))
        n = gh * gw
        ref = tower(W, vc, P[po:po + n], gh, gw, sink == "key0", norm)
        got = E[eo:eo + len(ref)]
        if got.shape != ref.shape:
            raise SystemExit(f"image {g}: mimo wrote {got.shape[0]} rows, the reference has {ref.shape[0]}")
        err = np.abs(ref - got).max() / np.abs(ref).max()
        print(f"image {g} ({len(ref)} tokens, {sink}, {norm}): max rel err {err:.3e}")
        worst = max(worst, err)
        po += n
        eo += len(ref)
    if po != len(P) or eo != len(E):
        raise SystemExit(f"{len(P) - po} patch rows and {len(E) - eo} embedding rows left over")
    sys.exit(0 if worst <= 1e-4 else 1)


main()
