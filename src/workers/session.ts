// Opening an ONNX Runtime session, shared by the workers and the main thread's start-up inspection, so that both
// read a model with the same options and fail with the same message.
import * as ort from 'onnxruntime-node';
import type { ExecutionProvider } from './protocol';

export async function openSession(
  modelPath: string,
  provider: ExecutionProvider,
  intraOpThreads: number,
  deviceId = 0,
): Promise<ort.InferenceSession> {
  const executionProviders: ort.InferenceSession.ExecutionProviderConfig[] =
    provider === 'cuda' ? [{ name: 'cuda', deviceId } as ort.InferenceSession.ExecutionProviderConfig] : ['cpu'];
  try {
    return await ort.InferenceSession.create(modelPath, {
      executionProviders,
      intraOpNumThreads: intraOpThreads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    if (provider === 'cuda') {
      throw new Error(
        `EXECUTION_PROVIDER=cuda, but onnxruntime-node cannot use CUDA (${reason}). Its CUDA binaries are not in ` +
          'the npm package: install them with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci (this project\'s .npmrc skips ' +
          'them by default), and check that the CUDA 12 and cuDNN 9 libraries are on the library path.',
      );
    }
    throw new Error(`cannot load model ${modelPath}: ${reason}`);
  }
}
