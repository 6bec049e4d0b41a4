// Batched completions prompts (tests/server/test_batch_prompts.sh), with the official client. Reference: the same
// server answering each prompt on its own: choice prompt*n + j of the batch is choice j of that prompt's request
// (same seed), whole and streamed; usage is the sum; echo + logprobs (lm-evaluation-harness's loglikelihood shape)
// give each prompt's own records.
const { client, assert, collect, main } = require('./client.cjs');
main(async () => {
  const prompts = ['the quick brown fox', 'one two three', 'hello'];
  const common = { model: 'tiny', max_tokens: 12, temperature: 0.8, seed: 5, n: 2, ignore_eos: true };
  const alone = [];
  for (const p of prompts) alone.push(await client.completions.create({ ...common, prompt: p }));
  const batch = await client.completions.create({ ...common, prompt: prompts });
  assert.equal(batch.choices.length, prompts.length * 2);
  batch.choices.forEach((c, k) => {
    const want = alone[Math.floor(k / 2)].choices[k % 2];
    assert.equal(c.index, k);
    assert.equal(c.text, want.text, 'choice ' + k);
    assert.equal(c.finish_reason, want.finish_reason);
  });
  const sum = (f) => alone.reduce((a, r) => a + r.usage[f], 0);
  for (const f of ['prompt_tokens', 'completion_tokens', 'total_tokens']) assert.equal(batch.usage[f], sum(f), f);
  // streamed: the chunks of all prompts interleave; by index they reassemble the whole reply
  const chunks = await collect(await client.completions.create({ ...common, prompt: prompts, stream: true,
                                                                   stream_options: { include_usage: true } }));
  const texts = Array(prompts.length * 2).fill('');
  const fins = Array(prompts.length * 2).fill(null);
  for (const ch of chunks) for (const c of ch.choices) { texts[c.index] += c.text; if (c.finish_reason) fins[c.index] = c.finish_reason; }
  assert.deepEqual(texts, batch.choices.map((c) => c.text));
  assert.deepEqual(fins, batch.choices.map((c) => c.finish_reason));
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one id');
  assert.equal(chunks[chunks.length - 1].usage.completion_tokens, batch.usage.completion_tokens);
  // token-id prompts, echo with logprobs
  const ids = [[11, 22, 33, 44], [55, 66, 77]];
  const lpReq = { model: 'tiny', max_tokens: 1, temperature: 0, echo: true, logprobs: 1 };
  const lpAlone = [];
  for (const p of ids) lpAlone.push(await client.completions.create({ ...lpReq, prompt: p }));
  const lpBatch = await client.completions.create({ ...lpReq, prompt: ids });
  lpBatch.choices.forEach((c, k) => {
    assert.equal(c.text, lpAlone[k].choices[0].text);
    assert.deepEqual(c.logprobs.token_logprobs, lpAlone[k].choices[0].logprobs.token_logprobs);
  });
  // errors name the prompt
  const e = await client.completions.create({ ...common, prompt: ['ok', ''] }).catch((x) => x);
  assert.equal(e.status, 400);
  assert.ok(e.message.includes('prompt[1]'), e.message);
  console.log('ok   batched prompts = each prompt alone (' + batch.choices.length + ' choices, streamed too; token ids with echo + logprobs)');
});
