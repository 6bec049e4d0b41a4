// Reference side of the tokenizer exactness tests: generates seeded test strings
// and the ids / decoded text that the Rust `tokenizers` library (through the
// @anush008/tokenizers binding) produces for them, then compares mimo's output.
//
//   node tokref.js gen TOKDIR OUTDIR SEED COUNT [big]   -> cases.jsonl ref_ids.jsonl ref_dec.jsonl
//                                                         ref_dec_skip.jsonl nfc.jsonl bad.bin ref_bad.json
//   node tokref.js cmp OUTDIR                           -> compares mimo_*.{jsonl,txt} with the references
'use strict';
const fs = require('fs');
const path = require('path');

function mulberry32(a) {
  return function () {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Blocks whose characters were all assigned by Unicode 13, so that Debian's
// Oniguruma/utf8proc and the reference's newer tables agree (test-assets §2.3).
const RANGES = {
  latin: [[0x41, 0x5a], [0x61, 0x7a]],
  latinExt: [[0xc0, 0x24f]],
  greek: [[0x391, 0x3a1], [0x3a3, 0x3c9]],
  cyrillic: [[0x410, 0x44f], [0x400, 0x40f]],
  arabic: [[0x621, 0x64a], [0x64b, 0x652], [0x660, 0x669]],
  devanagari: [[0x905, 0x939], [0x93e, 0x94d], [0x966, 0x96f]],
  thai: [[0xe01, 0xe3a], [0xe40, 0xe5b]],
  cjk: [[0x4e00, 0x9fa5]],
  kana: [[0x3041, 0x3096], [0x30a1, 0x30fa]],
  hangul: [[0xac00, 0xd7a3]],
  hebrew: [[0x5d0, 0x5ea]],
  cjkExtB: [[0x20000, 0x2a6d6]],
  mathAlnum: [[0x1d400, 0x1d454], [0x1d7ce, 0x1d7ff]],
};
const COMBINING = [[0x300, 0x36f], [0x1dc0, 0x1dca], [0x20d0, 0x20dc]];
const PUNCT = [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e], [0xa1, 0xbf], [0x2010, 0x2027],
  [0x2030, 0x205e], [0x3001, 0x3011], [0xff01, 0xff0f], [0x2190, 0x21ff], [0x2200, 0x22ff], [0x2500, 0x257f]];
const DIGITS = [[0x30, 0x39], [0x660, 0x669], [0x966, 0x96f], [0xff10, 0xff19], [0xbc, 0xbe], [0x2160, 0x216f]];
const WS = [' ', ' ', ' ', '\t', '\n', '\n', '\r', '\r\n', '\u00a0', '\u3000', '\u2003', '\u200b', '\u000b',
  '\u000c', '\u0085', '\u2028', '\u180e', '\u202f'];
const EMOJI = [[0x1f600, 0x1f64f], [0x1f300, 0x1f5ff], [0x1f680, 0x1f6c5], [0x2600, 0x26ff]];
const ZWJ_SEQ = ['👨‍👩‍👧‍👦', '👩🏽‍💻', '🧑🏿‍🤝‍🧑🏻', '🏳️‍🌈', '❤️‍🔥', '👁️‍🗨️', '1️⃣', '#️⃣', '🇨🇳', '🇺🇸🇯🇵', '🤖👍🏽',
  '👋🏻👋🏼👋🏽👋🏾👋🏿', '✌️', '☺️'];
const CODE = [
  'def f(x):\n    return x**2 + 1\n', 'for (int i = 0; i < n; ++i) { a[i] += b[i]; }',
  'const x = await fetch(`/api/${id}`);', '#include <stdio.h>\nint main(void){printf("%d\\n", 42);}',
  '    if err != nil {\n\t\treturn nil, err\n\t}\n', 'SELECT * FROM t WHERE a = \'x\' AND b >= 10;',
  '<div class="a">&nbsp;</div>', 'λx.λy.x y', '  // TODO: fix\r\n', 'fn main() -> Result<(), Box<dyn Error>> {}',
  'x = [1, 2, 3]; y = {"k": None}', '$ ls -la | grep "\\.c$"', '\\begin{equation} e^{i\\pi}+1=0 \\end{equation}',
];
const WORDS = ['the', 'The', 'THE', 'hello', 'world', 'token', 'izer', 'Xiaomi', 'MiMo', 'don', 'can', 'I', 'you',
  'they', 'we', 'it', 'is', 'a', 'an', 'of', 'in', 'to', 'and', 'ſtraße', 'naïve', 'café', 'Ångström', 'İstanbul'];
const CONTR = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'lL", "'rE",
  "’s", "'x"];

function makeGen(seed, specials) {
  const r = mulberry32(seed);
  const ri = (n) => Math.floor(r() * n);
  const pick = (a) => a[ri(a.length)];
  const fromRanges = (rs) => {
    const [lo, hi] = pick(rs);
    return String.fromCodePoint(lo + ri(hi - lo + 1));
  };
  const scripts = Object.keys(RANGES);
  const word = () => {
    const k = r();
    if (k < 0.25) return pick(WORDS);
    const rs = RANGES[pick(scripts)];
    let s = '';
    const n = 1 + ri(10);
    for (let i = 0; i < n; i++) s += fromRanges(rs);
    return s;
  };
  const atom = () => {
    const k = r();
    if (k < 0.35) return word();
    if (k < 0.45) return pick(WORDS) + pick(CONTR);
    if (k < 0.52) { let s = ''; const n = 1 + ri(12); for (let i = 0; i < n; i++) s += fromRanges(DIGITS); return s; }
    if (k < 0.58) { let s = ''; const n = 1 + ri(4); for (let i = 0; i < n; i++) s += fromRanges(PUNCT); return s; }
    if (k < 0.64) return pick(ZWJ_SEQ);
    if (k < 0.68) return fromRanges(EMOJI) + (r() < 0.5 ? String.fromCodePoint(0x1f3fb + ri(5)) : '');
    if (k < 0.73) { let s = pick(['e', 'a', 'o', 'n', 'A', 'क', 'ก', 'и']); const n = 1 + ri(3); for (let i = 0; i < n; i++) s += fromRanges(COMBINING); return s; }
    if (k < 0.77) return pick(CODE);
    if (k < 0.81) { let s = ''; const n = 2 + ri(40); for (let i = 0; i < n; i++) s += pick(WS); return s; }
    if (k < 0.84) return pick(['\r\n', '\n\r', '\r\r\n', '\n\n\n', ' \r\n ', '\t\n']).repeat(1 + ri(4));
    if (k < 0.87 && specials.length) return pick(specials);
    if (k < 0.89) return ' '.repeat(50 + ri(300));
    // random code point soup from every range
    let s = '';
    const all = Object.values(RANGES).concat([COMBINING, PUNCT, DIGITS, EMOJI]);
    const n = 1 + ri(8);
    for (let i = 0; i < n; i++) s += fromRanges(pick(all));
    return s;
  };
  const sep = () => { const k = r(); return k < 0.6 ? ' ' : k < 0.7 ? '' : k < 0.85 ? pick(WS) : fromRanges(PUNCT); };
  return function () {
    const n = 1 + ri(r() < 0.85 ? 8 : 30);
    let s = '';
    for (let i = 0; i < n; i++) s += (i ? sep() : (r() < 0.2 ? pick(WS) : '')) + atom();
    return s;
  };
}

function loadTok(tokdir) {
  const { Tokenizer } = require('@anush008/tokenizers');
  return Tokenizer.fromFile(path.join(tokdir, 'tokenizer.json'));
}

async function gen(tokdir, out, seed, count, big) {
  const tj = JSON.parse(fs.readFileSync(path.join(tokdir, 'tokenizer.json'), 'utf8'));
  const added = (tj.added_tokens || []).map((a) => a.content);
  const specials = added.length > 40 ? added.slice(0, 20).concat(added.slice(-20)) : added;
  const g = makeGen(seed, specials);
  const cases = [];
  // hand cases first: known ids and edge shapes
  cases.push('Hello world', '你好，世界！今天天气怎么样？', '🤖👍🏽 emoji test 🇨🇳', "they'LL go  \n\n x", '',
    ' ', '\n', '   leading', 'trailing   ', 'e\u0301 vs é', "I'M DON'T we'Re", '1234567890 ١٢٣ ४५६', '\u0000nul\u0000',
    'a'.repeat(3000), ' '.repeat(1000) + 'x', '\r\n'.repeat(200));
  for (const s of specials.slice(0, 5)) cases.push(s + s + 'x' + s, ' ' + s + ' ', s.slice(0, -1), 'a' + s + 'b');
  while (cases.length < count) cases.push(g());
  if (big) {
    let s = '';
    while (s.length < 1_000_000) s += g() + ' ';
    cases.push(s);
  }
  const t = loadTok(tokdir);
  const ids = new Array(cases.length);
  const dec = new Array(cases.length), decSkip = new Array(cases.length);
  const B = 64;
  for (let i = 0; i < cases.length; i += B) {
    const part = cases.slice(i, i + B);
    const encs = await Promise.all(part.map((s) => t.encode(s, null, { addSpecialTokens: false })));
    for (let k = 0; k < part.length; k++) ids[i + k] = Array.from(encs[k].getIds());
    const ds = await Promise.all(part.map((_, k) => t.decode(ids[i + k], false)));
    // skip_special decoding is checked on a prefix of the cases (the reference is slow)
    const dss = i < 4000 ? await Promise.all(part.map((_, k) => t.decode(ids[i + k], true))) : part.map(() => null);
    for (let k = 0; k < part.length; k++) { dec[i + k] = ds[k]; decSkip[i + k] = dss[k]; }
  }
  const jl = (a) => a.map((x) => JSON.stringify(x)).join('\n') + '\n';
  fs.writeFileSync(path.join(out, 'cases.jsonl'), jl(cases));
  fs.writeFileSync(path.join(out, 'ref_ids.jsonl'), jl(ids));
  fs.writeFileSync(path.join(out, 'ref_dec.jsonl'), jl(dec));
  fs.writeFileSync(path.join(out, 'ref_dec_skip.jsonl'), jl(decSkip));
  // property: decode(encode(x)) == normaliser(x) where x has no added tokens
  const hasNfc = JSON.stringify(tj.normalizer || null).includes('"NFC"');
  const expect = cases.map((s) => (added.some((a) => a && s.includes(a)) ? null : hasNfc ? s.normalize('NFC') : s));
  fs.writeFileSync(path.join(out, 'nfc.jsonl'), jl(expect));
  // invalid UTF-8: raw bytes for mimo; the reference sees what a UTF-8 decoder
  // that substitutes U+FFFD for each maximal ill-formed subpart produces.
  const r = mulberry32(seed ^ 0x5bd1e995);
  const parts = [];
  const sepTok = added.length ? added[0] : null;
  const BAD = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98],
    [0x80, 0x80], [0xc3], [0xe0, 0x80, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfe, 0xff], [0xe4, 0xbd]];
  for (let i = 0; i < 300; i++) {
    const bufs = [];
    const n = 1 + Math.floor(r() * 6);
    for (let k = 0; k < n; k++) {
      if (r() < 0.5) bufs.push(Buffer.from(BAD[Math.floor(r() * BAD.length)]));
      else bufs.push(Buffer.from(g().slice(0, 40)));
    }
    if (i % 7 === 0) bufs.push(Buffer.from([Math.floor(r() * 256)]));
    parts.push(Buffer.concat(bufs));
    if (sepTok) parts.push(Buffer.from(sepTok));
  }
  const bad = Buffer.concat(parts);
  fs.writeFileSync(path.join(out, 'bad.bin'), bad);
  const enc = await t.encode(bad.toString('utf8'), null, { addSpecialTokens: false });
  fs.writeFileSync(path.join(out, 'ref_bad.json'), JSON.stringify(Array.from(enc.getIds())) + '\n');
  console.log(`gen: ${cases.length} strings (${big ? 'with' : 'no'} 1 MB input) from ${tokdir}`);
}

function readLines(p) {
  const s = fs.readFileSync(p, 'utf8');
  const a = s.split('\n');
  if (a[a.length - 1] === '') a.pop();
  return a;
}

function cmp(out) {
  const cases = readLines(path.join(out, 'cases.jsonl')).map((l) => JSON.parse(l));
  const ref = readLines(path.join(out, 'ref_ids.jsonl'));
  const mine = readLines(path.join(out, 'mimo_ids.jsonl'));
  let bad = 0;
  const show = (what, i, a, b) => {
    if (bad++ < 5) console.log(`MISMATCH ${what} case ${i} ${JSON.stringify(cases[i]).slice(0, 300)}\n  ref  ${String(a).slice(0, 300)}\n  mimo ${String(b).slice(0, 300)}`);
  };
  if (mine.length !== ref.length) { console.log(`line count: mimo ${mine.length} vs ref ${ref.length}`); bad++; }
  for (let i = 0; i < Math.min(mine.length, ref.length); i++) if (mine[i] !== ref[i]) show('ids', i, ref[i], mine[i]);
  const idsBad = bad;
  for (const [mf, rf, what] of [['mimo_dec.jsonl', 'ref_dec.jsonl', 'decode'], ['mimo_dec_skip.jsonl', 'ref_dec_skip.jsonl', 'decode(skip_special)']]) {
    const m = readLines(path.join(out, mf)), rr = readLines(path.join(out, rf));
    if (m.length !== rr.length) { console.log(`${what}: line count ${m.length} vs ${rr.length}`); bad++; continue; }
    for (let i = 0; i < m.length; i++) {
      const want = JSON.parse(rr[i]);
      if (want !== null && JSON.parse(m[i]) !== want) show(what, i, rr[i], m[i]);
    }
  }
  const nfc = readLines(path.join(out, 'nfc.jsonl')).map((l) => JSON.parse(l));
  const dm = readLines(path.join(out, 'mimo_dec.jsonl')).map((l) => JSON.parse(l));
  let rt = 0;
  for (let i = 0; i < nfc.length; i++) if (nfc[i] !== null) { rt++; if (dm[i] !== nfc[i]) show('round trip', i, JSON.stringify(nfc[i]), JSON.stringify(dm[i])); }
  const rb = fs.readFileSync(path.join(out, 'ref_bad.json'), 'utf8').trim();
  const mb = '[' + fs.readFileSync(path.join(out, 'mimo_bad.txt'), 'utf8').trim() + ']';
  if (rb !== mb) { bad++; console.log(`MISMATCH invalid UTF-8 input\n  ref  ${rb.slice(0, 300)}\n  mimo ${mb.slice(0, 300)}`); }
  console.log(`cmp ${out}: ${ref.length} strings, ${idsBad} id mismatches, ${rt} round trips, ${bad} failures in total`);
  process.exit(bad ? 1 : 0);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'gen') gen(args[0], args[1], +args[2], +args[3], args[4] === 'big').catch((e) => { console.error(e); process.exit(1); });
else if (mode === 'cmp') cmp(args[0]);
else { console.error('usage: tokref.js gen|cmp ...'); process.exit(2); }
