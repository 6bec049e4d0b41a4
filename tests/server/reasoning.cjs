// Scripted "<think>Let me think.</think>The answer is 4." (via --mock-output):
// reasoning_content and content split, streamed and whole; thinking off -> all content.
const { client, assert, collect, main } = require('./client.cjs');
const msgs = [{ role: 'user', content: '2+2?' }];
main(async () => {
  const r = await client.chat.completions.create({ model: 'tiny', messages: msgs });
  assert.equal(r.choices[0].message.reasoning_content, 'Let me think.');
  assert.equal(r.choices[0].message.content, 'The answer is 4.');
  const ch = await collect(await client.chat.completions.create({ model: 'tiny', messages: msgs, stream: true }));
  const rs = ch.map((c) => c.choices[0]?.delta?.reasoning_content || '').join('');
  const ct = ch.map((c) => c.choices[0]?.delta?.content || '').join('');
  assert.equal(rs, 'Let me think.');
  assert.equal(ct, 'The answer is 4.');
  // thinking disabled: the template already closed the block, so nothing is reasoning
  const off = await client.chat.completions.create({ model: 'tiny', messages: msgs, chat_template_kwargs: { enable_thinking: false } });
  assert.equal(off.choices[0].message.reasoning_content, null);
  assert.equal(off.choices[0].message.content, '<think>Let me think.</think>The answer is 4.');
  // completions never split
  const c = await client.completions.create({ model: 'tiny', prompt: 'x' });
  assert.equal(c.choices[0].text, '<think>Let me think.</think>The answer is 4.');
  console.log('reasoning ok');
});
