#!/usr/bin/python3
"""Writes a tiny random MiMo-V2.5 checkpoint directory in the published layout of
spectator2026/MiMo-V2.5-AWQ-int4 (spec §1.1, §3.3, §6.1-6.4), with numpy only.

It is a development stand-in for `mimo synth` and an independent cross-check of the
layout: config.json (V2.5 field names), model.safetensors.index.json + >= 2 shards,
fused chunked qkv_proj, sinks on SWA layers, fp32 router, int4 pack-quantized experts
(sym or asym, zero points packed along rows) and one expert layer left in bf16.

usage: make_ckpt.py --out DIR [--quant int4|int4-asym|bf16] [--group-size G]
                    [--kv-heads N] [--swa-kv-heads N] [--seed S]
"""
import argparse
import json
import os
import struct

import numpy as np


def bf16_bits(x):
    """float -> bf16 bit pattern (uint16), round to nearest even."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def bf16_round(x):
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


class Tensor:
    def __init__(self, dtype, shape, data):
        self.dtype, self.shape, self.data = dtype, list(shape), data


def t_bf16(x):
    return Tensor("BF16", x.shape, bf16_bits(x).tobytes())


def t_f32(x):
    return Tensor("F32", x.shape, np.ascontiguousarray(x, dtype="<f4").tobytes())


def t_i32(x):
    return Tensor("I32", x.shape, np.ascontiguousarray(x, dtype="<i4").tobytes())


def t_i64(x):
    return Tensor("I64", x.shape, np.ascontiguousarray(x, dtype="<i8").tobytes())


def write_safetensors(path, tensors):
    """Hand-written safetensors: u64 LE header length, JSON header, data (8-aligned)."""
    header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, t in tensors.items():
        header[name] = {"dtype": t.dtype, "shape": t.shape, "data_offsets": [off, off + len(t.data)]}
        blobs.append(t.data)
        off += len(t.data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def pack_rows_k(u):
    """u: [out, in] nibbles 0..15 -> int32 [out, in/8], element 8j+k in bits 4k..4k+3 (spec §6.2)."""
    out, n = u.shape
    assert n % 8 == 0
    u = u.astype(np.uint32).reshape(out, n // 8, 8)
    w = np.zeros((out, n // 8), dtype=np.uint32)
    for k in range(8):
        w |= u[:, :, k] << np.uint32(4 * k)
    return w.view(np.int32)


def pack_zp_rows(uz):
    """uz: [out, ngroups] nibbles -> int32 [ceil(out/8), ngroups], packed along rows (dim 0)."""
    out, g = uz.shape
    rows = (out + 7) // 8
    pad = np.zeros((rows * 8, g), dtype=np.uint32)
    pad[:out] = uz
    pad = pad.reshape(rows, 8, g)
    w = np.zeros((rows, g), dtype=np.uint32)
    for k in range(8):
        w |= pad[:, k, :] << np.uint32(4 * k)
    return w.view(np.int32)


def quantize(w, group, symmetric):
    """compressed-tensors group quantizer (spec §6.3) with bf16 scales. Returns dict of tensors."""
    out, n = w.shape
    assert n % group == 0
    g = w.reshape(out, n // group, group)
    if symmetric:
        scale = np.maximum(np.abs(g.min(-1)), np.abs(g.max(-1))) / 7.5
    else:
        mn, mx = np.minimum(g.min(-1), 0), np.maximum(g.max(-1), 0)
        scale = (mx - mn) / 15.0
    scale = bf16_round(np.where(scale == 0, np.finfo(np.float32).eps, scale))
    if symmetric:
        zp = np.zeros_like(scale)
    else:
        zp = np.clip(np.round(-8 - mn / scale), -8, 7)
    q = np.clip(np.round(g / scale[..., None] + zp[..., None]), -8, 7).reshape(out, n)
    res = {
        "weight_packed": t_i32(pack_rows_k((q + 8).astype(np.uint32))),
        "weight_scale": t_bf16(scale),
        "weight_shape": t_i64(np.array([out, n])),
    }
    if not symmetric:
        res["weight_zero_point"] = t_i32(pack_zp_rows((zp + 8).astype(np.uint32)))
    return res


TINY = dict(vocab_size=512, hidden_size=64, num_hidden_layers=5, num_attention_heads=16, head_dim=24,
            v_head_dim=16, intermediate_size=128, moe_intermediate_size=32, n_routed_experts=16,
            num_experts_per_tok=4, sliding_window=8, hybrid=[0, 1, 1, 0, 1], moe=[0, 1, 1, 1, 1],
            bf16_expert_layer=3)


def build(args):
    P = dict(TINY)
    rng = np.random.default_rng(args.seed)
    H, L, V = P["hidden_size"], P["num_hidden_layers"], P["vocab_size"]
    nh, hd, vhd = P["num_attention_heads"], P["head_dim"], P["v_head_dim"]
    kv_full, kv_swa = args.kv_heads, args.swa_kv_heads or 2 * args.kv_heads
    chunks = kv_full  # export TP size = top-level num_key_value_heads (spec §3.3)
    assert nh % chunks == 0 and kv_swa % chunks == 0 and nh % kv_swa == 0
    E, I, IM = P["n_routed_experts"], P["moe_intermediate_size"], P["intermediate_size"]
    quant = args.quant
    G = args.group_size

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    T = {}
    T["model.embed_tokens.weight"] = t_bf16(normal((V, H), 1.0))
    T["lm_head.weight"] = t_bf16(normal((V, H), 1.0 / np.sqrt(H)))
    T["model.norm.weight"] = t_bf16(1.0 + normal((H,), 0.1))
    expert_tensors = {}
    for l in range(L):
        p = f"model.layers.{l}."
        swa = P["hybrid"][l] == 1
        kv = kv_swa if swa else kv_full
        T[p + "input_layernorm.weight"] = t_bf16(1.0 + normal((H,), 0.1))
        T[p + "post_attention_layernorm.weight"] = t_bf16(1.0 + normal((H,), 0.1))
        q = normal((nh * hd, H), 1.0 / np.sqrt(H))
        k = normal((kv * hd, H), 1.0 / np.sqrt(H))
        v = normal((kv * vhd, H), 1.0 / np.sqrt(H))
        qc, kc, vc = nh * hd // chunks, kv * hd // chunks, kv * vhd // chunks
        parts = []
        for c in range(chunks):  # chunk c = [Q_c | K_c | V_c]
            parts += [q[c * qc:(c + 1) * qc], k[c * kc:(c + 1) * kc], v[c * vc:(c + 1) * vc]]
        T[p + "self_attn.qkv_proj.weight"] = t_bf16(np.concatenate(parts, 0))
        T[p + "self_attn.o_proj.weight"] = t_bf16(normal((H, nh * vhd), 1.0 / np.sqrt(nh * vhd)))
        if swa:
            T[p + "self_attn.attention_sink_bias"] = t_bf16(normal((nh,), 1.0))
        if P["moe"][l] == 0:
            T[p + "mlp.gate_proj.weight"] = t_bf16(normal((IM, H), 1.0 / np.sqrt(H)))
            T[p + "mlp.up_proj.weight"] = t_bf16(normal((IM, H), 1.0 / np.sqrt(H)))
            T[p + "mlp.down_proj.weight"] = t_bf16(normal((H, IM), 1.0 / np.sqrt(IM)))
            continue
        T[p + "mlp.gate.weight"] = t_f32(normal((E, H), 1.0 / np.sqrt(H)))
        T[p + "mlp.gate.e_score_correction_bias"] = t_f32(normal((E,), 0.3))
        dense_layer = quant == "bf16" or l == P["bf16_expert_layer"]
        for e in range(E):
            for name, shape in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
                w = normal(shape, 1.0 / np.sqrt(shape[1]))
                mp = f"{p}mlp.experts.{e}.{name}."
                if dense_layer:
                    T[mp + "weight"] = t_bf16(w)
                else:
                    for suffix, t in quantize(w, G, quant == "int4").items():
                        (expert_tensors if suffix != "weight_packed" else T)[mp + suffix] = t
    # Shard 0: everything but the companions of packed weights; shard 1: those companions
    # (scale / shape / zero point live in another shard than weight_packed: readers must use the index).
    shard_names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    shards = [T, expert_tensors]
    if not expert_tensors:  # bf16: split by layer instead
        keys = sorted(T)
        shards = [{k: T[k] for k in keys if not k.startswith("model.layers.")},
                  {k: T[k] for k in keys if k.startswith("model.layers.")}]
    os.makedirs(args.out, exist_ok=True)
    weight_map, total = {}, 0
    for name, sh in zip(shard_names, shards):
        write_safetensors(os.path.join(args.out, name), sh)
        for k, t in sh.items():
            weight_map[k] = name
            total += len(t.data)
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=1)

    cfg = {
        "architectures": ["MiMoV2ForCausalLM"], "model_type": "mimo_v2", "torch_dtype": "bfloat16",
        "vocab_size": V, "hidden_size": H, "num_hidden_layers": L,
        "num_attention_heads": nh, "num_key_value_heads": kv_full, "head_dim": hd, "v_head_dim": vhd,
        "swa_num_attention_heads": nh, "swa_num_key_value_heads": kv_swa, "swa_head_dim": hd, "swa_v_head_dim": vhd,
        "hybrid_layer_pattern": P["hybrid"], "hybrid_block_size": None,
        "sliding_window": P["sliding_window"], "sliding_window_size": P["sliding_window"],
        "attention_chunk_size": P["sliding_window"],
        "partial_rotary_factor": 0.334, "rope_theta": 10000000, "swa_rope_theta": 10000,
        "rope_scaling": {"rope_type": "default", "type": "default"}, "max_position_embeddings": 4096,
        "attention_value_scale": 0.707, "attention_bias": False,
        "add_swa_attention_sink_bias": True, "add_full_attention_sink_bias": False,
        "attention_projection_layout": "fused_qkv", "layernorm_epsilon": 1e-05, "hidden_act": "silu",
        "tie_word_embeddings": False, "intermediate_size": IM, "moe_intermediate_size": I,
        "moe_layer_freq": P["moe"], "n_routed_experts": E, "num_experts_per_tok": P["num_experts_per_tok"],
        "n_shared_experts": None, "scoring_func": "sigmoid", "topk_method": "noaux_tc", "n_group": 1,
        "topk_group": 1, "norm_topk_prob": True, "routed_scaling_factor": None,
        "eos_token_id": V - 1, "pad_token_id": V - 2,
    }
    if quant != "bf16":
        cfg["quantization_config"] = {
            "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
            "config_groups": {"group_0": {
                "targets": [r"re:.*mlp\.experts\.\d+\.(gate|up|down)_proj$"],
                "weights": {"num_bits": 4, "type": "int", "symmetric": quant == "int4", "strategy": "group",
                            "group_size": G, "dynamic": False, "actorder": None, "block_structure": None,
                            "observer": "minmax"},
                "input_activations": None, "output_activations": None, "format": "pack-quantized"}},
            "ignore": ["lm_head", rf"re:.*layers\.{P['bf16_expert_layer']}\.mlp\.experts\..*"],
            "kv_cache_scheme": None,
        }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quant", choices=["int4", "int4-asym", "bf16"], default="int4")
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=4, help="full-layer KV heads = qkv chunk count")
    ap.add_argument("--swa-kv-heads", type=int, default=0, help="SWA KV heads (default 2x --kv-heads)")
    ap.add_argument("--seed", type=int, default=1)
    build(ap.parse_args())


if __name__ == "__main__":
    main()
