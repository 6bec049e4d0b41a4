// Scripted output "Hello world, STOP here. The end." (via --mock-output):
// stop strings cut the text, also when they span tokens, and never leak in streaming.
const { client, assert, collect, main } = require('./client.cjs');
const msgs = [{ role: 'user', content: 'x' }];
const base = { model: 'tiny', messages: msgs, chat_template_kwargs: { enable_thinking: false } };
async function both(extra) {
  const r = await client.chat.completions.create({ ...base, ...extra });
  const ch = await collect(await client.chat.completions.create({ ...base, ...extra, stream: true }));
  const parts = ch.map((c) => c.choices[0]?.delta?.content || '');
  const fin = ch.map((c) => c.choices[0]?.finish_reason).filter(Boolean);
  return { text: r.choices[0].message.content, fin: r.choices[0].finish_reason, parts, sfin: fin };
}
main(async () => {
  let x = await both({});
  assert.equal(x.text, 'Hello world, STOP here. The end.');
  assert.equal(x.fin, 'stop');
  for (const [stop, want] of [['STOP', 'Hello world, '], [['zzz', 'd, ST'], 'Hello worl'], ['o w', 'Hell'], ['end.', 'Hello world, STOP here. The '], ['Hello', '']]) {
    x = await both({ stop });
    assert.equal(x.text, want, `stop ${JSON.stringify(stop)}`);
    assert.equal(x.fin, 'stop');
    assert.equal(x.parts.join(''), want, `streamed, stop ${JSON.stringify(stop)}`);
    assert.deepEqual(x.sfin, ['stop']);
  }
  // a partial match that never completes is released (at the end too)
  x = await both({ stop: ['The end!', 'world!'] });
  assert.equal(x.text, 'Hello world, STOP here. The end.');
  assert.equal(x.parts.join(''), x.text);
  // max_tokens cuts with finish_reason length
  x = await both({ max_tokens: 2 });
  assert.equal(x.fin, 'length');
  assert.deepEqual(x.sfin, ['length']);
  // completions endpoint too
  const c = await client.completions.create({ model: 'tiny', prompt: 'x', stop: 'STOP' });
  assert.equal(c.choices[0].text, 'Hello world, ');
  assert.equal(c.choices[0].finish_reason, 'stop');
  console.log('stop ok');
});
