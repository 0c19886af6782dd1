// The deployments join one cluster: on Kubernetes, Nomad and systemd every weftd names the same etcd
// (--store) and advertises an address others reach it at; on Kubernetes that etcd is the StatefulSet
// of etcd.yaml, whose members' names, peer URLs and client URLs agree with each other and with --store.

import fs from 'node:fs';
import path from 'node:path';
import { parse } from '@cdktf/hcl2json';
import { DEPLOY_DIR } from './dockerfile';
import { container, expandedArgs, find, loadManifests, podSpec, type K8sObject } from './k8s-manifests';
import { flagValue, parseWeftdArgs } from './weftd-args';

describe('Kubernetes', () => {
  const objects = loadManifests().flatMap((file) => file.objects);
  const weftdArgs = (kind: string, name: string) => expandedArgs(container(podSpec(find(objects, kind, name)), 'weftd'));
  const node = parseWeftdArgs(weftdArgs('DaemonSet', 'weft-node'));
  const controller = parseWeftdArgs(weftdArgs('Deployment', 'weft-controller'));

  it('the node plugins and the controller share one etcd store, as distinct members', () => {
    expect(node.store.kind).toBe('etcd');
    expect(controller.store).toEqual(node.store);
    expect(controller.nodeId).not.toBe(node.nodeId);
  });

  it('a node plugin advertises its node\'s address', () => {
    const weftd = container(podSpec(find(objects, 'DaemonSet', 'weft-node')), 'weftd');
    const advertised = flagValue(weftd.args ?? [], '--advertise')?.replace(/^\$\((\w+)\)$/, '$1');
    expect(weftd.env?.find((variable) => variable.name === advertised)?.valueFrom?.fieldRef?.fieldPath).toBe('status.hostIP');
  });

  it('--store lists every member of the etcd StatefulSet, by the name its headless service gives it', () => {
    const statefulSet = find(objects, 'StatefulSet', 'weft-etcd') as K8sObject & { spec: { serviceName: string; replicas: number; template: { spec: unknown } } };
    const service = find(objects, 'Service', statefulSet.spec.serviceName) as K8sObject & { spec: { clusterIP: string; publishNotReadyAddresses: boolean } };
    expect(service.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
    expect(statefulSet.metadata.namespace).toBe(service.metadata.namespace);

    // Each member's args as Kubernetes expands them in pod weft-etcd-N.
    const etcd = container(podSpec(statefulSet), 'etcd');
    const members = Array.from({ length: statefulSet.spec.replicas }, (_, index) => {
      const podName = `${statefulSet.metadata.name}-${index}`;
      const args = (etcd.args ?? []).map((arg) => arg.replace(/\$\(POD_NAME\)/g, podName));
      const host = `${podName}.${service.metadata.name}.${service.metadata.namespace}.svc`;
      return { podName, host, args };
    });
    expect(etcd.env?.find((variable) => variable.name === 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect(members).toHaveLength(3);

    const initialCluster = members.map(({ podName, host }) => `${podName}=http://${host}:2380`).join(',');
    for (const { podName, host, args } of members) {
      expect(flagValue(args, '--name')).toBe(podName);
      expect(flagValue(args, '--initial-advertise-peer-urls')).toBe(`http://${host}:2380`);
      expect(flagValue(args, '--advertise-client-urls')).toBe(`http://${host}:2379`);
      expect(flagValue(args, '--initial-cluster')).toBe(initialCluster);
    }
    expect(node.store).toEqual({ kind: 'etcd', endpoints: members.map(({ host }) => `${host}:2379`) });
  });
});

describe('Nomad', () => {
  // hcl2json gives a labelled block as { label: [body] } and an unlabelled one as [body].
  type Body = Record<string, unknown>;
  const firstLabelled = (blocks: unknown) => Object.values(blocks as Record<string, Body[]>)[0][0];
  /** The job's (only) task: weftd's args and the templates that render its environment. */
  const task = async (file: string, job: string): Promise<{ args: string[]; template: unknown }> => {
    const parsed = (await parse(file, fs.readFileSync(path.join(DEPLOY_DIR, 'nomad', file), 'utf8'))) as { job: Record<string, Body[]> };
    const body = firstLabelled(firstLabelled(parsed.job[job][0].group).task);
    return { args: (body.config as { args: string[] }[])[0].args, template: body.template };
  };

  it('the node plugins and the controller name the same etcd, as distinct members', async () => {
    const node = await task('weft-node.nomad.hcl', 'weft-node');
    const controller = await task('weft-controller.nomad.hcl', 'weft-controller');
    // Both render --store from the etcd job's service with the same template (test/nomad/jobs.test.ts: what it renders).
    expect(flagValue(node.args, '--store')).toBe('${WEFT_STORE}');
    expect(flagValue(controller.args, '--store')).toBe('${WEFT_STORE}');
    expect(controller.template).toEqual(node.template);
    expect(flagValue(controller.args, '--node-id')).not.toBe(flagValue(node.args, '--node-id'));
    expect(flagValue(node.args, '--advertise')).toBe('${attr.unique.network.ip-address}');
  });
});

describe('systemd', () => {
  it('weftd.default, as /etc/default/weftd, makes the unit\'s weftd a member of an etcd cluster; without it, a cluster of one', () => {
    const unit = fs.readFileSync(path.join(DEPLOY_DIR, 'systemd', 'weftd.service'), 'utf8');
    const execArgs = (/^ExecStart=\S+ (.*) \$WEFTD_ARGS$/m.exec(unit)?.[1] ?? '').split(/\s+/);
    const defaults = fs.readFileSync(path.join(DEPLOY_DIR, 'systemd', 'weftd.default'), 'utf8');
    const weftdArgs = (/^WEFTD_ARGS="(.*)"$/m.exec(defaults)?.[1] ?? '').split(/\s+/);
    expect(parseWeftdArgs(execArgs).store).toEqual({ kind: 'embedded' });
    const config = parseWeftdArgs([...execArgs, ...weftdArgs]);
    expect(config.store.kind).toBe('etcd');
    expect(config.advertise).toBe(config.listen);
  });
});
