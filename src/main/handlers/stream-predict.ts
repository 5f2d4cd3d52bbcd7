// StreamPredict: ModelService's wire protocol over the shared stream session (stream-session.ts): each message is
// routed and admitted as a Predict request is; an answer carries the predictions and the batch's figures, a failed
// message carries `error` and no predictions, and the stream goes on.
import { encodeFailure, encodeResponse, type PredictRequest } from '../codec';
import { admit, route } from '../admission';
import { streamHandler, type Drainable, type StreamProtocol } from '../stream-session';
import type { HandlerContext } from './context';

export { STREAM_WINDOW } from '../stream-session';

const NO_BYTES: Buffer = Buffer.alloc(0);

const protocol: StreamProtocol<PredictRequest, null> = {
  service: 'inference.ModelService',
  method: 'StreamPredict',
  admit(request, context) {
    const target = route(request, context.models);
    const rows = admit(request, target);
    return { target, inputs: [request.featureBytes], rows, shapes: null, extra: null, timeoutMs: Infinity };
  },
  encodeAnswer(slot, outputs, firstRow, batch) {
    const served = slot.target!.seed!.outputIndex;
    const rowBytes = outputs.rowBytes[served];
    const start = firstRow * rowBytes;
    return encodeResponse(outputs.bytes[served], start, start + slot.rows * rowBytes, {
      latencyMs: batch.finishedAt - slot.receivedAt,
      versionField: slot.target!.versionField,
      batchRows: batch.rows,
      queueUs: (batch.dispatchedAt - slot.enqueuedAt) * 1000,
      computeUs: batch.computeUs,
      error: null,
    });
  },
  encodeFailure(slot, error) {
    const latencyMs = performance.now() - slot.receivedAt;
    return encodeFailure(latencyMs, slot.target?.versionField ?? NO_BYTES, { code: error.code, message: error.message });
  },
};

export function streamPredictHandler(context: HandlerContext, sessions: Set<Drainable>) {
  return streamHandler(context, sessions, protocol);
}
