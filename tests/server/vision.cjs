// Images through the official clients (tests/server/test_vision.sh): the OpenAI client's image_url parts (data: and
// file:// URLs, a base64 string with whitespace as clients wrap it), streamed and whole, and the Anthropic client's
// base64 image blocks. Prints one JSON line with what the shell script compares against `mimo logits --image`.
const fs = require('node:fs');
const { client, assert, collect, main } = require('./client.cjs');
const Anthropic = require('@anthropic-ai/sdk');
const anth = new Anthropic({ baseURL: process.env.BASE, apiKey: 'x', maxRetries: 0, timeout: 120000 });
const png = fs.readFileSync(process.env.IMG).toString('base64');
const dataUrl = 'data:image/png;base64,' + png;
const parts = (url) => [{ type: 'text', text: 'What is in ' }, { type: 'image_url', image_url: { url } },
  { type: 'text', text: ' this picture?' }];
const ask = (url, extra = {}) => client.chat.completions.create({
  model: 'tiny', messages: [{ role: 'user', content: parts(url) }], max_tokens: 4, temperature: 0, logprobs: true,
  top_logprobs: 1, ...extra });

main(async () => {
  const r = await ask(dataUrl);
  const lp = r.choices[0].logprobs.content;
  assert.ok(lp.length >= 1);
  // the same image as a file under --allowed-local-media-path, and wrapped base64: the same reply
  const f = await ask('file://' + process.env.IMG);
  assert.deepEqual(f.choices[0].logprobs.content.map((x) => x.token), lp.map((x) => x.token));
  assert.equal(f.usage.prompt_tokens, r.usage.prompt_tokens);
  const wrapped = await ask('data:image/png;base64,' + png.replace(/(.{60})/g, '$1\n'));
  assert.deepEqual(wrapped.choices[0].logprobs.content.map((x) => x.token), lp.map((x) => x.token));
  // streamed: the same tokens
  const chunks = await collect(await ask(dataUrl, { stream: true, stream_options: { include_usage: true } }));
  const sTok = chunks.flatMap((c) => c.choices[0]?.logprobs?.content || []).map((x) => x.token);
  assert.deepEqual(sTok, lp.map((x) => x.token));
  assert.equal(chunks[chunks.length - 1].usage.prompt_tokens, r.usage.prompt_tokens);
  // the same image again: the prefix cache serves the whole prompt but its last token (it knows the image's
  // positions by its rows); another image with the same text: only what comes before the image, and another answer
  const again = await ask(dataUrl);
  assert.deepEqual(again.choices[0].logprobs.content.map((x) => x.token), lp.map((x) => x.token));
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, r.usage.prompt_tokens - 1);
  const other = await ask('data:image/png;base64,' + fs.readFileSync(process.env.IMG2).toString('base64'));
  assert.ok(other.usage.prompt_tokens_details.cached_tokens < r.usage.prompt_tokens - 20,
    `another image found ${other.usage.prompt_tokens_details.cached_tokens} cached tokens`);
  assert.notEqual(other.choices[0].logprobs.content[0].logprob, lp[0].logprob);
  // text only: fewer prompt tokens by the image's tokens (its placeholder renders as 3 before it is expanded)
  const t = await client.chat.completions.create({ model: 'tiny', max_tokens: 1, temperature: 0,
    messages: [{ role: 'user', content: 'What is in  this picture?' }] });

  // Anthropic: base64 image blocks; count_tokens counts the image's tokens without running the tower
  const am = [{ role: 'user', content: [{ type: 'text', text: 'Describe ' },
    { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } }] }];
  const a = await anth.messages.create({ model: 'tiny', max_tokens: 4, messages: am });
  assert.equal(a.type, 'message');
  const c1 = await anth.messages.countTokens({ model: 'tiny', messages: am });
  const c0 = await anth.messages.countTokens({ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe ' }] }] });
  assert.equal(a.usage.input_tokens, c1.input_tokens);
  // a tool's result with an image (a screenshot): the image goes where the result stands, counted the same
  const tools = [{ name: 'shot', description: 'screenshot', input_schema: { type: 'object', properties: {} } }];
  const turn = (content) => [{ role: 'user', content: 'look' },
    { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'shot', input: {} }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content }] }];
  const shot = [{ type: 'text', text: 'here' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } }];
  const a2 = await anth.messages.create({ model: 'tiny', max_tokens: 4, tools, messages: turn(shot) });
  assert.equal(a2.type, 'message');
  const t1 = await anth.messages.countTokens({ model: 'tiny', tools, messages: turn(shot) });
  const t0 = await anth.messages.countTokens({ model: 'tiny', tools, messages: turn([shot[0]]) });
  assert.equal(t1.input_tokens - t0.input_tokens, c1.input_tokens - c0.input_tokens);
  console.log(JSON.stringify({ prompt_tokens: r.usage.prompt_tokens, text_tokens: t.usage.prompt_tokens,
    anthropic_image_delta: c1.input_tokens - c0.input_tokens, first_token: lp[0].token, first_logprob: lp[0].logprob }));
});
