// The Kubernetes manifests in deploy/kubernetes/ as shipped: every document is valid for its kind
// (kubernetes-models' schemas, and no field the kind does not have: `kubectl apply` refuses those),
// and what the schemas cannot see holds: the config in the ConfigMap loads through the real loader
// with the environment the pod gives it, the probes are HTTP on a port that config listens on
// beyond loopback and hit paths that answer (a real Switchboard from that config is asked), the
// app outlives the drain, the user is the image's and not root, and the requests fit the
// measured figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Service, Secret } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { environmentKeys, loadConfig, type Config } from '../proxy/config.js';
import { parseAddress, isLoopback } from '../proxy/address.js';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';

const root = new URL('../../', import.meta.url).pathname;
const manifestDir = join(root, 'deploy/kubernetes');

type Doc = Record<string, any>;
interface Manifest { readonly file: string; readonly text: string; readonly docs: Doc[] }

function readManifests(): Manifest[] {
  return readdirSync(manifestDir).filter((f) => /\.ya?ml$/.test(f)).sort().map((file) => {
    const text = readFileSync(join(manifestDir, file), 'utf8');
    const parsed = parseAllDocuments(text);
    const list = Array.isArray(parsed) ? parsed : [parsed];
    for (const d of list) assert.deepEqual(d.errors.map(String), [], `${file}: YAML errors`);
    return { file, text, docs: list.map((d) => d.toJS() as Doc).filter((d) => d !== null) };
  });
}

// ---- Schema: the typed model of each kind, and no key its type does not declare ----

const models: Record<string, new (data: any) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap, 'v1/Service': Service, 'v1/Secret': Secret,
  'apps/v1/Deployment': Deployment, 'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

const require = createRequire(import.meta.url);
const modelsDir = dirname(require.resolve('kubernetes-models'));
// kubernetes-models' own apimachinery (its dependency, not ours), for ObjectMeta and LabelSelector.
const machineryRequire = createRequire(join(modelsDir, 'index.js'));
const machineryDir = dirname(machineryRequire.resolve('@kubernetes-models/apimachinery'));
const { LabelSelector } = machineryRequire('@kubernetes-models/apimachinery/apis/meta/v1/LabelSelector') as { LabelSelector: new (data: unknown) => { validate(): void } };

interface Shape { readonly name: string; readonly props: Map<string, string>; readonly imports: Map<string, string>; readonly file: string }
const shapes = new Map<string, Shape | null>();

/** The properties of the interface a model's declaration file declares (null: a type alias, a leaf). */
function shapeOf(file: string): Shape | null {
  if (shapes.has(file)) return shapes.get(file)!;
  const text = readFileSync(file, 'utf8');
  const iface = /export interface (\w+)(?: extends [\w, ]+)? \{\n([\s\S]*?)\n\}/.exec(text);
  const shape = iface ? {
    name: iface[1],
    file,
    props: new Map([...iface[2].matchAll(/^ {4}"([^"]+)"\??: (.+?);?$/gm)].map((m) => [m[1], m[2]] as [string, string])),
    imports: new Map([...text.matchAll(/import \{ (\w+) \} from "([^"]+)";/g)].map((m) => [m[1], m[2]] as [string, string])),
  } : null;
  shapes.set(file, shape);
  return shape;
}

function typeFile(shape: Shape, type: string): string | null {
  const spec = shape.imports.get(type);
  if (!spec) return null;
  if (spec.startsWith('.')) return join(dirname(shape.file), `${spec}.d.ts`);
  const machinery = '@kubernetes-models/apimachinery/';
  return spec.startsWith(machinery) ? join(machineryDir, `${spec.slice(machinery.length)}.d.ts`) : null;
}

/** Keys no field of their type declares, as `path: not a field of Type`. */
function unknownKeys(value: unknown, shape: Shape | null, path: string): string[] {
  if (!shape || !value || typeof value !== 'object' || Array.isArray(value)) return [];
  const out: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    const type = shape.props.get(key);
    if (type === undefined) { out.push(`${path}.${key}: not a field of ${shape.name.replace(/^I/, '')}`); continue; }
    const element = /^Array<(\w+)>$/.exec(type)?.[1];
    const file = typeFile(shape, element ?? type);
    if (!file) continue;
    const inner = shapeOf(file);
    if (element && Array.isArray(v)) v.forEach((item, i) => out.push(...unknownKeys(item, inner, `${path}.${key}[${i}]`)));
    else if (!element) out.push(...unknownKeys(v, inner, `${path}.${key}`));
  }
  return out;
}

function schemaProblems(doc: Doc, where: string): string[] {
  const id = `${doc.apiVersion}/${doc.kind}`;
  if (id === 'monitoring.coreos.com/v1/ServiceMonitor') return serviceMonitorShape(doc, where);
  const Model = models[id];
  if (!Model) return [`${where}: ${id} is not a kind this test knows`];
  try {
    new Model(doc).validate();
  } catch (err) {
    return [`${where}: ${(err as Error).message}`];
  }
  return unknownKeys(doc, shapeOf(join(modelsDir, doc.apiVersion, `${doc.kind}.d.ts`)), where);
}

/** The Prometheus Operator's models are not a dependency: the fields this example uses, by hand. */
function serviceMonitorShape(doc: Doc, where: string): string[] {
  const out: string[] = [];
  const extra = (o: Doc | undefined, allowed: string[], at: string) => {
    for (const k of Object.keys(o ?? {})) if (!allowed.includes(k)) out.push(`${where}${at}.${k}: not a field this test checks for ServiceMonitor`);
  };
  extra(doc, ['apiVersion', 'kind', 'metadata', 'spec'], '');
  extra(doc.spec, ['selector', 'endpoints', 'namespaceSelector'], '.spec');
  out.push(...unknownKeys(doc.metadata, shapeOf(join(machineryDir, 'apis/meta/v1/ObjectMeta.d.ts')), `${where}.metadata`));
  try {
    new LabelSelector(doc.spec?.selector).validate();
  } catch (err) {
    out.push(`${where}.spec.selector: ${(err as Error).message}`);
  }
  if (!Array.isArray(doc.spec?.endpoints) || doc.spec.endpoints.length === 0) out.push(`${where}.spec.endpoints: expected a list`);
  for (const [i, e] of (doc.spec?.endpoints ?? []).entries()) {
    extra(e, ['port', 'path', 'interval', 'scrapeTimeout', 'scheme'], `.spec.endpoints[${i}]`);
    if (typeof e.port !== 'string') out.push(`${where}.spec.endpoints[${i}].port: expected a port name`);
    if (e.interval !== undefined && !/^\d+(ms|s|m)$/.test(e.interval)) out.push(`${where}.spec.endpoints[${i}].interval: expected a duration like 15s`);
  }
  return out;
}

// ---- What the schemas cannot see ----

/** Seconds the app needs to stop after its SIGTERM, inside the grace period (docs/operations.md). */
const APP_STOP_SECONDS = 10;
/** The sessions one pod is sized for (docs/operations.md, Kubernetes). */
const SIZED_SESSIONS = 10_000;
const HEALTH_PATHS = ['/healthz', '/readyz'];

const dockerUser = (): number => {
  const line = readFileSync(join(root, 'Dockerfile'), 'utf8').split('\n').filter((l) => /^USER\s/.test(l)).pop();
  assert.ok(line, 'the Dockerfile has a USER');
  return Number(line.split(/\s+/)[1].split(':')[0]);
};

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** A memory quantity in MiB (bytes, Ki, Mi or Gi). */
function mebibytes(quantity: string | number | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi)?$/.exec(String(quantity ?? ''));
  if (!m) return NaN;
  const unit: Record<string, number> = { '': 1 / 1024 / 1024, Ki: 1 / 1024, Mi: 1, Gi: 1024 };
  return Number(m[1]) * unit[m[2] ?? ''];
}

/** The memory one pod needs for SIZED_SESSIONS, from docs/BENCHMARKS.md's figures (MiB). */
function measuredMemory(): { baseline: number; perSession: number; need: number } {
  const bench = readFileSync(join(root, 'docs/BENCHMARKS.md'), 'utf8');
  const idle = bench.slice(bench.indexOf('### idle: 10,000 idle connections'));
  const perConnection = Number(/\| RSS per connection \| ([\d.]+) KiB/.exec(idle)![1]);
  const withAll = Number(/\| RSS with all connections \| ([\d.]+) MiB/.exec(idle)![1]);
  const cost = bench.slice(bench.indexOf('### cluster-cost'));
  const perSession = Number(/\| RSS per session \| ([\d.]+) KiB/.exec(cost)![1]);
  const baseline = withAll - (10_000 * perConnection) / 1024;
  return { baseline, perSession, need: baseline + (SIZED_SESSIONS * perSession) / 1024 };
}

/** The value a `kubectl create secret … --from-literal=key=…` line in the file's header gives a key. */
function secretLiteral(text: string, secretName: string, key: string): string | null {
  const header = text.split('\n').filter((l) => l.startsWith('#')).map((l) => l.replace(/^#\s?/, '')).join('\n').replace(/\\\n/g, ' ');
  const command = header.split('\n').find((l) => new RegExp(`kubectl create secret generic ${secretName}\\b`).test(l));
  const literal = command && new RegExp(`--from-literal=${key}=('[^']*'|"[^"]*"|\\S+)`).exec(command)?.[1];
  if (!literal) return null;
  return literal.replace(/^['"]|['"]$/g, '')
    .replace(/\$\(openssl rand -base64 (\d+)\)/g, (_, n) => randomBytes(Number(n)).toString('base64'))
    .replace(/\$\(openssl rand -hex (\d+)\)/g, (_, n) => randomBytes(Number(n)).toString('hex'));
}

interface Checked { readonly config: Readonly<Config> | null; readonly problems: string[] }

/** Everything the schemas cannot see, for one Deployment and the documents around it. */
function deploymentProblems(m: Manifest, docs: Doc[], d: Doc, sandbox: string): Checked {
  const out: string[] = [];
  const at = `${m.file} Deployment/${d.metadata?.name}`;
  const pod = d.spec?.template?.spec ?? {};
  const labels = d.spec?.template?.metadata?.labels;
  if (!matches(d.spec?.selector?.matchLabels, labels)) out.push(`${at}: the selector does not match the pod's labels`);
  const main: Doc[] = pod.containers ?? [];
  const sidecars: Doc[] = (pod.initContainers ?? []).filter((c: Doc) => c.restartPolicy === 'Always');
  const sb = main.find((c) => /switchboard/.test(c.image ?? ''));
  const app = [...main, ...sidecars].find((c) => c !== sb);
  if (!sb) return { config: null, problems: [...out, `${at}: no Switchboard container`] };
  if (!app) out.push(`${at}: no app container`);
  const volumes: Doc[] = pod.volumes ?? [];
  const mountOf = (c: Doc, file: string) => (c.volumeMounts ?? []).find((vm: Doc) => file.startsWith(`${vm.mountPath}/`));
  const volumeOf = (c: Doc, file: string) => volumes.find((v) => v.name === mountOf(c, file)?.name);

  // The config: --config names a file of a mounted ConfigMap.
  const args: string[] = sb.args ?? [];
  const configPath = args[args.indexOf('--config') + 1];
  const cmName = volumeOf(sb, configPath ?? '')?.configMap?.name;
  const cm = docs.find((x) => x.kind === 'ConfigMap' && x.metadata?.name === cmName);
  const configText = cm?.data?.[posix.basename(configPath ?? '')];
  if (!args.includes('--config') || typeof configText !== 'string') return { config: null, problems: [...out, `${at}: --config does not name a file of a ConfigMap in ${m.file}`] };
  const configFile = join(sandbox, 'switchboard.yaml');
  writeFileSync(configFile, configText);

  // The environment: variables the loader reads, their files from mounted Secrets, with the values
  // the file's header tells the operator to create.
  const names = new Set(environmentKeys.map(([name]) => name));
  const env: Record<string, string> = {};
  for (const e of sb.env ?? []) {
    const base = String(e.name).replace(/_FILE$/, '');
    if (!names.has(base)) { out.push(`${at}: env ${e.name} is not a variable Switchboard reads`); continue; }
    if (!e.name.endsWith('_FILE')) { out.push(`${at}: env ${e.name}: give secrets as ${e.name}_FILE, a mounted Secret`); continue; }
    const secret = volumeOf(sb, String(e.value ?? ''))?.secret;
    if (!secret) { out.push(`${at}: env ${e.name}: ${e.value} is not in a mounted Secret`); continue; }
    const file = posix.basename(e.value);
    const key = secret.items ? secret.items.find((i: Doc) => i.path === file)?.key : file;
    const value = key && secretLiteral(m.text, secret.secretName, key);
    if (!value) { out.push(`${at}: env ${e.name}: the header creates no key "${key ?? file}" in Secret ${secret.secretName}`); continue; }
    const path = join(sandbox, 'secrets', e.name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `${value}\n`);
    env[e.name] = path;
  }
  let config: Readonly<Config> | null = null;
  try {
    config = loadConfig(configFile, env);
  } catch (err) {
    return { config: null, problems: [...out, `${at}: the ConfigMap's config does not load: ${(err as Error).message}`] };
  }

  // Ports and probes.
  const portOf = (c: Doc, port: string | number | undefined) => typeof port === 'number' ? port : (c.ports ?? []).find((p: Doc) => p.name === port)?.containerPort;
  const metrics = config.metrics.listen ? parseAddress(config.metrics.listen) : null;
  const control = parseAddress(config.control.listen);
  const listen = parseAddress(config.listen);
  if (!metrics) out.push(`${at}: metrics.listen is not set: the kubelet cannot reach a loopback control port`);
  else if (isLoopback(metrics.host)) out.push(`${at}: metrics.listen (${config.metrics.listen}) is loopback: the kubelet probes from the node`);
  if (!(sb.ports ?? []).some((p: Doc) => p.containerPort === listen?.port)) out.push(`${at}: no container port for listen (${config.listen})`);
  if (control && isLoopback(control.host) && (sb.ports ?? []).some((p: Doc) => p.containerPort === control.port)) out.push(`${at}: declares the loopback control port ${control.port} as a container port`);
  for (const c of [sb, ...(app ? [app] : [])]) {
    if (!c.readinessProbe) out.push(`${at}: container ${c.name} has no readiness probe`);
    for (const kind of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      const probe = c[kind];
      if (!probe) continue;
      if (!probe.httpGet) { out.push(`${at}: ${c.name} ${kind} is not httpGet`); continue; }
      const port = portOf(c, probe.httpGet.port);
      if (c === sb) {
        if (port !== metrics?.port) out.push(`${at}: ${c.name} ${kind} asks port ${probe.httpGet.port}, not metrics.listen's ${metrics?.port}`);
        if (!HEALTH_PATHS.includes(probe.httpGet.path)) out.push(`${at}: ${c.name} ${kind} asks ${probe.httpGet.path}, not one of ${HEALTH_PATHS.join(', ')}`);
      } else if (port !== Number(new URL(config.app.url).port)) {
        out.push(`${at}: ${c.name} ${kind} asks port ${probe.httpGet.port}, not app.url's ${new URL(config.app.url).port}`);
      }
    }
  }
  if (app && !(app.ports ?? []).some((p: Doc) => p.containerPort === Number(new URL(config!.app.url).port))) out.push(`${at}: the app container does not declare app.url's port`);
  if (!/^http:\/\/127\.0\.0\.1:/.test(config.app.url)) out.push(`${at}: app.url (${config.app.url}) is not the pod's loopback`);

  // Scraping by annotations.
  const annotations = d.spec?.template?.metadata?.annotations ?? {};
  if (annotations['prometheus.io/scrape'] !== 'true') out.push(`${at}: no prometheus.io/scrape annotation`);
  if (Number(annotations['prometheus.io/port']) !== metrics?.port) out.push(`${at}: prometheus.io/port is not metrics.listen's port`);
  if (annotations['prometheus.io/path'] !== '/metrics') out.push(`${at}: prometheus.io/path is not /metrics`);

  // Shutdown: the app outlives the drain, and everything fits the grace period.
  const preStop = Number(sb.lifecycle?.preStop?.sleep?.seconds ?? 0);
  const drain = config.drain.timeoutMs / 1000;
  const grace = Number(pod.terminationGracePeriodSeconds ?? 30);
  if (grace < preStop + drain + APP_STOP_SECONDS) out.push(`${at}: terminationGracePeriodSeconds ${grace} < preStop ${preStop} + drain ${drain} + the app's ${APP_STOP_SECONDS} s`);
  if (app && !sidecars.includes(app)) {
    const appWait = Number(app.lifecycle?.preStop?.sleep?.seconds ?? 0);
    if (appWait < preStop + drain) out.push(`${at}: the app is stopped with Switchboard and waits ${appWait} s, less than its preStop and drain (${preStop + drain} s): disconnect webhooks would miss it`);
  }

  // The user.
  const user = sb.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
  const nonRoot = sb.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot;
  if (nonRoot !== true) out.push(`${at}: ${sb.name} does not set runAsNonRoot`);
  if (user === 0) out.push(`${at}: ${sb.name} runs as root`);
  else if (user !== dockerUser()) out.push(`${at}: ${sb.name} runs as ${user}, not the image's USER ${dockerUser()}`);

  // Resources, against the measured figures.
  const requests = sb.resources?.requests ?? {};
  const need = measuredMemory().need;
  if (!(mebibytes(requests.memory) >= need)) out.push(`${at}: memory request ${requests.memory} is below the ${need.toFixed(0)} MiB ${SIZED_SESSIONS} sessions take`);
  if (!(mebibytes(sb.resources?.limits?.memory) >= mebibytes(requests.memory))) out.push(`${at}: memory limit below the request`);
  if (requests.cpu === undefined) out.push(`${at}: no CPU request`);

  // What selects the pods.
  for (const x of docs) {
    if (x.kind === 'Service' && matches(x.spec?.selector, labels)) {
      for (const p of x.spec?.ports ?? []) if (portOf(sb, p.targetPort) === undefined) out.push(`${at}: Service/${x.metadata?.name} targets ${p.targetPort}, no port of ${sb.name}`);
    }
    if (x.kind === 'PodDisruptionBudget' && !matches(x.spec?.selector?.matchLabels, labels)) out.push(`${at}: PodDisruptionBudget/${x.metadata?.name} selects no pod of it`);
  }
  return { config, problems: out };
}

/** A ServiceMonitor selects a Service whose port it names and that reaches the pods' metrics port. */
function monitorProblems(monitors: Manifest, deployment: Manifest): string[] {
  const out: string[] = [];
  const d = deployment.docs.find((x) => x.kind === 'Deployment')!;
  const sb = (d.spec.template.spec.containers as Doc[]).find((c) => /switchboard/.test(c.image ?? ''))!;
  for (const sm of monitors.docs.filter((x) => x.kind === 'ServiceMonitor')) {
    const services = monitors.docs.filter((x) => x.kind === 'Service' && matches(sm.spec?.selector?.matchLabels, x.metadata?.labels));
    if (services.length === 0) out.push(`ServiceMonitor/${sm.metadata?.name}: selects no Service in ${monitors.file}`);
    for (const svc of services) {
      if (!matches(svc.spec?.selector, d.spec.template.metadata.labels)) out.push(`Service/${svc.metadata?.name}: selects no pod of ${deployment.file}`);
      for (const e of sm.spec.endpoints ?? []) {
        const port = (svc.spec?.ports ?? []).find((p: Doc) => p.name === e.port);
        if (!port) { out.push(`ServiceMonitor/${sm.metadata?.name}: port ${e.port} is not a port of Service/${svc.metadata?.name}`); continue; }
        const target = (sb.ports ?? []).find((p: Doc) => p.name === port.targetPort || p.containerPort === port.targetPort);
        if (target?.name !== 'metrics') out.push(`Service/${svc.metadata?.name}: port ${e.port} does not reach ${sb.name}'s metrics port (${deployment.file})`);
        if (e.path !== '/metrics') out.push(`ServiceMonitor/${sm.metadata?.name}: path ${e.path} is not /metrics`);
      }
    }
  }
  return out;
}

function allProblems(ms: Manifest[]): { problems: string[]; configs: Array<{ file: string; config: Readonly<Config>; deployment: Doc }> } {
  const problems: string[] = [];
  const configs: Array<{ file: string; config: Readonly<Config>; deployment: Doc }> = [];
  for (const m of ms) {
    m.docs.forEach((doc, i) => problems.push(...schemaProblems(doc, `${m.file}[${i}] ${doc.kind}`)));
    for (const d of m.docs.filter((x) => x.kind === 'Deployment')) {
      const sandbox = mkdtempSync(join(tmpdir(), 'switchboard-k8s-'));
      try {
        const checked = deploymentProblems(m, m.docs, d, sandbox);
        problems.push(...checked.problems);
        if (checked.config) configs.push({ file: m.file, config: checked.config, deployment: d });
      } finally {
        rmSync(sandbox, { recursive: true, force: true });
      }
    }
  }
  const monitors = ms.filter((m) => m.docs.some((x) => x.kind === 'ServiceMonitor'));
  for (const mon of monitors) for (const m of ms.filter((x) => x.docs.some((d) => d.kind === 'Deployment'))) problems.push(...monitorProblems(mon, m));
  return { problems, configs };
}

// ---- The tests ----

test('every manifest is valid for its kind, and what the schemas cannot see holds', () => {
  const ms = readManifests();
  assert.deepEqual(ms.map((m) => m.file), ['cluster.yaml', 'servicemonitor.yaml', 'switchboard.yaml']);
  const { problems, configs } = allProblems(ms);
  assert.deepEqual(problems, []);
  assert.equal(configs.length, 2, 'two Deployments, each with a config that loads');
  const cluster = configs.find((c) => c.file === 'cluster.yaml')!;
  assert.notEqual(cluster.config.cluster.amqp.url, null, 'the cluster variant joins a cluster (from SWITCHBOARD_CLUSTER_AMQP_URL_FILE)');
  assert.notEqual(cluster.config.session.tokenSecret, null);
  assert.equal(configs.find((c) => c.file === 'switchboard.yaml')!.deployment.spec.replicas, 1, 'without a cluster, one pod');
});

test('a Switchboard from each ConfigMap answers every probe and the scrape path on its metrics listener', async (t) => {
  const { configs } = allProblems(readManifests());
  const app = await startApp();
  t.after(() => app.close());
  for (const { file, config, deployment } of configs) {
    const loaded = structuredClone(config) as unknown as Record<string, any>;
    // Loopback ports of its own, the test's app, and no broker (the cluster link is not what is probed).
    const sidecar = await startSidecar(app.url, {
      ...loaded,
      listen: '127.0.0.1:0',
      control: { ...loaded.control, listen: '127.0.0.1:0' },
      metrics: { listen: '127.0.0.1:0' },
      app: { url: app.url },
      cluster: { ...loaded.cluster, amqp: { ...loaded.cluster.amqp, url: null } },
      log: { level: 'silent' },
    });
    try {
      const port = sidecar.sb.metricsAddress!.port;
      const sb = (deployment.spec.template.spec.containers as Doc[]).find((c) => /switchboard/.test(c.image))!;
      const paths = [sb.readinessProbe, sb.livenessProbe, sb.startupProbe].filter(Boolean).map((p: Doc) => p.httpGet.path as string);
      paths.push(deployment.spec.template.metadata.annotations['prometheus.io/path']);
      assert.ok(paths.length >= 3, `${file}: readiness, liveness and scrape paths`);
      for (const path of paths) {
        const res = await fetch(`http://127.0.0.1:${port}${path}`);
        assert.equal(res.status, 200, `${file}: GET ${path} on the metrics listener`);
        if (path === '/metrics') assert.match(await res.text(), /^switchboard_/m);
        else await res.arrayBuffer();
      }
    } finally {
      await sidecar.close();
    }
  }
});

test('the sizing in docs/operations.md is the arithmetic of the measured figures', () => {
  const { baseline, perSession, need } = measuredMemory();
  const operations = readFileSync(join(root, 'docs/operations.md'), 'utf8');
  const section = operations.slice(operations.indexOf('### Resources'));
  assert.ok(section.includes(`${perSession.toFixed(2)} KiB`), 'the per-session figure');
  assert.ok(section.includes(`${baseline.toFixed(0)} MiB`), 'the baseline');
  assert.ok(section.includes(`${need.toFixed(0)} MiB`), 'the total');
  assert.ok(section.includes(SIZED_SESSIONS.toLocaleString('en-US')), 'the number of sessions sized for');
});

/** The shipped manifests with one change made to a copy of switchboard.yaml. */
function mutated(change: (docs: Doc[]) => void, text?: (t: string) => string): string[] {
  const ms = readManifests();
  const m = ms.find((x) => x.file === 'switchboard.yaml')!;
  const docs = structuredClone(m.docs);
  change(docs);
  return allProblems([{ ...m, text: text ? text(m.text) : m.text, docs }]).problems;
}

const deploymentOf = (docs: Doc[]) => docs.find((d) => d.kind === 'Deployment')!;
const sbOf = (docs: Doc[]) => (deploymentOf(docs).spec.template.spec.containers as Doc[]).find((c) => c.name === 'switchboard')!;
const setConfig = (docs: Doc[], edit: (yaml: string) => string) => {
  const cm = docs.find((d) => d.kind === 'ConfigMap')!;
  cm.data['switchboard.yaml'] = edit(cm.data['switchboard.yaml']);
};

test('each broken manifest is named for what breaks it', () => {
  const cases: Array<[string, () => string[], RegExp]> = [
    ['an exec probe', () => mutated((d) => { sbOf(d).readinessProbe = { exec: { command: ['node', '-e', '1'] } }; }), /switchboard readinessProbe is not httpGet/],
    ['a probe on the control port', () => mutated((d) => { sbOf(d).livenessProbe.httpGet.port = 8081; }), /livenessProbe asks port 8081, not metrics\.listen's 9090/],
    ['a probe on a path that is not a health check', () => mutated((d) => { sbOf(d).readinessProbe.httpGet.path = '/ready'; }), /readinessProbe asks \/ready, not one of/],
    ['metrics on loopback', () => mutated((d) => setConfig(d, (y) => y.replace('0.0.0.0:9090', '127.0.0.1:9090'))), /metrics\.listen \(127\.0\.0\.1:9090\) is loopback/],
    ['no metrics listener', () => mutated((d) => setConfig(d, (y) => y.replace(/^ *metrics:\n.*\n/m, ''))), /metrics\.listen is not set/],
    ['a config the loader refuses', () => mutated((d) => setConfig(d, (y) => `${y}drian:\n  timeoutMs: 1\n`)), /does not load: drian: unknown key/],
    ['a grace period shorter than the drain', () => mutated((d) => { deploymentOf(d).spec.template.spec.terminationGracePeriodSeconds = 30; }), /terminationGracePeriodSeconds 30 < preStop 5 \+ drain 30/],
    ['the app stopped with Switchboard', () => mutated((d) => {
      const spec = deploymentOf(d).spec.template.spec;
      const app = spec.initContainers.pop();
      delete app.restartPolicy;
      spec.containers.push(app);
    }), /the app is stopped with Switchboard and waits 0 s/],
    ['an app without a readiness probe', () => mutated((d) => { delete deploymentOf(d).spec.template.spec.initContainers[0].readinessProbe; }), /container app has no readiness probe/],
    ['an app probe on another port', () => mutated((d) => { deploymentOf(d).spec.template.spec.initContainers[0].readinessProbe.httpGet.port = 8080; }), /app readinessProbe asks port 8080, not app\.url's 3000/],
    ['a variable the loader does not read', () => mutated((d) => { sbOf(d).env[0].name = 'SWITCHBOARD_WEBHOOKS_SECRET_FILE'; }), /env SWITCHBOARD_WEBHOOKS_SECRET_FILE is not a variable Switchboard reads/],
    ['a secret in plain text', () => mutated((d) => { sbOf(d).env[0] = { name: 'SWITCHBOARD_WEBHOOK_SECRET', value: 'whsec_x' }; }), /give secrets as SWITCHBOARD_WEBHOOK_SECRET_FILE/],
    ['a secret file nothing mounts', () => mutated((d) => { sbOf(d).env[0].value = '/etc/secret/webhook-secret'; }), /is not in a mounted Secret/],
    ['a secret key the instructions do not create', () => mutated(() => {}, (t) => t.replace('--from-literal=webhook-secret=', '--from-literal=webhook=')), /the header creates no key "webhook-secret" in Secret switchboard/],
    ['root', () => mutated((d) => { sbOf(d).securityContext.runAsUser = 0; }), /switchboard runs as root/],
    ['another user than the image\'s', () => mutated((d) => { sbOf(d).securityContext.runAsUser = 1001; }), /runs as 1001, not the image's USER 1000/],
    ['no runAsNonRoot', () => mutated((d) => { delete sbOf(d).securityContext.runAsNonRoot; }), /does not set runAsNonRoot/],
    ['too little memory for the measured figures', () => mutated((d) => { sbOf(d).resources.requests.memory = '128Mi'; }), /memory request 128Mi is below the \d+ MiB 10000 sessions take/],
    ['the control port declared', () => mutated((d) => { sbOf(d).ports.push({ name: 'control', containerPort: 8081 }); }), /declares the loopback control port 8081/],
    ['a scrape annotation on another port', () => mutated((d) => { deploymentOf(d).spec.template.metadata.annotations['prometheus.io/port'] = '8081'; }), /prometheus\.io\/port is not metrics\.listen's port/],
    ['a Service aimed at no port', () => mutated((d) => { d.find((x) => x.kind === 'Service')!.spec.ports[0].targetPort = 'http'; }), /Service\/chat targets http, no port of switchboard/],
    ['a misspelled field', () => mutated((d) => { deploymentOf(d).spec.template.spec.terminationGracePeriodSecond = 45; }), /spec\.template\.spec\.terminationGracePeriodSecond: not a field of PodSpec/],
    ['a misspelled field in a list', () => mutated((d) => { sbOf(d).readinessProbe.httpGet.paht = '/readyz'; }), /containers\[0\]\.readinessProbe\.httpGet\.paht: not a field of HTTPGetAction/],
    ['a value of the wrong type', () => mutated((d) => { sbOf(d).ports[0].containerPort = 'public'; }), /containerPort must be integer/],
    ['a kind the test does not know', () => mutated((d) => { d.push({ apiVersion: 'v1', kind: 'Podd', metadata: { name: 'x' } }); }), /v1\/Podd is not a kind this test knows/],
  ];
  for (const [what, run, expected] of cases) {
    const problems = run();
    assert.ok(problems.some((p) => expected.test(p)), `${what}: expected ${expected}, got ${JSON.stringify(problems)}`);
  }
});

test('a broken ServiceMonitor is named for what breaks it', () => {
  const ms = readManifests();
  const check = (change: (docs: Doc[]) => void) => {
    const copy = ms.map((m) => (m.file === 'servicemonitor.yaml' ? { ...m, docs: structuredClone(m.docs) } : m));
    change(copy.find((m) => m.file === 'servicemonitor.yaml')!.docs);
    return allProblems(copy).problems;
  };
  const monitor = (docs: Doc[]) => docs.find((d) => d.kind === 'ServiceMonitor')!;
  assert.ok(check((d) => { monitor(d).spec.endpoints[0].port = 'web'; }).some((p) => /port web is not a port of Service\/chat-metrics/.test(p)));
  assert.ok(check((d) => { monitor(d).spec.selector.matchLabels = { app: 'other' }; }).some((p) => /selects no Service/.test(p)));
  assert.ok(check((d) => { d.find((x) => x.kind === 'Service')!.spec.ports[0].targetPort = 'public'; }).some((p) => /does not reach switchboard's metrics port/.test(p)));
  assert.ok(check((d) => { monitor(d).spec.selector = { matchLabels: 'chat' }; }).some((p) => /ServiceMonitor\.spec\.selector: .*matchLabels must be object/.test(p)));
  assert.ok(check((d) => { monitor(d).spec.endpoints[0].intervall = '15s'; }).some((p) => /intervall: not a field/.test(p)));
  assert.ok(check((d) => { monitor(d).spec.endpoints[0].interval = 15; }).some((p) => /interval: expected a duration/.test(p)));
});
