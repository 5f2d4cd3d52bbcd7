// Reading a model repository in Triton's layout, so that an existing Triton repository of ONNX models serves
// unchanged:
//
//   <repository>/<model>/config.pbtxt        optional (protobuf text format of Triton's ModelConfig; config.ts)
//   <repository>/<model>/<version>/model.onnx one folder per version, named by a positive integer; the file is
//                                              config's default_model_filename when it names one
//
// Folders that are not versions (a name that is not a positive integer, or that starts with 0) are ignored, as
// Triton ignores them. A scan only reads: it says which versions the model's version policy keeps, and fingerprints
// each (sizes and mtimes of everything in its folder, and of config.pbtxt), so that the caller loads a version only
// once two scans agree: a folder still being copied in changes between scans.
//
// A model loads only from inside its version folder: model names and default_model_filename carry no path separator
// or "..", and a version whose files reach outside its folder through a symbolic link is refused at load
// (versionEscape); ONNX external data with a location outside the folder is refused by onnxruntime itself.
import { readdirSync, readFileSync, readlinkSync, realpathSync, statSync, type Dirent, type Stats } from 'node:fs';
import path from 'node:path';
import { parseModelConfig, type ModelConfig } from './config';
import type { VersionSpec } from './instance';
import type { DesiredModel } from './registry';

export const CONFIG_FILE = 'config.pbtxt';
export const DEFAULT_MODEL_FILENAME = 'model.onnx';

/** A model name as a repository folder may carry it (and as requests name it): no path separator, no "..". */
export const MODEL_NAME_PATTERN = /^(?!.*\.\.)[A-Za-z0-9_][\w.-]*$/;

/** Why `name` cannot name a model folder of the repository (a request's model_name); null when it can. */
export function modelNameProblem(name: string): string | null {
  if (MODEL_NAME_PATTERN.test(name)) return null;
  const why = /[/\\]/.test(name) ? 'it contains a path separator' : name.includes('..') ? 'it contains ".."' : 'it is not a folder name';
  return `model name ${JSON.stringify(name)} is refused: ${why}; a model name is the name of a folder of the repository (letters, digits, _ . -; no path separator, no "..")`;
}

/**
 * Why a version folder's files reach outside it, or null: the model file, and every symbolic link in the folder
 * (external data may sit in subfolders), must resolve inside the folder. Read when the version is loaded, just
 * before onnxruntime opens it: the model and version folders themselves may be links (the operator's layout), what
 * a model brings with it may not.
 */
export function versionEscape(versionDir: string, file: string): string | null {
  let base: string;
  try {
    base = realpathSync(versionDir);
  } catch (error) {
    return `cannot read the version folder ${versionDir} (${(error as NodeJS.ErrnoException).code})`;
  }
  const inside = (target: string) => target === base || target.startsWith(base + path.sep);
  const resolved = (link: string) => {
    try {
      return realpathSync(link);
    } catch {
      // A dangling link: where it would lead once its target exists. No file at all: onnxruntime will say so.
      try {
        return path.resolve(path.dirname(link), readlinkSync(link));
      } catch {
        return path.resolve(link);
      }
    }
  };
  const model = resolved(file);
  if (!inside(model)) return `the model file ${file} resolves to ${model}, outside its version folder ${versionDir}`;
  const walk = (folder: string): string | null => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const full = path.join(folder, entry.name);
      if (entry.isSymbolicLink()) {
        const target = resolved(full);
        if (!inside(target)) return `${path.relative(versionDir, full)} in ${versionDir} is a symbolic link to ${target}, outside the version folder`;
      } else if (entry.isDirectory()) {
        const found = walk(full);
        if (found !== null) return found;
      }
    }
    return null;
  };
  return walk(versionDir);
}

/** One version folder the policy keeps. */
export interface ScannedVersion {
  version: string;
  /** The ONNX file to load. */
  file: string;
  /** Sizes and mtimes of the folder's files and of config.pbtxt; equal across two scans = not being written. */
  fingerprint: string;
  /** Why the folder cannot be loaded as it stands (no model file); null when it can be tried. */
  problem: string | null;
}

export interface ScannedModel {
  name: string;
  dir: string;
  /** The parsed config.pbtxt; null when there is none (everything comes from the ONNX file and the environment). */
  config: ModelConfig | null;
  /** Why config.pbtxt was refused (file, line, field); the model's versions are then not loaded. */
  configError: string | null;
  /** The versions the version policy keeps, newest first. */
  versions: ScannedVersion[];
}

const isVersionFolder = (name: string) => /^[1-9]\d*$/.test(name) && Number.isSafeInteger(Number(name));

function statOrNull(file: string): Stats | null {
  try {
    return statSync(file);
  } catch {
    return null;
  }
}

/** Sizes and mtimes of every file under `dir` (recursively: ONNX external data may sit in subfolders). */
function fingerprintOf(dir: string, extra: Stats | null): string {
  const parts: string[] = [];
  const walk = (folder: string, prefix: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) walk(full, `${prefix}${entry.name}/`);
      else {
        const stats = statOrNull(full);
        if (stats !== null) parts.push(`${prefix}${entry.name}:${stats.size}:${stats.mtimeMs}`);
      }
    }
  };
  walk(dir, '');
  if (extra !== null) parts.push(`${CONFIG_FILE}:${extra.size}:${extra.mtimeMs}`);
  return parts.join('|');
}

/** Which of the present versions (ascending) the policy keeps, newest first. */
export function keptVersions(present: readonly number[], config: ModelConfig | null): number[] {
  const newestFirst = [...present].sort((a, b) => b - a);
  const policy = config?.versionPolicy ?? { kind: 'latest', numVersions: 1 };
  switch (policy.kind) {
    case 'all':
      return newestFirst;
    case 'specific':
      return newestFirst.filter((v) => policy.versions.includes(v));
    case 'latest':
      return newestFirst.slice(0, policy.numVersions);
  }
}

/** Reads one model folder. */
export function scanModel(dir: string, name = path.basename(dir)): ScannedModel {
  const configFile = path.join(dir, CONFIG_FILE);
  const configStats = statOrNull(configFile);
  let config: ModelConfig | null = null;
  let configError: string | null = null;
  if (configStats !== null) {
    try {
      config = parseModelConfig(readFileSync(configFile, 'utf8'), configFile);
      if (config.name !== undefined && config.name !== name) {
        configError = `${configFile}: name "${config.name}" differs from the model's folder name "${name}"`;
        config = null;
      }
    } catch (error) {
      configError = error instanceof Error ? error.message : String(error);
    }
  }
  const present = readdirSync(dir, { withFileTypes: true })
    .filter((entry) => isFolder(dir, entry) && isVersionFolder(entry.name))
    .map((entry) => Number(entry.name));
  const filename = config?.defaultModelFilename ?? DEFAULT_MODEL_FILENAME;
  const versions = configError !== null ? [] : keptVersions(present, config).map((version): ScannedVersion => {
    const versionDir = path.join(dir, String(version));
    const file = path.join(versionDir, filename);
    const stats = statOrNull(file);
    return {
      version: String(version),
      file,
      fingerprint: fingerprintOf(versionDir, configStats),
      problem: stats?.isFile() ? null : `no ${filename} in ${versionDir}`,
    };
  });
  return { name, dir, config, configError, versions };
}

/** Reads every model folder of the repository, by name. Folders whose name cannot be a model name are skipped. */
export function scanRepository(root: string): ScannedModel[] {
  return readdirSync(root, { withFileTypes: true })
    .filter((entry) => isFolder(root, entry) && MODEL_NAME_PATTERN.test(entry.name))
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((entry) => {
      const dir = path.join(root, entry.name);
      try {
        return scanModel(dir, entry.name);
      } catch (error) {
        // A folder that cannot be read (permissions, or removed mid-scan) is that model's problem, not the
        // repository's: every other model is still scanned, loaded and updated.
        const reason = error instanceof Error ? error.message : String(error);
        return { name: entry.name, dir, config: null, configError: `cannot read model folder ${dir}: ${reason}`, versions: [] };
      }
    });
}

/** What keeps a scanned model from loading, read from its files: its config refused, a version's file missing. */
export function modelProblem(model: ScannedModel): string | null {
  return model.configError ?? model.versions.find((v) => v.problem !== null)?.problem ?? null;
}

/** Why a scanned model has no version to load (for a startup failure, a load refused, the repository index). */
export function noVersionReason(model: ScannedModel): string {
  const problem = modelProblem(model);
  if (problem !== null) return problem;
  if (model.versions.length > 0) return `version ${model.versions.map((v) => v.version).join(', ')} is still being written (its files changed between two scans)`;
  const filename = model.config?.defaultModelFilename ?? DEFAULT_MODEL_FILENAME;
  return model.config?.versionPolicy !== undefined && model.config.versionPolicy.kind !== 'latest'
    ? `no version folder in ${model.dir} that its version_policy keeps`
    : `no version folder in ${model.dir} (a folder named by a number, holding ${filename})`;
}

/** A folder, or a symbolic link to one (model and version folders may be links, as Triton follows them). */
function isFolder(parent: string, entry: Dirent): boolean {
  if (entry.isDirectory()) return true;
  return entry.isSymbolicLink() && statOrNull(path.join(parent, entry.name))?.isDirectory() === true;
}

/**
 * Turns scans into what the registry should serve. A version is settled, and may be loaded, once two scans in a
 * row saw the same fingerprint: a folder still being copied in changes between them (the atomic way to add a
 * version is to write it elsewhere on the same filesystem and rename it in).
 */
export class RepositoryWatcher {
  /** "model/version" -> fingerprint at the previous scan. */
  private previous = new Map<string, string>();

  constructor(readonly root: string) {}

  scan(): DesiredModel[] {
    const seen = new Map<string, string>();
    const desired = scanRepository(this.root).map((model): DesiredModel => {
      const versions: VersionSpec[] = [];
      const pending: string[] = [];
      for (const version of model.versions) {
        const key = `${model.name}/${version.version}`;
        seen.set(key, version.fingerprint);
        if (this.previous.get(key) !== version.fingerprint) {
          pending.push(version.version);
          continue;
        }
        // Settled, but without its model file (misnamed, say): not waited for for ever, but loaded, to fail with the
        // reason as any failed load does (logged once, counted, shown in its state) until its files change.
        const spec: VersionSpec = {
          model: model.name,
          version: version.version,
          file: version.file,
          config: model.config,
          configFile: model.config === null ? null : path.join(model.dir, CONFIG_FILE),
          fingerprint: version.fingerprint,
        };
        if (version.problem !== null) spec.problem = version.problem;
        versions.push(spec);
      }
      return { name: model.name, versions, pending, problem: model.configError };
    });
    this.previous = seen;
    return desired;
  }
}
