#!/usr/bin/env python3
"""Golden logits for a MiMo-V2.5 checkpoint directory (spectator2026/MiMo-V2.5-AWQ-int4 layout)
from transformers' native MiMoV2FlashForCausalLM (model_type mimo_v2_flash), fp32, eager.

Runs where torch + transformers 5.x exist (the GPU machine); the forward runs on the CPU by
default (fp32, no TF32), --cuda-check additionally runs it on the GPU and reports the difference.

usage: hf_reference.py --model DIR --inputs inputs.json --out-dir DIR [--cuda-check] [--dump-source DIR]
inputs.json: {"tokens": [...], "greedy_prompt": [...], "greedy_n": 24}
writes OUT/golden.json and OUT/logits.f32 (float32 LE [T][vocab]).

The V2.5 checkpoint is mapped onto the V2-Flash class as follows (docs/reference.md):
  config  hybrid_layer_pattern -> layer_types, moe_layer_freq -> mlp_layer_types,
          rope_theta / swa_rope_theta / partial_rotary_factor -> rope_parameters[type],
          layernorm_epsilon -> rms_norm_eps, sliding_window, attention_value_scale, head dims,
          pad/bos/eos dropped (tiny vocab)
  tensors qkv_proj (chunked, spec §3.3) -> q_proj/k_proj/v_proj; attention_sink_bias -> sinks;
          int4 experts dequantised (spec §6.2) and stacked into experts.gate_up_proj [E,2I,H]
          (gate rows first) / experts.down_proj [E,H,I]
  patches (only where the class cannot express V2.5):
    P1  SWA KV-head count: the class hard-codes swa_kv = 2 * num_key_value_heads; when the
        config's swa_num_key_value_heads differs, k_proj/v_proj of SWA layers are rebuilt with
        the right size and num_key_value_groups is reset.
    P2  sink presence follows add_swa_attention_sink_bias / add_full_attention_sink_bias (the
        class always has sinks on SWA layers, never on full ones).
  unsupported (asserted): swa_num_attention_heads != num_attention_heads, swa_head_dim !=
  head_dim, swa_v_head_dim != v_head_dim, rope_scaling other than default, actorder.
"""
import argparse
import inspect
import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors import safe_open

PATCHES = []


def load_tensors(d):
    """All tensors of the checkpoint, resolved through model.safetensors.index.json."""
    idx = os.path.join(d, "model.safetensors.index.json")
    with open(idx) as f:
        wm = json.load(f)["weight_map"]
    out = {}
    for fn in sorted(set(wm.values())):
        with safe_open(os.path.join(d, fn), framework="pt") as f:
            for k in f.keys():
                if wm.get(k) != fn:
                    raise SystemExit(f"{k} in {fn} but index says {wm.get(k)}")
                out[k] = f.get_tensor(k)
    missing = set(wm) - set(out)
    if missing:
        raise SystemExit(f"index lists missing tensors: {sorted(missing)[:5]}")
    return out


def unpack_nibbles(words, axis):
    """int32 words -> int64 nibbles 0..15, 8 per word, least significant first along `axis`."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    sh = torch.arange(0, 32, 4, dtype=torch.int64)
    if axis == 1:  # [r, c/8] -> [r, c]
        return ((w[:, :, None] >> sh) & 0xF).reshape(w.shape[0], -1)
    return ((w[:, None, :] >> sh[None, :, None]) & 0xF).reshape(-1, w.shape[1])  # rows


def expert_weight(T, p, group):
    """Dense fp32 weight of expert projection prefix p (bf16 or int4 pack-quantized)."""
    if p + "weight" in T:
        return T[p + "weight"].float()
    out, inn = (int(x) for x in T[p + "weight_shape"].tolist())
    q = unpack_nibbles(T[p + "weight_packed"], 1)[:, :inn] - 8
    scale = T[p + "weight_scale"].float()
    g = group or inn // scale.shape[1]
    zp = torch.zeros(out, scale.shape[1], dtype=torch.int64)
    if p + "weight_zero_point" in T:
        zp = unpack_nibbles(T[p + "weight_zero_point"], 0)[:out] - 8
    cg = torch.arange(inn) // g
    return (q - zp[:, cg]).float() * scale[:, cg]


def build(d):
    from transformers import MiMoV2FlashConfig, MiMoV2FlashForCausalLM

    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    L = c["num_hidden_layers"]
    nh, hd = c["num_attention_heads"], c["head_dim"]
    vhd = c.get("v_head_dim", hd)
    for k, ref in (("swa_num_attention_heads", nh), ("swa_head_dim", hd), ("swa_v_head_dim", vhd)):
        if c.get(k, ref) != ref:
            raise SystemExit(f"unsupported by MiMoV2FlashAttention: {k}={c[k]} != {ref}")
    rs = c.get("rope_scaling") or {}
    if (rs.get("rope_type") or rs.get("type") or "default") != "default":
        raise SystemExit("unsupported rope_scaling")
    kv_full = c["num_key_value_heads"]
    kv_swa = c.get("swa_num_key_value_heads", kv_full)
    pat = c.get("hybrid_layer_pattern") or [0] * L
    freq = c.get("moe_layer_freq") or [0] * L
    layer_types = ["sliding_attention" if x else "full_attention" for x in pat]
    prf = c.get("partial_rotary_factor", 1.0)
    qc = c.get("quantization_config") or {}
    group = None
    if qc:
        w = next(iter(qc["config_groups"].values()))["weights"]
        if w.get("actorder"):
            raise SystemExit("actorder unsupported")
        group = w["group_size"]
    kw = dict(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
        num_hidden_layers=L, num_attention_heads=nh, num_key_value_heads=kv_full, hidden_act=c["hidden_act"],
        max_position_embeddings=c.get("max_position_embeddings", 4096),
        rms_norm_eps=c.get("layernorm_epsilon", c.get("rms_norm_eps")), tie_word_embeddings=c.get("tie_word_embeddings", False),
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": float(c["rope_theta"]), "partial_rotary_factor": prf},
            "sliding_attention": {"rope_type": "default", "rope_theta": float(c.get("swa_rope_theta", c["rope_theta"])),
                                  "partial_rotary_factor": prf}},
        attention_bias=c.get("attention_bias", False), moe_intermediate_size=c.get("moe_intermediate_size", 1),
        num_experts_per_tok=c.get("num_experts_per_tok", 1), n_routed_experts=c.get("n_routed_experts", 1),
        routed_scaling_factor=c.get("routed_scaling_factor") or 1.0, n_group=c.get("n_group", 1),
        topk_group=c.get("topk_group", 1), norm_topk_prob=c.get("norm_topk_prob", True),
        head_dim=hd, v_head_dim=vhd, sliding_window=c.get("sliding_window") or c.get("sliding_window_size"),
        layer_types=layer_types, mlp_layer_types=["sparse" if x else "dense" for x in freq],
        attention_value_scale=c.get("attention_value_scale"),
        pad_token_id=None, bos_token_id=None, eos_token_id=None)
    cfg = MiMoV2FlashConfig(**kw)
    cfg._attn_implementation = "eager"  # the sink-aware eager path; sdpa has no sinks
    try:
        cfg._experts_implementation = "eager"
    except Exception as e:  # older transformers: no experts interface
        print("note: no _experts_implementation:", e)
    torch.manual_seed(0)
    model = MiMoV2FlashForCausalLM(cfg).float().eval()
    try:
        model.set_attn_implementation("eager")
    except Exception:
        pass
    try:
        model.set_experts_implementation("eager")
    except Exception:
        pass

    # P1 / P2: per-layer attention geometry and sinks.
    for l, layer in enumerate(model.model.layers):
        at = layer.self_attn
        swa = pat[l] == 1
        kv = kv_swa if swa else kv_full
        if at.k_proj.out_features != kv * hd:
            cls_kv = at.k_proj.out_features // hd
            at.k_proj = torch.nn.Linear(c["hidden_size"], kv * hd, bias=False)
            at.v_proj = torch.nn.Linear(c["hidden_size"], kv * vhd, bias=False)
            at.num_key_value_groups = nh // kv
            PATCHES.append(f"P1 layer {l}: {kv} KV heads (class would use {cls_kv})")
        assert at.num_key_value_groups == nh // kv, (l, at.num_key_value_groups)
        want_sink = bool(c.get("add_swa_attention_sink_bias" if swa else "add_full_attention_sink_bias", False))
        if want_sink and at.sinks is None:
            at.sinks = torch.nn.Parameter(torch.zeros(nh), requires_grad=False)
            PATCHES.append(f"P2 layer {l}: sink added")
        elif not want_sink and at.sinks is not None:
            at.sinks = None
            PATCHES.append(f"P2 layer {l}: sink removed")
        assert at.sliding_window == (cfg.sliding_window if swa else None)
        assert abs(at.scaling - hd ** -0.5) < 1e-12

    T = load_tensors(d)
    sd = {}
    used = set()

    def take(k):
        used.add(k)
        return T[k].float()

    for k in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        if k in T:
            sd[k] = take(k)
    chunks = kv_full
    for l in range(L):
        p = f"model.layers.{l}."
        kv = kv_swa if pat[l] else kv_full
        for n in ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.o_proj.weight"):
            sd[p + n] = take(p + n)
        if c.get("attention_projection_layout") == "fused_qkv":
            W = take(p + "self_attn.qkv_proj.weight")
            Qc, Kc, Vc = nh * hd // chunks, kv * hd // chunks, kv * vhd // chunks
            R = Qc + Kc + Vc
            assert W.shape[0] == chunks * R, (l, W.shape, chunks, R)
            blocks = W.reshape(chunks, R, -1)
            sd[p + "self_attn.q_proj.weight"] = blocks[:, :Qc].reshape(-1, W.shape[1])
            sd[p + "self_attn.k_proj.weight"] = blocks[:, Qc:Qc + Kc].reshape(-1, W.shape[1])
            sd[p + "self_attn.v_proj.weight"] = blocks[:, Qc + Kc:].reshape(-1, W.shape[1])
        else:
            for n in "qkv":
                sd[p + f"self_attn.{n}_proj.weight"] = take(p + f"self_attn.{n}_proj.weight")
        if p + "self_attn.attention_sink_bias" in T:
            sd[p + "self_attn.sinks"] = take(p + "self_attn.attention_sink_bias")
        if freq[l] == 0:
            for n in ("gate", "up", "down"):
                sd[p + f"mlp.{n}_proj.weight"] = take(p + f"mlp.{n}_proj.weight")
            continue
        sd[p + "mlp.gate.weight"] = take(p + "mlp.gate.weight")
        sd[p + "mlp.gate.e_score_correction_bias"] = take(p + "mlp.gate.e_score_correction_bias")
        gu, dn = [], []
        for e in range(c["n_routed_experts"]):
            ep = f"{p}mlp.experts.{e}."
            for n in ("gate_proj", "up_proj", "down_proj"):
                used.update(k for k in T if k.startswith(ep + n + "."))
            gu.append(torch.cat([expert_weight(T, ep + "gate_proj.", group), expert_weight(T, ep + "up_proj.", group)]))
            dn.append(expert_weight(T, ep + "down_proj.", group))
        sd[p + "mlp.experts.gate_up_proj"] = torch.stack(gu)
        sd[p + "mlp.experts.down_proj"] = torch.stack(dn)
    if c.get("tie_word_embeddings"):
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    unused = sorted(k for k in T if k not in used and not k.startswith("model.mtp."))
    if unused:
        raise SystemExit(f"checkpoint tensors not mapped: {unused[:8]}")
    msd = model.state_dict()
    for k, v in sd.items():
        if k not in msd:
            raise SystemExit(f"no parameter {k} in the HF model")
        if tuple(msd[k].shape) != tuple(v.shape):
            raise SystemExit(f"{k}: shape {tuple(v.shape)} != model {tuple(msd[k].shape)}")
    missing = [k for k in msd if k not in sd]
    if missing:
        raise SystemExit(f"HF parameters without checkpoint data: {missing[:8]}")
    model.load_state_dict(sd, strict=True)
    return model, c


def check_masks(model, c, T):
    """Records the masks each layer type receives and checks the window convention i-W < j <= i."""
    seen = {}

    def hook(mod, args, kwargs):
        m = kwargs.get("attention_mask")
        seen.setdefault(mod.self_attn.layer_type, m)

    hs = [lay.register_forward_pre_hook(hook, with_kwargs=True) for lay in model.model.layers]
    with torch.no_grad():
        model(input_ids=torch.arange(T)[None] % c["vocab_size"], use_cache=False)
    for h in hs:
        h.remove()
    W = c.get("sliding_window") or c.get("sliding_window_size")
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    res = {}
    for t, m in seen.items():
        if m is None:
            res[t] = "no mask passed"
            continue
        m = m[0, 0] if m.dim() == 4 else m
        allowed = (m == 0) if m.dtype != torch.bool else m
        want = (j <= i) & ((j > i - W) if t == "sliding_attention" else torch.ones_like(i, dtype=torch.bool))
        res[t] = "ok" if torch.equal(allowed.cpu(), want) else "MISMATCH"
    return res


def logits_of(model, ids, dev):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids], device=dev), use_cache=False).logits[0].float()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cuda-check", action="store_true")
    ap.add_argument("--dump-source")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if a.dump_source:
        import transformers.models.mimo_v2_flash.modeling_mimo_v2_flash as mm
        import transformers.models.mimo_v2_flash.configuration_mimo_v2_flash as mc
        import transformers.masking_utils as mu
        os.makedirs(a.dump_source, exist_ok=True)
        for mod in (mm, mc):
            with open(os.path.join(a.dump_source, os.path.basename(mod.__file__)), "w") as f:
                f.write(inspect.getsource(mod))
        with open(os.path.join(a.dump_source, "masking_sliding.txt"), "w") as f:
            for n in ("sliding_window_overlay", "sliding_window_causal_mask_function", "create_sliding_window_causal_mask"):
                if hasattr(mu, n):
                    f.write(inspect.getsource(getattr(mu, n)) + "\n")
    with open(a.inputs) as f:
        inp = json.load(f)
    model, c = build(a.model)
    print("attn impl:", model.config._attn_implementation,
          "| experts impl:", getattr(model.config, "_experts_implementation", None))
    masks = check_masks(model, c, len(inp["tokens"]))
    print("mask check:", masks)
    toks = inp["tokens"]
    lg = logits_of(model, toks, "cpu")
    os.makedirs(a.out_dir, exist_ok=True)
    lg.numpy().astype("<f4").tofile(os.path.join(a.out_dir, "logits.f32"))
    srt = torch.sort(lg, -1).values
    seq = list(inp["greedy_prompt"])
    gen, gaps = [], []
    for _ in range(inp.get("greedy_n", 24)):  # full recompute each step: no cache shortcuts
        last = logits_of(model, seq, "cpu")[-1]
        top2 = torch.topk(last, 2)
        gaps.append(float(top2.values[0] - top2.values[1]))
        gen.append(int(top2.indices[0]))
        seq.append(gen[-1])
    g = {
        "tokens": toks, "greedy_prompt": inp["greedy_prompt"], "greedy": gen,
        "source": f"transformers {transformers.__version__} MiMoV2FlashForCausalLM fp32",
        "torch": torch.__version__, "device": "cpu", "attn_implementation": "eager",
        "patches": sorted(set(PATCHES)), "mask_check": masks,
        "min_top1_gap": float((srt[:, -1] - srt[:, -2]).min()), "greedy_min_gap": min(gaps),
        "eos_token_id": c.get("eos_token_id"),
        "greedy_hits_eos": c.get("eos_token_id") in gen,
    }
    try:  # HF's own cached generate, reported only (not the golden)
        out = model.generate(torch.tensor([inp["greedy_prompt"]]), max_new_tokens=len(gen), do_sample=False,
                             min_new_tokens=len(gen))
        g["hf_generate_with_cache_agrees"] = out[0, len(inp["greedy_prompt"]):].tolist() == gen
    except Exception as e:
        g["hf_generate_with_cache_agrees"] = f"error: {type(e).__name__}: {e}"[:300]
    if a.cuda_check and torch.cuda.is_available():
        model.cuda()
        lc = logits_of(model, toks, "cuda").cpu()
        g["cuda_vs_cpu_max_rel"] = float((lc - lg).abs().max() / lg.abs().max())
        model.cpu()
    with open(os.path.join(a.out_dir, "golden.json"), "w") as f:
        json.dump(g, f, indent=1)
    print(json.dumps({k: v for k, v in g.items() if k not in ("tokens", "greedy_prompt")}))


if __name__ == "__main__":
    sys.exit(main())
