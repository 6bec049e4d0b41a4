#!/usr/bin/python3
"""Reference renderer for mimo's jinja tests: Debian's python3-jinja2 set up the way
Hugging Face transformers sets it up for chat templates.

  jinja_ref.py regen              rewrite jinja_data/cases.jsonl from jinja_cases.py
  jinja_ref.py check-cases        verify cases.jsonl still matches live jinja2
  jinja_ref.py convs MIMO [N]     N seeded conversations x 5 templates: mimo vs jinja2
"""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_env()


_COMPILED = {}


def render(template, ctx):
    """-> ("text", str) or ("error", message)"""
    try:
        if template not in _COMPILED:
            _COMPILED[template] = ENV.from_string(template)
        return "text", _COMPILED[template].render(**ctx)
    except Exception as e:  # any jinja2 failure means mimo must fail too
        return "error", f"{type(e).__name__}: {e}"


def cases_path():
    return os.path.join(HERE, "jinja_data", "cases.jsonl")


def regen():
    sys.path.insert(0, HERE)
    from jinja_cases import CASES
    with open(cases_path(), "w", encoding="utf-8") as f:
        for tmpl, ctx in CASES:
            kind, out = render(tmpl, ctx)
            rec = {"t": tmpl, "ctx": ctx}
            if kind == "text":
                rec["out"] = out
            else:
                rec["err"] = out
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(CASES)} cases")


def check_cases():
    bad = 0
    n = 0
    with open(cases_path(), encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            n += 1
            kind, out = render(rec["t"], rec["ctx"])
            if (kind == "text") != ("out" in rec) or (kind == "text" and out != rec["out"]):
                bad += 1
                print("stale case:", json.dumps(rec["t"]), "->", kind, repr(out))
    print(f"cases.jsonl vs jinja2 {jinja2.__version__}: {n} cases, {bad} stale")
    return bad == 0


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "regen":
        regen()
    elif cmd == "check-cases":
        sys.exit(0 if check_cases() else 1)
    elif cmd == "convs":
        sys.path.insert(0, HERE)
        from jinja_convs import run_convs
        n = int(sys.argv[3]) if len(sys.argv) > 3 else 60
        sys.exit(0 if run_convs(sys.argv[2], n, render) else 1)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
