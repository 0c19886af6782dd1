// `weft nomad volume create|register|list|deregister`: Nomad's view of Weft volumes, through Nomad's
// HTTP API. create makes the Weft volume here and registers it (external id = its CSI volume id).
// A command group that bin/weft plugs into the fabric's CLI (fabric does not depend on adapters).

import { Option, type Command } from 'commander';
import type { Place } from '../csi/topology';
import { FS_TYPES } from '../csi/validate';
import { isNotFound, NomadClient } from './client';
import { NOMAD_PLUGIN_ID, registrationFor, type RegistrationOptions } from './registration';
import { ACCESS_MODES, ATTACHMENT_MODES, type CsiPluginStub, type CsiVolume, type CsiVolumeStub } from './types';
import { formatSize } from '../../fabric/units';
import type { VolumeInfo } from '../../fabric/volume/types';
import { nameArg, sizeArg, snapshotArg } from '../../fabric/cli/args';
import { action, type CommandContext, type Outcome } from '../../fabric/cli/context';
import { operationFailed, usageError } from '../../fabric/cli/errors';
import { table, type Column } from '../../fabric/cli/output';

interface NomadOptions {
  nomadAddr?: string;
  nomadToken?: string;
  nomadNamespace?: string;
}

interface CapabilityOptions extends NomadOptions {
  id?: string;
  accessMode: RegistrationOptions['accessMode'];
  attachmentMode: RegistrationOptions['attachmentMode'];
  fsType: string;
}

interface CreateOptions extends CapabilityOptions {
  size?: string;
  class?: string;
  fromSnapshot?: string;
}

export function nomadCommands(program: Command): void {
  const volume = program
    .command('nomad')
    .description("manage Nomad's view of Weft volumes (the weft CSI plugin's volumes)")
    .command('volume')
    .description('create, register, list and deregister Weft volumes in Nomad');

  const create = volume
    .command('create')
    .description('create a Weft volume (empty, or a clone with --from-snapshot) and register it in Nomad')
    .argument('<name>', 'Weft volume name')
    .option('--size <size>', 'size, e.g. 10GiB; required unless cloning')
    .option('--class <class>', 'service class of the pool (default: "default"); for a clone, where its new writes go (default: the snapshot\'s)')
    .option('--from-snapshot <vol@snap>', 'clone this snapshot');
  withNomadOptions(withCapabilityOptions(create)).action(action(createVolume));

  const register = volume.command('register').description('register an existing Weft volume in Nomad').argument('<name>', 'Weft volume name');
  withNomadOptions(withCapabilityOptions(register)).action(action(registerVolume));

  withNomadOptions(volume.command('list').description("list Nomad's volumes of the weft plugin, with their Weft volumes")).action(action(listVolumes));

  const deregister = volume
    .command('deregister')
    .description('make Nomad forget a volume (the Weft volume and its data stay)')
    .argument('<id>', "Nomad's id of the volume")
    .option('--force', "drop the claims of terminal allocations too (Nomad's force)");
  withNomadOptions(deregister).action(action(deregisterVolume));
}

function withNomadOptions(command: Command): Command {
  return command
    .option('--nomad-addr <url>', `Nomad's HTTP API (default: $NOMAD_ADDR, else http://127.0.0.1:4646)`)
    .option('--nomad-token <token>', 'ACL token, sent as X-Nomad-Token (default: $NOMAD_TOKEN)')
    .option('--nomad-namespace <namespace>', 'Nomad namespace (default: $NOMAD_NAMESPACE, else "default")');
}

function withCapabilityOptions(command: Command): Command {
  return command
    .option('--id <id>', "Nomad's id of the volume, what a job's volume block names as source (default: the Weft name)")
    .addOption(new Option('--access-mode <mode>', 'access mode jobs may claim').choices(ACCESS_MODES).default('single-node-writer'))
    .addOption(new Option('--attachment-mode <mode>', 'file-system (mounted) or block-device').choices(ATTACHMENT_MODES).default('file-system'))
    .addOption(new Option('--fs-type <type>', 'filesystem a blank volume gets (file-system attachment)').choices(FS_TYPES).default('ext4'));
}

function nomadClient(options: NomadOptions): NomadClient {
  try {
    return new NomadClient({ address: options.nomadAddr, token: options.nomadToken, namespace: options.nomadNamespace });
  } catch (error) {
    throw usageError((error as Error).message);
  }
}

function registration(options: CapabilityOptions): RegistrationOptions {
  if (options.id !== undefined && !/^[^\s/]+$/.test(options.id)) throw usageError(`--id "${options.id}" must be non-empty, without spaces or "/"`);
  return { id: options.id, accessMode: options.accessMode, attachmentMode: options.attachmentMode, fsType: options.fsType };
}

async function createVolume(context: CommandContext, [name]: [string], options: CreateOptions): Promise<Outcome> {
  const request = {
    name: nameArg('name', name),
    sizeBytes: options.size === undefined ? undefined : sizeArg('--size', options.size),
    class: options.class === undefined ? undefined : nameArg('--class', options.class),
    sourceSnapshot: options.fromSnapshot === undefined ? undefined : snapshotArg(options.fromSnapshot),
  };
  if (!request.sourceSnapshot && request.sizeBytes === undefined) throw usageError('--size is required (or --from-snapshot VOL@SNAP)');
  const spec = registration(options);
  const nomad = nomadClient(options);
  const id = spec.id ?? request.name;
  if (await nomadVolume(nomad, id)) throw operationFailed(`Nomad already has a volume "${id}"; nothing was created`);
  const created = await context.client.createVolume(request);
  try {
    await nomad.registerCsiVolume(registrationFor(created, spec, await heldOn(context, created)));
  } catch (error) {
    // Nomad may have committed a registration whose answer failed (a 5xx, a timeout): asked first,
    // so that a volume Nomad schedules is not deleted under it.
    const registered = await nomadVolume(nomad, id).then((volume) => volume ?? null, () => undefined);
    if (registered && registered.ExternalID === created.name && registered.PluginID === NOMAD_PLUGIN_ID) return registeredOutcome(created, registered, 'created volume');
    if (registered === undefined) {
      throw operationFailed(`${(error as Error).message} (Nomad did not say whether it registered it: the new Weft volume "${created.name}" is kept; if nomad volume status ${id} does not show it, weft volume delete ${created.name})`);
    }
    // Leave nothing behind: the volume was made only to be registered. Or say what is left.
    const undone = await context.client.deleteVolume(created.name).then(
      () => 'was deleted again',
      (undoError: Error) => `is left, as its delete failed too (${undoError.message}): weft volume delete ${created.name}`,
    );
    throw operationFailed(`${(error as Error).message} (the new Weft volume "${created.name}" ${undone})`);
  }
  return registeredOutcome(created, await readBack(nomad, id), 'created volume');
}

/**
 * Nomad's record of a volume just registered; if Nomad does not answer now, what was registered
 * stands (the command succeeded: a retry would find the volume there), and the state is unknown.
 */
async function readBack(nomad: NomadClient, id: string): Promise<CsiVolume | undefined> {
  return nomad.readCsiVolume(id).catch(() => undefined);
}

async function registerVolume(context: CommandContext, [name]: [string], options: CapabilityOptions): Promise<Outcome> {
  const spec = registration(options);
  const nomad = nomadClient(options);
  const weft = await context.client.getVolume(nameArg('name', name));
  const id = spec.id ?? weft.name;
  const existing = await nomadVolume(nomad, id);
  if (existing && (existing.ExternalID !== weft.name || existing.PluginID !== NOMAD_PLUGIN_ID)) {
    throw operationFailed(`Nomad's volume "${id}" is ${existing.PluginID} volume "${existing.ExternalID}", not Weft volume "${weft.name}"`);
  }
  if (existing) return { ...registeredOutcome(weft, existing, 'volume'), text: `volume "${weft.name}" is already registered in Nomad as "${id}"` };
  await nomad.registerCsiVolume(registrationFor(weft, spec, await heldOn(context, weft)));
  return registeredOutcome(weft, await readBack(nomad, id), 'registered volume');
}

async function listVolumes(context: CommandContext, _args: [], options: NomadOptions): Promise<Outcome> {
  const nomad = nomadClient(options);
  const [volumes, plugins, weftVolumes] = await Promise.all([nomad.listCsiVolumes(), nomad.listCsiPlugins(), context.client.listVolumes()]);
  const plugin = plugins.find((candidate) => candidate.ID === NOMAD_PLUGIN_ID);
  const byName = new Map(weftVolumes.map((volume) => [volume.name, volume]));
  const rows = volumes.filter((volume) => volume.PluginID === NOMAD_PLUGIN_ID).map((volume) => ({ nomad: volume, weft: byName.get(volume.ExternalID) ?? null }));
  const listing = rows.length ? table(LIST_COLUMNS, rows) : `no volumes of plugin ${NOMAD_PLUGIN_ID} in Nomad`;
  return { json: { plugin: plugin ?? null, volumes: rows }, text: `${pluginLine(plugin)}\n${listing}` };
}

async function deregisterVolume(_context: CommandContext, [id]: [string], options: NomadOptions & { force?: boolean }): Promise<Outcome> {
  await nomadClient(options).deregisterCsiVolume(id, { force: options.force });
  return { json: { id, deregistered: true }, text: `deregistered "${id}" from Nomad (the Weft volume stays; weft volume delete removes it)` };
}

/** Nomad's volume with this id, or undefined when Nomad has none. */
async function nomadVolume(nomad: NomadClient, id: string): Promise<CsiVolume | undefined> {
  try {
    return await nomad.readCsiVolume(id);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

function registeredOutcome(weft: VolumeInfo, nomad: CsiVolume | undefined, verb: string): Outcome {
  const inNomad = nomad
    ? `in Nomad as "${nomad.ID}" of plugin ${nomad.PluginID}, ${nomad.Schedulable ? 'schedulable' : 'not schedulable: is the weft plugin running?'}`
    : 'registered in Nomad, which did not answer when asked for its state (nomad volume status)';
  return { json: { weft, nomad: nomad ?? null }, text: `${verb} "${weft.name}" (${formatSize(weft.sizeBytes)} in class ${weft.class}); ${inNomad}` };
}

function pluginLine(plugin: CsiPluginStub | undefined): string {
  if (!plugin) return `plugin ${NOMAD_PLUGIN_ID}: not in Nomad (run the jobs in deploy/nomad)`;
  return `plugin ${NOMAD_PLUGIN_ID}: controllers ${plugin.ControllersHealthy}/${plugin.ControllersExpected} healthy, nodes ${plugin.NodesHealthy}/${plugin.NodesExpected} healthy`;
}

interface ListRow {
  nomad: CsiVolumeStub;
  weft: VolumeInfo | null;
}

const LIST_COLUMNS: Column<ListRow>[] = [
  { header: 'ID', value: (row) => row.nomad.ID },
  { header: 'NAMESPACE', value: (row) => row.nomad.Namespace },
  { header: 'WEFT VOLUME', value: (row) => (row.weft ? row.weft.name : `${row.nomad.ExternalID} (missing)`) },
  { header: 'SIZE', value: (row) => (row.weft ? formatSize(row.weft.sizeBytes) : '-'), alignRight: true },
  { header: 'CLASS', value: (row) => row.weft?.class ?? '-' },
  { header: 'SCHEDULABLE', value: (row) => (row.nomad.Schedulable ? 'yes' : 'no') },
  { header: 'CLAIMED AS', value: (row) => (row.nomad.AccessMode ? `${row.nomad.AccessMode}/${row.nomad.AttachmentMode}` : '-') },
];

/** The node a volume outside the cluster is on: the weftd the command talks to (it made or found it there). */
async function heldOn(context: CommandContext, volume: VolumeInfo): Promise<Place | undefined> {
  if (volume.replication !== undefined) return undefined;
  const { nodeId, zone } = await context.client.getNodeInfo();
  return { nodeId, zone };
}
