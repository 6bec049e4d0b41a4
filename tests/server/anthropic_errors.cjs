// The SDK's view of errors (a real model, --api-key sekret): typed error classes with
// Anthropic's body, and a real generation streamed and whole through the same key.
const { Anthropic, client, assert, main, checkEvents, events } = require('./anthropic_lib.cjs');
const msgs = [{ role: 'user', content: 'hi' }];
async function expectErr(p, cls, status, type) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof cls, `${e.constructor.name} is not ${cls.name}: ${e.message}`);
    assert.equal(e.status, status);
    assert.deepEqual(Object.keys(e.error).sort(), ['error', 'type']);
    assert.equal(e.error.type, 'error');
    assert.equal(e.error.error.type, type);
    assert.ok(typeof e.error.error.message === 'string' && e.error.error.message.length > 0);
    return true;
  });
}
main(async () => {
  await expectErr(client.messages.create({ model: 'claude-nope', max_tokens: 8, messages: msgs }), Anthropic.NotFoundError, 404, 'not_found_error');
  await expectErr(client.messages.countTokens({ model: 'claude-nope', messages: msgs }), Anthropic.NotFoundError, 404, 'not_found_error');
  await expectErr(client.messages.create({ model: 'tiny', max_tokens: 8, messages: [] }), Anthropic.BadRequestError, 400, 'invalid_request_error');
  await expectErr(client.messages.create({ model: 'tiny', max_tokens: 8, messages: [{ role: 'system', content: 'x' }] }), Anthropic.BadRequestError, 400, 'invalid_request_error');
  const bad = new Anthropic({ baseURL: process.env.BASE, apiKey: 'wrong', maxRetries: 0 });
  await expectErr(bad.messages.create({ model: 'tiny', max_tokens: 8, messages: msgs }), Anthropic.AuthenticationError, 401, 'authentication_error');
  // Authorization: Bearer works as well as x-api-key
  const bearer = new Anthropic({ baseURL: process.env.BASE, apiKey: null, authToken: process.env.API_KEY, maxRetries: 0 });
  assert.ok((await bearer.messages.countTokens({ model: 'tiny', messages: msgs })).input_tokens > 0);

  // the real (tiny, random) model: bounded by max_tokens, usage consistent
  const m = await client.messages.create({ model: 'tiny', max_tokens: 6, messages: msgs, temperature: 0 });
  assert.ok(['end_turn', 'max_tokens'].includes(m.stop_reason));
  assert.ok(m.usage.output_tokens >= 1 && m.usage.output_tokens <= 6);
  const { delta } = checkEvents(await events({ model: 'tiny', max_tokens: 6, messages: msgs, temperature: 0 }));
  assert.ok(delta.usage.output_tokens >= 1 && delta.usage.output_tokens <= 6);
  // a max_tokens beyond the context is bounded by it (Anthropic clients ask for large budgets)
  const big = await client.messages.create({ model: 'tiny', max_tokens: 100000, messages: msgs, temperature: 0, thinking: { type: 'disabled' } });
  assert.ok(big.usage.input_tokens + big.usage.output_tokens <= 128);
  // a client that goes away mid-stream: the server cancels and stays healthy (ASan: nothing leaked)
  for (let i = 0; i < 4; i++) {
    const s = client.messages.stream({ model: 'tiny', max_tokens: 100, messages: msgs, thinking: { type: 'disabled' } });
    await new Promise((res) => { s.on('streamEvent', () => { s.abort(); res(); }); s.on('error', res); s.on('end', res); });
    await s.done().catch(() => {});
  }
  assert.equal((await fetch(process.env.BASE + '/health')).status, 200);
  console.log('anthropic sdk errors ok');
});
