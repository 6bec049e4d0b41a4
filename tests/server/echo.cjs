// Completions' `echo` and vLLM's `prompt_logprobs` through the official client (tests/server/test_echo.sh): the
// prompt's text comes back before the completion, and with `logprobs` each prompt token's logprob (the first has
// none) and its alternatives, as lm-evaluation-harness asks for (echo, logprobs 1, max_tokens 1); whole and streamed
// alike. The answers go to $OUT for the reference check.
const fs = require('node:fs');
const { client, assert, collect, main } = require('./client.cjs');

main(async () => {
  const ids = process.env.IDS.split(',').map(Number);
  const out = {};
  // the same prompt first, so that a prefix-cache entry exists: the echo must still compute every position
  await client.completions.create({ model: 'tiny', prompt: ids, max_tokens: 2, temperature: 0 });
  const r = await client.completions.create({ model: 'tiny', prompt: ids, echo: true, logprobs: 3, max_tokens: 1,
                                              temperature: 0 });
  const c = r.choices[0];
  assert.equal(c.logprobs.tokens.length, ids.length + 1, 'prompt tokens then the completion');
  assert.equal(c.logprobs.token_logprobs[0], null);
  assert.equal(c.logprobs.top_logprobs[0], null);
  assert.equal(c.logprobs.text_offset[0], 0);
  const det = await (await fetch(process.env.BASE + '/detokenize', { method: 'POST', body: JSON.stringify({ tokens: ids }),
                                                                      headers: { 'content-type': 'application/json' } })).json();
  assert.ok(c.text.startsWith(det.prompt), 'text: the prompt, then the completion');
  assert.equal(r.usage.prompt_tokens, ids.length);
  out.echo = { token_logprobs: c.logprobs.token_logprobs, top: c.logprobs.top_logprobs.map((t) => t && Object.values(t)) };

  // vLLM's prompt_logprobs extension: the prompt token's entry (logprob, rank) and the best alternatives
  const v = await client.completions.create({ model: 'tiny', prompt: ids, max_tokens: 1, temperature: 0,
                                              prompt_logprobs: 2 });
  const pl = v.choices[0].prompt_logprobs;
  assert.equal(pl.length, ids.length);
  assert.equal(pl[0], null);
  out.ranks = [null];
  for (let i = 1; i < ids.length; i++) {
    const mine = pl[i][String(ids[i])];
    assert.ok(mine, `position ${i}: the prompt token's entry`);
    // both print the same float32 with 9 significant digits, which reads back exactly: equal numbers
    assert.equal(Math.fround(mine.logprob), Math.fround(c.logprobs.token_logprobs[i]), `position ${i}: the echo's logprob`);
    const ranks = Object.values(pl[i]).map((x) => x.rank).sort((a, b) => a - b);
    assert.ok(ranks[0] === 1 && Object.keys(pl[i]).length <= 3, `position ${i}: ranks ${ranks}`);
    out.ranks.push(mine.rank);
  }
  const chat = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }],
                                                      max_tokens: 1, prompt_logprobs: 0 });
  assert.equal(chat.prompt_logprobs.length, chat.usage.prompt_tokens, 'chat: one entry a prompt token');
  assert.ok(chat.prompt_logprobs.slice(1).every((d) => Object.keys(d).length === 1), 'chat: no alternatives asked');
  let perr = null;
  try {
    await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1,
                                           stream: true, prompt_logprobs: 1 });
  } catch (e) { perr = e; }
  assert.ok(perr && perr.status === 400 && /prompt_logprobs/.test(perr.message), `chat stream + prompt_logprobs: ${perr}`);

  // streamed: the first chunk carries the echoed prompt (with its logprobs) and prompt_logprobs, then the completion
  const whole = await client.completions.create({ model: 'tiny', prompt: ids, echo: true, logprobs: 2, max_tokens: 5,
                                                  temperature: 0, prompt_logprobs: 1 });
  const parts = await collect(await client.completions.create({ model: 'tiny', prompt: ids, echo: true, logprobs: 2,
                                                                max_tokens: 5, temperature: 0, prompt_logprobs: 1,
                                                                stream: true }));
  const first = parts[0].choices[0];
  assert.equal(first.text, det.prompt, 'streamed: the prompt first');
  assert.equal(first.logprobs.tokens.length, ids.length);
  assert.deepEqual(first.prompt_logprobs, whole.choices[0].prompt_logprobs);
  const text = parts.filter((p) => p.choices.length).map((p) => p.choices[0].text).join('');
  const lps = parts.filter((p) => p.choices.length && p.choices[0].logprobs)
    .flatMap((p) => p.choices[0].logprobs.token_logprobs);
  const offs = parts.filter((p) => p.choices.length && p.choices[0].logprobs)
    .flatMap((p) => p.choices[0].logprobs.text_offset);
  assert.equal(text, whole.choices[0].text, 'streamed text = whole');
  assert.deepEqual(lps, whole.choices[0].logprobs.token_logprobs, 'streamed logprobs = whole');
  // the prompt's offsets and where the completion starts (later offsets: streamed chunks advance by the text a
  // chunk carries, a whole reply by each token's text, which differ where the detokenizer holds bytes back)
  assert.deepEqual(offs.slice(0, ids.length + 1), whole.choices[0].logprobs.text_offset.slice(0, ids.length + 1),
                   'streamed prompt offsets = whole');

  // two choices: both echo the prompt with its logprobs
  const two = await client.completions.create({ model: 'tiny', prompt: ids, echo: true, logprobs: 0, max_tokens: 3,
                                                temperature: 1, seed: 4, n: 2 });
  for (const ch of two.choices) {
    assert.equal(ch.logprobs.token_logprobs.length, ids.length + 3);
    out.n2 = (out.n2 || []).concat([ch.logprobs.token_logprobs.slice(0, ids.length)]);
  }

  // echo without logprobs: the text only
  const plain = await client.completions.create({ model: 'tiny', prompt: 'The quick brown fox', echo: true,
                                                  max_tokens: 4, temperature: 0 });
  const noecho = await client.completions.create({ model: 'tiny', prompt: 'The quick brown fox', max_tokens: 4,
                                                   temperature: 0 });
  assert.equal(plain.choices[0].text, 'The quick brown fox' + noecho.choices[0].text);
  assert.equal(plain.choices[0].logprobs, null);

  // streamed echo without logprobs: the prompt's text first, logprobs null, the same text in all
  const sp = await collect(await client.completions.create({ model: 'tiny', prompt: 'The quick brown fox', echo: true,
                                                             max_tokens: 4, temperature: 0, stream: true }));
  assert.equal(sp[0].choices[0].text, 'The quick brown fox');
  assert.equal(sp[0].choices[0].logprobs, null);
  assert.equal(sp.filter((p) => p.choices.length).map((p) => p.choices[0].text).join(''), plain.choices[0].text);
  fs.writeFileSync(process.env.OUT, JSON.stringify(out));
});
