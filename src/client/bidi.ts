// One bidirectional-streaming call driven from an async iterable and read as one: shared by TickClient.stream
// (StreamPredict) and InferenceClient.stream (ModelStreamInfer), whose servers answer every message once, in order.
import * as grpc from '@grpc/grpc-js';

/**
 * The server ended a streaming call, with status `code` (OK when it was draining), before it had answered every
 * input: `answered` of the `sent` inputs written to the call, and `inputsLeft` when the inputs had more to send.
 * Every answer received was yielded before this is thrown.
 */
export class StreamEndedEarlyError extends Error {
  override readonly name = 'StreamEndedEarlyError';

  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly sent: number,
    readonly answered: number,
    readonly inputsLeft: boolean,
  ) {
    const why = details === '' || details === grpc.status[code] ? '' : ` (${details})`;
    const left = inputsLeft ? ', with inputs left to send' : '';
    super(`the server ended the stream with ${grpc.status[code]}${why} after answering ${answered} of the ${sent} inputs sent${left}`);
  }
}

/**
 * Writes each of `inputs`, as `encode` makes it into a message, to `call` and yields the call's replies. Backpressure:
 * inputs are pulled only while the server keeps up (write() returning false waits for 'drain'), and replies are read
 * only as fast as the caller consumes them. Breaking out of the loop cancels the call.
 *
 * `encode` runs just before its message is written, so a caller can note the time. One that throws cancels the call
 * and is rethrown here. The stream ends when the server ends the call: a status other than OK is thrown as the
 * call's ServiceError; an OK before every input was answered (the server drains on shutdown: it answers what it has
 * read, then ends) is thrown as a StreamEndedEarlyError. Either comes after every reply received has been yielded.
 */
export async function* bidiStream<Input, Reply>(
  call: grpc.ClientDuplexStream<object, Reply>,
  inputs: AsyncIterable<Input> | Iterable<Input>,
  encode: (input: Input) => object,
): AsyncGenerator<Reply, void, undefined> {
  const source = Symbol.asyncIterator in inputs ? inputs[Symbol.asyncIterator]() : inputs[Symbol.iterator]();
  let sent = 0;
  let answered = 0;
  let inputsDone = false;
  let writeError: unknown = null;
  let serverStatus: Pick<grpc.StatusObject, 'code' | 'details'> = { code: grpc.status.OK, details: '' };

  // The writer waits for the source's next input and for 'drain', and must stop once the call is over: nothing
  // written to an ended call is sent, 'drain' may never come, and a live source may not yield again for a long
  // time (a writer still pulling it would keep the stream from ending). `wake` ends whichever wait is pending.
  let callOver = false;
  let wake: (() => void) | null = null;
  const endWriting = () => {
    callOver = true;
    wake?.();
  };
  const unlessOver = (pending: Promise<unknown>) =>
    new Promise<void>((resolve, reject) => {
      wake = resolve;
      pending.then(() => resolve(), reject);
    });
  call.on('status', (status: grpc.StatusObject) => {
    serverStatus = status;
    endWriting();
  });

  const writing = (async () => {
    try {
      while (!callOver) {
        const pulled = Promise.resolve(source.next());
        await unlessOver(pulled);
        if (callOver) break;
        const next = await pulled;
        if (next.done) {
          inputsDone = true;
          call.end();
          return;
        }
        const message = encode(next.value);
        sent++;
        if (!call.write(message)) await unlessOver(new Promise((resolve) => call.once('drain', resolve)));
      }
      // The call is over with inputs left: let the source clean up, but do not wait for it (it may be waiting
      // for its next input itself, and an async generator's return() waits for that).
      Promise.resolve(source.return?.()).catch(() => {});
    } catch (error) {
      writeError = error;
      call.cancel();
    }
  })();

  try {
    for await (const reply of call) {
      answered++;
      yield reply as Reply;
    }
  } catch (error) {
    throw writeError ?? error;
  } finally {
    endWriting();
    call.cancel(); // a no-op once the call has ended; stops it when the caller broke out early
    await writing;
  }
  if (writeError) throw writeError;
  if (!inputsDone || answered < sent) throw new StreamEndedEarlyError(serverStatus.code, serverStatus.details, sent, answered, !inputsDone);
}
