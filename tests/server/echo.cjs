// Completions' `echo` through the official client (tests/server/test_echo.sh): the prompt's text comes back before
// the completion, and with `logprobs` each prompt token's logprob (the first has none) and its alternatives, as
// lm-evaluation-harness asks for (echo, logprobs 1, max_tokens 1). The answers go to $OUT for the reference check.
const fs = require('node:fs');
const { client, assert, main } = require('./client.cjs');

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

  // stream + echo is refused with a 400 naming the field
  let err = null;
  try {
    await client.completions.create({ model: 'tiny', prompt: ids, echo: true, max_tokens: 1, stream: true });
  } catch (e) { err = e; }
  assert.ok(err && err.status === 400 && /echo/.test(err.message), `stream + echo: ${err}`);
  fs.writeFileSync(process.env.OUT, JSON.stringify(out));
});
