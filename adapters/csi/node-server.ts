// CSI Node service: stages (attach; format if blank and mount), publishes (bind mounts), reports
// stats, grows filesystems; every step recorded before and after, so retries and restarts are safe.

import * as fs from 'fs';
import type { Logger } from 'pino';
import { status, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { WeftApiError, type WeftClient } from '../../fabric/api/client';
import type { NodeStatus } from '../../fabric/api/node-info';
import { reachableAddress } from '../../fabric/api/node-info';
import type { VolumeInfo } from '../../fabric/volume/types';
import { KeyedTurns } from '../../fabric/keyed-turns';
import { allocationIdFromTargetPath } from '../nomad/alloc-id';
import type { Attacher, Attachment } from './attach/attacher';
import type { FilesystemStats } from './attach/mount';
import { checkRange } from './capacity';
import { aborted, alreadyExists, failedPrecondition, invalidArgument, notFound, unavailable } from './errors';
import type * as csi from './messages';
import { volumeRef } from './names';
import type { NodeStateStore, Publication, VolumeState } from './node-state';
import { serviceImplementation } from './rpc';
import { nodeSegments, type Place } from './topology';
import { DEFAULT_FS_TYPE, fsTypeOf, isBlock, requireCapability, requirePath, requireString, requireVolumePath, unsupportedReason, type FsType } from './validate';
import { claimOf, podIdentity, type Workload } from './workload';

/**
 * The host helpers of attach/ (mount.ts, devices.ts), passed in so that this file holds only the
 * CSI logic. Each is safe to repeat: unmount of what is not mounted, mountDevice and bindMount of
 * what already is, are no-ops; bindMount creates its target (a directory, or a file for a device).
 */
export interface HostTools {
  formatIfBlank(device: string, fsType: FsType): Promise<void>;
  mountDevice(device: string, target: string, fsType: FsType, options: string[]): Promise<void>;
  bindMount(source: string, target: string, readOnly: boolean): Promise<void>;
  unmount(target: string): Promise<void>;
  isMountPoint(path: string): Promise<boolean>;
  mountSource(target: string): Promise<string | undefined>;
  isReadOnlyMount(path: string): Promise<boolean>;
  growFilesystem(device: string, mountPath: string, fsType: FsType): Promise<void>;
  /** Resolves with why the check could not run to its end, if it could not (the mount goes on). */
  checkFilesystem(device: string, fsType: FsType): Promise<string | undefined>;
  filesystemStats(path: string): Promise<FilesystemStats>;
  deviceSizeBytes(device: string): Promise<number>;
  attachReadOnlyLoop(device: string): Promise<string>;
  loopsBackedBy(file: string): Promise<string[]>;
  detachLoop(device: string): Promise<void>;
  refreshLoopCapacity(device: string): Promise<void>;
  /** The pids of the processes that have the device open. */
  processesUsing(device: string): Promise<number[]>;
}

export interface NodeServerOptions {
  client: WeftClient;
  attacher: Attacher;
  tools: HostTools;
  state: NodeStateStore;
  /** What weftd says about this node (id, zone, NBD address). */
  node: NodeStatus;
  logger: Logger;
  /** Nomad: the job of an allocation published for (weftd --nomad-addr); never throws. Absent: the job stays unknown. */
  jobOfAllocation?: (allocationId: string) => Promise<Pick<Workload, 'jobId' | 'taskGroup'> | undefined>;
}

// SINGLE_NODE_MULTI_WRITER: the CO may ask for SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod) and SINGLE_NODE_MULTI_WRITER.
const CAPABILITIES = ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER'].map((type) => ({ rpc: { type } }));

export class NodeServer {
  /**
   * One operation at a time per volume. A CO that lost track (after a restart, or a call of its own
   * that timed out) may send a second call while the first runs: it waits for the first, then runs
   * (and finds done what the first did, if it asks the same). The spec also allows ABORTED, but
   * Nomad takes that as final (it retries only timeouts, UNAVAILABLE and RESOURCE_EXHAUSTED): a stage
   * that outlived Nomad's 2-minute timeout would fail the allocation, and the unstage of its cleanup
   * too, leaving the volume staged with no one to unstage it.
   */
  private readonly inFlight = new KeyedTurns();
  private readonly place: Place;
  private readonly client: WeftClient;
  private readonly attacher: Attacher;
  private readonly tools: HostTools;
  private readonly state: NodeStateStore;
  private readonly logger: Logger;
  /** The attach method's bound on this node's attachments, read once at start (NodeGetInfo). */
  private maxVolumes = 0;

  private constructor(private readonly options: NodeServerOptions) {
    ({ client: this.client, attacher: this.attacher, tools: this.tools, state: this.state, logger: this.logger } = options);
    this.place = { nodeId: options.node.nodeId, zone: options.node.zone || undefined };
  }

  /** A node service that has reconciled what earlier runs left on this node. */
  static async open(options: NodeServerOptions): Promise<NodeServer> {
    const server = new NodeServer(options);
    server.maxVolumes = await options.attacher.maxAttachments();
    await server.reconcile();
    return server;
  }

  implementation(): UntypedServiceImplementation {
    return serviceImplementation(
      {
        NodeStageVolume: (request: csi.NodeStageVolumeRequest) => this.stage(request),
        NodeUnstageVolume: (request: csi.NodeUnstageVolumeRequest) => this.unstage(request),
        NodePublishVolume: (request: csi.NodePublishVolumeRequest) => this.publish(request),
        NodeUnpublishVolume: (request: csi.NodeUnpublishVolumeRequest) => this.unpublish(request),
        NodeGetVolumeStats: (request: csi.NodeGetVolumeStatsRequest) => this.volumeStats(request),
        NodeExpandVolume: (request: csi.NodeExpandVolumeRequest) => this.expand(request),
        NodeGetCapabilities: () => ({ capabilities: CAPABILITIES }),
        NodeGetInfo: () => ({
          node_id: this.place.nodeId,
          max_volumes_per_node: this.maxVolumes,
          accessible_topology: { segments: nodeSegments(this.place) },
        }),
      },
      this.logger,
    );
  }

  // ---- stage and unstage

  private async stage(request: csi.NodeStageVolumeRequest): Promise<object> {
    const volume = volumeRef(requireString('volume_id', request.volume_id));
    const stagingPath = requirePath('staging_target_path', request.staging_target_path);
    const capability = supported(requireCapability('volume_capability', request.volume_capability));
    return this.inFlight.run(volume, async () => {
      const info = await this.requireVolume(volume);
      const wanted = stagedState(volume, stagingPath, capability);
      const current = this.state.get(volume);
      if (current?.phase === 'staged') {
        const conflict = stageConflict(current, wanted);
        if (conflict) throw alreadyExists(`volume ${volume} is already staged ${conflict}`);
        if (await this.stageHealthy(current)) {
          // Its claim held (again, if this node's lease lapsed meanwhile); refused if another node took it.
          await this.client.claimVolume(volume).catch((err: unknown) => {
            // Still mounted here (its writes fenced): not a final error, which would have the CO
            // take the device for unmounted and never unstage it.
            if (err instanceof WeftApiError && err.code === status.FAILED_PRECONDITION) throw aborted(`${err.message}; it stays staged on this node, its writes refused, until it is unstaged`);
            throw err;
          });
          return {};
        }
        // Its publications are pods' mounts: torn down here, a container restarted later would
        // write into an empty directory on this node's own disk instead of the volume.
        await this.forgetUnmountedPublications(current);
        if (current.publications.length > 0) {
          const problem = (await this.attachmentProblem(current)) ?? `its staging path ${current.stagingPath} is no longer mounted`;
          throw failedPrecondition(
            `volume ${volume} is staged on this node and published at ${current.publications.map((p) => p.targetPath).join(', ')}, but ${problem}: ` +
              'it is staged again only once those are unpublished (their pods stopped)',
          );
        }
      }
      // Broken, or left half done by a crash: undo it, then stage from the start.
      if (current) {
        const users = await this.unfinishedStageUsers(current);
        if (users.length > 0) throw unavailable(`volume ${volume}: a stage left unfinished by an earlier run is still in use by process ${users.join(', ')} (a filesystem tool, such as e2fsck or resize2fs): try again once it has ended`);
        await this.teardown(current);
      }
      // Another volume's stage at a path reused (or anything else mounted there) is not for this one
      // to mount over, nor, when the mount is then refused, to take down in the undoing.
      const mounted = await this.tools.mountSource(stagingPath);
      if (mounted !== undefined) throw failedPrecondition(`staging path ${stagingPath} is already a mount of ${mounted}, which is not volume ${volume}'s stage: unstage what is mounted there first`);
      // Attached on one node at a time: refused while another node has it.
      await this.client.claimVolume(volume);
      await this.stageVolume(wanted, info.sizeBytes);
      return {};
    });
  }

  /**
   * Attaches, then (mount access) formats if blank, mounts, and grows the filesystem to the device:
   * a volume restored or cloned into a larger size, or expanded while not staged, gets its space
   * here, as the spec wants before NodePublishVolume. A read-only stage changes nothing on the
   * volume: no format, no growth. Undoes it all if a step fails.
   */
  private async stageVolume(state: VolumeState, sizeBytes: number): Promise<void> {
    this.state.put(state);
    try {
      const request = { volume: state.volume, nbdUri: this.nbdUri(state.volume), sizeBytes };
      state.attachment = await this.attacher.attach(request, this.state.workDir(state.volume));
      this.state.put(state);
      if (state.access === 'mount') {
        if (!isReaderOnly(state)) await this.tools.formatIfBlank(state.attachment.devicePath, filesystemOf(state));
        await this.mountStaged(state);
      }
    } catch (error) {
      // The stage's own error is the one to tell; what the undoing met is logged.
      await this.teardown(state).catch((undoError: unknown) => this.logger.error({ err: undoError, volume: state.volume }, 'could not undo a failed stage'));
      throw error;
    }
    state.phase = 'staged';
    this.state.put(state);
    this.logger.info({ volume: state.volume, device: state.attachment?.devicePath, method: state.attachment?.method, stagingPath: state.stagingPath, access: state.access }, 'volume staged');
    await this.report(state);
  }

  private async unstage(request: csi.NodeUnstageVolumeRequest): Promise<object> {
    const volume = volumeRef(requireString('volume_id', request.volume_id));
    const stagingPath = requirePath('staging_target_path', request.staging_target_path);
    return this.inFlight.run(volume, async () => {
      const current = this.state.get(volume);
      if (!current) {
        // Nothing staged here: done, as the spec asks, also for a volume deleted since (a reboot
        // tore its stage down, and kubelet's cleanup comes after the delete). A teardown whose
        // release failed (the store out of reach) ended here: the claim is given up now.
        await this.client.releaseVolume(volume);
        return {};
      }
      if (current.stagingPath !== stagingPath) return {};
      // A publication whose target is no mount point is none (a publish that failed, and whose undoing failed too).
      await this.forgetUnmountedPublications(current);
      if (current.publications.length > 0) {
        throw failedPrecondition(`volume ${volume} is still published at ${current.publications.map((p) => p.targetPath).join(', ')}; NodeUnpublishVolume first`);
      }
      const users = await this.unfinishedStageUsers(current);
      if (users.length > 0) throw unavailable(`volume ${volume}: its unfinished stage is still in use by process ${users.join(', ')} (a filesystem tool, such as e2fsck or resize2fs): try again once it has ended`);
      // First, while it is on record as staged: a mount still in use is refused, and stays staged.
      await this.unmountStage(current);
      await this.teardown(current);
      this.logger.info({ volume, stagingPath }, 'volume unstaged');
      return {};
    });
  }

  /**
   * Mounts the attached device at the staging path, its filesystem checked if it is not clean
   * (writable stages) and grown to the device's size: ext4 before the mount (growing it mounted
   * needs CAP_SYS_RESOURCE, which a container may lack), xfs after (it grows only while mounted).
   */
  private async mountStaged(state: VolumeState): Promise<void> {
    const { devicePath } = state.attachment!;
    const fsType = filesystemOf(state);
    const grows = !isReaderOnly(state);
    const unchecked = grows ? await this.tools.checkFilesystem(devicePath, fsType) : undefined;
    if (unchecked) this.logger.warn({ volume: state.volume, device: devicePath }, `mounting a filesystem not checked: ${unchecked}`);
    if (grows && fsType === 'ext4') await this.tools.growFilesystem(devicePath, state.stagingPath, fsType);
    await this.tools.mountDevice(devicePath, state.stagingPath, fsType, mountOptions(state));
    if (grows && fsType === 'xfs') await this.tools.growFilesystem(devicePath, state.stagingPath, fsType);
  }

  /**
   * The processes that still use the device of a stage left unfinished (not staged): mkfs, e2fsck or
   * resize2fs started by a run of weftd that died (its tools are not in its process group's reach:
   * they outlive a restart). Detaching the device under them would cut an offline resize short,
   * which ext4 does not survive whole; they are let finish.
   */
  private async unfinishedStageUsers(state: VolumeState): Promise<number[]> {
    if (state.phase === 'staged' || !state.attachment) return [];
    return this.tools.processesUsing(state.attachment.devicePath);
  }

  /** Undoes whatever part of a stage (and its publications) exists; ends with no state file. */
  private async teardown(state: VolumeState): Promise<void> {
    state.phase = 'unstaging';
    this.state.put(state);
    for (const publication of state.publications) await this.release(state, publication);
    // Also a read-only device made for a publication that weftd died before recording: any loop
    // device over the staged one is such a device.
    if (state.access === 'block' && state.attachment) for (const loop of await this.tools.loopsBackedBy(state.attachment.devicePath)) await this.tools.detachLoop(loop);
    state.publications = [];
    await this.unmountStage(state);
    if (state.attachment) await this.attacher.detach(state.attachment);
    else await this.attacher.clear(this.state.workDir(state.volume));
    if (!this.state.removeWorkDir(state.volume)) this.logger.warn({ volume: state.volume, workDir: this.state.workDir(state.volume) }, 'work dir not empty after detach: left in place');
    this.state.remove(state.volume);
    await this.report(state);
    await this.client.releaseVolume(state.volume);
  }

  /**
   * Unmounts the staging path if the volume's device is what is mounted there: a mount of something
   * else there (another volume staged at the path since) is not this stage's.
   */
  private async unmountStage(state: VolumeState): Promise<void> {
    const mounted = await this.tools.mountSource(state.stagingPath);
    if (mounted === undefined) return;
    if (mounted !== state.attachment?.devicePath) {
      this.logger.warn({ volume: state.volume, stagingPath: state.stagingPath, mounted, device: state.attachment?.devicePath }, 'the staging path is a mount of something else: left mounted');
      return;
    }
    await this.tools.unmount(state.stagingPath);
  }

  private async stageHealthy(state: VolumeState): Promise<boolean> {
    return (await this.stageProblem(state)) === undefined;
  }

  /** What is wrong with the stage (its attachment, or its mount), or undefined when it works. */
  private async stageProblem(state: VolumeState): Promise<string | undefined> {
    const problem = await this.attachmentProblem(state);
    if (problem || state.access === 'block') return problem;
    return (await this.tools.isMountPoint(state.stagingPath)) ? undefined : `${state.stagingPath} is no longer mounted`;
  }

  /** What is wrong with the volume's attachment, or undefined when it works. */
  private async attachmentProblem(state: VolumeState): Promise<string | undefined> {
    const { attachment } = state;
    if (!attachment) return `volume ${state.volume} is not attached`;
    // The relay under the device keeps reconnecting to the address it was given, never another.
    if (attachment.nbdUri !== this.nbdUri(state.volume)) {
      return `volume ${state.volume} is attached through ${attachment.nbdUri}, but weftd now serves NBD at ${this.nbdUri(state.volume)} (give weftd a fixed --nbd-port)`;
    }
    if (!(await this.attacher.isHealthy(attachment))) return `the ${attachment.method} attachment of volume ${state.volume} is broken; unstage and stage it again`;
    return undefined;
  }

  // ---- publish and unpublish

  private async publish(request: csi.NodePublishVolumeRequest): Promise<object> {
    const volume = volumeRef(requireString('volume_id', request.volume_id));
    const targetPath = requirePath('target_path', request.target_path);
    const capability = supported(requireCapability('volume_capability', request.volume_capability));
    // A required field when STAGE_UNSTAGE_VOLUME is advertised: its absence is a bad request (the spec's "missing required field").
    if (!request.staging_target_path) throw invalidArgument('staging_target_path is required: this plugin stages volumes (NodeStageVolume) before publishing them');
    const stagingPath = requirePath('staging_target_path', request.staging_target_path);
    const mode = capability.access_mode?.mode;
    // Asked before the volume's turn (inFlight): a slow Nomad holds up only this call.
    const publication: Publication = {
      targetPath,
      readOnly: request.readonly || mode === 'SINGLE_NODE_READER_ONLY',
      workload: await this.withJob(workloadOf(request)),
    };
    return this.inFlight.run(volume, async () => {
      await this.requireVolume(volume);
      const state = this.state.get(volume);
      if (state?.phase !== 'staged' || state.stagingPath !== stagingPath) throw failedPrecondition(`volume ${volume} is not staged at ${stagingPath}; NodeStageVolume first`);
      if (state.access !== accessOf(capability)) throw failedPrecondition(`volume ${volume} is staged for ${state.access} access, not ${accessOf(capability)}`);
      // Staged for reading only, it is published for reading only, whatever mode the publish names
      // (its mount is read-only already; a block device would not be).
      if (isReaderOnly(state)) publication.readOnly = true;
      const existing = state.publications.find((p) => p.targetPath === targetPath);
      if (existing && existing.readOnly !== publication.readOnly) {
        throw alreadyExists(`volume ${volume} is already published at ${targetPath} ${existing.readOnly ? 'read-only' : 'read-write'}`);
      }
      // Published already: checked (and finished, if weftd died before its read-only remount).
      if (existing && (await this.tools.isMountPoint(targetPath))) {
        await this.tools.bindMount(existing.readOnlyDevice ?? publishedSource(state), targetPath, publication.readOnly);
        return {};
      }
      // On record but not mounted (a publish cut short whose undoing failed too): its read-only loop
      // device, if it made one, goes before the bind makes another.
      if (existing) await this.release(state, existing);
      // Another volume's publication there (a target path reused), or anything else mounted: not
      // this one's to bind over, nor, when the bind is refused, to unmount in the undoing.
      if (await this.tools.isMountPoint(targetPath)) throw failedPrecondition(`${targetPath} is already a mount of something else, not a publication of volume ${volume}`);
      // Publications on record but no longer mounted (one cut short whose undoing failed, which no
      // unpublish will come for) are not writers: forgotten first, they would refuse this one forever.
      if (!existing && mode === 'SINGLE_NODE_SINGLE_WRITER') await this.forgetUnmountedPublications(state);
      if (!existing && mode === 'SINGLE_NODE_SINGLE_WRITER' && state.publications.length > 0) {
        throw failedPrecondition(`volume ${volume} is SINGLE_NODE_SINGLE_WRITER and already published at ${state.publications[0].targetPath}`);
      }
      // A broken stage is refused, not bound: its pod would get I/O errors, or, from a staging path
      // no longer mounted, write into a directory on the node's own disk.
      const problem = await this.stageProblem(state);
      if (problem) throw failedPrecondition(`volume ${volume} is not published at ${targetPath}: its stage is broken (${problem}); unstage and stage it again`);
      await this.bind(state, publication);
      return {};
    });
  }

  /** A Nomad allocation's workload with its job, when Nomad's HTTP API tells it. */
  private async withJob(workload: Workload): Promise<Workload> {
    const lookup = this.options.jobOfAllocation;
    if (!workload.allocationId || !lookup) return workload;
    return { ...workload, ...(await lookup(workload.allocationId)) };
  }

  /**
   * Records the publication, then bind-mounts the staged filesystem or the device at the target; a
   * read-only block publication, a read-only loop device over it (recorded before it is mounted).
   */
  private async bind(state: VolumeState, publication: Publication): Promise<void> {
    state.publications = [...state.publications.filter((p) => p.targetPath !== publication.targetPath), publication];
    this.state.put(state);
    try {
      if (state.access === 'block' && publication.readOnly) {
        publication.readOnlyDevice = await this.tools.attachReadOnlyLoop(publishedSource(state));
        this.state.put(state);
      }
      await this.tools.bindMount(publication.readOnlyDevice ?? publishedSource(state), publication.targetPath, publication.readOnly);
    } catch (error) {
      // Kept on record if it cannot be undone, for the next unpublish or unstage to finish.
      try {
        await this.release(state, publication);
        state.publications = state.publications.filter((p) => p !== publication);
        this.state.put(state);
      } catch (undoError) {
        this.logger.error({ err: undoError, volume: state.volume, targetPath: publication.targetPath }, 'could not undo a failed publish');
      }
      throw error;
    }
    this.logger.info({ volume: state.volume, targetPath: publication.targetPath, readOnly: publication.readOnly, workload: publication.workload }, 'volume published');
    await this.report(state);
  }

  private async unpublish(request: csi.NodeUnpublishVolumeRequest): Promise<object> {
    const volume = volumeRef(requireString('volume_id', request.volume_id));
    const targetPath = requirePath('target_path', request.target_path);
    return this.inFlight.run(volume, async () => {
      const state = this.state.get(volume);
      // Only a path this plugin published (recorded before it is mounted) is unmounted and removed:
      // any other path, another volume's publication or a file the caller named, is not ours.
      const publication = state?.publications.find((p) => p.targetPath === targetPath);
      if (!state || !publication) return {};
      await this.release(state, publication);
      state.publications = state.publications.filter((p) => p.targetPath !== targetPath);
      this.state.put(state);
      this.logger.info({ volume, targetPath }, 'volume unpublished');
      await this.report(state);
      return {};
    });
  }

  /**
   * Undoes a publication: its target, then its read-only device if it has one and that is still a
   * loop over the staged device (detached already, its number may be another volume's now).
   */
  private async release(state: VolumeState, publication: Publication): Promise<void> {
    await this.releaseTarget(publication.targetPath);
    const { readOnlyDevice } = publication;
    const staged = state.attachment?.devicePath;
    if (readOnlyDevice && staged && (await this.tools.loopsBackedBy(staged)).includes(readOnlyDevice)) await this.tools.detachLoop(readOnlyDevice);
  }

  /** Releases (and forgets) the recorded publications whose target is not mounted. */
  private async forgetUnmountedPublications(state: VolumeState): Promise<void> {
    const mounted = await Promise.all(state.publications.map((p) => this.tools.isMountPoint(p.targetPath)));
    if (mounted.every(Boolean)) return;
    for (const gone of state.publications.filter((_, i) => !mounted[i])) await this.release(state, gone);
    state.publications = state.publications.filter((_, i) => mounted[i]);
    this.state.put(state);
  }

  /** Unmounts the target if mounted, then removes the directory or file made for it. */
  private async releaseTarget(targetPath: string): Promise<void> {
    await this.tools.unmount(targetPath);
    const stat = await fs.promises.lstat(targetPath).catch(() => undefined);
    // Never recursive: whatever is inside a directory that is no longer a mount point is not ours.
    if (stat?.isDirectory()) await fs.promises.rmdir(targetPath);
    else if (stat) await fs.promises.unlink(targetPath);
  }

  // ---- stats and expansion

  private async volumeStats(request: csi.NodeGetVolumeStatsRequest): Promise<object> {
    const volume = volumeRef(requireString('volume_id', request.volume_id));
    const volumePath = requireVolumePath('volume_path', request.volume_path);
    const state = this.stateAt(volume, volumePath);
    const condition = await this.condition(state, volumePath);
    if (condition.abnormal) {
      // kubelet drops an answer without usage, and its condition with it: the volume's size, at least.
      const info = await this.requireVolume(volume).catch(() => undefined);
      return { usage: [{ total: info?.sizeBytes ?? 0, available: 0, used: 0, unit: 'BYTES' }], volume_condition: condition };
    }
    if (state.access === 'block') {
      const info = await this.requireVolume(volume);
      return { usage: [{ total: info.sizeBytes, available: 0, used: 0, unit: 'BYTES' }], volume_condition: condition };
    }
    const stats = await this.tools.filesystemStats(volumePath);
    const usage: csi.VolumeUsage[] = [
      { total: stats.totalBytes, available: stats.availableBytes, used: stats.usedBytes, unit: 'BYTES' },
      { total: stats.totalInodes, available: stats.freeInodes, used: stats.usedInodes, unit: 'INODES' },
    ];
    return { usage, volume_condition: condition };
  }

  private async condition(state: VolumeState, volumePath: string): Promise<csi.VolumeCondition> {
    const problem = await this.attachmentProblem(state);
    if (problem) return { abnormal: true, message: problem };
    if (state.access === 'mount' && !(await this.tools.isMountPoint(volumePath))) {
      return { abnormal: true, message: `${volumePath} is no longer mounted` };
    }
    // ext4 and xfs go read-only by themselves after I/O errors (the volume out of reach for longer
    // than the attachment waits): the pods' writes fail until it is checked and mounted again.
    const writable = !isReaderOnly(state) && (volumePath === state.stagingPath || state.publications.some((p) => p.targetPath === volumePath && !p.readOnly));
    if (state.access === 'mount' && writable && (await this.tools.isReadOnlyMount(volumePath))) {
      return { abnormal: true, message: `the filesystem at ${volumePath} is read-only, not as published (it went read-only after I/O errors?): unstage and stage the volume again (ext4 is checked then)` };
    }
    return { abnormal: false, message: `attached at ${state.attachment!.devicePath} (${state.attachment!.method})` };
  }

  /**
   * Grows the device to the volume's size, then the filesystem on it, while mounted and in use.
   * Where the attach method cannot grow a device online (kernel NBD: the size is fixed when it
   * connects), the device is reattached instead, which needs every mount of it gone: possible while
   * the volume is only staged; while it is published, FAILED_PRECONDITION (as the spec says for a
   * volume that cannot grow while in use), and the filesystem grows at the next NodeStageVolume.
   */
  private async expand(request: csi.NodeExpandVolumeRequest): Promise<object> {
    const volume = volumeRef(requireString('volume_id', request.volume_id));
    const volumePath = requireVolumePath('volume_path', request.volume_path);
    const range = checkRange('capacity_range', request.capacity_range);
    if (request.volume_capability) {
      const unsupported = unsupportedReason(requireCapability('volume_capability', request.volume_capability));
      if (unsupported) throw invalidArgument(`volume_capability: ${unsupported}`);
    }
    return this.inFlight.run(volume, async () => {
      const state = this.stateAt(volume, volumePath);
      const info = await this.requireVolume(volume);
      // Not final (OUT_OF_RANGE would be): the resize may have been made through another node, whose
      // record this node has yet to hear of.
      if (range.required_bytes > info.sizeBytes) {
        throw unavailable(`volume ${volume} is ${info.sizeBytes} bytes as this node knows it, less than the ${range.required_bytes} asked for; ControllerExpandVolume first, or try again once this node has heard of it`);
      }
      if ((await this.tools.deviceSizeBytes(state.attachment.devicePath)) < info.sizeBytes) {
        if (!(await this.attacher.growOnline(state.attachment, info.sizeBytes))) await this.reconnect(state, info.sizeBytes);
      }
      // Staged read-only: the device grows, its filesystem when it is next staged read-write.
      if (state.access === 'mount' && !isReaderOnly(state)) await this.tools.growFilesystem(state.attachment.devicePath, state.stagingPath, filesystemOf(state));
      if (state.access === 'block') await this.growReadOnlyDevices(state);
      this.logger.info({ volume, sizeBytes: info.sizeBytes }, 'volume expanded on the node');
      return { capacity_bytes: info.sizeBytes };
    });
  }

  /** A read-only block publication's own loop device keeps its size until told: it takes the staged device's again. */
  private async growReadOnlyDevices(state: VolumeState): Promise<void> {
    const staged = state.attachment!.devicePath;
    const readOnly = state.publications.flatMap((p) => (p.readOnlyDevice ? [p.readOnlyDevice] : []));
    if (readOnly.length === 0) return;
    const overStaged = await this.tools.loopsBackedBy(staged);
    for (const device of readOnly) if (overStaged.includes(device)) await this.tools.refreshLoopCapacity(device);
  }

  /** Reattaches a staged, unpublished volume (its device then has the volume's current size). */
  private async reconnect(state: VolumeState, sizeBytes: number): Promise<void> {
    await this.forgetUnmountedPublications(state);
    if (state.publications.length > 0) {
      throw failedPrecondition(
        `volume ${state.volume} is published at ${state.publications.map((p) => p.targetPath).join(', ')}: its ${state.attachment?.method ?? this.attacher.method} device ` +
          'learns the new size only when it reconnects, which needs every mount of it gone; the filesystem grows when the volume is next staged',
      );
    }
    // First, while it is on record as staged: a mount still in use is refused, and stays staged.
    await this.tools.unmount(state.stagingPath);
    // Its device is detached first: until the new one is up, none is on record. A reattach that
    // fails must not leave the old device's path for a later teardown, which would detach the loop
    // devices over it, perhaps another volume's by then (the kernel reuses the numbers).
    const previous = state.attachment!;
    state.phase = 'attaching';
    state.attachment = undefined;
    this.state.put(state);
    state.attachment = await this.attacher.reattach({ ...previous, nbdUri: this.nbdUri(state.volume) }, sizeBytes);
    this.state.put(state);
    if (state.access === 'mount') await this.mountStaged(state);
    state.phase = 'staged';
    this.state.put(state);
    await this.report(state);
  }

  // ---- reconciliation after a restart

  /** Keeps each staged volume whose attachment and mount still work; undoes every other. */
  private async reconcile(): Promise<void> {
    for (const state of this.state.list()) {
      try {
        await this.reconcileVolume(state);
      } catch (error) {
        this.logger.error({ err: error, volume: state.volume }, 'could not clean up an attachment left by an earlier run');
      }
    }
  }

  private async reconcileVolume(state: VolumeState): Promise<void> {
    if (state.phase === 'staged' && (await this.stageHealthy(state))) {
      // Claimed again, on this run's lease, until the store answers; another node that claimed it meanwhile is a conflict the log must show.
      await this.client.claimVolume(state.volume, true).catch((err: unknown) => {
        if (err instanceof WeftApiError && err.code === status.FAILED_PRECONDITION) {
          this.logger.error({ err, volume: state.volume }, 'an attachment kept from an earlier run is claimed by another node now: stop the workload using it here');
        } else if (err instanceof WeftApiError && err.code === status.NOT_FOUND) {
          this.logger.warn({ err, volume: state.volume }, 'an attachment kept from an earlier run is of a volume that no longer exists');
        } else {
          this.logger.warn({ err, volume: state.volume }, 'could not claim an attachment kept from an earlier run yet; weftd keeps trying');
        }
      });
      await this.forgetUnmountedPublications(state);
      this.logger.info({ volume: state.volume, device: state.attachment?.devicePath, publications: state.publications.length }, 'kept the attachment of an earlier run');
      await this.report(state);
      return;
    }
    if (state.phase === 'staged') {
      // As NodeStageVolume would: pods' mounts are not torn down under them.
      await this.forgetUnmountedPublications(state);
      if (state.publications.length > 0) {
        this.logger.error({ volume: state.volume, publications: state.publications.map((p) => p.targetPath) }, 'the attachment of an earlier run is broken and still published: left until it is unpublished (its pods stopped)');
        await this.report(state);
        return;
      }
    }
    const users = await this.unfinishedStageUsers(state);
    if (users.length > 0) {
      this.logger.error({ volume: state.volume, phase: state.phase, device: state.attachment?.devicePath, pids: users }, 'the unfinished stage of an earlier run is still in use (a filesystem tool that outlived it?): left as it is until the next stage or unstage finds it unused');
      return;
    }
    this.logger.warn({ volume: state.volume, phase: state.phase }, 'attachment of an earlier run is broken or unfinished: unmounting and detaching it');
    await this.teardown(state);
  }

  // ---- helpers

  /** The volume as weftd knows it; NOT_FOUND when it does not exist. */
  private async requireVolume(volume: string): Promise<VolumeInfo> {
    return this.client.getVolume(volume);
  }

  /** The volume's state when it is staged, and staged or published at volumePath; NOT_FOUND otherwise. */
  private stateAt(volume: string, volumePath: string): VolumeState & { attachment: Attachment } {
    const state = this.state.get(volume);
    const paths = state ? [state.stagingPath, ...state.publications.map((p) => p.targetPath)] : [];
    if (state?.phase !== 'staged' || !state.attachment || !paths.includes(volumePath) || !fs.existsSync(volumePath)) {
      throw notFound(`volume ${volume} is not staged or published at ${volumePath} on this node`);
    }
    return { ...state, attachment: state.attachment };
  }

  private nbdUri(volume: string): string {
    const { listenAddress, nbdPort } = this.options.node;
    return `nbd://${reachableAddress(listenAddress, nbdPort)}/${volume}`;
  }

  /** Tells weftd what is attached (telemetry); a failure is logged, never fails the RPC. */
  private async report(state: VolumeState): Promise<void> {
    const { volume, attachment } = state;
    try {
      if (state.phase !== 'staged' || !attachment) {
        await this.client.removeAttachment(volume, this.place.nodeId);
        return;
      }
      await this.client.recordAttachment({
        volume,
        nodeId: this.place.nodeId,
        devicePath: attachment.devicePath,
        method: attachment.method,
        stagingPath: state.stagingPath,
        workloads: state.publications.map((p) => ({ ...p.workload, targetPath: p.targetPath })),
      });
    } catch (error) {
      this.logger.warn({ err: error, volume }, 'could not report the attachment to weftd');
    }
  }
}

/** NodeStage and NodePublish refuse what the volume cannot do with FAILED_PRECONDITION, as the spec says. */
function supported(capability: csi.VolumeCapability): csi.VolumeCapability {
  const unsupported = unsupportedReason(capability);
  if (unsupported) throw failedPrecondition(`volume_capability: ${unsupported}`);
  return capability;
}

/**
 * Who a publication is for: the Kubernetes pod kubelet names in volume_context, with the claim the
 * volume was provisioned for (a claim alone, without podInfoOnMount, is still Kubernetes); the Nomad
 * allocation in the target path; else unknown (Mesos names neither the task nor the container).
 */
export function workloadOf(request: Pick<csi.NodePublishVolumeRequest, 'volume_context' | 'target_path'>): Workload {
  const pod = podIdentity(request.volume_context);
  const claim = claimOf(request.volume_context);
  if (pod || claim.pvcName) return { ...pod, orchestrator: 'kubernetes', ...claim };
  const allocationId = allocationIdFromTargetPath(request.target_path);
  return allocationId ? { orchestrator: 'nomad', allocationId } : { orchestrator: 'unknown' };
}

function accessOf(capability: csi.VolumeCapability): VolumeState['access'] {
  return isBlock(capability) ? 'block' : 'mount';
}

function stagedState(volume: string, stagingPath: string, capability: csi.VolumeCapability): VolumeState {
  const access = accessOf(capability);
  return {
    volume,
    stagingPath,
    access,
    fsType: access === 'mount' ? fsTypeOf(capability) : undefined,
    mountFlags: capability.mount?.mount_flags ?? [],
    accessMode: capability.access_mode?.mode ?? 'UNKNOWN',
    phase: 'attaching',
    publications: [],
  };
}

function isReaderOnly(state: VolumeState): boolean {
  return state.accessMode === 'SINGLE_NODE_READER_ONLY';
}

/** What a publication bind-mounts: the staged filesystem, or the device for block access. */
function publishedSource(state: VolumeState): string {
  return state.access === 'mount' ? state.stagingPath : state.attachment!.devicePath;
}

/** How an existing stage differs from the one asked for, or undefined when it is the same. */
function stageConflict(current: VolumeState, wanted: VolumeState): string | undefined {
  if (current.stagingPath !== wanted.stagingPath) return `at ${current.stagingPath}`;
  if (current.access !== wanted.access) return `for ${current.access} access`;
  if (current.fsType !== wanted.fsType) return `with ${current.fsType}`;
  if (current.accessMode !== wanted.accessMode) return `as ${current.accessMode}`;
  // Its mount keeps the options it was made with: others asked for (ro, noexec) would not apply.
  const flags = (state: VolumeState) => [...(state.mountFlags ?? [])].sort().join(',');
  if (flags(current) !== flags(wanted)) return `with mount flags [${flags(current)}]`;
  return undefined;
}

/**
 * The stage's mount options. xfs gets nouuid: a clone or a restored snapshot is a copy of its
 * source block for block, filesystem UUID included, and xfs refuses to mount a second filesystem
 * with a UUID already mounted ("duplicate UUID"), so a clone staged beside its source would fail.
 */
function mountOptions(state: VolumeState): string[] {
  const options = isReaderOnly(state) ? [...state.mountFlags, 'ro'] : [...state.mountFlags];
  if (filesystemOf(state) === 'xfs' && !options.includes('nouuid')) options.push('nouuid');
  return options;
}

function filesystemOf(state: VolumeState): FsType {
  return state.fsType ?? DEFAULT_FS_TYPE;
}
