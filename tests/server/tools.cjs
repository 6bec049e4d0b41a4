// Scripted tool-call outputs (via --mock-output, one server per script): auto,
// required, named, several calls, typed arguments, streamed and whole, and
// .stream().finalChatCompletion() reassembling the argument deltas.
const { client, assert, collect, main } = require('./client.cjs');
const tools = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' }, metric: { type: 'boolean' } } } } },
  { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } } } },
];
const msgs = [{ role: 'user', content: 'weather?' }];
const want = [
  { name: 'get_weather', args: { city: '北京', days: 3, metric: true } },
  { name: 'add', args: { a: 1.5, b: 2 } },
];
function check(calls) {
  assert.equal(calls.length, 2);
  calls.forEach((c, i) => {
    assert.equal(c.type, 'function');
    assert.ok(c.id && typeof c.id === 'string');
    assert.equal(c.function.name, want[i].name);
    assert.deepEqual(JSON.parse(c.function.arguments), want[i].args);
  });
}
main(async () => {
  const forcedRun = process.env.FORCED === '1';
  const choices = forcedRun ? ['required', { type: 'function', function: { name: 'get_weather' } }] : [undefined, 'auto'];
  for (const tool_choice of choices) {
    const req = { model: 'tiny', messages: msgs, tools, ...(tool_choice ? { tool_choice } : {}) };
    const r = await client.chat.completions.create(req);
    assert.equal(r.choices[0].finish_reason, 'tool_calls', JSON.stringify(tool_choice));
    check(r.choices[0].message.tool_calls);
    assert.equal(r.choices[0].message.reasoning_content, forcedRun ? null : 'Need the weather.');
    const ch = await collect(await client.chat.completions.create({ ...req, stream: true }));
    const fin = ch.map((c) => c.choices[0]?.finish_reason).filter(Boolean);
    assert.deepEqual(fin, ['tool_calls']);
    const first = ch.filter((c) => c.choices[0]?.delta?.tool_calls).map((c) => c.choices[0].delta.tool_calls[0]).filter((t) => t.id);
    assert.deepEqual(first.map((t) => t.function.name), ['get_weather', 'add']);
    const final = await client.chat.completions.stream(req).finalChatCompletion();
    check(final.choices[0].message.tool_calls);
  }
  if (forcedRun) { console.log('forced tools ok'); return; }
  // tool_choice none: the text is content, no parsing
  const n = await client.chat.completions.create({ model: 'tiny', messages: msgs, tools, tool_choice: 'none' });
  assert.equal(n.choices[0].finish_reason, 'stop');
  assert.deepEqual(n.choices[0].message.tool_calls, []);
  assert.ok(n.choices[0].message.content.includes('<tool_call>'));
  console.log('tools ok');
});
