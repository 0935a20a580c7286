"""The page at `/`: plain HTML and JavaScript (no build step, nothing fetched from the internet)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>yolo-accel: traffic</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d1d1f;background:#f5f5f7}
header{background:#1d1d1f;color:#fff;padding:10px 20px;font-weight:600}
main{padding:16px 20px;display:grid;gap:16px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 3px #0002}
h2{font-size:16px;margin:0 0 8px}
label{display:inline-block;margin:4px 12px 4px 0}
input[type=text]{width:260px}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}
.stream img{width:100%;background:#000;min-height:120px;border-radius:4px;cursor:zoom-in}
.stream.open{grid-column:1/-1}.stream.open img{cursor:zoom-out}
.stream .detail{display:none}.stream.open .detail{display:block}
.health{font-size:12px;color:#555}.health.bad{color:#b00}
.stream .bar{display:flex;justify-content:space-between;align-items:center;gap:8px;margin:4px 0}
.status{font-size:13px;padding:1px 6px;border-radius:4px;background:#eee}
.running{background:#d7f5dd}.failed{background:#fbd5d5}.unknown,.reconnecting{background:#ffe9b3}
#offline{background:#ffe9b3;padding:6px 10px;border-radius:4px}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #e5e5e5;padding:3px 6px;text-align:left}
#preview{max-width:640px;cursor:crosshair;display:none;margin-top:8px}
.stages{font-size:12px;color:#555}
.thumb{height:40px;border-radius:3px}
#msg{color:#b00}
</style></head><body>
<header>yolo-accel &middot; traffic monitoring</header>
<main>
<section><h2>Cameras</h2><p id="offline" style="display:none">The server is not answering: the numbers
below are from before; reconnecting&hellip;</p><div id="grid"></div></section>
<section><h2>Add a source</h2>
<form id="add">
<label>Video file <input type="file" id="file" accept="video/*"></label>
<label>or path in the data folder / URL <input type="text" id="source" placeholder="uploads/... or rtsp://..."></label><br>
<label>Classes <input type="text" id="classes" placeholder="car,bus,truck,motorcycle"></label>
<label>Counting line <input type="text" id="line" placeholder="x1,y1,x2,y2 (click twice on the frame)"></label>
<label>Zone <input type="text" id="zone" placeholder="x1,y1,x2,y2,x3,y3,... (3+ clicks, close)"></label>
<button type="button" id="show">Show first frame</button>
<span id="draw" style="display:none">Draw:
<label><input type="radio" name="tool" value="line" checked> line</label>
<label><input type="radio" name="tool" value="zone"> zone</label>
<button type="button" id="closezone">close zone</button> <button type="button" id="clear">clear</button></span>
<button type="submit" id="go">Start</button> <span id="msg"></span>
<br><div id="canvaswrap" style="position:relative;display:inline-block">
<img id="preview" alt="first frame: click two points for the counting line, or the corners of a zone">
<svg id="overlay" style="position:absolute;left:0;top:0;pointer-events:none"></svg></div>
</form></section>
<section><h2>Events</h2>
<table><thead><tr><th>time</th><th>stream</th><th>track</th><th>class</th><th>line / zone</th><th>direction</th>
<th>plate</th><th>vehicle</th></tr></thead>
<tbody id="events"></tbody></table></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const api = (path, opts) => fetch(path, Object.assign({credentials: 'same-origin'}, opts || {}));
let clicks = [], uploaded = null;
const tool = () => document.querySelector('input[name=tool]:checked').value;
function pointsOf(text) {
  const v = text.split(',').map(Number), out = [];
  for (let i = 0; i + 1 < v.length; i += 2) out.push([v[i], v[i + 1]]);
  return out;
}
function drawOverlay() {  // the line (red), the zone (blue) and the clicks so far, over the first frame
  const img = $('preview'), svg = $('overlay');
  if (!img.naturalWidth) return;
  svg.setAttribute('width', img.clientWidth); svg.setAttribute('height', img.clientHeight);
  svg.setAttribute('viewBox', '0 0 ' + img.naturalWidth + ' ' + img.naturalHeight);
  const pts = (a) => a.map((q) => q.join(',')).join(' ');
  const w = Math.max(2, img.naturalWidth / 300);
  let html = '';
  const line = pointsOf($('line').value);
  const poly = (tag, a, color, fill) =>
    '<' + tag + ' points="' + pts(a) + '" stroke="' + color + '" stroke-width="' + w + '" fill="' + fill + '"/>';
  if (line.length === 2) html += poly('polyline', line, '#e33', 'none');
  const zone = pointsOf($('zone').value);
  if (zone.length >= 3) html += poly('polygon', zone, '#36f', '#36f3');
  if (clicks.length) html += poly('polyline', clicks, '#fa0', 'none') +
    clicks.map((q) => '<circle cx="' + q[0] + '" cy="' + q[1] + '" r="' + 2 * w + '" fill="#fa0"/>').join('');
  svg.innerHTML = html;
}
function say(text) { $('msg').textContent = text || ''; }
async function errorOf(r) { try { return (await r.json()).error; } catch (e) { return r.statusText; } }
async function sourceValue() {
  const f = $('file').files[0];
  if (f && uploaded === null) {
    say('uploading ' + f.name + ' ...');
    const body = new FormData(); body.append('file', f);
    const r = await api('/api/uploads', {method: 'POST', body});
    if (!r.ok) { throw new Error(await errorOf(r)); }
    uploaded = (await r.json()).source; $('source').value = uploaded; say('');
  }
  return $('source').value.trim();
}
$('file').addEventListener('change', () => { uploaded = null; });
$('show').addEventListener('click', async () => {
  try {
    const src = await sourceValue();
    const img = $('preview'); clicks = [];
    img.onload = drawOverlay;
    img.src = '/api/preview?source=' + encodeURIComponent(src); img.style.display = 'block';
    $('draw').style.display = 'inline';
  } catch (e) { say(e.message); }
});
$('preview').addEventListener('click', (ev) => {
  const img = ev.target, k = img.naturalWidth / img.clientWidth;
  clicks.push([Math.round(ev.offsetX * k), Math.round(ev.offsetY * k)]);
  if (tool() === 'line' && clicks.length === 2) { $('line').value = clicks.flat().join(','); clicks = []; }
  drawOverlay();
});
$('closezone').addEventListener('click', () => {
  if (clicks.length < 3) { say('a zone needs at least three points'); return; }
  $('zone').value = clicks.flat().join(','); clicks = []; say(''); drawOverlay();
});
$('clear').addEventListener('click', () => { clicks = []; $('line').value = ''; $('zone').value = ''; drawOverlay(); });
$('line').addEventListener('input', drawOverlay); $('zone').addEventListener('input', drawOverlay);
$('add').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const f = $('file').files[0];
    const body = {source: await sourceValue(), lines: $('line').value ? [$('line').value] : [],
                  zones: $('zone').value ? [$('zone').value] : []};
    if (f) { body.name = f.name; }
    if ($('classes').value.trim()) { body.classes = $('classes').value.trim(); }
    const r = await api('/api/streams', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                          body: JSON.stringify(body)});
    if (!r.ok) { say(await errorOf(r)); return; }
    say(''); uploaded = null; $('file').value = ''; $('source').value = ''; $('preview').style.display = 'none';
    $('draw').style.display = 'none'; $('overlay').innerHTML = ''; clicks = [];
  } catch (e) { say(e.message); }
});
function countsText(counts) {
  const out = [];
  for (const [line, per] of Object.entries(counts || {}))
    for (const [cls, v] of Object.entries(per))
      out.push(line + ' ' + cls + ': in ' + (v.in || 0) + ' out ' + (v.out || 0));
  return out.join(' | ') || 'no crossings yet';
}
const ASK = {  // what a click would destroy is said first
  start: 'Restart stream #{id} from its beginning? Its stored events and counts are deleted.',
  remove: 'Remove stream #{id}? It stops, and its stored events and counts are deleted.',
};
async function act(id, what) {
  if (ASK[what] && !window.confirm(ASK[what].replace('{id}', id))) return;
  const r = await api('/api/streams/' + id + (what === 'remove' ? '' : '/' + what),
                      {method: what === 'remove' ? 'DELETE' : 'POST'});
  if (!r.ok) say(await errorOf(r));
}
function render(streams) {
  const grid = $('grid');
  const seen = new Set();
  for (const s of streams) {
    seen.add('s' + s.id);
    let el = $('s' + s.id);
    if (!el) {
      el = document.createElement('div'); el.className = 'stream'; el.id = 's' + s.id;
      el.innerHTML = '<div class="bar"><b class="name"></b><span class="status"></span></div>' +
        '<img alt="live video" title="click: this camera alone, large"><div class="counts"></div>' +
        '<div class="health"></div><div class="stages detail"></div>' +
        '<div class="bar"><span class="fps"></span><span>' +
        '<button data-a="stop">stop</button> <button data-a="resume">resume</button> ' +
        '<button data-a="start">restart</button> ' +
        '<button data-a="remove">remove</button> <a class="csv">CSV</a> <a class="json">JSON</a></span></div>';
      el.querySelectorAll('button').forEach((b) => b.addEventListener('click', () => act(s.id, b.dataset.a)));
      el.querySelector('img').addEventListener('click', () => el.classList.toggle('open'));
      el.querySelector('.csv').href = '/api/streams/' + s.id + '/events?format=csv&limit=100000';
      el.querySelector('.json').href = '/api/streams/' + s.id + '/events?limit=100000';
      grid.appendChild(el);
    }
    el.querySelector('.name').textContent = '#' + s.id + ' ' + s.name;
    const st = el.querySelector('.status'); st.textContent = s.status + (s.error ? ': ' + s.error : '');
    st.className = 'status ' + s.status;
    el.querySelector('.counts').textContent = countsText(s.counts);
    el.querySelector('.fps').textContent = s.frames + ' frames, ' + s.fps.toFixed(1) + ' FPS';
    const h = s.health, hel = el.querySelector('.health');
    let ht = '';
    if (h) {
      ht = (h.connected ? 'connected' : 'not connected') +
        (h.reconnects ? ', ' + h.reconnects + ' reconnects' : '') +
        (h.since_frame_s > 2 ? ', last frame ' + h.since_frame_s.toFixed(0) + ' s ago' : '') +
        (h.dropped ? ', ' + h.dropped + ' frames dropped' : '');
    }
    hel.textContent = ht; hel.className = 'health' + (h && !h.connected ? ' bad' : '');
    const stages = Object.entries(s.stages_ms || {}).map(([k, v]) => k + ' ' + v.toFixed(1));
    el.querySelector('.stages').textContent = stages.length ? 'ms per frame: ' + stages.join(', ') : '';
    el.querySelector('[data-a=resume]').style.display = s.resumable ? '' : 'none';
    const active = ['running', 'starting', 'reconnecting'].includes(s.status);
    el.querySelector('[data-a=stop]').style.display = active ? '' : 'none';
    const img = el.querySelector('img');
    const want = s.status === 'running' ? '/api/streams/' + s.id + '/video.mjpg?run=' + s.created_at : '';
    if (img.dataset.src !== want) { img.dataset.src = want; if (want) img.src = want; }
  }
  for (const el of Array.from(grid.children)) if (!seen.has(el.id)) el.remove();
}
let lastEventId = 0;  // the newest event shown: one that comes again (after a reconnect) is not shown twice
function addEvents(events) {
  const body = $('events');
  for (const e of events) {
    if (e.id <= lastEventId) continue;
    lastEventId = e.id;
    const tr = document.createElement('tr');
    const cells = [e.time_s.toFixed(1) + ' s', '#' + e.stream_id, e.track_id, e.class_name, e.counter, e.direction];
    for (const v of cells.concat([e.plate || ''])) {
      const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
    }
    const td = document.createElement('td');
    if (e.plate) {  // the crop the plate was read from (a later, better read may replace it)
      const img = document.createElement('img'); img.className = 'thumb';
      img.src = '/api/streams/' + e.stream_id + '/plates/' + e.track_id + '.jpg'; td.appendChild(img);
    }
    tr.appendChild(td);
    body.insertBefore(tr, body.firstChild);
  }
  while (body.children.length > 200) body.removeChild(body.lastChild);
}
const live = new EventSource('/api/live');
live.onmessage = (m) => {
  $('offline').style.display = 'none';
  const d = JSON.parse(m.data); render(d.streams); addEvents(d.events);
};
live.onerror = () => {  // the browser reconnects by itself, asking for the events after the last it got
  $('offline').style.display = '';
  for (const st of document.querySelectorAll('.stream .status')) {
    st.textContent = 'unknown: no answer from the server'; st.className = 'status unknown';
  }
  for (const img of document.querySelectorAll('.stream img')) { img.dataset.src = ''; img.removeAttribute('src'); }
};
</script></body></html>
"""


def inline_script_hash(html: str) -> str:
    """The CSP source of the page's inline script (its SHA-256): that script runs, no other inline one."""
    import base64
    import hashlib
    import re

    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)


def page_csp(html: str, extra_script: str = "") -> str:
    """A Content-Security-Policy for one of the app's pages: its own inline script, parts from this server."""
    scripts = " ".join(x for x in (extra_script, inline_script_hash(html)) if x) or "'none'"
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = page_csp(PAGE)

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>yolo-accel: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px/1.45 system-ui,sans-serif;margin:15vh auto;max-width:340px;color:#1d1d1f}
input{width:100%;box-sizing:border-box;margin:6px 0 10px;padding:6px}.err{color:#b00}</style></head><body>
<h1 style="font-size:18px">yolo-accel &middot; traffic monitoring</h1>
<form method="post" action="/login"><label>Token <input type="password" name="token" id="token"
autocomplete="current-password" autofocus required></label><button type="submit">Sign in</button></form>
<p class="err">{message}</p></body></html>"""
LOGIN_CSP = page_csp(LOGIN_PAGE)
