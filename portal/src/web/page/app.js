// ev's webclient. Speaks the portal's JSON protocol (portal/src/web/protocol.rs):
// numbered outputs it acknowledges, numbered inputs the portal acknowledges,
// and a resume token, so a dropped socket comes back to the same session
// with nothing missed and nothing typed twice.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const log = $('log');
  const input = $('input');
  const form = $('form');
  const promptLabel = $('prompt');
  const statusBox = $('status');
  const statusText = $('status-text');
  const jump = $('jump');
  const over = $('over');

  const MAX_LINES = 5000;
  const MAX_HISTORY = 200;
  // Close codes after which the session is over: do not resume.
  const FINAL = new Set([1000, 1003, 1007, 1008, 1009, 4000, 4001]);
  const store = window.sessionStorage;

  // The session, kept across a reload of the page (this tab only).
  let token = store.getItem('ev.token') || '';
  let seen = Number(store.getItem('ev.seen')) || 0;
  let nextInput = Number(store.getItem('ev.next')) || 1;
  // Inputs the portal has not acknowledged: {n, text} or {n, name, data}.
  let unacked = [];
  try { unacked = JSON.parse(store.getItem('ev.unacked') || '[]'); } catch (_) { unacked = []; }

  let socket = null;
  let resuming = false;  // this socket's hello asked to resume
  let quietRestart = false;
  let ready = false;     // the welcome came: inputs may go
  let finished = false;  // the session is over
  let backoff = 250;
  let retryTimer = 0;
  let ackTimer = 0;
  let acked = seen;
  let secret = false;
  let paused = false;
  const prefs = window.localStorage;
  let screenReader = prefs.getItem('ev.screenreader') === '1';
  let history = [];
  let historyAt = 0;
  let draft = '';

  function save() {
    store.setItem('ev.token', token);
    store.setItem('ev.seen', String(seen));
    store.setItem('ev.next', String(nextInput));
    store.setItem('ev.unacked', JSON.stringify(unacked.filter((i) => !i.secret)));
  }

  function setStatus(state, text) {
    statusBox.dataset.state = state;
    statusText.textContent = text;
  }

  // --- The scrollback -------------------------------------------------

  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function append(node) {
    const follow = atBottom();
    log.appendChild(node);
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    if (follow) {
      log.scrollTop = log.scrollHeight;
    } else {
      jump.hidden = false;
    }
  }

  const EXACT = /^#[0-9a-f]{6}$/i;

  function colour(span, value, kind) {
    if (typeof value === 'number' && value >= 0 && value < 16) {
      span.classList.add(kind + value);
    } else if (typeof value === 'string' && EXACT.test(value)) {
      if (kind === 'fg') span.style.color = value; else span.style.backgroundColor = value;
    }
  }

  // A link's target as the page will use it: a command to send, or an
  // http(s) URL (the portal allows no other; checked again here all the
  // same, as the page must never make a javascript: or data: link).
  function webUrl(value) {
    if (typeof value !== 'string') return null;
    try {
      const u = new URL(value);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  // Game text is always put in as text, never as HTML.
  function line(spans, cls) {
    const div = document.createElement('div');
    if (cls) div.className = cls;
    for (const s of spans || []) {
      const url = webUrl(s.url);
      const command = typeof s.send === 'string' && s.send !== '' ? s.send : null;
      let span;
      if (url) {
        span = document.createElement('a');
        span.href = url;
        span.target = '_blank';
        span.rel = 'noopener noreferrer';
        span.title = url;
        span.className = 'url';
      } else if (command) {
        // A link that acts rather than goes: keyboard-reachable, and
        // announced as a link to the command it sends.
        span = document.createElement('a');
        span.href = '#';
        span.className = 'send';
        span.title = command;
        span.dataset.send = command;
      } else {
        span = document.createElement('span');
      }
      span.textContent = String(s.text ?? '');
      colour(span, s.fg, 'fg');
      colour(span, s.bg, 'bg');
      if (s.b) span.classList.add('b');
      if (s.i) span.classList.add('i');
      if (s.u) span.classList.add('u');
      div.appendChild(span);
    }
    return div;
  }

  // One listener for every send-link, old or new: clicking one is typing
  // its command.
  log.addEventListener('click', (event) => {
    const link = event.target instanceof Element ? event.target.closest('a.send') : null;
    if (!link || !log.contains(link)) return;
    event.preventDefault();
    if (finished) return;
    send(link.dataset.send, true);
    input.focus();
  });

  function say(text, cls) {
    append(line([{ text }], cls));
  }

  function plainText(spans) {
    return (spans || []).map((s) => String(s.text ?? '')).join('');
  }

  // --- What the portal sends ------------------------------------------

  function output(msg) {
    switch (msg.t) {
      case 'text': {
        const prompt = msg.kind === 'prompt' || msg.kind === 'secret';
        append(line(msg.spans, prompt ? 'prompt-line' : ''));
        if (prompt) {
          const text = plainText(msg.spans).trim();
          promptLabel.textContent = text || '>';
        }
        setSecret(msg.kind === 'secret');
        break;
      }
      case 'notice':
        say(msg.text, 'notice');
        break;
      case 'pause':
        paused = !!msg.paused;
        if (paused) setStatus('paused', 'Paused: ' + String(msg.text).replace(/^\[ev\]\s*/, ''));
        else setStatus('online', 'Connected');
        break;
      case 'oob':
        oob(msg.name, msg.data);
        break;
      default:
        break;
    }
  }

  // --- Vitals: any X/maxX pair of GMCP Char.Vitals, as gauges ---------

  const MAX_GAUGES = 8;
  const VITAL_NAMES = { hp: 'Health', mp: 'Mana', mv: 'Moves', ep: 'Energy', sp: 'Spirit', en: 'Endurance' };
  // What Char.Vitals has said so far: games often send only what changed.
  let vitals = {};

  function number(value) {
    const n = typeof value === 'number' ? value : (typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN);
    return Number.isFinite(n) ? n : null;
  }

  function showVitals(data) {
    for (const [key, value] of Object.entries(data)) {
      if (number(value) === null) continue;
      // Bounded: a game that sends a thousand keys gets the first few.
      if (key in vitals || Object.keys(vitals).length < 4 * MAX_GAUGES) vitals[key] = value;
    }
    const box = $('vitals');
    const pairs = Object.keys(vitals)
      .filter((k) => !k.startsWith('max') && number(vitals['max' + k]) > 0)
      .slice(0, MAX_GAUGES);
    if (!pairs.length) return;
    const kept = new Set(pairs);
    for (const old of [...box.children]) if (!kept.has(old.dataset.key)) old.remove();
    for (const key of pairs) {
      const max = number(vitals['max' + key]);
      const now = Math.min(Math.max(number(vitals[key]), 0), max);
      let gauge = [...box.children].find((g) => g.dataset.key === key);
      if (!gauge) {
        gauge = document.createElement('div');
        gauge.className = 'gauge';
        gauge.dataset.key = key;
        gauge.setAttribute('role', 'meter');
        gauge.setAttribute('aria-valuemin', '0');
        const name = document.createElement('span');
        name.className = 'gauge-name';
        name.textContent = VITAL_NAMES[key.toLowerCase()] || key;
        gauge.setAttribute('aria-label', name.textContent);
        const track = document.createElement('span');
        track.className = 'gauge-track';
        track.setAttribute('aria-hidden', 'true');
        const fill = document.createElement('span');
        fill.className = 'gauge-fill';
        track.appendChild(fill);
        const shown = document.createElement('span');
        shown.className = 'gauge-value';
        shown.setAttribute('aria-hidden', 'true');
        gauge.append(name, track, shown);
        box.appendChild(gauge);
      }
      gauge.setAttribute('aria-valuemax', String(max));
      gauge.setAttribute('aria-valuenow', String(now));
      gauge.setAttribute('aria-valuetext', `${now} of ${max}`);
      gauge.classList.toggle('low', now <= max / 4);
      gauge.querySelector('.gauge-fill').style.width = `${(100 * now) / max}%`;
      gauge.querySelector('.gauge-value').textContent = `${now}/${max}`;
    }
    box.hidden = false;
  }

  function oob(name, data) {
    if (name === 'Char.Vitals' && data && typeof data === 'object' && !Array.isArray(data)) {
      showVitals(data);
      return;
    }
    if (name === 'Room.Info' && data && typeof data === 'object') {
      $('room').hidden = false;
      $('room-name').textContent = String(data.name ?? '');
      $('room-area').textContent = String(data.area ?? '');
      const exits = $('room-exits');
      exits.replaceChildren();
      for (const dir of Object.keys(data.exits || {}).sort()) {
        const b = document.createElement('button');
        b.type = 'button';
        b.textContent = dir;
        b.addEventListener('click', () => { send(dir, true); input.focus(); });
        exits.appendChild(b);
      }
    }
  }

  function setSecret(on) {
    secret = on;
    input.type = on ? 'password' : 'text';
    input.autocomplete = on ? 'current-password' : 'off';
    if (!on) promptLabel.textContent = promptLabel.textContent || '>';
  }

  function handle(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (typeof msg.n === 'number') {
      // Numbered output: each exactly once, even across a resume.
      if (msg.n <= seen) return;
      seen = msg.n;
      output(msg);
      scheduleAck();
      return;
    }
    switch (msg.t) {
      case 'welcome':
        welcome(msg);
        break;
      case 'ack':
        unacked = unacked.filter((i) => i.n > msg.input);
        save();
        break;
      case 'closed':
        if (resuming && !log.childElementCount) {
          // A page opened on a session that is over (a reload of the page
          // long after): nothing to tell, start anew.
          // What was typed for the old session is not for the new one.
          token = '';
          seen = 0;
          unacked = [];
          save();
          quietRestart = true;
          break;
        }
        finish(msg.reason);
        break;
      default:
        break;
    }
  }

  function welcome(msg) {
    resuming = false;
    if (msg.game) {
      $('title').textContent = msg.game;
      document.title = msg.game;
    }
    if (!msg.resumed) {
      // A new session: numbers start again; what was typed before goes
      // as its first inputs.
      seen = 0;
      acked = 0;
      nextInput = 1;
      unacked = unacked.map((i) => ({ ...i, n: nextInput++ }));
      vitals = {};
      $('vitals').replaceChildren();
      $('vitals').hidden = true;
    } else {
      unacked = unacked.filter((i) => i.n > msg.input);
    }
    token = msg.token || '';
    ready = true;
    backoff = 250;
    save();
    setStatus(paused ? 'paused' : 'online', paused ? statusText.textContent : 'Connected');
    tellSize();
    for (const item of unacked) transmit(item);
  }

  function finish(reason) {
    finished = true;
    ready = false;
    token = '';
    unacked = [];
    save();
    setSecret(false);
    const text = reason ? 'Disconnected: ' + reason : 'Disconnected.';
    setStatus('over', 'Disconnected');
    say(text, 'over');
    $('over-text').textContent = text;
    over.hidden = false;
  }

  // --- The socket -----------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    if (finished) return;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    let ws;
    try {
      ws = new WebSocket(url, ['v1.ev']);
    } catch (_) {
      retry();
      return;
    }
    socket = ws;
    ready = false;
    ws.onopen = () => {
      resuming = !!token;
      ws.send(JSON.stringify(token ? { t: 'hello', resume: token, seen } : { t: 'hello' }));
    };
    ws.onmessage = (event) => {
      if (ws !== socket) return;
      let msg;
      try { msg = JSON.parse(event.data); } catch (_) { return; }
      handle(msg);
    };
    ws.onclose = (event) => {
      if (ws !== socket) return;
      socket = null;
      ready = false;
      if (finished) return;
      if (quietRestart) {
        quietRestart = false;
        connect();
        return;
      }
      if (FINAL.has(event.code)) {
        finish(event.reason || 'the connection was closed.');
        return;
      }
      retry();
    };
  }

  function retry() {
    if (finished) return;
    setStatus('away', token ? 'Reconnecting…' : 'Connecting…');
    const wait = backoff + Math.random() * backoff * 0.3;
    backoff = Math.min(backoff * 2, 8000);
    retryTimer = setTimeout(connect, wait);
  }

  function scheduleAck() {
    if (ackTimer) return;
    ackTimer = setTimeout(() => {
      ackTimer = 0;
      store.setItem('ev.seen', String(seen));
      if (ready && socket && seen > acked) {
        socket.send(JSON.stringify({ t: 'ack', seen }));
        acked = seen;
      }
    }, 150);
  }

  function transmit(item) {
    if (!ready || !socket) return;
    const msg = item.name
      ? { t: 'oob', n: item.n, name: item.name, data: item.data ?? null }
      : { t: 'in', n: item.n, text: item.text };
    socket.send(JSON.stringify(msg));
  }

  // A login on one line carries its password: the echo hides it.
  const LOGIN = /^\s*(connect|create)\s+\S+\s+\S/i;
  function shownAs(text) {
    return LOGIN.test(text) ? text.replace(/^(\s*\S+\s+\S+\s+).*$/, '$1••••••••') : text;
  }

  function send(text, echo) {
    const item = { n: nextInput++, text, secret: secret || LOGIN.test(text) };
    unacked.push(item);
    save();
    if (echo && !secret) say(shownAs(text), 'echo');
    if (secret) setSecret(false);
    transmit(item);
  }

  let sizeTimer = 0;
  function tellSize() {
    if (!ready || !socket) return;
    const probe = document.createElement('span');
    probe.textContent = 'M';
    probe.style.visibility = 'hidden';
    log.appendChild(probe);
    const w = probe.getBoundingClientRect().width || 8;
    const h = probe.getBoundingClientRect().height || 16;
    probe.remove();
    const width = Math.max(20, Math.floor((log.clientWidth - 24) / w));
    const height = Math.max(5, Math.floor(log.clientHeight / h));
    socket.send(JSON.stringify({ t: 'info', width, height, screenreader: screenReader }));
  }

  // --- The input line -------------------------------------------------

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = input.value;
    input.value = '';
    if (!secret && text.trim() !== '' && !LOGIN.test(text)) {
      if (history[history.length - 1] !== text) history.push(text);
      if (history.length > MAX_HISTORY) history.shift();
    }
    historyAt = history.length;
    draft = '';
    // A pasted block is one input per line.
    for (const part of text.split(/\r?\n/)) send(part, true);
    input.focus();
  });

  input.addEventListener('keydown', (event) => {
    if (secret) return;
    if (event.key === 'ArrowUp' && historyAt > 0) {
      if (historyAt === history.length) draft = input.value;
      historyAt -= 1;
      input.value = history[historyAt];
      event.preventDefault();
    } else if (event.key === 'ArrowDown' && historyAt < history.length) {
      historyAt += 1;
      input.value = historyAt === history.length ? draft : history[historyAt];
      event.preventDefault();
    }
  });

  // Typing anywhere types into the input line; selecting text still works.
  document.addEventListener('keydown', (event) => {
    if (event.target === input || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof HTMLButtonElement) return;
    if (event.key.length === 1 || event.key === 'Enter' || event.key === 'Backspace') input.focus();
  });
  log.addEventListener('mouseup', () => {
    if (!window.getSelection || String(window.getSelection()) === '') input.focus();
  });
  log.addEventListener('scroll', () => { if (atBottom()) jump.hidden = true; });
  jump.addEventListener('click', () => {
    log.scrollTop = log.scrollHeight;
    jump.hidden = true;
    input.focus();
  });
  $('again').addEventListener('click', () => {
    over.hidden = true;
    finished = false;
    token = '';
    seen = 0;
    acked = 0;
    nextInput = 1;
    unacked = [];
    save();
    say('— connecting again —', 'notice');
    connect();
    input.focus();
  });
  // Screen-reader mode: remembered, shown plain, and told to the game (as
  // MTTS's screen-reader bit is by a telnet client).
  const srButton = $('sr');
  function showScreenReader() {
    srButton.setAttribute('aria-pressed', String(screenReader));
    document.body.classList.toggle('sr', screenReader);
  }
  srButton.addEventListener('click', () => {
    screenReader = !screenReader;
    prefs.setItem('ev.screenreader', screenReader ? '1' : '0');
    showScreenReader();
    tellSize();
    input.focus();
  });
  showScreenReader();

  window.addEventListener('resize', () => {
    clearTimeout(sizeTimer);
    sizeTimer = setTimeout(tellSize, 250);
  });
  // Back on the network: try at once rather than at the end of a backoff.
  window.addEventListener('online', () => {
    if (!socket && !finished) {
      backoff = 250;
      connect();
    }
  });
  // A heartbeat, so the portal hears from a page that only reads.
  setInterval(() => {
    if (ready && socket) {
      socket.send(JSON.stringify({ t: 'ack', seen }));
      acked = seen;
    }
  }, 20000);

  // For tests and the curious: what the page knows of its session.
  window.evClient = {
    get seen() { return seen; },
    get pending() { return unacked.length; },
    get ready() { return ready; },
    get resumable() { return token !== ''; },
    drop() { if (socket) socket.close(4999, 'dropped by the page'); },
  };

  connect();
})();
