// Writes the dashboards as JSON into dashboards/ (`npm run dashboards`); the files are committed, and
// a test checks they are what this generator writes now.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Dashboard } from '@grafana/grafana-foundation-sdk/dashboard';
import { clusterOverview } from './cluster-overview';
import { volumeDetail } from './volume-detail';
import { workloadSla } from './workload-sla';

/** dashboards/ in the repository: this file runs compiled, from dist/dashboards/src/. */
export const DASHBOARDS_DIR = path.resolve(__dirname, '..', '..', '..', 'dashboards');

/** Each dashboard's file name and its JSON text, as committed. */
export function renderDashboards(): Map<string, string> {
  const dashboards = { 'cluster-overview.json': clusterOverview(), 'volume-detail.json': volumeDetail(), 'workload-sla.json': workloadSla() };
  return new Map(Object.entries(dashboards).map(([file, dashboard]) => [file, JSON.stringify(numbered(dashboard), null, 2) + '\n']));
}

/** Panels numbered in order: links to a panel (viewPanel=N) then stay valid across regenerations. */
function numbered(dashboard: Dashboard): Dashboard {
  return { ...dashboard, panels: dashboard.panels?.map((panel, index) => ({ ...panel, id: index + 1 })) };
}

if (require.main === module) {
  for (const [file, text] of renderDashboards()) {
    fs.writeFileSync(path.join(DASHBOARDS_DIR, file), text);
    console.log(`wrote dashboards/${file}`);
  }
}
