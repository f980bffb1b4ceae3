/// The panel's script, served as `/panel.js`. It reads `GET /v1/panel/stream` (server-sent
/// events, read with `fetch` so that it can send the bearer token that `EventSource` cannot),
/// keeps the VM list sorted and filtered in the browser, and draws each disk's charts as SVG
/// paths. Every name and value from the agent is set with `textContent` or an attribute,
/// never parsed as markup. `window.vmpulsePanel` holds its state (for tests and the curious).
enum PanelScript {
    static let source = #"""
        'use strict';
        (function () {
          const state = { rows: [], sort: 'name', dir: 1, chosen: null, vm: null, range: 3600,
                          updates: 0, vmUpdates: 0, controller: null, backoff: 500, lastError: null };
          window.vmpulsePanel = state;
          const $ = (id) => document.getElementById(id);
          const SVG = 'http://www.w3.org/2000/svg';

          function el(tag, attrs, ...children) {
            const e = document.createElement(tag);
            for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
            for (const c of children) e.append(c);  // a string becomes a text node
            return e;
          }
          function svg(tag, attrs) {
            const e = document.createElementNS(SVG, tag);
            for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
            return e;
          }
          function bytes(v) {
            if (v == null) return '';
            const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
            let i = 0;
            while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
            return v.toFixed(i ? 1 : 0) + ' ' + units[i];
          }
          const num = (v, digits) => (v == null ? '' : Number(v).toFixed(digits));
          const clock = (t) => new Date(t * 1000).toLocaleTimeString();

          // The VM list.
          function renderList() {
            const q = $('search').value.trim().toLowerCase();
            const rows = state.rows.filter((r) => !q || r.name.toLowerCase().includes(q) ||
                                                  r.uuid.toLowerCase().includes(q) || r.status.toLowerCase().includes(q));
            const key = state.sort, dir = state.dir;
            const value = (r) => (key === 'iops' ? (r.readIops || 0) + (r.writeIops || 0) : r[key]);
            rows.sort((a, b) => {
              const x = value(a), y = value(b);
              if (x == null || y == null) return (x == null) - (y == null);
              // Natural order for names: vm-9 before vm-10.
              const c = typeof x === 'string' ? x.localeCompare(y, undefined, { numeric: true }) : x - y;
              return c * dir || a.id.localeCompare(b.id);
            });
            const body = el('tbody');
            for (const r of rows) {
              const tr = el('tr', { 'data-id': r.id },
                el('td', { class: 'name' }, r.name), el('td', {}, r.status), el('td', { class: 'n' }, num(r.cpu, 1)),
                el('td', { class: 'n' }, bytes(r.readBps)), el('td', { class: 'n' }, bytes(r.writeBps)),
                el('td', { class: 'n' }, num((r.readIops || 0) + (r.writeIops || 0), 1)), el('td', { class: 'n' }, num(r.statsAge, 1)));
              if (!r.responsive) tr.classList.add('stale');
              if (r.id === state.chosen) tr.classList.add('chosen');
              body.append(tr);
            }
            $('vms').tBodies[0].replaceWith(body);
            $('count').textContent = rows.length + ' of ' + state.rows.length + ' VMs';
            for (const th of document.querySelectorAll('#vms th')) {
              th.classList.toggle('asc', th.dataset.sort === key && dir > 0);
              th.classList.toggle('desc', th.dataset.sort === key && dir < 0);
            }
          }

          // One chart: a path per series, over the chosen range; a null value breaks the line.
          function chart(kind, title, format, times, series) {
            const W = 320, H = 140, L = 52, R = 8, T = 10, B = 20;
            const end = times.length ? times[times.length - 1] : 0;
            const first = times.findIndex((t) => t >= end - state.range);
            const from = first < 0 ? 0 : first;
            const ts = times.slice(from);
            const t0 = ts.length ? ts[0] : 0, t1 = end;
            let max = 0;
            for (const [, values] of series) for (const v of values.slice(from)) if (v != null && v > max) max = v;
            const top = max > 0 ? max * 1.1 : 1;
            const x = (t) => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (W - L - R);
            const y = (v) => T + (1 - v / top) * (H - T - B);
            const s = svg('svg', { class: 'chart', viewBox: '0 0 ' + W + ' ' + H, 'data-chart': kind, 'data-last-time': String(t1) });
            s.append(svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: '#c5ccd8' }));
            const label = (x0, y0, text, anchor) => {
              const t = svg('text', { x: x0, y: y0, 'text-anchor': anchor || 'start' });
              t.textContent = text;
              s.append(t);
            };
            label(L - 4, T + 8, format(top), 'end');
            label(L - 4, H - B, format(0), 'end');
            if (ts.length) { label(L, H - 5, clock(t0)); label(W - R, H - 5, clock(t1), 'end'); }
            let any = false;
            for (const [cls, values] of series) {
              let d = '', pen = false, n = 0, last = null;
              values.slice(from).forEach((v, i) => {
                if (v == null) { pen = false; return; }
                d += (pen ? 'L' : 'M') + x(ts[i]).toFixed(1) + ' ' + y(v).toFixed(1);
                pen = true; n++; last = v;
              });
              any = any || n > 0;
              s.append(svg('path', { class: cls, d: d || 'M0 0', 'data-series': cls, 'data-points': String(n),
                                     'data-last': last == null ? '' : String(last) }));
            }
            const key = el('span', { class: 'key' });
            for (const [cls] of series) key.append(el('span', { class: cls }), cls);
            const caption = el('figcaption', {}, title, key);
            if (!any) caption.append(el('span', { class: 'hint' }, ' (nothing in this range)'));
            return el('figure', {}, caption, s);
          }

          function windowsTable(windows) {
            const head = el('tr', {}, ...['window', 'covers s', 'read/s', 'write/s', 'read IOPS', 'write IOPS', 'read ms',
              'write ms', 'read p99 ms', 'write p99 ms', 'queue r', 'queue w'].map((h) => el('th', {}, h)));
            const table = el('table', { class: 'windows' }, el('thead', {}, head));
            const body = el('tbody');
            for (const label of ['1s', '1m', '1h']) {
              const w = windows[label];
              if (!w) continue;
              body.append(el('tr', { 'data-window': label }, el('td', {}, label), ...[num(w.seconds, 1), bytes(w.readBps), bytes(w.writeBps),
                num(w.readIops, 1), num(w.writeIops, 1), num(w.readLatencyMs, 3), num(w.writeLatencyMs, 3), num(w.readP99Ms, 3),
                num(w.writeP99Ms, 3), num(w.readQueueDepth, 3), num(w.writeQueueDepth, 3)].map((v) => el('td', { class: 'n' }, v))));
            }
            table.append(body);
            return table;
          }

          function thinTable(disks) {
            const head = el('tr', {}, ...['drive', 'state', 'size', 'threshold', 'maximum', 'extensions', 'failures',
              'last extension ms', 'note'].map((h) => el('th', {}, h)));
            const body = el('tbody');
            for (const d of disks) {
              body.append(el('tr', { 'data-drive': d.drive }, el('td', {}, d.drive), el('td', {}, d.state + (d.paused ? ' (guest paused)' : '')),
                el('td', { class: 'n' }, bytes(d.physical)), el('td', { class: 'n' }, bytes(d.threshold)), el('td', { class: 'n' }, bytes(d.maximum)),
                el('td', { class: 'n' }, String(d.extensions)), el('td', { class: 'n' }, String(d.failures)),
                el('td', { class: 'n' }, num(d.lastExtensionMs, 1)), el('td', {}, d.note || '')));
            }
            return el('table', { class: 'thin' }, el('thead', {}, head), body);
          }

          function renderDetail(vm) {
            const box = el('section', { id: 'detail', 'data-id': vm.id });
            box.append(el('h2', { id: 'vm-name' }, vm.name));
            let line = vm.uuid + ' · ' + vm.status;
            if (vm.statsAge != null) line += ' · data ' + vm.statsAge.toFixed(1) + ' s old';
            if (!vm.responsive) line += ' · its monitor is not answering';
            box.append(el('p', { class: 'hint' }, line));
            for (const e of vm.errors) box.append(el('p', { class: 'hint' }, e));
            const ranges = el('p', {}, 'Charts over the last ');
            for (const [seconds, text] of [[3600, 'hour'], [75, 'minute (each second)']]) {
              const b = el('button', { type: 'button', 'data-range': String(seconds) }, text);
              b.disabled = state.range === seconds;
              ranges.append(b, ' ');
            }
            box.append(ranges);
            for (const d of vm.disks) {
              box.append(el('h3', {}, 'Disk ' + d.name));
              box.append(windowsTable(d.windows || {}));
              const c = d.chart;
              if (!c || !c.time.length) { box.append(el('p', { class: 'hint' }, 'No history yet.')); continue; }
              const ms = (v) => v.toFixed(v < 10 ? 2 : 0);
              const grid = el('div', { class: 'charts', 'data-disk': d.name });
              grid.append(chart('throughput', 'Throughput (bytes/s)', (v) => bytes(v), c.time, [['read', c.readBps], ['write', c.writeBps]]));
              grid.append(chart('iops', 'Operations per second', (v) => v.toFixed(0), c.time, [['read', c.readIops], ['write', c.writeIops]]));
              grid.append(chart('latency', 'Average latency (ms)', ms, c.time, [['read', c.readLatencyMs], ['write', c.writeLatencyMs]]));
              grid.append(chart('p99', 'p99 latency (ms, from QEMU\u2019s histograms)', ms, c.time, [['read', c.readP99Ms], ['write', c.writeP99Ms]]));
              grid.append(chart('queue', 'Queue depth (requests in flight)', (v) => v.toFixed(2), c.time, [['depth', c.queueDepth]]));
              box.append(grid);
            }
            if (vm.thin.length) { box.append(el('h3', {}, 'Thin disks')); box.append(thinTable(vm.thin)); }
            $('detail').replaceWith(box);
          }

          // The stream.
          function setLive(on, text) {
            $('live').textContent = text;
            $('live').classList.toggle('off', !on);
          }
          function handle(block) {
            let event = 'message', data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            let value;
            try { value = JSON.parse(data); } catch (e) { state.lastError = 'an event that is not JSON'; return; }
            if (event === 'overview') {
              state.rows = value.vms;
              renderList();
              $('updated').textContent = 'updated ' + clock(value.time);
              state.updates++;
            } else if (event === 'vm') {
              state.vm = value;
              renderDetail(value);
              state.vmUpdates++;
            } else if (event === 'gone') {
              const box = el('section', { id: 'detail' }, el('p', { class: 'hint' }, 'That VM is no longer watched.'));
              $('detail').replaceWith(box);
            }
          }
          async function connect() {
            if (state.controller) state.controller.abort();
            const controller = new AbortController();
            state.controller = controller;
            const url = '/v1/panel/stream' + (state.chosen ? '?vm=' + encodeURIComponent(state.chosen) : '');
            const token = sessionStorage.getItem('vmpulse-token');
            try {
              const res = await fetch(url, { headers: token ? { Authorization: 'Bearer ' + token } : {}, signal: controller.signal, cache: 'no-store' });
              if (res.status === 401) { $('login').hidden = false; setLive(false, 'token needed'); return; }
              if (!res.ok) throw new Error('the agent answered ' + res.status);
              setLive(true, 'live');
              state.backoff = 500;
              const reader = res.body.getReader();
              const decoder = new TextDecoder();
              let buffer = '';
              for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                buffer += decoder.decode(value, { stream: true });
                let cut;
                while ((cut = buffer.indexOf('\n\n')) >= 0) { handle(buffer.slice(0, cut)); buffer = buffer.slice(cut + 2); }
                if (buffer.length > (16 << 20)) throw new Error('an event over 16 MiB');
              }
            } catch (e) {
              if (controller.signal.aborted) return;
              state.lastError = String(e);
            }
            if (controller !== state.controller) return;
            setLive(false, 'reconnecting');
            setTimeout(() => { if (controller === state.controller) connect(); }, state.backoff);
            state.backoff = Math.min(state.backoff * 2, 10000);
          }
          function choose(id) {
            state.chosen = id;
            history.replaceState(null, '', '#vm=' + encodeURIComponent(id));
            renderList();
            connect();
          }

          document.addEventListener('DOMContentLoaded', () => {
            const m = location.hash.match(/^#vm=(.*)$/);
            if (m) state.chosen = decodeURIComponent(m[1]);
            $('search').addEventListener('input', renderList);
            document.querySelector('#vms thead').addEventListener('click', (e) => {
              const th = e.target.closest('th');
              if (!th) return;
              if (state.sort === th.dataset.sort) state.dir = -state.dir; else { state.sort = th.dataset.sort; state.dir = 1; }
              renderList();
            });
            $('vms').addEventListener('click', (e) => {
              const tr = e.target.closest('tbody tr');
              if (tr) choose(tr.dataset.id);
            });
            document.body.addEventListener('click', (e) => {
              const b = e.target.closest('button[data-range]');
              if (!b) return;
              state.range = Number(b.dataset.range);
              if (state.vm) renderDetail(state.vm);
            });
            $('login').addEventListener('submit', (e) => {
              e.preventDefault();
              sessionStorage.setItem('vmpulse-token', $('token').value);
              $('login').hidden = true;
              connect();
            });
            connect();
          });
        })();

        """#
}
