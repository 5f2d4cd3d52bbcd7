// The models being served: name -> version -> loaded instance. It routes each request to a ready version, and it
// brings the set of loaded versions to what the repository says, one load at a time, so that nothing is lost:
//
// - A new version (or a version whose files changed) is loaded and warmed up beside what is serving, then swapped
//   in: from that moment new requests go to it. The instance it replaces, and any version the policy no longer
//   keeps, is unloaded: it answers everything it already took (unload() drains its batcher), then closes.
// - A version the policy no longer keeps is unloaded only once the model has a ready version among those it keeps,
//   so that a failed or half-copied new version leaves the old one serving. A model removed from the repository
//   (or left with no version folders) unloads all its versions.
// - A failed load changes nothing that serves: its reason is kept as the version's state (and logged and counted by
//   the caller's hooks) until the files change again.
//
// Routing reads only `newest` and the ready map, and happens in the same synchronous step as the batcher's enqueue,
// so each request is accepted by exactly one instance; a stream's messages are routed one by one, in order, so its
// answers switch from the old version to the new exactly once.
import type { Logger } from 'pino';
import { notFound, unavailable } from '../main/errors';
import { ModelInstance, type InstanceHooks, type ServingDefaults, type VersionSpec } from './instance';
import type { InferenceStatistics } from './statistics';

/** A version's state as the repository index shows it (Triton's names). */
export type VersionStateName = 'READY' | 'LOADING' | 'UNLOADING' | 'UNAVAILABLE';

export interface VersionStatus {
  model: string;
  version: string;
  state: VersionStateName;
  /** Why it is not ready: the load's failure, "loading", "unloading"; empty when ready. */
  reason: string;
}

/** What the repository wants served of one model; `problem` instead of versions when its config is refused. */
export interface DesiredModel {
  name: string;
  /** The versions to serve, newest first, whose files are settled. */
  versions: VersionSpec[];
  /** Versions the policy keeps whose files are still changing: not loaded yet, and not failed. */
  pending: string[];
  /** Why nothing of this model can be loaded now (config.pbtxt refused); what serves keeps serving. */
  problem: string | null;
}

/**
 * Who asked for a load or unload, for the audit log: startup, poll mode's timer, SIGHUP, the server shutting down,
 * or an RPC (its method, the caller's address and, under mTLS, the subject of the client's certificate).
 */
export type Initiator =
  | { by: 'startup' | 'poll' | 'SIGHUP' | 'shutdown' }
  | { by: 'rpc'; method: string; peer: string; subject: string | null };

/** One version's load or unload, as it ended. */
export interface VersionEvent {
  model: string;
  version: string;
  outcome: 'success' | 'failure';
  seconds: number;
  /** A failed load's error; for an unload, why it was unloaded (and, if it failed, how). */
  reason: string;
  initiator: Initiator;
  /** An unload's: the instance's final counters, which its model and version carry on (Telemetry). */
  stats?: InferenceStatistics;
}

/** Told of every load and unload as it ends (metrics, audit log); the registry logs the basics itself. */
export interface RegistryEvents {
  loaded(event: VersionEvent): void;
  unloaded(event: VersionEvent): void;
  /** Something that health depends on changed. */
  changed(): void;
}

const SHUTDOWN: Initiator = Object.freeze({ by: 'shutdown' });

interface ModelEntry {
  name: string;
  /** Ready versions, by version; routable. */
  ready: Map<string, ModelInstance>;
  /** The ready version with the highest number: what an empty model_version gets. */
  newest: ModelInstance | null;
  /** Versions being loaded, with the fingerprint being loaded. */
  loading: Map<string, string>;
  /** The last failed load of each version, with the fingerprint it failed on. */
  failed: Map<string, { fingerprint: string; reason: string; error: unknown }>;
  /** Instances answering what they took before they close. */
  unloading: Set<ModelInstance>;
  /** Why the model's config is refused now; null when it is fine. */
  problem: string | null;
  /** Still in the repository. */
  wanted: boolean;
}

const byVersionDescending = (a: string, b: string) => {
  const [x, y] = [Number(a), Number(b)];
  return Number.isNaN(x) || Number.isNaN(y) ? b.localeCompare(a) : y - x;
};

export class ModelRegistry {
  private readonly models = new Map<string, ModelEntry>();
  /** Loads happen one at a time: each takes workers and memory, and a reload must not starve what serves. */
  private loads: Promise<void> = Promise.resolve();
  private closed = false;
  /** Instances whose unload has been reported: a version retired and then caught by shutdown is reported once. */
  private readonly reported = new WeakSet<ModelInstance>();

  constructor(
    private readonly defaults: ServingDefaults,
    private readonly defaultModel: string | null,
    private readonly hooks: (model: string, version: string) => InstanceHooks,
    private readonly events: RegistryEvents,
    private readonly logger: Logger,
  ) {}

  /**
   * The instance that serves (name, version); empty name: DEFAULT_MODEL or the only model; empty version: the newest
   * ready one. Throws NOT_FOUND for what is not served, UNAVAILABLE for what is not ready.
   */
  resolve(name: string, version: string): ModelInstance {
    const entry = this.entryFor(name);
    if (version === '') {
      if (entry.newest !== null) return entry.newest;
      throw unavailable(`model "${entry.name}" has no ready version${this.whyNotReady(entry)}`);
    }
    const instance = entry.ready.get(version);
    if (instance !== undefined) return instance;
    const status = this.statusOf(entry).find((s) => s.version === version);
    if (status !== undefined) {
      throw unavailable(`model "${entry.name}" version "${version}" is not ready: ${status.state.toLowerCase()}${status.reason === '' ? '' : ` (${status.reason})`}`);
    }
    const served = [...entry.ready.keys()].sort(byVersionDescending);
    throw notFound(
      `model "${entry.name}" has no version "${version}"; ${served.length > 0 ? `ready versions: ${served.join(', ')}` : 'no version is ready'}`,
    );
  }

  private entryFor(name: string): ModelEntry {
    if (name === '') {
      if (this.defaultModel !== null) return this.entryFor(this.defaultModel);
      const wanted = [...this.models.values()].filter((e) => e.wanted);
      if (wanted.length === 1) return wanted[0];
      if (wanted.length === 0) throw notFound('no model is loaded: this server serves none');
      throw notFound(`model_name is required: this server serves ${this.servedNames()} (DEFAULT_MODEL is not set)`);
    }
    const entry = this.models.get(name);
    if (entry === undefined || !entry.wanted) throw notFound(`model "${name}" is not served; served models: ${this.servedNames()}`);
    return entry;
  }

  private servedNames(): string {
    return this.quotedNames(() => true);
  }

  /** Models with a version ready, for a refusal's message. */
  private readyNames(): string {
    return this.quotedNames((e) => this.statusOf(e).some((s) => s.state === 'READY'));
  }

  /** The served models that `pick` keeps, quoted, for a message; "none" if none. */
  private quotedNames(pick: (entry: ModelEntry) => boolean): string {
    const names = [...this.models.values()].filter((e) => e.wanted && pick(e)).map((e) => `"${e.name}"`);
    return names.length > 0 ? names.join(', ') : 'none';
  }

  private whyNotReady(entry: ModelEntry): string {
    const reasons = this.statusOf(entry).map((s) => `version ${s.version}: ${s.state.toLowerCase()}${s.reason === '' ? '' : `, ${s.reason}`}`);
    if (entry.problem !== null) reasons.unshift(entry.problem);
    return reasons.length > 0 ? ` (${reasons.join('; ')})` : '';
  }

  /** Every model that should be served has a ready version. */
  get allReady(): boolean {
    for (const entry of this.models.values()) if (entry.wanted && entry.newest === null) return false;
    return true;
  }

  /** Whether `name` has a ready version (its own health status). */
  isReady(name: string): boolean {
    return this.models.get(name)?.newest != null;
  }

  /** Model names the repository wants served. */
  modelNames(): string[] {
    return [...this.models.values()].filter((e) => e.wanted).map((e) => e.name);
  }

  /** Ready and unloading instances: what holds workers and memory now. */
  *instances(): Iterable<ModelInstance> {
    for (const entry of this.models.values()) {
      yield* entry.ready.values();
      yield* entry.unloading;
    }
  }

  /** The error a version's last load failed with (for startup's exit message); undefined when it did not fail. */
  failure(model: string, version: string): unknown {
    return this.models.get(model)?.failed.get(version)?.error;
  }

  /** Why each model whose config is refused now cannot be loaded. */
  problems(): string[] {
    return [...this.models.values()].filter((e) => e.wanted && e.problem !== null).map((e) => `model "${e.name}": ${e.problem}`);
  }

  /** Every version the registry knows of, with its state, by model then newest version first. */
  index(): VersionStatus[] {
    return [...this.models.values()].sort((a, b) => a.name.localeCompare(b.name)).flatMap((e) => this.statusOf(e));
  }

  private statusOf(entry: ModelEntry): VersionStatus[] {
    const states = new Map<string, VersionStatus>();
    const put = (version: string, state: VersionStateName, reason: string) => {
      if (!states.has(version)) states.set(version, { model: entry.name, version, state, reason });
    };
    for (const [version] of entry.ready) put(version, 'READY', '');
    for (const [version] of entry.loading) put(version, 'LOADING', 'loading');
    for (const instance of entry.unloading) put(instance.version, 'UNLOADING', 'unloading: answering what it took');
    for (const [version, failure] of entry.failed) put(version, 'UNAVAILABLE', failure.reason);
    // A refused config.pbtxt: a row of its own (no version), so that the index says why nothing new loads.
    if (entry.problem !== null) put('', 'UNAVAILABLE', entry.problem);
    return [...states.values()].sort((a, b) => byVersionDescending(a.version, b.version));
  }

  /**
   * Brings what is loaded to `desired` (the whole repository): loads what is new or changed, swaps it in, unloads
   * what is no longer wanted once its replacement is ready. Resolves when every load it started has ended (unloads
   * drain in the background). Calls queue behind each other.
   */
  apply(desired: readonly DesiredModel[], initiator: Initiator, scope: 'repository' | 'models' = 'repository'): Promise<void> {
    const run = this.loads.then(() => this.applyNow(desired, initiator, scope));
    this.loads = run.catch(() => {});
    return run;
  }

  /**
   * Unloads every version of `name` (explicit mode's RepositoryModelUnload): it stops taking requests at once and
   * answers what it took. Resolves once it has drained and closed.
   */
  unloadModel(name: string, initiator: Initiator): Promise<void> {
    const run = this.loads.then(async () => {
      const entry = this.models.get(name);
      if (entry === undefined || !entry.wanted) throw notFound(`model "${name}" is not loaded; loaded models: ${this.readyNames()}`);
      this.forget(entry, 'unloaded on request', initiator);
      this.events.changed();
      await Promise.all([...entry.unloading].map((instance) => instance.unload()));
    });
    this.loads = run.catch(() => {});
    return run;
  }

  /** Stops serving every version of the model; they drain and close in the background. */
  private forget(entry: ModelEntry, why: string, initiator: Initiator): void {
    entry.wanted = false;
    this.logger.info({ model: entry.name }, `model ${entry.name}: ${why}; unloading it`);
    for (const instance of [...entry.ready.values()]) this.retire(entry, instance, why, initiator);
    entry.failed.clear();
    entry.loading.clear();
  }

  /**
   * scope 'repository': `desired` is the whole repository (a model it lacks is unloaded). 'models': only the models
   * listed are brought to what it says (explicit mode's RepositoryModelLoad), the others are left alone.
   */
  private async applyNow(desired: readonly DesiredModel[], initiator: Initiator, scope: 'repository' | 'models'): Promise<void> {
    if (this.closed) return;
    const names = new Set(desired.map((d) => d.name));
    if (scope === 'repository') {
      for (const entry of this.models.values()) {
        if (!names.has(entry.name) && entry.wanted) this.forget(entry, 'no longer in the repository', initiator);
      }
    }
    for (const model of desired) {
      const entry = this.entry(model.name);
      entry.wanted = true;
      if (model.problem !== null && model.problem !== entry.problem) {
        // A config.pbtxt refused after the model was loaded: what serves keeps serving; say so once per change.
        this.logger.error({ model: model.name, reason: model.problem }, `model ${model.name} cannot be (re)loaded: ${model.problem}; what serves keeps serving`);
        this.events.loaded({ model: model.name, version: '', outcome: 'failure', seconds: 0, reason: model.problem, initiator });
      }
      entry.problem = model.problem;
      if (model.problem !== null) continue;
      for (const spec of model.versions) {
        const serving = entry.ready.get(spec.version);
        if (serving?.spec.fingerprint === spec.fingerprint) continue;
        if (entry.failed.get(spec.version)?.fingerprint === spec.fingerprint) continue;
        await this.loadVersion(entry, spec, initiator);
        if (this.closed) return;
      }
      // Versions the policy no longer keeps go only once every version it keeps is ready: while one is still being
      // written, or failed to load, what serves stays in place. With no version kept at all (the folders are
      // gone), they go.
      const kept = new Set([...model.versions.map((v) => v.version), ...model.pending]);
      const allKeptReady = [...kept].every((v) => entry.ready.has(v));
      if (allKeptReady || kept.size === 0) {
        for (const [version, instance] of [...entry.ready]) {
          if (!kept.has(version)) this.retire(entry, instance, 'no longer kept by the version policy', initiator);
        }
      }
      for (const version of [...entry.failed.keys()]) if (!kept.has(version)) entry.failed.delete(version);
    }
    this.events.changed();
  }

  /**
   * Loads one version and, on success, swaps it in for the instance of the same version it replaces, if any. A
   * failure is recorded as the version's state; null then.
   */
  private async loadVersion(entry: ModelEntry, spec: VersionSpec, initiator: Initiator): Promise<ModelInstance | null> {
    entry.loading.set(spec.version, spec.fingerprint);
    this.events.changed();
    const started = performance.now();
    this.logger.info({ model: spec.model, version: spec.version, file: spec.file }, `loading model ${spec.model} version ${spec.version}`);
    try {
      const instance = await ModelInstance.load(spec, this.defaults, this.hooks(spec.model, spec.version));
      const seconds = (performance.now() - started) / 1000;
      entry.loading.delete(spec.version);
      entry.failed.delete(spec.version);
      const loaded = { model: spec.model, version: spec.version, outcome: 'success', seconds, reason: '', initiator } as const;
      if (this.closed || !entry.wanted) {
        this.events.loaded(loaded);
        const why = this.closed ? 'the server began shutting down while it loaded' : 'the model was unloaded while this version loaded';
        await this.unloadAndReport(instance, why, this.closed ? SHUTDOWN : initiator);
        return null;
      }
      const replaced = entry.ready.get(spec.version);
      entry.ready.set(spec.version, instance);
      this.updateNewest(entry);
      if (replaced !== undefined) this.retire(entry, replaced, 'its files changed; the version was loaded again and swapped in', initiator, false);
      this.logger.info(
        { model: spec.model, version: spec.version, seconds, effective: instance.effective },
        `model ${spec.model} version ${spec.version} is ready (loaded and warmed up in ${seconds.toFixed(2)} s)`,
      );
      this.events.loaded(loaded);
      this.events.changed();
      return instance;
    } catch (error) {
      const seconds = (performance.now() - started) / 1000;
      const reason = error instanceof Error ? error.message : String(error);
      entry.loading.delete(spec.version);
      entry.failed.set(spec.version, { fingerprint: spec.fingerprint, reason, error });
      this.logger.error({ model: spec.model, version: spec.version, reason }, `model ${spec.model} version ${spec.version} failed to load: ${reason}`);
      this.events.loaded({ model: spec.model, version: spec.version, outcome: 'failure', seconds, reason, initiator });
      this.events.changed();
      return null;
    }
  }

  private entry(name: string): ModelEntry {
    let entry = this.models.get(name);
    if (entry === undefined) {
      entry = { name, ready: new Map(), newest: null, loading: new Map(), failed: new Map(), unloading: new Set(), problem: null, wanted: true };
      this.models.set(name, entry);
    }
    return entry;
  }

  private updateNewest(entry: ModelEntry): void {
    const [newest] = [...entry.ready.keys()].sort(byVersionDescending);
    entry.newest = newest === undefined ? null : entry.ready.get(newest)!;
  }

  /** Stops routing to `instance` now; it drains and closes in the background. */
  private retire(entry: ModelEntry, instance: ModelInstance, why: string, initiator: Initiator, removeFromReady = true): void {
    if (removeFromReady && entry.ready.get(instance.version) === instance) entry.ready.delete(instance.version);
    this.updateNewest(entry);
    entry.unloading.add(instance);
    this.logger.info({ model: instance.name, version: instance.version }, `unloading model ${instance.name} version ${instance.version}: ${why}`);
    void this.unloadAndReport(instance, why, initiator).then(() => {
      entry.unloading.delete(instance);
      if (!entry.wanted && entry.ready.size === 0 && entry.unloading.size === 0 && entry.loading.size === 0) {
        this.models.delete(entry.name);
      }
      this.events.changed();
    });
  }

  /** Unloads `instance` (answering what it took) and reports how that ended; never rejects. */
  private unloadAndReport(instance: ModelInstance, why: string, initiator: Initiator): Promise<void> {
    const started = performance.now();
    return instance.unload().then(
      () => this.reportUnload(instance, 'success', why, initiator, started),
      (error: unknown) => this.reportUnload(instance, 'failure', `${why}; unloading failed: ${error instanceof Error ? error.message : String(error)}`, initiator, started),
    );
  }

  private reportUnload(instance: ModelInstance, outcome: 'success' | 'failure', reason: string, initiator: Initiator, started: number): void {
    if (this.reported.has(instance)) return;
    this.reported.add(instance);
    const seconds = (performance.now() - started) / 1000;
    const fields = { model: instance.name, version: instance.version, seconds };
    if (outcome === 'success') this.logger.info(fields, `model ${instance.name} version ${instance.version} unloaded`);
    else this.logger.error({ ...fields, reason }, `model ${instance.name} version ${instance.version} failed to unload: ${reason}`);
    this.events.unloaded({ model: instance.name, version: instance.version, outcome, seconds, reason, initiator, stats: instance.stats });
  }

  /** Resolves once nothing is unloading (for tests and shutdown). */
  async settled(): Promise<void> {
    await this.loads;
    for (;;) {
      const draining = [...this.models.values()].flatMap((e) => [...e.unloading]);
      if (draining.length === 0) return;
      await Promise.all(draining.map((i) => i.unload()));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Shutdown: everything stops taking requests and answers what it took, then closes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.loads;
    const all = [...this.instances()];
    for (const instance of all) void this.unloadAndReport(instance, 'the server is shutting down', SHUTDOWN);
    // unload() is one promise per instance: awaited here as well, so that a failure still fails the shutdown.
    await Promise.all(all.map((instance) => instance.unload()));
  }

  /** Shutdown past its grace period: close every worker whatever is left. */
  async forceClose(): Promise<void> {
    this.closed = true;
    const all = [...this.instances()];
    const started = performance.now();
    await Promise.all(all.map((instance) => instance.forceClose()));
    for (const instance of all) this.reportUnload(instance, 'success', 'cut off: the shutdown grace period ran out', SHUTDOWN, started);
  }
}
