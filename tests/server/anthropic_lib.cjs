// Shared by the anthropic_*.cjs scripts: the real @anthropic-ai/sdk client on $BASE,
// an OpenAI-side prompt count as the independent reference for converted requests,
// and a checker for the streamed event grammar.
const Anthropic = require('@anthropic-ai/sdk');
const assert = require('node:assert/strict');
const client = new Anthropic({ baseURL: process.env.BASE, apiKey: process.env.API_KEY || 'x', maxRetries: 0, timeout: 60000 });
function main(fn) { fn().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); }); }

// Prompt tokens of an OpenAI-shaped chat through the OpenAI route's own conversion (/tokenize).
async function openaiCount(body) {
  const r = await fetch(process.env.BASE + '/tokenize', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer ' + (process.env.API_KEY || 'x') },
    body: JSON.stringify({ model: 'tiny', ...body }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()).count;
}

// Checks Anthropic's event order: message_start, then per block start/deltas/stop with
// consecutive indexes and delta types matching the block, pings anywhere, message_delta,
// message_stop last. Returns the blocks rebuilt from the events (tool input parsed).
const deltaFor = { text: 'text_delta', thinking: 'thinking_delta', tool_use: 'input_json_delta' };
function checkEvents(events) {
  const ev = events.filter((e) => e.type !== 'ping');
  assert.equal(ev[0].type, 'message_start');
  assert.deepEqual(ev[0].message.content, []);
  assert.equal(ev[0].message.role, 'assistant');
  assert.equal(ev[0].message.stop_reason, null);
  assert.equal(typeof ev[0].message.usage.input_tokens, 'number');
  assert.equal(ev.at(-1).type, 'message_stop');
  const md = ev.at(-2);
  assert.equal(md.type, 'message_delta');
  assert.equal(typeof md.usage.output_tokens, 'number');
  const blocks = [];
  let open = null;
  for (const e of ev.slice(1, -2)) {
    if (e.type === 'content_block_start') {
      assert.equal(open, null, 'block started inside a block');
      assert.equal(e.index, blocks.length);
      open = { ...e.content_block, _json: '' };
      blocks.push(open);
    } else if (e.type === 'content_block_delta') {
      assert.ok(open && e.index === blocks.length - 1, 'delta outside its block');
      assert.equal(e.delta.type, deltaFor[open.type]);
      if (open.type === 'text') open.text += e.delta.text;
      else if (open.type === 'thinking') open.thinking += e.delta.thinking;
      else open._json += e.delta.partial_json;
    } else if (e.type === 'content_block_stop') {
      assert.ok(open && e.index === blocks.length - 1, 'stop for a block that is not open');
      open = null;
    } else {
      assert.fail('unexpected event ' + e.type);
    }
  }
  assert.equal(open, null, 'a block was never stopped');
  for (const b of blocks) {
    if (b.type === 'tool_use') b.input = b._json ? JSON.parse(b._json) : {};
    delete b._json;
  }
  return { blocks, start: ev[0].message, delta: md };
}

async function events(req) {
  const out = [];
  for await (const e of await client.messages.create({ ...req, stream: true })) out.push(e);
  return out;
}

module.exports = { Anthropic, client, assert, main, openaiCount, checkEvents, events };
