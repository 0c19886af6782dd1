// weftd's configuration: command-line flags over an optional YAML file over built-in defaults.
// Parsing only reads (the config file); every bad value is a ConfigError naming the flag and value.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import YAML from 'yaml';
import type { PoolSpec } from './volume/node-store';
import { parseStoreSpec, type StoreSpec } from './cluster/open-store';
import { MIN_MEMBER_BYTES } from './store/pool-member';
import { parseSize } from './units';
import { isValidName, NAME_RULE } from './volume/names';
import { CLASS_NAME, parseClasses, type ServiceClass } from './class-objectives';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const CSI_ROLES = ['controller', 'node', 'both'] as const;
export type CsiRole = (typeof CSI_ROLES)[number];

/** The CSI driver that weftd serves (adapters/csi), when --csi-endpoint is given. */
export interface CsiSettings {
  /** "unix:///ABSOLUTE/PATH" of the socket. */
  endpoint: string;
  role: CsiRole;
  /** The node service asks this Nomad HTTP API for the job of each allocation it publishes for; absent: it does not ask. */
  nomadAddr?: string;
}

export interface WeftdConfig {
  /** Absolute path. */
  dataDir: string;
  nodeId: string;
  /** Address every server listens on (NBD, API, metrics). */
  listen: string;
  /** 0 means any free port. */
  nbdPort: number;
  apiPort: number;
  /** off: no metrics at all (no exporter, no metrics layer in the volumes' stacks). */
  metricsPort: number | 'off';
  /** Paths are absolute. Without --pool, one pool "default" in the data dir; empty only with --pool none. */
  pools: PoolSpec[];
  logLevel: LogLevel;
  /** Completed writes are synced at least this often without a FLUSH; 0: only on FLUSH/FUA. */
  syncIntervalMs: number;
  /** How long a replica's node may be down before its copy is replaced on another node. */
  replicaTimeoutMs: number;
  /** Zone label of this node, for topology; absent when not given. */
  zone?: string;
  /**
   * The Kubernetes node label whose value is this node's zone (e.g. topology.kubernetes.io/zone), read at
   * startup from the Node named nodeId (adapters/kubernetes); never given together with zone.
   */
  zoneFromNodeLabel?: string;
  /** The address other nodes and clients reach this node at (never a wildcard). */
  advertise: string;
  /** Absent: no CSI driver. */
  csi?: CsiSettings;
  /** Where the cluster's metadata lives: embedded (in the data dir) or an etcd cluster. */
  store: StoreSpec;
  /** NBD requests and replies held in memory: per connection, and across the node (backpressure beyond). */
  maxConnectionInflightBytes: number;
  maxInflightBytes: number;
  /** NBD connections the node keeps open at once (clients, forwarders and replication); more are refused. */
  nbdMaxConnections: number;
  /** The service classes the config file declares, with their objectives; sorted by name. */
  classes: ServiceClass[];
  /** The Consul agent weftd registers its services with (adapters/consul); absent: none. */
  consulAddr?: HostPort;
  /** `--recover`: report what is wrong with the data dir's metadata instead of starting (a mode, not a config-file setting). */
  recover?: { acceptLoss: boolean };
}

/** A host (name, IPv4, or IPv6 without brackets) and a port. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parsing ended the run: bad input (exit code 2, message), or help shown (exit code 0, no message). */
export class ConfigError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The settings as given (flag strings or YAML values), before validation. */
interface RawSettings {
  dataDir?: unknown;
  nodeId?: unknown;
  listen?: unknown;
  nbdPort?: unknown;
  apiPort?: unknown;
  metricsPort?: unknown;
  pool?: unknown;
  logLevel?: unknown;
  syncInterval?: unknown;
  replicaTimeout?: unknown;
  zone?: unknown;
  zoneFromNodeLabel?: unknown;
  advertise?: unknown;
  csiEndpoint?: unknown;
  csiRole?: unknown;
  nomadAddr?: unknown;
  store?: unknown;
  maxConnectionInflightBytes?: unknown;
  maxInflightBytes?: unknown;
  nbdMaxConnections?: unknown;
  consulAddr?: unknown;
  /** Only in the config file. */
  classes?: unknown;
}
type SettingKey = keyof RawSettings;

const SETTING_KEYS: readonly SettingKey[] = [
  'dataDir', 'nodeId', 'listen', 'nbdPort', 'apiPort', 'metricsPort', 'pool', 'logLevel', 'syncInterval', 'replicaTimeout', 'zone', 'zoneFromNodeLabel', 'advertise', 'csiEndpoint', 'csiRole', 'nomadAddr', 'store',
  'maxConnectionInflightBytes', 'maxInflightBytes', 'nbdMaxConnections', 'consulAddr', 'classes',
];

const DEFAULTS = {
  dataDir: './weft-data',
  listen: '127.0.0.1',
  nbdPort: '10809',
  apiPort: '10810',
  metricsPort: '10811',
  logLevel: 'info',
  syncInterval: '5',
  replicaTimeout: '600',
  csiRole: 'both',
  store: 'embedded',
  maxConnectionInflightBytes: '64MiB',
  maxInflightBytes: '1GiB',
  nbdMaxConnections: '16384',
};

const kebab = (key: string) => key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);

/**
 * Parses weftd's arguments (without "node weftd.js"); reads the --config file if one is given.
 * Throws ConfigError on any bad flag, config key or value.
 */
export function parseConfig(argv: string[]): WeftdConfig {
  const { flags, configFile, recover, acceptLoss } = parseFlags(argv);
  if (acceptLoss && !recover) throw new ConfigError('--accept-loss goes with --recover');
  const file = configFile === undefined ? undefined : readConfigFile(configFile);
  const pick = (key: SettingKey): Setting => {
    if (flags[key] !== undefined || !file || !(key in file.settings)) return { value: flags[key], name: `--${kebab(key)}`, origin: '' };
    return { value: file.settings[key], name: file.keys[key] ?? key, origin: ` in ${configFile}` };
  };
  const config = validate(pick);
  return recover ? { ...config, recover: { acceptLoss: acceptLoss === true } } : config;
}

function buildCommand(): Command {
  const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];
  return new Command('weftd')
    .description('Weft node daemon: serves this node\'s volumes over NBD, the control API and metrics.')
    .option('--config <file>', 'YAML file with any of the settings below (camelCase or kebab-case keys)')
    .option('--data-dir <dir>', `where the node keeps its metadata (default: ${DEFAULTS.dataDir})`)
    .option('--node-id <id>', 'name of this node (default: the host name)')
    .option('--listen <addr>', `address of every server (default: ${DEFAULTS.listen})`)
    .option('--nbd-port <n>', `NBD port, 0 = any free port (default: ${DEFAULTS.nbdPort})`)
    .option('--api-port <n>', `control API port (default: ${DEFAULTS.apiPort})`)
    .option('--metrics-port <n|off>', `Prometheus /metrics port; off: no metrics, not even counted (default: ${DEFAULTS.metricsPort})`)
    .option('--pool <class:path[:size]|none>', 'a pool member, repeatable (default: default:<data-dir>); none: no pool at all, for a node that holds no copy of any volume (the CSI controller\'s weftd)', collect)
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (default: ${DEFAULTS.logLevel})`)
    .option('--sync-interval <seconds>', `sync completed writes at least this often without a FLUSH; 0 = only on FLUSH/FUA (default: ${DEFAULTS.syncInterval})`)
    .option('--replica-timeout <seconds>', `a replica whose node is down this long, or whose resyncs keep failing this long, is replaced on another node (default: ${DEFAULTS.replicaTimeout})`)
    .option('--zone <zone>', 'zone label of this node, for placement and CSI topology (default: none)')
    .option('--zone-from-node-label <label>', 'take the zone from this label of the Kubernetes Node named --node-id, e.g. topology.kubernetes.io/zone (instead of --zone)')
    .option('--advertise <addr>', 'address other nodes and clients reach this node at (default: the --listen address, or the host name if that is a wildcard)')
    .option('--csi-endpoint <unix:///path>', 'serve the CSI driver on this unix socket (default: off)')
    .option('--csi-role <role>', `CSI services to serve: ${CSI_ROLES.join(', ')} (default: ${DEFAULTS.csiRole})`)
    .option('--nomad-addr <url>', "the CSI node service looks up the job of each Nomad allocation it publishes for at this Nomad HTTP API, e.g. http://127.0.0.1:4646, with $NOMAD_TOKEN (default: off)")
    .option('--store <spec>', `cluster store: embedded (in the data dir, one node) or etcd://HOST:PORT[,HOST:PORT...] (default: ${DEFAULTS.store})`)
    .option('--max-connection-inflight-bytes <size>', `NBD requests and replies one connection may hold before it waits (default: ${DEFAULTS.maxConnectionInflightBytes})`)
    .option('--max-inflight-bytes <size>', `the same across all NBD connections of the node (default: ${DEFAULTS.maxInflightBytes})`)
    .option('--nbd-max-connections <n>', `NBD connections open at once (clients, other nodes' forwarding and replication); more are refused and logged (default: ${DEFAULTS.nbdMaxConnections})`)
    .option('--consul-addr <host:port>', 'register the NBD, API and metrics endpoints as services with this Consul agent, e.g. 127.0.0.1:8500 (default: off)')
    .option('--recover', 'do not start: tell what is wrong with the data dir\'s metadata and what starting without it would lose; changes nothing')
    .option('--accept-loss', 'with --recover: then start over without what cannot be read, keeping a copy of the damaged metadata')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, outputError: () => undefined });
}

interface Flags {
  flags: RawSettings;
  configFile?: string;
  recover?: boolean;
  acceptLoss?: boolean;
}

function parseFlags(argv: string[]): Flags {
  const command = buildCommand();
  try {
    command.parse(argv, { from: 'user' });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    if (error.exitCode === 0) throw new ConfigError('', 0);
    throw new ConfigError(error.message.replace(/^error: /, '').replace(/\n/g, ' '));
  }
  const { config, recover, acceptLoss, ...flags } = command.opts<RawSettings & { config?: string; recover?: boolean; acceptLoss?: boolean }>();
  return { flags, configFile: config, recover, acceptLoss };
}

/** The settings of a config file, and each one's key as the file spells it. */
interface FileSettings {
  settings: RawSettings;
  keys: Partial<Record<SettingKey, string>>;
}

function readConfigFile(file: string): FileSettings {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read --config "${file}": ${(error as Error).message}`);
  }
  let document: unknown;
  try {
    // Every value as its text, as on the command line: "nodeId: 007" is node 007, not 7, and "zone: 1.10" not 1.1.
    document = YAML.parse(text, { schema: 'failsafe' });
  } catch (error) {
    throw new ConfigError(`--config "${file}" is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  if (document === null || document === undefined) return { settings: {}, keys: {} };
  if (typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError(`--config "${file}" must be a mapping of settings (e.g. "dataDir: /var/lib/weft")`);
  }
  return settingsFromDocument(file, document as Record<string, unknown>);
}

function settingsFromDocument(file: string, document: Record<string, unknown>): FileSettings {
  const settings: RawSettings = {};
  const keys: FileSettings['keys'] = {};
  for (const [key, value] of Object.entries(document)) {
    const setting = SETTING_KEYS.find((name) => name === key || kebab(name) === key);
    if (!setting) {
      const known = SETTING_KEYS.map(kebab).join(', ');
      throw new ConfigError(`unknown key "${key}" in ${file}: expected one of ${known}`);
    }
    if (setting in settings) throw new ConfigError(`"${key}" in ${file} sets ${setting} a second time`);
    settings[setting] = value;
    keys[setting] = key;
  }
  return { settings, keys };
}

/** One setting's value and where it came from, for error messages. */
interface Setting {
  value: unknown;
  /** "--nbd-port", or the key as the config file spells it. */
  name: string;
  /** "" for a flag, " in FILE" for the config file. */
  origin: string;
}
type Picker = (key: SettingKey) => Setting;

function validate(pick: Picker): WeftdConfig {
  const dataDir = path.resolve(text(pick('dataDir'), DEFAULTS.dataDir));
  const listen = listenAddress(pick('listen'));
  return {
    dataDir,
    nodeId: nodeId(pick('nodeId')),
    listen,
    nbdPort: port(pick('nbdPort'), DEFAULTS.nbdPort),
    apiPort: port(pick('apiPort'), DEFAULTS.apiPort),
    metricsPort: metricsPort(pick('metricsPort')),
    pools: pools(pick('pool'), dataDir),
    logLevel: logLevel(pick('logLevel')),
    syncIntervalMs: seconds(pick('syncInterval'), DEFAULTS.syncInterval) * 1000,
    // 0 would replace a copy on every node restart, or after one failed resync.
    replicaTimeoutMs: seconds(pick('replicaTimeout'), DEFAULTS.replicaTimeout, 1) * 1000,
    ...zoneSource(pick('zone'), pick('zoneFromNodeLabel')),
    advertise: advertise(pick('advertise'), listen),
    csi: csi(pick('csiEndpoint'), pick('csiRole'), pick('nomadAddr')),
    store: store(pick('store')),
    maxConnectionInflightBytes: bytes(pick('maxConnectionInflightBytes'), DEFAULTS.maxConnectionInflightBytes),
    maxInflightBytes: bytes(pick('maxInflightBytes'), DEFAULTS.maxInflightBytes),
    nbdMaxConnections: count(pick('nbdMaxConnections'), DEFAULTS.nbdMaxConnections),
    consulAddr: consulAddr(pick('consulAddr')),
    classes: classes(pick('classes')),
  };
}

const invalid = ({ name, origin }: Setting, value: unknown, expected: string) =>
  new ConfigError(`invalid ${name} ${JSON.stringify(value)}${origin}: ${expected}`);

/** A setting that must be a non-empty string (the config file's values are all read as text). */
function text(setting: Setting, fallback: string): string {
  const { value } = setting;
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.trim() === '') throw invalid(setting, value, 'expected a non-empty string');
  return value;
}

function nodeId(setting: Setting): string {
  const id = text(setting, os.hostname());
  if (!isValidName(id)) throw invalid(setting, id, `expected a name: ${NAME_RULE}`);
  return id;
}

/** An IPv4 address also passes: its parts are names of digits. */
const isHostName = (value: string) =>
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(value);

function listenAddress(setting: Setting): string {
  const address = text(setting, DEFAULTS.listen);
  if (net.isIP(address) === 0 && !isHostName(address)) {
    throw invalid(setting, address, 'expected an IP address or a host name, e.g. 127.0.0.1 or 0.0.0.0');
  }
  return address;
}

function advertise(setting: Setting, listen: string): string {
  const wildcard = (address: string) => address === '0.0.0.0' || address === '::';
  if (setting.value === undefined) return wildcard(listen) ? os.hostname() : listen;
  const address = listenAddress(setting);
  if (wildcard(address)) throw invalid(setting, address, 'expected the address others reach this node at, not a wildcard');
  return address;
}

function port(setting: Setting, fallback: string): number {
  const value = text(setting, fallback);
  const number = Number(value);
  if (!/^\d+$/.test(value) || number > 65535) throw invalid(setting, setting.value, 'expected a port number from 0 to 65535 (0 = any free port)');
  return number;
}

function metricsPort(setting: Setting): number | 'off' {
  if (setting.value === 'off') return 'off';
  try {
    return port(setting, DEFAULTS.metricsPort);
  } catch {
    throw invalid(setting, setting.value, 'expected a port number from 0 to 65535 (0 = any free port), or off');
  }
}

/** HOST:PORT or [IPv6]:PORT, with a port from 1 to 65535. */
function consulAddr(setting: Setting): HostPort | undefined {
  if (setting.value === undefined) return undefined;
  const value = text(setting, '');
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  const validHost = host !== undefined && (match?.[1] !== undefined ? net.isIPv6(host) : isHostName(host));
  if (!validHost || !(port >= 1 && port <= 65535)) {
    throw invalid(setting, value, 'expected HOST:PORT of a Consul agent, e.g. 127.0.0.1:8500 ([ADDRESS]:PORT for IPv6)');
  }
  return { host: host as string, port };
}

function classes(setting: Setting): ServiceClass[] {
  if (setting.value === undefined) return [];
  try {
    return parseClasses(setting.value, `${setting.name}${setting.origin}`);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

function logLevel(setting: Setting): LogLevel {
  const level = text(setting, DEFAULTS.logLevel);
  const known = LOG_LEVELS.find((candidate) => candidate === level);
  if (!known) throw invalid(setting, level, `expected one of ${LOG_LEVELS.join(', ')}`);
  return known;
}

/** A whole number of seconds, least (default 0) to one day. */
function seconds(setting: Setting, fallback: string, least = 0): number {
  const value = text(setting, fallback);
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < least || number > 86400) throw invalid(setting, setting.value, `expected a whole number of seconds from ${least} to 86400`);
  return number;
}

/** A whole number from 1 to a million. */
function count(setting: Setting, fallback: string): number {
  const value = text(setting, fallback);
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < 1 || number > 1_000_000) throw invalid(setting, setting.value, 'expected a whole number from 1 to 1000000');
  return number;
}

/** A size above 0, e.g. 64MiB or 1G. */
function bytes(setting: Setting, fallback: string): number {
  const value = text(setting, fallback);
  let size: number;
  try {
    size = parseSize(value);
  } catch (error) {
    throw invalid(setting, setting.value, (error as Error).message);
  }
  if (size <= 0) throw invalid(setting, setting.value, 'expected a size above 0, e.g. 64MiB');
  return size;
}

/** Zones (Kubernetes label values) and label names: 1-63 characters, letters and digits at both ends, '-', '_' or '.' between. */
const LABEL_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;

export const isValidZone = (value: string): boolean => LABEL_NAME.test(value);

function zone(setting: Setting): string | undefined {
  if (setting.value === undefined) return undefined;
  const value = text(setting, '');
  if (!isValidZone(value)) {
    throw invalid(setting, value, "expected 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
  }
  return value;
}

/** The prefix of a Kubernetes label key ([PREFIX/]NAME): a DNS subdomain. */
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** --zone, or --zone-from-node-label (resolved at startup); not both. */
function zoneSource(zoneSetting: Setting, labelSetting: Setting): Pick<WeftdConfig, 'zone' | 'zoneFromNodeLabel'> {
  if (labelSetting.value === undefined) return { zone: zone(zoneSetting) };
  if (zoneSetting.value !== undefined) {
    throw invalid(labelSetting, labelSetting.value, `the zone comes either from ${zoneSetting.name}${zoneSetting.origin} or from a node label: give one`);
  }
  const label = text(labelSetting, '');
  const slash = label.lastIndexOf('/');
  const [prefix, name] = slash < 0 ? [undefined, label] : [label.slice(0, slash), label.slice(slash + 1)];
  if (!LABEL_NAME.test(name) || (prefix !== undefined && !DNS_SUBDOMAIN.test(prefix))) {
    throw invalid(labelSetting, label, 'expected a Kubernetes label key, [PREFIX/]NAME, e.g. topology.kubernetes.io/zone');
  }
  return { zoneFromNodeLabel: label };
}

function csi(endpointSetting: Setting, roleSetting: Setting, nomadSetting: Setting): CsiSettings | undefined {
  if (endpointSetting.value === undefined) {
    if (roleSetting.value !== undefined) throw invalid(roleSetting, roleSetting.value, 'a CSI role needs a CSI endpoint (--csi-endpoint) as well');
    if (nomadSetting.value !== undefined) throw invalid(nomadSetting, nomadSetting.value, 'the CSI node service looks allocations up: it needs a CSI endpoint (--csi-endpoint) as well');
    return undefined;
  }
  const endpoint = text(endpointSetting, '');
  if (!/^unix:\/\/\/./.test(endpoint)) throw invalid(endpointSetting, endpoint, 'expected unix:///ABSOLUTE/PATH of a socket, e.g. unix:///csi/csi.sock');
  const role = text(roleSetting, DEFAULTS.csiRole);
  const known = CSI_ROLES.find((candidate) => candidate === role);
  if (!known) throw invalid(roleSetting, role, `expected one of ${CSI_ROLES.join(', ')}`);
  const nomadAddr = nomadAddress(nomadSetting, known);
  return nomadAddr ? { endpoint, role: known, nomadAddr } : { endpoint, role: known };
}

/** An http(s) URL, for a node service: the controller never looks allocations up. */
function nomadAddress(setting: Setting, role: CsiRole): string | undefined {
  if (setting.value === undefined) return undefined;
  const value = text(setting, '');
  const url = URL.canParse(value) ? new URL(value) : undefined;
  if (!url || !['http:', 'https:'].includes(url.protocol)) throw invalid(setting, value, "expected the http(s) URL of Nomad's HTTP API, e.g. http://127.0.0.1:4646");
  if (role === 'controller') throw invalid(setting, value, 'only the CSI node service looks allocations up: it needs --csi-role node or both');
  return value;
}

function store(setting: Setting): StoreSpec {
  const value = text(setting, DEFAULTS.store);
  try {
    return parseStoreSpec(value);
  } catch (error) {
    throw invalid(setting, value, (error as Error).message);
  }
}

/** --pool none: the node joins the cluster, places and serves volumes, but holds no copy of any. */
const NO_POOLS = 'none';

function pools(setting: Setting, dataDir: string): PoolSpec[] {
  const { value } = setting;
  if (value === undefined) return [{ class: 'default', path: dataDir }];
  const specs = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(specs) || specs.length === 0 || specs.some((spec) => typeof spec !== 'string')) {
    throw invalid(setting, value, `expected a list of CLASS:PATH[:SIZE] strings, or ${NO_POOLS}`);
  }
  // Spelled out rather than an empty list, so that a config file that lost its pools is not taken for one.
  if (specs.includes(NO_POOLS)) {
    if (specs.length > 1) throw invalid(setting, value, `${NO_POOLS} means no pool at all: give it alone`);
    return [];
  }
  const parsed = specs.map((spec: string) => poolSpec(setting, spec));
  const seen = new Set<string>();
  for (const pool of parsed) {
    if (seen.has(pool.path)) throw invalid(setting, pool.path, 'the same path is given as a pool twice');
    seen.add(pool.path);
  }
  return parsed;
}

/** "ssd:/mnt/nvme0:100GiB" -> { class: "ssd", path: "/mnt/nvme0", sizeBytes: 107374182400 }. */
function poolSpec(setting: Setting, spec: string): PoolSpec {
  const usage = 'expected CLASS:PATH[:SIZE], e.g. ssd:/mnt/nvme0:100GiB (CLASS is letters, digits, "_" or "-")';
  const parts = spec.split(':');
  const [poolClass, poolPath, size] = parts;
  if (parts.length < 2 || parts.length > 3 || !CLASS_NAME.test(poolClass) || poolPath.trim() === '') {
    throw invalid(setting, spec, usage);
  }
  const pool: PoolSpec = { class: poolClass, path: path.resolve(poolPath) };
  if (size === undefined) return pool;
  let sizeBytes: number;
  try {
    sizeBytes = parseSize(size);
  } catch (error) {
    throw invalid(setting, spec, (error as Error).message);
  }
  if (sizeBytes < MIN_MEMBER_BYTES) throw invalid(setting, spec, `a pool member is at least ${MIN_MEMBER_BYTES} bytes (1 MiB of superblock and 16 blocks of 4 KiB)`);
  return { ...pool, sizeBytes };
}
