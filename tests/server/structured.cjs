// Structured outputs through the official OpenAI client (tests/server/test_structured.sh): response_format
// json_schema / json_object and vLLM's guided_choice / structured_outputs, in chat (thinking off) and completions,
// n = 3, streamed and whole. Prints one JSON line per output {schema, text, finish} for the shell to validate with
// python3-jsonschema; asserts what needs no validator here (choices, stream = whole).
const { client, assert, collect, main } = require('./client.cjs');
const schemas = JSON.parse(process.env.SCHEMAS);
const out = (schema, c, text) => console.log(JSON.stringify({ schema, text, finish: c.finish_reason }));

main(async () => {
  for (let k = 0; k < schemas.length; k++) {
    const rf = schemas[k] === null ? { type: 'json_object' }
      : { type: 'json_schema', json_schema: { name: 's' + k, schema: schemas[k], strict: true } };
    const chat = await client.chat.completions.create({
      model: 'tiny', messages: [{ role: 'user', content: 'Give me JSON.' }], max_tokens: 300, temperature: 1,
      seed: 11 + k, n: 3, response_format: rf, chat_template_kwargs: { enable_thinking: false } });
    for (const c of chat.choices) out(k, c, c.message.content);
    const comp = await client.completions.create({
      model: 'tiny', prompt: 'JSON:', max_tokens: 300, temperature: 0.8, seed: 5 + k, n: 3, response_format: rf });
    for (const c of comp.choices) out(k, c, c.text);
    // streamed: the same text as the whole reply with the same seed
    const chunks = await collect(await client.completions.create({
      model: 'tiny', prompt: 'JSON:', max_tokens: 300, temperature: 0.8, seed: 5 + k, n: 1, response_format: rf,
      stream: true }));
    const whole = await client.completions.create({
      model: 'tiny', prompt: 'JSON:', max_tokens: 300, temperature: 0.8, seed: 5 + k, n: 1, response_format: rf });
    assert.equal(chunks.map((c) => c.choices[0]?.text || '').join(''), whole.choices[0].text);
  }
  const choices = ['red', 'green', 'blue', 'bluish'];
  for (const body of [{ guided_choice: choices }, { structured_outputs: { choice: choices } }]) {
    const r = await client.completions.create({ model: 'tiny', prompt: 'Colour:', max_tokens: 10, temperature: 1,
      seed: 3, n: 5, ...body });
    for (const c of r.choices) {
      assert.ok(choices.includes(c.text), `'${c.text}' is not one of the choices`);
      assert.equal(c.finish_reason, 'stop');
    }
  }
});
