// Forced tool calls with real sampling on the random tiny model (tests/server/test_tool_choice.sh): tool_choice
// required and named through the official OpenAI client (chat, n = 4, streamed and whole) and Anthropic's any / tool
// through @anthropic-ai/sdk, and tool_choice auto with strict functions. The grammar makes every call's arguments follow its tool's schema, whatever the model
// "wants"; this prints one JSON line per call {api, name, arguments} for the shell to validate with
// python3-jsonschema, and asserts what needs no validator (call counts, names, finish reasons, stream = whole).
const { client, assert, collect, main } = require('./client.cjs');
const Anthropic = require('@anthropic-ai/sdk');
const anthropic = new Anthropic({ baseURL: process.env.BASE, apiKey: 'x', maxRetries: 0, timeout: 60000 });
const tools = JSON.parse(process.env.TOOLS);
const out = (api, name, args) => console.log(JSON.stringify({ api, name, arguments: JSON.parse(args) }));
const msgs = [{ role: 'user', content: 'Call a tool.' }];

main(async () => {
  let finished = 0;
  for (const [k, tool_choice] of [['required', 'required'], ['named', { type: 'function', function: { name: 'set_alarm' } }]]) {
    for (const parallel of [true, false]) {
      const req = { model: 'tiny', messages: msgs, tools, tool_choice, parallel_tool_calls: parallel, max_tokens: 400,
        temperature: 1, seed: parallel ? 7 : 8, n: 4, chat_template_kwargs: { enable_thinking: false } };
      const r = await client.chat.completions.create(req);
      for (const c of r.choices) {
        if (c.finish_reason === 'length') continue;
        assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(c));
        const calls = c.message.tool_calls;
        assert.ok(calls.length >= 1);
        if (k === 'named' || !parallel) assert.equal(calls.length, 1);
        for (const t of calls) {
          if (k === 'named') assert.equal(t.function.name, 'set_alarm');
          out('chat', t.function.name, t.function.arguments);
        }
        finished++;
      }
      // streamed, n = 1: the same calls as the whole reply with the same seed
      const one = { ...req, n: 1 };
      const whole = await client.chat.completions.create(one);
      const fin = await client.chat.completions.stream(one).finalChatCompletion();
      assert.deepEqual(fin.choices[0].message.tool_calls.map((t) => [t.function.name, t.function.arguments]),
        whole.choices[0].message.tool_calls.map((t) => [t.function.name, t.function.arguments]));
    }
  }
  // with thinking on (MiMo's default) a forced call's grammar applies after the reasoning: the model thinks first
  // (logit_bias makes this random model end its reasoning at once; the grammar then masks </think> out)
  const think = await (await fetch(process.env.BASE + '/tokenize', { method: 'POST', headers: { 'content-type':
    'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: '</think>' }) })).json();
  assert.equal(think.tokens.length, 1);
  for (const tool_choice of ['required', { type: 'function', function: { name: 'lookup' } }]) {
    const r = await client.chat.completions.create({ model: 'tiny', messages: msgs, tools, tool_choice, max_tokens: 400,
      temperature: 1, seed: 5, n: 4, logit_bias: { [think.tokens[0]]: 100 } });
    for (const c of r.choices) {
      if (c.finish_reason === 'length') continue;
      assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(c));
      assert.equal(c.message.content, null); // the whitespace before the call is not content
      for (const t of c.message.tool_calls) {
        if (tool_choice.function) assert.equal(t.function.name, 'lookup');
        out('thinking', t.function.name, t.function.arguments);
      }
      finished++;
    }
  }
  // tool_choice auto with strict functions: a call the model opens with its <tool_call> token follows the schemas
  // (logit_bias makes this random model open one at once; parallel calls off, so the output ends with it)
  const open = await (await fetch(process.env.BASE + '/tokenize', { method: 'POST', headers: { 'content-type':
    'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: '<tool_call>' }) })).json();
  assert.equal(open.tokens.length, 1);
  const strict = tools.map((t) => ({ ...t, function: { ...t.function, strict: true } }));
  const r = await client.chat.completions.create({ model: 'tiny', messages: msgs, tools: strict, max_tokens: 400,
    temperature: 1, seed: 3, n: 4, parallel_tool_calls: false, logit_bias: { [open.tokens[0]]: 100 } });
  for (const c of r.choices) {
    if (c.finish_reason === 'length') continue;
    assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(c));
    assert.equal(c.message.tool_calls.length, 1);
    out('auto-strict', c.message.tool_calls[0].function.name, c.message.tool_calls[0].function.arguments);
    finished++;
  }
  // the Responses API: functions are strict unless they say strict: false, so the call follows the schemas too
  for (let seed = 1; seed <= 3; seed++) {
    const body = { model: 'tiny', input: 'Call a tool.', max_output_tokens: 400, temperature: 1, seed,
      parallel_tool_calls: false, logit_bias: { [open.tokens[0]]: 100 },
      tools: tools.map((t) => ({ type: 'function', name: t.function.name, parameters: t.function.parameters })) };
    const r = await (await fetch(process.env.BASE + '/v1/responses', { method: 'POST',
      headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json();
    if (r.status !== 'completed') continue;
    const calls = r.output.filter((o) => o.type === 'function_call');
    assert.equal(calls.length, 1, JSON.stringify(r.output));
    out('responses', calls[0].name, calls[0].arguments);
    finished++;
  }
  for (const tool_choice of [{ type: 'any' }, { type: 'tool', name: 'lookup' }]) {
    for (let seed = 0; seed < 3; seed++) {
      const r = await anthropic.messages.create({ model: 'tiny', max_tokens: 400, messages: msgs, temperature: 1,
        tools: tools.map((t) => ({ name: t.function.name, input_schema: t.function.parameters })), tool_choice,
        metadata: { user_id: 's' + seed }, top_k: 50 + seed });
      if (r.stop_reason === 'max_tokens') continue;
      assert.equal(r.stop_reason, 'tool_use', JSON.stringify(r));
      const uses = r.content.filter((b) => b.type === 'tool_use');
      assert.ok(uses.length >= 1);
      for (const u of uses) {
        if (tool_choice.name) assert.equal(u.name, 'lookup');
        out('anthropic', u.name, JSON.stringify(u.input));
      }
      finished++;
    }
  }
  console.error(`finished ${finished} forced tool-call outputs`);
  assert.ok(finished >= 10, `only ${finished} outputs finished`);
});
