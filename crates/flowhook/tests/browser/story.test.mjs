// The console's whole story in a real browser: Debian's headless Chromium driven by
// playwright-core (no browser download), against a real `flowhook serve` (SQLite, a free port)
// and a real receiver on 127.0.0.1 that captures what Flowhook pushes.
//
// sign in → start an instance on the console → take the `taskUrl` from the request the
// receiver captured → open it (no sign-in: the link is the credential) → agree → the
// `task.finished` arrives; the integration center set up on its pages (a connector, five
// actions, the sync strategy), test fire, the delivery log with attempts, a redelivery, a
// backfill to 100 %, endpoint health, the base URL edited. Screenshots of the main pages, in English and Chinese, go to
// docs/screenshots/ (or $SCREENSHOT_DIR).
//
// Run: FLOWHOOK_BIN=target/debug/flowhook node --test crates/flowhook/tests/browser/
// (.ci/run does, after installing chromium and `npm ci` when missing).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../../..');
const bin = path.resolve(root, process.env.FLOWHOOK_BIN || 'target/debug/flowhook');
const shots = path.resolve(root, process.env.SCREENSHOT_DIR || 'docs/screenshots');
const BOOTSTRAP = 'browser-test-bootstrap-key-0123456789';
const CORP = 'acme';
const APP = 'APP_ACME';

let server, base, browser, receiver, receiver2, receiverUrl, receiver2Url, workdir;
/** Every request the receiver got: { path, params, headers }. */
const captured = [];
/** Every request the second receiver got (after the connector's base URL moves there). */
const captured2 = [];

/** A receiver on 127.0.0.1 that answers 200 and keeps each request in `into`. */
async function startReceiver(into) {
  const r = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      into.push({ path: req.url, params: Object.fromEntries(new URLSearchParams(body)), headers: req.headers });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise((done) => r.listen(0, '127.0.0.1', done));
  return r;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Waits until `check()` is truthy (polling), at most `ms`. */
async function until(what, check, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function api(method, p, body, user) {
  const headers = { authorization: `Bearer ${BOOTSTRAP}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (user) headers['x-flowhook-user'] = user;
  const r = await fetch(`${base}/api/v1${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

before(async () => {
  workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowhook-browser-'));
  // The receivers: answer 200 to everything and keep each request.
  receiver = await startReceiver(captured);
  receiverUrl = `http://127.0.0.1:${receiver.address().port}`;
  receiver2 = await startReceiver(captured2);
  receiver2Url = `http://127.0.0.1:${receiver2.address().port}`;

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(bin, ['serve'], {
    cwd: workdir,
    env: {
      ...process.env,
      FLOWHOOK_LISTEN: `127.0.0.1:${port}`,
      FLOWHOOK_DATABASE_URL: `sqlite://${path.join(workdir, 'flowhook.db')}`,
      FLOWHOOK_ADMIN_KEY: BOOTSTRAP,
      FLOWHOOK_PUBLIC_BASE_URL: base,
      FLOWHOOK_DELIVERY_POLL_MS: '100',
      FLOWHOOK_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  await until('flowhook to listen', async () => {
    try {
      return (await fetch(`${base}/healthz`)).ok;
    } catch {
      return false;
    }
  });

  // The organisation, as a customer sets it up through the API.
  await api('POST', '/orgs', { corpId: CORP, name: 'Acme' });
  const people = [
    ['alice', 'Alice Zhang', 'bob', false], ['dave', 'Dave Li', 'bob', false], ['bob', 'Bob Wang', 'carol', false],
    ['carol', 'Carol Chen', null, false], ['hr1', 'Helen (HR)', 'carol', false], ['hr2', 'Henry (HR)', 'carol', false],
    ['admin', 'Ada (Admin)', null, true],
  ];
  for (const [id, name, managerId, admin] of people) {
    await api('PUT', `/orgs/${CORP}/users/${id}`, { name, managerId, admin });
  }
  await api('PUT', `/orgs/${CORP}/roles/hr`, { name: 'HR', members: ['hr1', 'hr2'] });
  await api('POST', `/orgs/${CORP}/apps`, { appType: APP, name: 'Approvals' });
  await api('PUT', `/orgs/${CORP}/processes/leave?appType=${APP}`, {
    processCode: 'leave', name: 'Leave request',
    nodes: [
      { id: 'leader', type: 'approval', name: 'Leader approval', approvers: [{ type: 'leader', level: 1 }], whenEmpty: 'admin' },
      { id: 'length', type: 'route', name: 'How long?', branches: [
        { name: 'More than 3 days', condition: 'days > 3', nodes: [
          { id: 'hr', type: 'approval', name: 'HR countersign', approvers: [{ type: 'role', role: 'hr' }], mode: 'all' }] },
        { name: 'Otherwise', default: true, nodes: [] }] },
      { id: 'cc-hr', type: 'carbon', name: 'Inform HR', recipients: [{ type: 'role', role: 'hr' }] },
    ],
  });
  // The connector, its five actions and the sync strategy: set up on the console's pages below.

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  fs.mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  await new Promise((r) => (server ? server.on('exit', r) : r()));
  receiver?.close();
  receiver2?.close();
  fs.rmSync(workdir, { recursive: true, force: true });
});

async function newPage(lang) {
  const context = await browser.newContext({
    locale: lang === 'zh' ? 'zh-CN' : 'en-US',
    viewport: { width: 1280, height: 900 },
  });
  return context.newPage();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/** The parameters of the `task.created` of `taskTitle` for `assignee`, as received. */
function createdFor(assignee, title) {
  return captured.find((c) => {
    if (!c.path.endsWith('/created') || !c.params.task) return false;
    const task = JSON.parse(c.params.task);
    return task.actionerId === assignee && task.title === title;
  });
}

test('sign in, start, open the received taskUrl, agree, task.finished arrives', async () => {
  const page = await newPage('en');
  // Sign in (nothing but the form: no script on these pages).
  await page.goto(`${base}/`);
  await page.waitForURL(/\/console\/sign-in$/);
  await shot(page, 'sign-in.en');
  await page.getByLabel('Admin API key').fill(BOOTSTRAP);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/console\/orgs$/);
  await page.getByRole('button', { name: 'Open' }).click();
  await page.waitForURL(/\/console\/tasks$/);

  // The integration center: a connector (Bearer authentication), its five actions and the
  // sync strategy, all through the pages.
  await page.getByRole('link', { name: 'Integration center' }).click();
  await page.waitForURL(/\/console\/integration$/);
  await page.getByRole('link', { name: 'New connector' }).click();
  await page.getByLabel('Name', { exact: true }).fill('Task inbox');
  await page.getByLabel('Base URL', { exact: true }).fill(`${receiverUrl}/callbacks`);
  await page.getByLabel('Authentication').selectOption('bearer');
  await page.getByLabel('Token', { exact: true }).fill('inbox-secret-token');
  await shot(page, 'connector-new.en');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/\/console\/integration\/connectors\/con_[^/?]+\?saved=1$/);
  const connectorUrl = page.url().replace(/\?saved=1$/, '');
  assert.ok(!(await page.content()).includes('inbox-secret-token'), 'the token is never shown back');
  const events = ['created', 'finished', 'cancelled', 'deleted', 'cc'];
  for (const k of events) {
    await page.locator('#a-name').fill(k);
    await page.locator('#a-path').fill(`/${k}`);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.waitForURL(/\?saved=1$/);
  }
  assert.equal(await page.locator('#h-actions + table tbody tr').count(), 5, 'five actions');
  await shot(page, 'connector.en');
  await page.getByRole('link', { name: 'Sync strategy' }).click();
  for (const k of events) {
    await page.locator(`#ev-${k}`).selectOption({ label: `Task inbox / ${k} (/${k})` });
  }
  await page.getByRole('button', { name: 'Save the strategy' }).click();
  await page.waitForURL(/\/console\/integration\/strategy\?saved=1$/);
  await shot(page, 'strategy.en');
  // A deletion the strategy forbids shows the API's reason.
  await page.goto(connectorUrl);
  await page.getByRole('button', { name: 'Delete the connector' }).click();
  assert.ok(await page.getByText(/the sync strategy sends task\.created/).isVisible());
  // Test fire: a sample of each event, each exchange shown.
  await page.goto(connectorUrl);
  await page.getByRole('button', { name: 'Test fire created' }).click();
  assert.equal(await page.locator('section.exchange').count(), 5, 'five exchanges');
  await shot(page, 'test-fire.en');

  // Start an instance from the console, as Alice.
  await page.getByRole('link', { name: 'Start a process' }).click();
  await page.getByLabel('Start as').selectOption('alice');
  await page.getByLabel('Title').fill('Alice: 5 days in May');
  await page.getByLabel('Form data').fill('days=5\nreason=family visit');
  await shot(page, 'start.en');
  await page.getByRole('button', { name: 'Start', exact: true }).click();
  await page.waitForURL(/\/console\/instances\/.+\?done=1$/);
  assert.equal(await page.locator('h1').textContent(), 'Alice: 5 days in May');

  // The taskUrl, from the request the receiver captured.
  const created = await until('the task.created for bob', () => createdFor('bob', 'Alice: 5 days in May'));
  const task = JSON.parse(created.params.task);
  assert.equal(typeof task.taskUrl, 'string', 'taskUrl stays a string field of task');
  assert.match(task.taskUrl, new RegExp(`^${base}/console/tasks/${task.taskId}\\?u=bob&e=\\d+&s=`));

  // Bob opens it in a browser of his own: no sign-in, his task, his actions.
  const bob = await newPage('en');
  await bob.goto(task.taskUrl);
  assert.equal(await bob.locator('h1').textContent(), 'Alice: 5 days in May');
  assert.ok(await bob.getByRole('button', { name: 'Agree', exact: true }).isVisible());
  assert.ok(await bob.getByRole('button', { name: 'Disagree', exact: true }).isVisible());
  await shot(bob, 'task.en');
  await bob.getByLabel('Remark').fill('Enjoy the visit');
  await bob.getByRole('button', { name: 'Agree', exact: true }).click();
  await bob.waitForURL(/\?done=1$/);
  assert.ok(await bob.getByText('Enjoy the visit').isVisible(), 'the remark is in the timeline');
  assert.equal(await bob.getByRole('button', { name: 'Agree', exact: true }).count(), 0, 'nothing left to do');

  const finished = await until('the task.finished', () =>
    captured.find((c) => c.path.endsWith('/finished') && c.params.taskId === task.taskId));
  assert.equal(finished.params.actualWorkId, 'bob');

  // The delivery log shows both deliveries of Bob's task, each with its attempt.
  await page.goto(`${base}/console/integration/deliveries?task=${encodeURIComponent(task.taskId)}`);
  await until('both deliveries delivered', async () => {
    await page.reload();
    return (await page.locator('table.log tbody tr').count()) === 2
      && (await page.locator('table.log .badge.d-delivered').count()) === 2;
  });
  assert.ok(await page.getByRole('cell', { name: 'task.created' }).isVisible());
  assert.ok(await page.getByRole('cell', { name: 'task.finished' }).isVisible());
  await shot(page, 'deliveries.en');
  for (const i of [0, 1]) {
    await page.locator('table.log tbody tr').nth(i).getByRole('link').click();
    assert.equal(await page.locator('article.attempt').count(), 1, 'one attempt');
    assert.ok(await page.locator('article.attempt').getByText('Bearer ***').isVisible(), 'the token is masked');
    await page.goBack();
  }
  // Redeliver the task.created: it arrives again, the same event id, a second attempt.
  await page.locator('table.log tbody tr', { hasText: 'task.created' }).getByRole('link').click();
  const again = captured.filter((c) => c.headers['x-flowhook-event-id'] === created.headers['x-flowhook-event-id']).length;
  await page.getByRole('button', { name: 'Redeliver' }).click();
  await page.waitForURL(/\?done=1$/);
  await until('the redelivery', () =>
    captured.filter((c) => c.headers['x-flowhook-event-id'] === created.headers['x-flowhook-event-id']).length > again);
  await until('two attempts shown', async () => {
    await page.reload();
    return (await page.locator('article.attempt').count()) === 2;
  });
  await shot(page, 'delivery.en');

  // Backfill the open tasks: its page refreshes itself until the progress reaches 100 %.
  await page.goto(`${base}/console/integration/backfill`);
  await page.getByLabel('Every task open now').check();
  await page.getByRole('button', { name: 'Start the backfill' }).click();
  await page.waitForURL(/\/console\/integration\/jobs\/job_/);
  await page.locator('strong.percent', { hasText: '100 %' }).waitFor({ timeout: 15000 });
  assert.equal(await page.locator('meta[http-equiv="refresh"]').count(), 0, 'done: no more refreshing');
  await shot(page, 'backfill.en');

  // Endpoint health and the delivery-rate chart.
  await page.goto(`${base}/console/integration/health`);
  assert.ok(await page.locator('svg.rate rect.ok').count() > 0, 'the chart has delivered bars');
  await shot(page, 'health.en');

  // The HR countersign now runs: the task center and the diagram show where it stands.
  await page.goto(`${base}/console/tasks?list=todo&user=hr1`);
  assert.ok(await page.getByRole('link', { name: 'Alice: 5 days in May' }).isVisible());
  await shot(page, 'task-center.en');
  await page.getByRole('link', { name: 'Alice: 5 days in May' }).click();
  assert.equal(await page.locator('svg.diagram .node.current').count(), 1, 'HR countersign is current');
  assert.equal(await page.locator('svg.diagram .node.done').count(), 1, 'the leader approved');
  await shot(page, 'instance.en');

  // The process editor: an invalid document shows each problem with its JSON path.
  await page.goto(`${base}/console/processes/leave`);
  await shot(page, 'process.en');
  await page.getByRole('textbox', { name: 'Document (YAML or JSON)' }).fill('processCode: leave\nname: Leave\nnodes:\n  - {id: x, type: teleport, name: X}\n');
  await page.getByRole('button', { name: 'Validate' }).click();
  assert.ok(await page.getByText('$.nodes[0].type').isVisible());
  await shot(page, 'process-problems.en');

  // The same pages in Chinese.
  const zh = await newPage('zh');
  await zh.goto(`${base}/console/sign-in`);
  await zh.getByLabel('管理员 API 密钥').fill(BOOTSTRAP);
  await zh.getByRole('button', { name: '登录' }).click();
  await zh.getByRole('button', { name: '进入' }).click();
  await zh.goto(`${base}/console/tasks?list=todo&user=hr1`);
  assert.ok(await zh.getByRole('link', { name: /待我处理/ }).isVisible());
  await shot(zh, 'task-center.zh');
  await zh.getByRole('link', { name: 'Alice: 5 days in May' }).click();
  await shot(zh, 'instance.zh');
  await zh.goto(`${base}/console/processes/leave`);
  await shot(zh, 'process.zh');
  await zh.goto(`${base}/console/integration`);
  assert.equal(await zh.locator('h1').textContent(), '集成中心');
  await shot(zh, 'integration.zh');
  await zh.goto(connectorUrl);
  await shot(zh, 'connector.zh');
  await zh.goto(`${base}/console/integration/strategy`);
  assert.match(await zh.locator('h1').textContent(), /审批消息集成 — 同步策略/);
  await shot(zh, 'strategy.zh');
  await zh.goto(`${base}/console/integration/deliveries`);
  await shot(zh, 'deliveries.zh');
  await zh.locator('table.log tbody tr').first().getByRole('link').click();
  await shot(zh, 'delivery.zh');
  await zh.goto(`${base}/console/integration/health`);
  await shot(zh, 'health.zh');
  await zh.goto(`${base}/console/directory`);
  await shot(zh, 'directory.zh');
  const hr = await newPage('zh');
  const hrTask = JSON.parse((await until('hr1 task', () => createdFor('hr1', 'Alice: 5 days in May'))).params.task);
  await hr.goto(hrTask.taskUrl);
  assert.ok(await hr.getByRole('button', { name: '同意' }).isVisible());
  await shot(hr, 'task.zh');

  // A changed link is refused with a page that says why.
  const tampered = hrTask.taskUrl.replace(/s=./, (m) => (m.endsWith('A') ? 's=B' : 's=A'));
  const resp = await (await newPage('en')).goto(tampered);
  assert.equal(resp.status(), 403);

  // Directory and access: an API key created on the page is shown once.
  await page.goto(`${base}/console/directory`);
  await page.locator('#k-name').fill('Reporting');
  await page.getByLabel('tasks').check();
  await page.getByRole('button', { name: 'Create' }).last().click();
  const key = await page.locator('code.secret').textContent();
  assert.match(key, /^fhk_/);
  await shot(page, 'directory.en');
  await page.goto(`${base}/console/directory`);
  assert.ok(!(await page.content()).includes(key), 'the key is shown once');

  // The connector's base URL moves to another receiver: the next delivery goes there, with
  // the stored token (credentials are write-only: left empty in the form, they are kept).
  await page.goto(connectorUrl);
  await page.getByLabel('Base URL', { exact: true }).fill(`${receiver2Url}/v2`);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/\?saved=1$/);
  const before2 = captured.length;
  await api('POST', `/orgs/${CORP}/instances`, {
    processCode: 'leave', title: 'Dave: 1 day', formData: { days: '1' },
  }, 'dave');
  const moved = await until('a delivery at the new base URL', () => captured2.find((c) => c.path === '/v2/created'));
  assert.equal(moved.headers.authorization, 'Bearer inbox-secret-token');
  assert.equal(JSON.parse(moved.params.task).title, 'Dave: 1 day');
  assert.equal(captured.length, before2, 'nothing more at the old base URL');
});
