"""Makes one broken copy of a checkpoint directory for the bad-input tests.

usage: corrupt.py SRC DST CASE   (DST is created as a copy of SRC, then broken)
"""
import json, os, shutil, struct, sys

src, dst, case = sys.argv[1:4]
shutil.copytree(src, dst)
index = json.load(open(os.path.join(dst, "model.safetensors.index.json")))
wm = index["weight_map"]


def shard_of(name):
    return os.path.join(dst, wm[name])


def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write(path, header, data, pad=True):
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)


def edit_header(name, fn):
    path = shard_of(name)
    header, data = read(path)
    fn(header)
    write(path, header, data)


qkv = "model.layers.1.self_attn.qkv_proj.weight"
if case == "truncated":
    path = shard_of(qkv)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:len(raw) - 1000])
elif case == "header_past_end":
    path = shard_of(qkv)
    raw = open(path, "rb").read()
    open(path, "wb").write(struct.pack("<Q", len(raw) * 2) + raw[8:])
elif case == "unknown_dtype":
    edit_header(qkv, lambda h: h[qkv].update(dtype="BF17"))
elif case == "overlap":
    def ov(h):
        names = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
        a, b = names[0], names[1]
        h[b]["data_offsets"] = [h[a]["data_offsets"][0], h[a]["data_offsets"][0] + h[b]["data_offsets"][1] - h[b]["data_offsets"][0]]
    edit_header(qkv, ov)
elif case in ("missing_tensor", "missing_vision_sink"):
    name = "model.layers.2.post_attention_layernorm.weight" if case == "missing_tensor" else "visual.blocks.1.attn.sinks"
    path = shard_of(name)
    header, data = read(path)
    b, e = header[name]["data_offsets"]
    del header[name]
    for k, v in header.items():  # close the gap so the shard itself stays valid
        if k != "__metadata__" and v["data_offsets"][0] >= e:
            v["data_offsets"] = [v["data_offsets"][0] - (e - b), v["data_offsets"][1] - (e - b)]
    write(path, header, data[:b] + data[e:])
    del wm[name]
    json.dump(index, open(os.path.join(dst, "model.safetensors.index.json"), "w"))
elif case in ("wrong_shape", "qkv_not_divisible"):
    # Rewrite the qkv tensor with one row less (not divisible) or a wrong width.
    path = shard_of(qkv)
    header, data = read(path)
    rows, cols = header[qkv]["shape"]
    b, e = header[qkv]["data_offsets"]
    new_shape = [rows - 1, cols] if case == "qkv_not_divisible" else [rows, cols // 2]
    new_bytes = new_shape[0] * new_shape[1] * 2
    header[qkv]["shape"] = new_shape
    header[qkv]["data_offsets"] = [b, b + new_bytes]
    delta = (e - b) - new_bytes
    for k, v in header.items():
        if k not in ("__metadata__", qkv) and v["data_offsets"][0] >= e:
            v["data_offsets"] = [v["data_offsets"][0] - delta, v["data_offsets"][1] - delta]
    write(path, header, data[:b + new_bytes] + data[e:])
elif case in ("vision_depth_more", "vision_depth_less", "vision_bad_type"):
    cp = os.path.join(dst, "config.json")
    cfg = json.load(open(cp))
    vc = cfg["vision_config"]
    if case == "vision_bad_type":
        vc["vit_window_attn_types"][1] = 2
    else:
        d = vc["depth"] + (1 if case == "vision_depth_more" else -1)
        vc["depth"] = d
        vc["vit_window_attn_types"] = (vc["vit_window_attn_types"] + [-1])[:d]
        vc["fullatt_block_indexes"] = [i for i in range(d) if vc["vit_window_attn_types"][i] == -1]
    json.dump(cfg, open(cp, "w"))
elif case == "missing_config_field":
    cfg = json.load(open(os.path.join(dst, "config.json")))
    del cfg["hidden_size"]
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"))
elif case == "not_mimo":
    cfg = json.load(open(os.path.join(dst, "config.json")))
    cfg["model_type"] = "llama"
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"))
elif case == "bad_index":
    wm[qkv] = "../../etc/passwd"
    json.dump(index, open(os.path.join(dst, "model.safetensors.index.json"), "w"))
elif case == "int4_bits8":
    cfg = json.load(open(os.path.join(dst, "config.json")))
    cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 8
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"))
else:
    sys.exit("unknown case " + case)
