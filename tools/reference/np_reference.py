#!/usr/bin/python3
"""Independent numpy (float64) reference of the MiMo-V2.5 text forward pass (spec §2),
reading a checkpoint directory in the spectator2026/MiMo-V2.5-AWQ-int4 layout directly.

usage: np_reference.py --model DIR --tokens 1,2,3 --out logits.f32
                       [--greedy N --greedy-prompt 1,2 --greedy-out file.json] [--diag]
                       [--embeds F1,F2 --embeds-at P1,P2]
Writes float32 little-endian [T][vocab]: row t = logits after token t (no KV cache: the
whole sequence in one pass, causal/sliding masks applied explicitly).
--greedy N recomputes the full sequence for each of N greedy steps (argmax, no EOS stop)
starting from --greedy-prompt (default: --tokens).
--embeds/--embeds-at: the input embeddings of positions P.. are the rows of float32 [n][hidden] file F instead of
the tokens' (an image's placeholders take the vision tower's output, spec §4.6).
--diag prints the smallest router top-k margin (k-th vs (k+1)-th corrected score) and the
smallest top-1/top-2 logit gap, i.e. how robust the case is to rounding differences.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

DT = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "I8": "i1", "U8": "u1", "I16": "<i2",
      "F16": "<f2", "BF16": "<u2"}


class Checkpoint:
    """Minimal safetensors reader; every tensor is resolved through the index."""

    def __init__(self, d):
        self.dir = d
        idx = os.path.join(d, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f)["weight_map"]
        else:
            wm = None
        self.headers = {}
        files = sorted(set(wm.values())) if wm else ["model.safetensors"]
        self.where = {}
        for fn in files:
            with open(os.path.join(d, fn), "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                h = json.loads(f.read(n))
            h.pop("__metadata__", None)
            self.headers[fn] = (8 + n, h)
            for k in h:
                if wm is not None and wm.get(k) != fn:
                    raise SystemExit(f"{fn}: tensor {k} not listed for this shard in the index")
                self.where[k] = fn
        if wm is not None:
            missing = [k for k in wm if k not in self.where]
            if missing:
                raise SystemExit(f"index lists tensors absent from shards: {missing[:5]}")

    def has(self, name):
        return name in self.where

    def raw(self, name):
        fn = self.where[name]
        base, h = self.headers[fn]
        e = h[name]
        a, b = e["data_offsets"]
        with open(os.path.join(self.dir, fn), "rb") as f:
            f.seek(base + a)
            buf = f.read(b - a)
        arr = np.frombuffer(buf, dtype=DT[e["dtype"]]).reshape(e["shape"])
        return e["dtype"], arr

    def get(self, name):
        """Float tensor as float64 (bf16 widened exactly)."""
        dt, a = self.raw(name)
        if dt == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return a.astype(np.float64)


def dequant_int4(ck, p, group, symmetric):
    """compressed-tensors pack-quantized int4 (spec §6.2): w = (q - zp) * scale."""
    _, packed = ck.raw(p + "weight_packed")
    out, inn = (int(x) for x in ck.raw(p + "weight_shape")[1])
    words = packed.view(np.uint32)
    shifts = (np.arange(8, dtype=np.uint32) * 4)
    u = ((words[:, :, None] >> shifts) & 0xF).reshape(out, -1)[:, :inn].astype(np.int64)
    q = u - 8
    scale = ck.get(p + "weight_scale")
    ng = scale.shape[1]
    g = inn // ng if group is None else group
    if ng * g != inn:
        raise SystemExit(f"{p}: weight_scale groups {ng} x group {g} != in {inn}")
    zp = np.zeros((out, ng), dtype=np.int64)
    if ck.has(p + "weight_zero_point"):
        _, zpw = ck.raw(p + "weight_zero_point")
        zw = zpw.view(np.uint32)  # [ceil(out/8), ng], packed along rows
        zu = ((zw[:, None, :] >> shifts[None, :, None]) & 0xF).reshape(-1, ng)[:out].astype(np.int64)
        zp = zu - 8
    elif not symmetric:
        raise SystemExit(f"{p}: asymmetric config but no weight_zero_point")
    col_g = np.arange(inn) // g
    return (q - zp[:, col_g]) * scale[:, col_g]


class Model:
    def __init__(self, d):
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        self.c = c
        self.ck = ck = Checkpoint(d)
        self.L = c["num_hidden_layers"]
        self.H = c["hidden_size"]
        self.eps = c.get("layernorm_epsilon", c.get("rms_norm_eps", 1e-6))
        self.vscale = c.get("attention_value_scale") or 1.0
        pat = c.get("hybrid_layer_pattern") or [0] * self.L
        freq = c.get("moe_layer_freq") or [0] * self.L
        win = c.get("sliding_window") or c.get("sliding_window_size")
        prf = c.get("partial_rotary_factor", 1.0)
        geoms = {}
        for t, pre in ((0, ""), (1, "swa_")):
            nh = c.get(pre + "num_attention_heads", c["num_attention_heads"])
            hd = c.get(pre + "head_dim", c["head_dim"])
            g = dict(nh=nh,
                     nkv=c.get(pre + "num_key_value_heads", c["num_key_value_heads"]),
                     hd=hd, vhd=c.get(pre + "v_head_dim", hd),
                     rot=int(hd * prf),
                     theta=c["rope_theta"] if t == 0 else c.get("swa_rope_theta", c["rope_theta"]),
                     window=None if t == 0 else win,
                     sink=bool(c.get("add_full_attention_sink_bias" if t == 0 else "add_swa_attention_sink_bias")))
            geoms[t] = g
        self.geoms = geoms
        self.chunks = c["num_key_value_heads"] if c.get("attention_projection_layout") == "fused_qkv" else None
        qc = c.get("quantization_config")
        self.group, self.sym = None, True
        if qc:
            w = next(iter(qc["config_groups"].values()))["weights"]
            self.group, self.sym = w["group_size"], w["symmetric"]
            if w.get("actorder"):
                raise SystemExit("actorder is not supported by this reference")
        self.layers = []
        for l in range(self.L):
            p = f"model.layers.{l}."
            g = geoms[pat[l]]
            lay = dict(type=pat[l], g=g, ln1=ck.get(p + "input_layernorm.weight"),
                       ln2=ck.get(p + "post_attention_layernorm.weight"),
                       wo=ck.get(p + "self_attn.o_proj.weight"))
            lay["wq"], lay["wk"], lay["wv"] = self.qkv(p, g)
            sname = p + "self_attn.attention_sink_bias"
            if g["sink"] != ck.has(sname):
                raise SystemExit(f"layer {l}: sink tensor presence {ck.has(sname)} != config {g['sink']}")
            lay["sink"] = ck.get(sname) if g["sink"] else None
            if freq[l] == 0:
                lay["dense"] = tuple(ck.get(p + f"mlp.{n}_proj.weight") for n in ("gate", "up", "down"))
            else:
                lay["router"] = ck.get(p + "mlp.gate.weight")
                lay["bias"] = ck.get(p + "mlp.gate.e_score_correction_bias")
                lay["experts"] = [tuple(self.linear(p + f"mlp.experts.{e}.{n}_proj.")
                                        for n in ("gate", "up", "down"))
                                  for e in range(c["n_routed_experts"])]
            self.layers.append(lay)
        self.embed = ck.get("model.embed_tokens.weight")
        self.norm = ck.get("model.norm.weight")
        self.lm_head = self.embed if c.get("tie_word_embeddings") else ck.get("lm_head.weight")
        self.topk = c.get("num_experts_per_tok")
        self.norm_topk = c.get("norm_topk_prob", True)
        self.rsf = c.get("routed_scaling_factor") or 1.0
        self.min_route_margin = np.inf

    def linear(self, p):
        if self.ck.has(p + "weight_packed"):
            return dequant_int4(self.ck, p, self.group, self.sym)
        return self.ck.get(p + "weight")

    def qkv(self, p, g):
        nh, nkv, hd, vhd = g["nh"], g["nkv"], g["hd"], g["vhd"]
        if self.chunks is None:
            return tuple(self.ck.get(p + f"self_attn.{n}_proj.weight") for n in "qkv")
        W = self.ck.get(p + "self_attn.qkv_proj.weight")
        C = self.chunks
        Qc, Kc, Vc = nh * hd // C, max(1, nkv // C) * hd, max(1, nkv // C) * vhd
        if nkv % C or nh % C:
            raise SystemExit(f"{p}: heads {nh}/{nkv} not divisible by chunk count {C}")
        R = Qc + Kc + Vc
        if W.shape[0] != C * R:
            raise SystemExit(f"{p}qkv_proj rows {W.shape[0]} != {C} x {R}")
        q = np.concatenate([W[c * R:c * R + Qc] for c in range(C)])
        k = np.concatenate([W[c * R + Qc:c * R + Qc + Kc] for c in range(C)])
        v = np.concatenate([W[c * R + Qc + Kc:(c + 1) * R] for c in range(C)])
        return q, k, v

    def rms(self, x, w):
        return w * (x / np.sqrt(np.mean(x * x, -1, keepdims=True) + self.eps))

    @staticmethod
    def rope(x, pos, rot, theta):
        """NeoX rotate-half on the first `rot` dims of each head. x: [T, heads, d]."""
        half = rot // 2
        inv = theta ** (-np.arange(half, dtype=np.float64) * 2.0 / rot)
        ang = pos[:, None].astype(np.float64) * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x1, x2 = x[..., :half], x[..., half:rot]
        out = x.copy()
        out[..., :half] = x1 * cos - x2 * sin
        out[..., half:rot] = x2 * cos + x1 * sin
        return out

    def attention(self, lay, a, pos):
        g = lay["g"]
        T = a.shape[0]
        q = (a @ lay["wq"].T).reshape(T, g["nh"], g["hd"])
        k = (a @ lay["wk"].T).reshape(T, g["nkv"], g["hd"])
        v = (a @ lay["wv"].T).reshape(T, g["nkv"], g["vhd"]) * self.vscale
        q = self.rope(q, pos, g["rot"], g["theta"])
        k = self.rope(k, pos, g["rot"], g["theta"])
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        allowed = j <= i
        if g["window"]:
            allowed &= j > i - g["window"]  # keys i-window < j <= i
        rep = g["nh"] // g["nkv"]
        out = np.empty((T, g["nh"], g["vhd"]))
        for h in range(g["nh"]):
            kv = h // rep
            s = (q[:, h, :] @ k[:, kv, :].T) / np.sqrt(g["hd"])
            s = np.where(allowed, s, -np.inf)
            m = s.max(-1, keepdims=True)
            if lay["sink"] is not None:
                m = np.maximum(m, lay["sink"][h])
            e = np.exp(s - m)
            den = e.sum(-1, keepdims=True)
            if lay["sink"] is not None:
                den = den + np.exp(lay["sink"][h] - m)  # sink: denominator only, unscaled
            out[:, h, :] = (e / den) @ v[:, kv, :]
        return out.reshape(T, -1) @ lay["wo"].T

    @staticmethod
    def swiglu(x, gw, uw, dw):
        gt = x @ gw.T
        return ((gt / (1.0 + np.exp(-gt))) * (x @ uw.T)) @ dw.T

    def moe(self, lay, b):
        z = b @ lay["router"].T
        s = 1.0 / (1.0 + np.exp(-z))
        c = s + lay["bias"]  # selection only
        out = np.zeros_like(b)
        for t in range(b.shape[0]):
            order = np.argsort(-c[t], kind="stable")
            sel = order[:self.topk]
            if len(order) > self.topk:
                margin = c[t, order[self.topk - 1]] - c[t, order[self.topk]]
                self.min_route_margin = min(self.min_route_margin, margin)
                self.tok_margin[t] = min(self.tok_margin[t], margin)
            w = s[t, sel]
            if self.norm_topk:
                w = w / w.sum()
            w = w * self.rsf
            for e, we in zip(sel, w):
                out[t] += we * self.swiglu(b[t:t + 1], *lay["experts"][e])[0]
        return out

    def forward(self, tokens, embeds=()):
        tokens = np.asarray(tokens, dtype=np.int64)
        pos = np.arange(len(tokens))
        self.tok_margin = np.full(len(tokens), np.inf)  # per token, smallest router margin over the MoE layers
        h = self.embed[tokens]
        for at, rows in embeds:
            h[at:at + len(rows)] = rows
        for lay in self.layers:
            h = h + self.attention(lay, self.rms(h, lay["ln1"]), pos)
            b = self.rms(h, lay["ln2"])
            h = h + (self.swiglu(b, *lay["dense"]) if "dense" in lay else self.moe(lay, b))
        self.last_hidden = self.rms(h, self.norm)  # what an MTP layer takes as h (vLLM: after model.norm)
        return self.last_hidden @ self.lm_head.T

    def mtp(self, tokens, hidden, layer=0):
        """MTP layer `layer` (spec 2.7) over positions 0..T-2: position i takes token i+1 and the model's
        final-normed hidden state at i; returns its logits [T-1][vocab]."""
        ck, p, g = self.ck, f"model.mtp.layers.{layer}.", self.geoms[1]
        lay = dict(type=1, g=g, ln1=ck.get(p + "input_layernorm.weight"), wo=ck.get(p + "self_attn.o_proj.weight"),
                   sink=ck.get(p + "self_attn.attention_sink_bias"))
        lay["wq"], lay["wk"], lay["wv"] = self.qkv(p, g)
        nxt = np.asarray(tokens[1:], dtype=np.int64)
        x = np.concatenate([self.rms(self.embed[nxt], ck.get(p + "enorm.weight")),
                            self.rms(hidden[:-1], ck.get(p + "hnorm.weight"))], -1) @ ck.get(p + "eh_proj.weight").T
        x = x + self.attention(lay, self.rms(x, lay["ln1"]), np.arange(len(nxt)))
        dense = tuple(ck.get(p + f"mlp.{n}_proj.weight") for n in ("gate", "up", "down"))
        x = x + self.swiglu(self.rms(x, ck.get(p + "pre_mlp_layernorm.weight")), *dense)
        return self.rms(x, ck.get(p + "final_layernorm.weight")) @ self.lm_head.T


def ids(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out")
    ap.add_argument("--greedy", type=int, default=0)
    ap.add_argument("--greedy-prompt")
    ap.add_argument("--greedy-out")
    ap.add_argument("--diag", action="store_true")
    ap.add_argument("--embeds", help="comma-separated float32 [n][hidden] files replacing input embeddings")
    ap.add_argument("--embeds-at", help="comma-separated first positions of those rows")
    ap.add_argument("--mtp-out", help="float32 LE [T-1][vocab]: MTP layer 0's logits (spec 2.7)")
    ap.add_argument("--margin-out", help="float32 LE [T]: each token's smallest router margin over the MoE layers")
    a = ap.parse_args()
    m = Model(a.model)
    toks = ids(a.tokens)
    V = m.lm_head.shape[0]
    if any(t < 0 or t >= V for t in toks):
        raise SystemExit("token id out of range")
    embeds = []
    if a.embeds:
        H = m.embed.shape[1]
        for f, at in zip(a.embeds.split(","), ids(a.embeds_at)):
            rows = np.fromfile(f, dtype="<f4").astype(np.float64).reshape(-1, H)
            if at < 0 or at + len(rows) > len(toks):
                raise SystemExit(f"{f}: {len(rows)} rows at {at} do not fit the {len(toks)} tokens")
            embeds.append((at, rows))
    logits = m.forward(toks, embeds)
    if a.out:
        logits.astype("<f4").tofile(a.out)
    if a.mtp_out:
        m.mtp(toks, m.last_hidden).astype("<f4").tofile(a.mtp_out)
    if a.margin_out:
        m.tok_margin.astype("<f4").tofile(a.margin_out)
    srt = np.sort(logits, -1)
    top_gap = float(np.min(srt[:, -1] - srt[:, -2]))
    res = {"tokens": toks, "min_route_margin": float(m.min_route_margin), "min_top1_gap": top_gap}
    if a.greedy:
        seq = ids(a.greedy_prompt) if a.greedy_prompt else list(toks)
        prompt, gen, gaps = list(seq), [], []
        for _ in range(a.greedy):
            lg = m.forward(seq)[-1]
            o = np.argsort(-lg, kind="stable")
            gaps.append(float(lg[o[0]] - lg[o[1]]))
            gen.append(int(o[0]))
            seq.append(int(o[0]))
        res.update(greedy_prompt=prompt, greedy=gen, greedy_min_gap=min(gaps),
                   min_route_margin=float(m.min_route_margin))
        if a.greedy_out:
            with open(a.greedy_out, "w") as f:
                json.dump(res, f)
        print("greedy:", ",".join(map(str, gen)))
    if a.diag:
        print(json.dumps({k: v for k, v in res.items() if k not in ("tokens",)}), file=sys.stderr)


if __name__ == "__main__":
    main()
