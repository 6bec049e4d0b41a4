// Shared helpers for the node test scripts: an OpenAI client on $BASE and tiny asserts.
const OpenAI = require('openai');
const assert = require('node:assert/strict');
const client = new OpenAI({ baseURL: process.env.BASE + '/v1', apiKey: process.env.API_KEY || 'x', maxRetries: 0, timeout: 60000 });
async function collect(stream) { const out = []; for await (const c of stream) out.push(c); return out; }
function main(fn) { fn().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); }); }
module.exports = { OpenAI, client, assert, collect, main };
