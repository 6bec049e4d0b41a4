// Scripted tool calls in MiMo's format (via --mock-output): tool_use blocks whole and
// streamed (input_json_delta reassembled by the SDK's finalMessage), typed inputs from
// input_schema, tool_choice auto/none, and (FORCED=1) any/tool, which force the call.
const { client, assert, main, checkEvents, events } = require('./anthropic_lib.cjs');
const tools = [
  { name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } },
  { name: 'add', input_schema: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } } },
];
const msgs = [{ role: 'user', content: 'Weather in Paris and 1.5+2?' }];
const forced = process.env.FORCED === '1';
const want = [
  { type: 'tool_use', name: 'get_weather', input: { city: 'Paris', days: 3 } },
  { type: 'tool_use', name: 'add', input: { a: 1.5, b: 2 } },
];
function checkBlocks(content) {
  const lead = forced ? [] : [{ type: 'thinking', thinking: 'Need the tools.', signature: '' }];
  assert.deepEqual(content.slice(0, lead.length), lead);
  const calls = content.slice(lead.length);
  assert.equal(calls.length, 2, JSON.stringify(content));
  const ids = new Set();
  calls.forEach((c, i) => {
    assert.match(c.id, /^toolu_[0-9a-f]{32}$/);
    ids.add(c.id);
    assert.deepEqual({ ...c, id: undefined }, { ...want[i], id: undefined });
  });
  assert.equal(ids.size, 2);
}
main(async () => {
  const choices = forced ? [{ type: 'any' }, { type: 'tool', name: 'get_weather' }] : [undefined, { type: 'auto' }];
  for (const tool_choice of choices) {
    const req = { model: 'tiny', max_tokens: 512, messages: msgs, tools, ...(tool_choice ? { tool_choice } : {}) };
    const m = await client.messages.create(req);
    assert.equal(m.stop_reason, 'tool_use', JSON.stringify(tool_choice));
    assert.equal(m.stop_sequence, null);
    checkBlocks(m.content);
    const { blocks, delta } = checkEvents(await events(req));
    checkBlocks(blocks);
    assert.equal(delta.delta.stop_reason, 'tool_use');
    // the SDK's own reassembly of the partial_json fragments
    const stream = client.messages.stream(req);
    const frags = [];
    stream.on('inputJson', (p) => frags.push(p));
    const fm = await stream.finalMessage();
    checkBlocks(fm.content);
    assert.equal(fm.stop_reason, 'tool_use');
    assert.ok(frags.length >= 2);
    // the calls go back as history with their results: the request is accepted
    const next = await client.messages.countTokens({ model: 'tiny', tools, messages: [...msgs, { role: 'assistant', content: fm.content },
      { role: 'user', content: fm.content.filter((b) => b.type === 'tool_use').map((b) => ({ type: 'tool_result', tool_use_id: b.id, content: 'ok' })) }] });
    assert.ok(next.input_tokens > m.usage.input_tokens);
  }
  if (forced) {
    // Anthropic refuses extended thinking with a forced tool
    await assert.rejects(client.messages.create({ model: 'tiny', max_tokens: 64, messages: msgs, tools, tool_choice: { type: 'any' }, thinking: { type: 'enabled', budget_tokens: 1024 } }),
      (e) => e.status === 400 && e.error.error.type === 'invalid_request_error');
    console.log('anthropic forced tools ok');
    return;
  }
  // none: the calls are not parsed; the text stays text
  const n = await client.messages.create({ model: 'tiny', max_tokens: 512, messages: msgs, tools, tool_choice: { type: 'none' } });
  assert.equal(n.stop_reason, 'end_turn');
  assert.deepEqual(n.content.map((b) => b.type), ['thinking', 'text']);
  assert.ok(n.content[1].text.startsWith('<tool_call>\n<function=get_weather>'));
  // no tools at all: same
  const nt = await client.messages.create({ model: 'tiny', max_tokens: 512, messages: msgs });
  assert.deepEqual(nt.content, n.content);
  console.log('anthropic tools ok');
});
