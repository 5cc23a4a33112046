// The webclient in Debian's Chromium, driven by playwright-core, for
// tests/suite/web.rs. The Rust test runs the game and a telnet player; this
// script plays the page and meets it at steps: it prints `STEP name` and
// waits for `GO` on stdin once the test has done its part.
//
// The page is loaded through a TCP proxy of this script's, so the test can
// cut the page's socket (and refuse its reconnections) as a network would.
//
// Environment: EV_WEB (the portal's web address), EV_CHROMIUM, EV_SHOTS (a
// directory for the screenshots), EV_PASSWORD.
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const WAIT = 20000;
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const [host, portText] = env('EV_WEB').split(':');
const password = env('EV_PASSWORD');
const shots = env('EV_SHOTS');

// --- The proxy the test can cut -----------------------------------------
let cut = false;
const open = new Set();
const proxy = net.createServer((client) => {
  if (cut) {
    client.destroy();
    return;
  }
  const upstream = net.connect(Number(portText), host);
  open.add(client);
  open.add(upstream);
  const end = () => {
    client.destroy();
    upstream.destroy();
    open.delete(client);
    open.delete(upstream);
  };
  client.on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
  client.pipe(upstream);
  upstream.pipe(client);
});
await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${proxy.address().port}/`;

function cutNetwork() {
  cut = true;
  for (const socket of open) socket.destroy();
  open.clear();
}

// --- Steps with the Rust test --------------------------------------------
const stdin = readline.createInterface({ input: process.stdin });
const waiting = [];
const gone = [];
stdin.on('line', (line) => {
  if (line.trim() !== 'GO') return;
  const next = waiting.shift();
  if (next) next(); else gone.push(line);
});
// The last step: said, not waited on.
function announce(name) {
  console.log(`STEP ${name}`);
}

async function step(name) {
  console.log(`STEP ${name}`);
  if (gone.length) { gone.shift(); return; }
  await new Promise((resolve) => waiting.push(resolve));
}

function check(ok, what) {
  if (!ok) throw new Error(what);
}

// How many times `text` is in the scrollback.
async function count(page, text) {
  return page.evaluate((t) => document.getElementById('log').textContent.split(t).length - 1, text);
}

async function waitFor(page, text, times = 1) {
  try {
    await page.waitForFunction(
      ([t, n]) => document.getElementById('log').textContent.split(t).length - 1 >= n,
      [text, times],
      { timeout: WAIT },
    );
  } catch (e) {
    const log = await page.evaluate(() => document.getElementById('log').innerText);
    throw new Error(`waiting for ${JSON.stringify(text)} x${times}: ${e.message}\n--- the page shows:\n${log.slice(-1500)}`);
  }
}

async function type(page, line) {
  await page.locator('#input').fill(line);
  await page.keyboard.press('Enter');
}

const browser = await chromium.launch({
  executablePath: env('EV_CHROMIUM'),
  headless: true,
  // As the machine's notes say Chromium must be run here: no sandbox (root),
  // no GPU, and none of its own traffic to the outside.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

// The test is gone (it failed, or was killed): so is the browser.
stdin.on('close', () => {
  browser.close().catch(() => {}).finally(() => process.exit(2));
});

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  await page.goto(url);
  await waitFor(page, 'Welcome to ');

  // The scrollback is a polite live region; the input line has the focus.
  const log = page.getByRole('log');
  check((await log.count()) === 1, 'one role=log');
  check((await log.getAttribute('aria-live')) === 'polite', 'the log is aria-live=polite');
  check((await log.getAttribute('aria-atomic')) === 'false', 'the log is not atomic');
  check(await page.evaluate(() => document.activeElement.id === 'input'), 'the input has the focus');

  check(await page.locator('#vitals').isHidden(), 'no vitals before the game sends any');
  await type(page, `create Webby ${password}`);
  await waitFor(page, 'Welcome, Webby!');
  // The demo's Char.Vitals at login: a gauge, as a meter.
  const moves = page.getByRole('meter', { name: 'Moves' });
  await moves.waitFor({ state: 'visible', timeout: WAIT });
  check((await moves.getAttribute('aria-valuenow')) === '20', 'the moves gauge is full');
  check((await moves.getAttribute('aria-valuemax')) === '20', 'the moves gauge is out of 20');
  check((await count(page, password)) === 0, 'the password of a one-line login is not echoed');
  await type(page, 'say hello from the web');
  await waitFor(page, 'You say, "hello from the web"');
  // Watch the live region: what the telnet player says must arrive as
  // additions of new lines, and nothing else in it may change.
  await page.evaluate(() => {
    window.logChanges = [];
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.target.id !== 'log' || r.type !== 'childList' || r.removedNodes.length) {
          window.logChanges.push({ other: `${r.type} on ${r.target.nodeName}` });
        }
        for (const node of r.addedNodes) window.logChanges.push({ added: node.textContent });
      }
    }).observe(document.getElementById('log'), { childList: true, subtree: true, characterData: true, attributes: true });
  });
  await step('created');

  // The telnet player answered, with text that must stay text.
  await waitFor(page, 'Telly says, "hello from telnet"');
  await waitFor(page, 'Telly says, "<img src=x onerror=window.pwned=1> <b>not bold</b> {red}"');
  check(await page.evaluate(() => document.querySelector('#log img, #log b') === null), 'no HTML from game text');
  check(await page.evaluate(() => window.pwned === undefined), 'no script from game text');
  check(await page.evaluate(() => document.activeElement.id === 'input'), 'the input keeps the focus');
  const changes = await page.evaluate(() => window.logChanges);
  check(
    changes.length === 2 && changes.every((c) => c.added && c.added.startsWith('Telly says, ')),
    `only the two new lines were added to the live region: ${JSON.stringify(changes)}`,
  );
  // And Chromium's accessibility tree has the log as a polite live region.
  const cdp = await context.newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  const logNode = nodes.find((n) => n.role && n.role.value === 'log');
  check(logNode, 'a log in the accessibility tree');
  const live = (logNode.properties || []).find((p) => p.name === 'live');
  check(live && live.value.value === 'polite', `the log is live=polite: ${JSON.stringify(logNode.properties)}`);

  // Screen-reader mode: pressed, remembered, and told to the game.
  await page.locator('#sr').click();
  check((await page.locator('#sr').getAttribute('aria-pressed')) === 'true', 'the toggle is pressed');
  await type(page, 'client');
  await waitFor(page, 'screen reader');
  check(await page.evaluate(() => localStorage.getItem('ev.screenreader') === '1'), 'the choice is remembered');
  await page.locator('#sr').click();

  // History: up brings back the last command.
  await page.locator('#input').press('ArrowUp');
  check((await page.locator('#input').inputValue()) === 'client', 'history recalls the last command');
  await page.locator('#input').fill('');

  // The exits are links: a click is the command typed, echoed as input.
  const echoes = async (text) => page.evaluate(
    (t) => [...document.querySelectorAll('#log .echo')].filter((e) => e.textContent === t).length,
    text,
  );
  await page.locator('#log a.send', { hasText: /^down$/ }).last().click();
  await waitFor(page, 'Town Square');
  check((await echoes('down')) === 1, 'the click was echoed as input');
  await page.waitForFunction(
    () => document.querySelector('[role=meter][aria-label=Moves]').getAttribute('aria-valuenow') === '19',
    null,
    { timeout: WAIT },
  );
  check(await page.evaluate(() => document.activeElement.id === 'input'), 'the input keeps the focus after a click');
  await page.locator('#log a.send', { hasText: /^up$/ }).last().click();
  await waitFor(page, 'Here: Telly', 2);

  await type(page, 'look');
  await waitFor(page, 'Here: ', 3);
  await page.screenshot({ path: path.join(shots, 'desktop.png') });

  // Link targets no game should write stay data: no HTML, no script, no
  // javascript: link; a web link opens apart from the page.
  await type(page, '@markup {send:"><img src=x onerror=window.pwned=1>}evil{/} {url:javascript:window.pwned=2}js{/} {url:https://ev.example/docs}the docs{/}');
  const docs = page.locator('#log a.url', { hasText: 'the docs' });
  await docs.waitFor({ timeout: WAIT });
  check(await page.evaluate(() => document.querySelector('#log img') === null), 'no HTML from a link target');
  check(await page.evaluate(() => [...document.querySelectorAll('#log a')].every((a) => /^(https?:|#$)/.test(a.getAttribute('href')))), 'only http(s) and send links');
  // Once echoed as typed, once from the game: as text, not as a link.
  check((await count(page, '{url:javascript:window.pwned=2}js{/}')) === 2, 'a javascript: link is text');
  check((await docs.getAttribute('href')) === 'https://ev.example/docs', 'the URL link goes where it says');
  check((await docs.getAttribute('target')) === '_blank', 'in a new tab');
  check((await docs.getAttribute('rel')) === 'noopener noreferrer', 'without an opener or referrer');
  await page.locator('#log a.send', { hasText: 'evil' }).click();
  await waitFor(page, 'onerror=window.pwned=1>', 2);
  check(await page.evaluate(() => document.querySelector('#log img') === null && window.pwned === undefined), 'a clicked target is sent as text');

  await step('reload');
  await type(page, 'say after the reload');
  await waitFor(page, 'You say, "after the reload"');
  check((await count(page, 'Welcome to ')) === 1, 'never back to the login screen');

  // The network goes: the page says so, keeps what is typed, and comes back.
  cutNetwork();
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'away', null, { timeout: WAIT });
  await type(page, 'say typed while away');
  await step('cut');
  cut = false;
  await page.evaluate(() => window.dispatchEvent(new Event('online')));
  await waitFor(page, 'Telly says, "while you were away"');
  await waitFor(page, 'You say, "typed while away"');
  await page.waitForFunction(() => window.evClient.pending === 0, null, { timeout: WAIT });
  await step('resumed');
  await waitFor(page, 'Telly says, "marker two"');
  check((await count(page, 'Telly says, "while you were away"')) === 1, 'the missed line came once');
  check((await count(page, 'You say, "typed while away"')) === 1, 'the typed command ran once');
  check((await count(page, 'Welcome to ')) === 1, 'still never back to the login screen');

  await page.setViewportSize({ width: 390, height: 844 });
  await type(page, 'look');
  await waitFor(page, 'Here: ', 4);
  await page.screenshot({ path: path.join(shots, 'phone.png') });

  // Another browser logs in to the same character: its password prompt is
  // masked, and it takes the character over; the first page is told.
  const other = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  await other.goto(url);
  await waitFor(other, 'Welcome to ');
  await type(other, 'connect');
  await waitFor(other, 'Name:');
  await type(other, 'Webby');
  await waitFor(other, 'Password:');
  check((await other.locator('#input').getAttribute('type')) === 'password', 'the password is masked');
  await type(other, password);
  await waitFor(other, 'Welcome back, Webby!');
  check((await other.locator('#input').getAttribute('type')) === 'text', 'unmasked after the answer');
  check((await count(other, password)) === 0, 'the password is not in the scrollback');
  await waitFor(page, 'Another connection took over Webby.');
  await page.locator('#over').waitFor({ state: 'visible', timeout: WAIT });

  await browser.close();
  announce('done');
  proxy.close();
  process.exit(0);
} catch (e) {
  console.log(`FAIL ${String(e.stack || e).replaceAll('\n', '\nFAIL ')}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
