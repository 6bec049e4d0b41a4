// Scripted "<think>plan</think>Hello" (via --mock-output): messages whole and streamed,
// thinking split from text, thinking disabled, stop_sequences, max_tokens, system prompts,
// tool_use/tool_result history, count_tokens vs usage vs the OpenAI route's count.
const { client, assert, main, openaiCount, checkEvents, events } = require('./anthropic_lib.cjs');
const msgs = [{ role: 'user', content: 'Say hello' }];
const base = { model: 'tiny', max_tokens: 256, messages: msgs };

function checkMessage(m) {
  assert.match(m.id, /^msg_[0-9a-f]{32}$/);
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, 'tiny');
  assert.ok(m.usage.input_tokens > 0 && m.usage.output_tokens > 0);
}

main(async () => {
  // whole: thinking block then text block
  const m = await client.messages.create(base);
  checkMessage(m);
  assert.deepEqual(m.content, [{ type: 'thinking', thinking: 'plan', signature: '' }, { type: 'text', text: 'Hello' }]);
  assert.equal(m.stop_reason, 'end_turn');
  assert.equal(m.stop_sequence, null);
  const count = await client.messages.countTokens({ model: 'tiny', messages: msgs });
  assert.equal(count.input_tokens, m.usage.input_tokens);
  assert.equal(count.input_tokens, await openaiCount({ messages: msgs }));

  // streamed: the event grammar, and the SDK's own accumulation
  const ev = await events(base);
  const { blocks, start, delta } = checkEvents(ev);
  assert.deepEqual(blocks, m.content);
  assert.match(start.id, /^msg_/);
  assert.equal(start.usage.input_tokens, m.usage.input_tokens);
  assert.equal(delta.delta.stop_reason, 'end_turn');
  assert.equal(delta.usage.output_tokens, m.usage.output_tokens);
  const stream = client.messages.stream(base);
  let text = '';
  stream.on('text', (t) => { text += t; });
  const fm = await stream.finalMessage();
  assert.equal(text, 'Hello');
  assert.deepEqual(fm.content, m.content);
  assert.equal(fm.stop_reason, 'end_turn');
  assert.equal(fm.usage.output_tokens, m.usage.output_tokens);

  // raw SSE framing: `event: NAME` matches the data's type
  const raw = await (await fetch(process.env.BASE + '/v1/messages', {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': 'x', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ ...base, stream: true }),
  })).text();
  const frames = raw.split('\n\n').filter(Boolean);
  assert.ok(frames.length >= 8);
  for (const f of frames) {
    const [ev0, data, ...rest] = f.split('\n');
    assert.equal(rest.length, 0, f);
    assert.equal(ev0.slice(0, 7), 'event: ');
    assert.equal(JSON.parse(data.replace(/^data: /, '')).type, ev0.slice(7));
  }

  // thinking enabled is the same; disabled: the template closes the block, all is text
  const on = await client.messages.create({ ...base, thinking: { type: 'enabled', budget_tokens: 1024 } });
  assert.deepEqual(on.content, m.content);
  const off = await client.messages.create({ ...base, thinking: { type: 'disabled' } });
  assert.deepEqual(off.content, [{ type: 'text', text: '<think>plan</think>Hello' }]);
  const offCount = await client.messages.countTokens({ model: 'tiny', messages: msgs, thinking: { type: 'disabled' } });
  assert.equal(offCount.input_tokens, off.usage.input_tokens);
  assert.equal(offCount.input_tokens, await openaiCount({ messages: msgs, chat_template_kwargs: { enable_thinking: false } }));

  // stop sequences: cut before the match, which is named; streamed the same
  for (const [stops, text2, seq] of [[['ll'], 'He', 'll'], [['zzz', 'lo', 'H'], '', 'H'], [['zzz', 'lo'], 'Hel', 'lo'], [['zzz'], 'Hello', null]]) {
    const req = { ...base, stop_sequences: stops, thinking: { type: 'enabled', budget_tokens: 1024 } };
    const s = await client.messages.create(req);
    const want = text2 ? [{ type: 'thinking', thinking: 'plan', signature: '' }, { type: 'text', text: text2 }] : [{ type: 'thinking', thinking: 'plan', signature: '' }];
    assert.deepEqual(s.content, want, JSON.stringify(stops));
    assert.equal(s.stop_reason, seq ? 'stop_sequence' : 'end_turn');
    assert.equal(s.stop_sequence, seq);
    const se = checkEvents(await events(req));
    assert.deepEqual(se.blocks, want);
    assert.equal(se.delta.delta.stop_reason, s.stop_reason);
    assert.equal(se.delta.delta.stop_sequence, seq);
  }
  // a stop sequence inside the thinking text ends it there too
  const st = await client.messages.create({ ...base, stop_sequences: ['an'] });
  assert.deepEqual(st.content, [{ type: 'thinking', thinking: 'pl', signature: '' }]);
  assert.equal(st.stop_sequence, 'an');

  // max_tokens: cut short
  const short = await client.messages.create({ ...base, max_tokens: 2 });
  assert.equal(short.stop_reason, 'max_tokens');
  assert.equal(short.usage.output_tokens, 2);
  assert.equal(short.content[0].type, 'thinking');
  const shortEv = checkEvents(await events({ ...base, max_tokens: 2 }));
  assert.equal(shortEv.delta.delta.stop_reason, 'max_tokens');

  // system prompt: a string, or text blocks joined by "\n"; same prompt as the OpenAI system message
  const sysS = await client.messages.create({ ...base, system: 'You are terse.\nAnswer in French.' });
  const sysB = await client.messages.countTokens({ model: 'tiny', messages: msgs, system: [{ type: 'text', text: 'You are terse.' }, { type: 'text', text: 'Answer in French.' }] });
  const sysRef = await openaiCount({ messages: [{ role: 'system', content: 'You are terse.\nAnswer in French.' }, ...msgs] });
  assert.equal(sysS.usage.input_tokens, sysRef);
  assert.equal(sysB.input_tokens, sysRef);
  assert.notEqual(sysRef, m.usage.input_tokens);

  // multi-turn history with thinking, tool_use and tool_result blocks -> the OpenAI-shaped chat
  const tools = [{ name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } }];
  const history = [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: [
      { type: 'thinking', thinking: 'I need the tool.', signature: 'sig' },
      { type: 'text', text: 'Checking.' },
      { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris', days: 3 } },
      { type: 'tool_use', id: 'toolu_02', name: 'get_weather', input: { city: 'Lyon' } }] },
    { role: 'user', content: [
      { type: 'tool_result', tool_use_id: 'toolu_01', content: 'Sunny, 20C' },
      { type: 'tool_result', tool_use_id: 'toolu_02', content: [{ type: 'text', text: 'Rain' }, { type: 'text', text: '12C' }] },
      { type: 'text', text: 'And tomorrow?' }] },
    { role: 'assistant', content: [{ type: 'redacted_thinking', data: 'opaque' }, { type: 'text', text: 'Also sunny.' }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_03', content: 'boom', is_error: true }] },
  ];
  const oaTools = tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.input_schema } }));
  const oaHistory = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: 'Checking.', reasoning_content: 'I need the tool.', tool_calls: [
      { id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","days":3}' } },
      { id: 'toolu_02', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Lyon"}' } }] },
    { role: 'tool', tool_call_id: 'toolu_01', content: 'Sunny, 20C' },
    { role: 'tool', tool_call_id: 'toolu_02', content: 'Rain\n12C' },
    { role: 'user', content: 'And tomorrow?' },
    { role: 'assistant', content: 'Also sunny.' },
    { role: 'tool', tool_call_id: 'toolu_03', content: 'Error: boom' },
  ];
  const hreq = { ...base, system: 'Be brief.', messages: history, tools };
  const h = await client.messages.create(hreq);
  assert.equal(h.stop_reason, 'end_turn');
  const hc = await client.messages.countTokens({ model: 'tiny', system: 'Be brief.', messages: history, tools });
  assert.equal(hc.input_tokens, h.usage.input_tokens);
  assert.equal(hc.input_tokens, await openaiCount({ messages: oaHistory, tools: oaTools }));
  // the reference is sensitive to what the conversion must keep
  assert.notEqual(hc.input_tokens, await openaiCount({ messages: oaHistory.filter((x) => x.role !== 'tool'), tools: oaTools }));
  assert.notEqual(hc.input_tokens, await openaiCount({ messages: oaHistory.map((x) => ({ ...x, reasoning_content: undefined })), tools: oaTools }));
  console.log('anthropic basic ok');
});
