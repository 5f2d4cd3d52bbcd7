// A client that writes a million messages and never reads its answers: the server must stop reading (HTTP/2 flow
// control) rather than buffer them.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import protobuf from 'protobufjs';
import { STREAM_WINDOW } from '../src/main/handlers/stream-predict';
import { PROTO_PATH } from '../src/main/server';
import { featuresFor } from './helpers/models';
import { predict, startServer } from './helpers/server';

const MESSAGES = 1_000_000;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMiB = () => {
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('stream backpressure', () => {
  it('a million messages from a client that never reads: the server stops reading and its memory stays bounded', async () => {
    const server = await startServer();
    const Request = protobuf.loadSync(PROTO_PATH).lookupType('inference.PredictRequest');
    const message = Buffer.from(Request.encode({ features: featuresFor(1, 1, 17) }).finish());
    const framed = Buffer.alloc(5 + message.length);
    framed.writeUInt32BE(message.length, 1);
    message.copy(framed, 5);
    // A bare HTTP/2 client, so that nothing client-side reads or throttles: the million framed messages are handed
    // to HTTP/2 at once, and the response side is paused, so the client never acknowledges the answers.
    const session = http2.connect(`http://${server.address}`, { maxSessionMemory: 1024 }); // MB: the whole flood
    try {
      const before = heapMiB();
      const flood = session.request({
        ':method': 'POST',
        ':path': '/inference.ModelService/StreamPredict',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      flood.on('error', () => {});
      flood.pause();
      const chunk = Buffer.concat(new Array(1000).fill(framed));
      for (let i = 0; i < MESSAGES / 1000; i++) flood.write(chunk);

      const read: number[] = [];
      for (let t = 0; t < 6; t++) {
        await sleep(400);
        read.push(server.server.counters.streamMessagesRead);
      }
      const after = heapMiB();
      const stats = server.server.streamStats();
      // It read a few thousand messages (its stream window and what HTTP/2 buffers), answered what it could, then
      // stopped reading; what it holds is bounded by the window, whatever the client sends.
      assert.ok(read[5] < MESSAGES / 10, `the server read ${read[5]} of ${MESSAGES} messages`);
      assert.equal(read[5], read[2], `the server kept reading: ${read.join(', ')}`);
      assert.equal(stats.open, 1);
      assert.ok(stats.unanswered <= STREAM_WINDOW, `${stats.unanswered} unanswered messages held`);
      assert.ok(after - before < 32, `heap grew from ${before.toFixed(1)} to ${after.toFixed(1)} MiB`);

      // Cancelling the stream frees its work; the server keeps serving.
      flood.close(http2.constants.NGHTTP2_CANCEL);
      const { reply } = await predict(server.client, { features: featuresFor(2, 1, 17) });
      assert.equal(reply.predictions.length, 5);
      assert.equal(server.server.streamStats().open, 0);
    } finally {
      session.close();
      await server.close();
    }
  });
});
