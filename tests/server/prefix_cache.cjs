// Prefix caching through the official clients (tests/server/test_prefix_cache.sh): a request that repeats or
// continues an earlier one reports the cached prompt tokens (OpenAI usage.prompt_tokens_details.cached_tokens,
// Anthropic usage.cache_read_input_tokens) and still answers exactly as without the cache. MODE=cache records the
// answers in $OUT; MODE=nocache (a server with --no-enable-prefix-caching) computes them afresh and compares.
const fs = require('node:fs');
const { client, assert, main } = require('./client.cjs');
const Anthropic = require('@anthropic-ai/sdk');
const anthropic = new Anthropic({ baseURL: process.env.BASE, apiKey: 'x', maxRetries: 0, timeout: 60000 });

const system = 'You are a careful assistant. ' + Array.from({ length: 40 }, (_, i) => `Rule ${i + 1}: be exact.`).join(' ');
const first = [{ role: 'system', content: system }, { role: 'user', content: 'What is 2 + 2?' }];

async function chat(messages) {
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, temperature: 0, logprobs: true });
  return { text: r.choices[0].message.content ?? '', lps: r.choices[0].logprobs.content.map((t) => t.logprob), usage: r.usage };
}

main(async () => {
  const cache = process.env.MODE === 'cache';
  const a = await chat(first);
  const again = await chat(first);
  const turn2 = [...first, { role: 'assistant', content: a.text }, { role: 'user', content: 'And 3 + 3?' }];
  const b = await chat(turn2);
  // another conversation with the same system prompt: the entry at the end of the system block serves it
  const other = await chat([{ role: 'system', content: system }, { role: 'user', content: 'Name a prime number.' }]);
  const m = await anthropic.messages.create({ model: 'tiny', system, max_tokens: 8, temperature: 0,
                                              messages: [{ role: 'user', content: 'What is 2 + 2?' }] });
  const count = await anthropic.messages.countTokens({ model: 'tiny', system, messages: [{ role: 'user', content: 'What is 2 + 2?' }] });
  assert.ok(a.usage.prompt_tokens >= 128, `a prompt of ${a.usage.prompt_tokens} tokens`);
  assert.equal(a.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(again.text, a.text);
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, count.input_tokens);
  if (cache) {
    // the same prompt: all but its last token; the next turn: at least the first prompt; Anthropic: the same prompt
    assert.equal(again.usage.prompt_tokens_details.cached_tokens, a.usage.prompt_tokens - 1);
    assert.ok(b.usage.prompt_tokens_details.cached_tokens >= a.usage.prompt_tokens - 1,
              `turn 2 cached ${b.usage.prompt_tokens_details.cached_tokens} of ${b.usage.prompt_tokens}`);
    assert.ok(m.usage.cache_read_input_tokens >= 64, `anthropic cached ${m.usage.cache_read_input_tokens}`);
    const oc = other.usage.prompt_tokens_details.cached_tokens;
    assert.ok(oc >= 64 && oc < other.usage.prompt_tokens - 8, `other conversation cached ${oc} of ${other.usage.prompt_tokens}`);
    for (let i = 0; i < a.lps.length; i++)
      assert.ok(Math.abs(a.lps[i] - again.lps[i]) <= 1e-4, `logprob ${i}: ${a.lps[i]} vs ${again.lps[i]}`);
    // streamed: the usage chunk says the same
    let streamed = null;
    for await (const c of await client.chat.completions.create({ model: 'tiny', messages: first, max_tokens: 2,
                                                                 stream: true, stream_options: { include_usage: true } }))
      if (c.usage) streamed = c.usage;
    assert.equal(streamed.prompt_tokens_details.cached_tokens, a.usage.prompt_tokens - 1);
    const metrics = await (await fetch(process.env.BASE + '/metrics')).text();
    const hits = Number(/^vllm:prefix_cache_hits_total\{[^}]*\} (\d+)/m.exec(metrics)[1]);
    const expect = 2 * again.usage.prompt_tokens_details.cached_tokens + b.usage.prompt_tokens_details.cached_tokens +
                   oc + m.usage.cache_read_input_tokens;
    assert.equal(hits, expect);
    // vLLM's cache_salt: entries are found only by requests with the same salt; a bad salt is a 400
    const salted = (salt) => client.chat.completions.create({ model: 'tiny', messages: first, max_tokens: 8,
                                                              temperature: 0, cache_salt: salt });
    const sa = await salted('tenant-a'), sa2 = await salted('tenant-a'), sb = await salted('tenant-b');
    assert.equal(sa.usage.prompt_tokens_details.cached_tokens, 0, 'salt a: the unsalted entries are not its');
    assert.equal(sa2.usage.prompt_tokens_details.cached_tokens, a.usage.prompt_tokens - 1, 'salt a again: its own entry');
    assert.equal(sb.usage.prompt_tokens_details.cached_tokens, 0, 'salt b: not a\'s');
    for (const r of [sa, sa2, sb]) assert.equal(r.choices[0].message.content ?? '', a.text);
    const rs = await client.responses.create({ model: 'tiny', input: 'What is 2 + 2?', instructions: system,
                                               max_output_tokens: 4, temperature: 0, cache_salt: 'tenant-c' });
    assert.equal(rs.usage.input_tokens_details.cached_tokens, 0, 'responses with a new salt');
    for (const bad of ['', 5])
      await assert.rejects(salted(bad), (err) => err.status === 400 && /cache_salt/.test(err.message), `salt ${bad}`);
    fs.writeFileSync(process.env.OUT, JSON.stringify({ a, again, b, other, m: m.content }));
    return;
  }
  for (const r of [again, b, other])
    assert.equal(r.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(m.usage.cache_read_input_tokens, 0);
  const want = JSON.parse(fs.readFileSync(process.env.OUT, 'utf8'));
  for (const [k, r] of [['a', a], ['again', again], ['b', b], ['other', other]]) {
    assert.equal(r.text, want[k].text, `${k}: the same text with and without the cache`);
    for (let i = 0; i < r.lps.length; i++)
      assert.ok(Math.abs(r.lps[i] - want[k].lps[i]) <= 1e-4, `${k} logprob ${i}: ${r.lps[i]} vs ${want[k].lps[i]}`);
  }
  assert.deepEqual(m.content, want.m);
});
