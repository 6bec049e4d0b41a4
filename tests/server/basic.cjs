// Real (tiny) model: models list, chat and completions streamed and whole,
// usage, n=2, seed reproducibility, logprobs shape, max_tokens/finish_reason.
const { client, assert, collect, main } = require('./client.cjs');
const msgs = [{ role: 'user', content: 'Hello' }];

main(async () => {
  const models = await client.models.list();
  assert.equal(models.data[0].id, 'tiny');
  assert.equal(models.data[0].object, 'model');

  const r = await client.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 6, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['length', 'stop'].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.ok(r.usage.completion_tokens <= 6 && r.usage.completion_tokens >= 1);
  if (r.choices[0].finish_reason === 'length') assert.equal(r.usage.completion_tokens, 6);

  // streamed: role first, text deltas, finish, usage-only chunk; greedy text equals the whole reply
  const chunks = await collect(await client.chat.completions.create({
    model: 'tiny', messages: msgs, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } }));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, r.usage);
  const text = chunks.map((c) => c.choices[0]?.delta?.content || '').join('');
  const full = (r.choices[0].message.reasoning_content || '') + (r.choices[0].message.content || '');
  const sReason = chunks.map((c) => c.choices[0]?.delta?.reasoning_content || '').join('');
  assert.equal(sReason + text, full);
  assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason).length, 1);
  for (const c of chunks) assert.ok(c.id === chunks[0].id && c.object === 'chat.completion.chunk');

  // no include_usage: no usage chunk
  const ch2 = await collect(await client.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 3, stream: true }));
  assert.ok(ch2.every((c) => c.choices.length === 1 && !c.usage));

  // n = 2
  const r2 = await client.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 5, n: 2, seed: 3 });
  assert.deepEqual(r2.choices.map((c) => c.index), [0, 1]);
  const s2 = await collect(await client.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 5, n: 2, seed: 3, stream: true }));
  const byIdx = [0, 1].map((i) => s2.filter((c) => c.choices[0]?.index === i).map((c) => (c.choices[0].delta.reasoning_content || '') + (c.choices[0].delta.content || '')).join(''));
  assert.deepEqual(byIdx, r2.choices.map((c) => (c.message.reasoning_content || '') + (c.message.content || '')));

  // seed reproducibility at temperature 1
  const a = await client.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 12, temperature: 1, seed: 42 });
  const b = await client.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 12, temperature: 1, seed: 42 });
  assert.deepEqual(a.choices[0].message, b.choices[0].message);

  // chat logprobs
  const lp = await client.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 4, logprobs: true, top_logprobs: 3 });
  const content = lp.choices[0].logprobs.content;
  assert.equal(content.length, lp.usage.completion_tokens);
  for (const t of content) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.bytes));
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[2].logprob);
  }

  // completions, whole and streamed, with logprobs
  const c1 = await client.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 5, temperature: 0, logprobs: 2 });
  assert.equal(c1.object, 'text_completion');
  assert.equal(c1.choices[0].logprobs.tokens.length, c1.usage.completion_tokens);
  assert.equal(c1.choices[0].logprobs.top_logprobs[0] && Object.keys(c1.choices[0].logprobs.top_logprobs[0]).length, 2);
  const cs = await collect(await client.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } }));
  assert.equal(cs.map((c) => c.choices[0]?.text || '').join(''), c1.choices[0].text);
  assert.deepEqual(cs[cs.length - 1].usage, c1.usage);
  const cid = await client.completions.create({ model: 'tiny', prompt: [1, 2, 3, 4], max_tokens: 3 });
  assert.equal(cid.usage.prompt_tokens, 4);
  console.log('basic ok');
});
