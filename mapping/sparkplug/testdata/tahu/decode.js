// decode.js: decodes Sparkplug B payloads with Eclipse Tahu's JavaScript
// library (npm sparkplug-payload), an implementation independent of edged's
// Go encoder. Input on stdin, one JSON object per line:
//   {"topic": "...", "payload": "<base64>"}
// Output on stdout, one JSON object per input line:
//   {"topic": "...", "payload": <what Tahu's decodePayload returns>,
//    "raw": [<each metric as Tahu's generated protobuf decoder sees it>]}
// or {"topic": "...", "error": "..."}. 64-bit integers (Long) are written as
// decimal strings so that no precision is lost on the way to Go.
'use strict';
const sparkplug = require('sparkplug-payload').get('spBv1.0');
const proto = require('sparkplug-payload/lib/sparkplugPayloadProto');
const Long = require('long');

const Payload = proto.org.eclipse.tahu.protobuf.Payload;

function replacer(key, value) {
  if (value instanceof Long) return value.toString();
  if (value && typeof value === 'object' && 'low' in value && 'high' in value && 'unsigned' in value) {
    return Long.fromBits(value.low, value.high, value.unsigned).toString();
  }
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (value && value.type === 'Buffer' && Array.isArray(value.data)) return Buffer.from(value.data).toString('base64');
  return value;
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const out = [];
  for (const line of input.split('\n')) {
    if (line.trim() === '') continue;
    const msg = JSON.parse(line);
    try {
      const buf = Buffer.from(msg.payload, 'base64');
      const payload = sparkplug.decodePayload(buf);
      const raw = Payload.toObject(Payload.decode(buf), { longs: String, defaults: false, oneofs: true }).metrics || [];
      out.push(JSON.stringify({ topic: msg.topic, payload, raw }, replacer));
    } catch (e) {
      out.push(JSON.stringify({ topic: msg.topic, error: String(e && e.stack || e) }));
    }
  }
  process.stdout.write(out.join('\n') + '\n');
});
