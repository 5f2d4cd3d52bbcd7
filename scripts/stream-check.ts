// Streams N messages through StreamPredict and checks that N answers come back, in order, each equal to what
// onnxruntime computes in-process on the same row. Usage:
//   npm run check:stream -- [--target 127.0.0.1:50051] [--count 100000] [--model models/default.onnx]
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as ort from 'onnxruntime-node';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { DEFAULT_MODEL_PATH } from '../src/main/config';
import { PROTO_PATH } from '../src/main/server';

interface Reply {
  predictions: number[];
  error: { code: number; message: string } | null;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', default: '127.0.0.1:50051' },
      count: { type: 'string', default: '100000' },
      model: { type: 'string', default: DEFAULT_MODEL_PATH },
    },
  });
  const count = Number(values.count);
  const session = await ort.InferenceSession.create(values.model!);
  const meta = session.inputMetadata[0];
  const dims = (meta.isTensor ? meta.shape.slice(1) : []) as number[];
  const width = dims.reduce((a, b) => a * b, 1);
  const inputs = new Float32Array(count * width);
  for (let i = 0; i < inputs.length; i++) inputs[i] = Math.fround(Math.sin(i * 0.7317));
  const tensor = new ort.Tensor('float32', inputs, [count, ...dims]);
  const expected = (await session.run({ [session.inputNames[0]]: tensor }))[session.outputNames[0]].data as Float32Array;
  const outWidth = expected.length / count;

  const definition = protoLoader.loadSync(PROTO_PATH, { keepCase: true, arrays: true, defaults: true });
  const Service = (grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject)
    .ModelService as grpc.ServiceClientConstructor;
  const client = new Service(values.target!, grpc.credentials.createInsecure());
  const call = client.StreamPredict() as grpc.ClientDuplexStream<object, Reply>;
  const started = performance.now();
  let received = 0;
  let wrong = 0;
  call.on('data', (reply: Reply) => {
    const row = expected.subarray(received * outWidth, (received + 1) * outWidth);
    const ok =
      reply.error === null &&
      reply.predictions.length === outWidth &&
      reply.predictions.every((v, j) => Math.abs(v - row[j]) <= 1e-5);
    if (!ok && wrong++ < 5) console.error(`answer ${received} is wrong:`, JSON.stringify(reply));
    received++;
  });
  const done = new Promise<void>((resolve, reject) => {
    call.on('end', resolve);
    call.on('error', reject);
  });
  let sent = 0;
  const write = () => {
    while (sent < count) {
      const features = Array.from(inputs.subarray(sent * width, (sent + 1) * width));
      sent++;
      if (!call.write({ features })) {
        call.once('drain', write);
        return;
      }
    }
    call.end();
  };
  write();
  await done;
  const seconds = (performance.now() - started) / 1000;
  client.close();
  console.log(
    `${received} answers to ${count} messages, ${received - wrong} correct and in order, ` +
      `${wrong} wrong; ${(count / seconds).toFixed(0)} msgs/s`,
  );
  if (received !== count || wrong > 0) process.exit(1);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
