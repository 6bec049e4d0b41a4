// 64 concurrent streaming clients; about a third disconnect after a random number
// of chunks. Every other stream must end with a finish_reason (the client saw
// [DONE]); the server must still answer afterwards.
const { client, assert, main } = require('./client.cjs');
const N = +(process.env.CLIENTS || 64);
let seed = 12345;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

async function one(i) {
  const abort = rnd() < 0.33 ? 1 + Math.floor(rnd() * 6) : 0;
  const ac = new AbortController();
  const chat = i % 2 === 0;
  const args = { model: 'tiny', max_tokens: 24 + (i % 16), stream: true, temperature: 1, seed: i };
  const stream = chat
    ? await client.chat.completions.create({ ...args, messages: [{ role: 'user', content: `client ${i}` }] }, { signal: ac.signal })
    : await client.completions.create({ ...args, prompt: `client ${i} says` }, { signal: ac.signal });
  let n = 0, finish = null;
  try {
    for await (const c of stream) {
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (abort && ++n >= abort) { ac.abort(); return 'aborted'; }
    }
  } catch (e) {
    if (abort) return 'aborted';
    throw e;
  }
  assert.ok(['length', 'stop'].includes(finish), `client ${i}: finish ${finish}`);
  return 'done';
}

main(async () => {
  const res = await Promise.all(Array.from({ length: N }, (_, i) => one(i)));
  const done = res.filter((r) => r === 'done').length;
  console.log(`${done} completed, ${N - done} disconnected`);
  assert.ok(done > 0);
  const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'still there?' }], max_tokens: 3 });
  assert.equal(r.choices.length, 1);
});
