/* app.js: spacesim's live view and operator's console, in the browser.
 *
 * One WebSocket to ws://<this host>/ws (subprotocol "spacesim") carries the
 * daemon's MessagePack-RPC exactly as TCP does (proto/PROTOCOL.md): one
 * MessagePack message per binary WebSocket message. The page says hello,
 * subscribes to the whole world, applies snapshots with the protocol's
 * reference algorithm (PROTOCOL.md "Decoding"; protocol 2's per-cell chunks,
 * or protocol 1's whole-view lists when hello says 1) and draws them on a canvas at
 * the display's rate, interpolating between the 20 Hz snapshots. A second
 * WebSocket, opened only when the operator enters the admin token (kept in
 * memory, never in the URL or storage), is the console's admin session.
 *
 * No library and no build step: the MessagePack codec below is ours (the
 * subset the protocol uses: every type but ext and timestamps). For tests
 * the page writes what it shows into the DOM (body data-* attributes and
 * the HUD), e.g. data-view (entities in the view) and data-drawn (drawn in
 * the last frame). */
'use strict';

/* ------------------------------------------------------------ MessagePack */

const utf8d = new TextDecoder();
const utf8e = new TextEncoder();
const TWO32 = 4294967296;

/* Decode one MessagePack message. Integers above 2^53 come back as BigInt
 * (never silently rounded); maps as plain objects (the protocol's keys are
 * strings). Throws on malformed input. */
function mpDecode(buf) {
  const u8 = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  let p = 0;
  function u64(hi, lo) { return hi < 0x200000 ? hi * TWO32 + lo : (BigInt(hi) << 32n) | BigInt(lo); }
  function i64(hi, lo) {
    if (hi >= -0x200000 && hi < 0x200000) return hi * TWO32 + lo;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
  function str(n) { const s = utf8d.decode(u8.subarray(p, p + n)); p += n; return s; }
  function bin(n) { const b = u8.slice(p, p + n); p += n; return b; }
  function arr(n) { const a = new Array(n); for (let i = 0; i < n; i++) a[i] = val(); return a; }
  function map(n) { const o = {}; for (let i = 0; i < n; i++) { const k = val(); o[String(k)] = val(); } return o; }
  function val() {
    if (p >= u8.length) throw new Error('msgpack: truncated');
    const b = u8[p++];
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 256;
    if (b >= 0xa0 && b <= 0xbf) return str(b & 0x1f);
    if (b >= 0x90 && b <= 0x9f) return arr(b & 0x0f);
    if (b >= 0x80 && b <= 0x8f) return map(b & 0x0f);
    let v;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: v = u8[p]; p += 1; return bin(v);
      case 0xc5: v = dv.getUint16(p); p += 2; return bin(v);
      case 0xc6: v = dv.getUint32(p); p += 4; return bin(v);
      case 0xca: v = dv.getFloat32(p); p += 4; return v;
      case 0xcb: v = dv.getFloat64(p); p += 8; return v;
      case 0xcc: return u8[p++];
      case 0xcd: v = dv.getUint16(p); p += 2; return v;
      case 0xce: v = dv.getUint32(p); p += 4; return v;
      case 0xcf: v = u64(dv.getUint32(p), dv.getUint32(p + 4)); p += 8; return v;
      case 0xd0: return dv.getInt8(p++);
      case 0xd1: v = dv.getInt16(p); p += 2; return v;
      case 0xd2: v = dv.getInt32(p); p += 4; return v;
      case 0xd3: v = i64(dv.getInt32(p), dv.getUint32(p + 4)); p += 8; return v;
      case 0xd9: v = u8[p]; p += 1; return str(v);
      case 0xda: v = dv.getUint16(p); p += 2; return str(v);
      case 0xdb: v = dv.getUint32(p); p += 4; return str(v);
      case 0xdc: v = dv.getUint16(p); p += 2; return arr(v);
      case 0xdd: v = dv.getUint32(p); p += 4; return arr(v);
      case 0xde: v = dv.getUint16(p); p += 2; return map(v);
      case 0xdf: v = dv.getUint32(p); p += 4; return map(v);
      default: throw new Error('msgpack: unsupported type 0x' + b.toString(16));
    }
  }
  const out = val();
  if (p !== u8.length) throw new Error('msgpack: trailing bytes');
  return out;
}

/* Encode a value: null, booleans, numbers (integers in their smallest
 * form, others as float64), BigInt (64-bit), strings, arrays, plain objects. */
function mpEncode(value) {
  let buf = new Uint8Array(256), dv = new DataView(buf.buffer), p = 0;
  function room(n) {
    if (p + n <= buf.length) return;
    let cap = buf.length * 2;
    while (cap < p + n) cap *= 2;
    const nb = new Uint8Array(cap); nb.set(buf); buf = nb; dv = new DataView(buf.buffer);
  }
  function byte(b) { room(1); buf[p++] = b; }
  function u16(v) { room(2); dv.setUint16(p, v); p += 2; }
  function u32(v) { room(4); dv.setUint32(p, v); p += 4; }
  function big(tag, v) { room(9); buf[p++] = tag; dv.setBigUint64(p, BigInt.asUintN(64, v)); p += 8; }
  function enc(v) {
    if (v === null || v === undefined) return byte(0xc0);
    if (v === false) return byte(0xc2);
    if (v === true) return byte(0xc3);
    if (typeof v === 'bigint') return v < 0n ? big(0xd3, v) : big(0xcf, v);
    if (typeof v === 'number') {
      if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
        if (v >= 0) {
          if (v < 0x80) return byte(v);
          if (v < 0x100) { byte(0xcc); return byte(v); }
          if (v < 0x10000) { byte(0xcd); return u16(v); }
          if (v < TWO32) { byte(0xce); return u32(v); }
          return big(0xcf, BigInt(v));
        }
        if (v >= -32) return byte(v + 256);
        if (v >= -0x80000000) { byte(0xd2); room(4); dv.setInt32(p, v); p += 4; return; }
        return big(0xd3, BigInt(v));
      }
      room(9); buf[p++] = 0xcb; dv.setFloat64(p, v); p += 8; return;
    }
    if (typeof v === 'string') {
      const s = utf8e.encode(v);
      if (s.length < 32) byte(0xa0 | s.length);
      else if (s.length < 0x100) { byte(0xd9); byte(s.length); }
      else if (s.length < 0x10000) { byte(0xda); u16(s.length); }
      else { byte(0xdb); u32(s.length); }
      room(s.length); buf.set(s, p); p += s.length; return;
    }
    if (Array.isArray(v)) {
      if (v.length < 16) byte(0x90 | v.length);
      else if (v.length < 0x10000) { byte(0xdc); u16(v.length); }
      else { byte(0xdd); u32(v.length); }
      for (const x of v) enc(x);
      return;
    }
    const keys = Object.keys(v);
    if (keys.length < 16) byte(0x80 | keys.length);
    else { byte(0xde); u16(keys.length); }
    for (const k of keys) { enc(k); enc(v[k]); }
  }
  enc(value);
  return buf.subarray(0, p);
}

/* ------------------------------------------------------------ RPC client */

/* One MessagePack-RPC session over a WebSocket: call() returns a promise of
 * the result (rejected with the error map), onNote(method, params) gets the
 * server's notifications. */
class Rpc {
  constructor(onNote, onClose) {
    this.next = 1;
    this.pending = new Map();
    this.onNote = onNote;
    this.lastBytes = 0;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    this.ws = new WebSocket(url, 'spacesim');
    this.ws.binaryType = 'arraybuffer';
    this.opened = new Promise((res, rej) => {
      this.ws.onopen = res;
      this.ws.onerror = () => rej(new Error('WebSocket error'));
    });
    this.ws.onclose = (e) => {
      for (const p of this.pending.values()) p.rej({ code: 0, message: 'connection closed' });
      this.pending.clear();
      if (onClose) onClose(e);
    };
    this.ws.onmessage = (e) => {
      if (typeof e.data === 'string') return;
      this.lastBytes = e.data.byteLength;
      let m;
      try { m = mpDecode(e.data); } catch (err) { console.error(err); return; }
      if (!Array.isArray(m)) return;
      if (m[0] === 1) {
        const p = this.pending.get(m[1]);
        if (!p) return;
        this.pending.delete(m[1]);
        if (m[2] !== null) p.rej(m[2]); else p.res(m[3]);
      } else if (m[0] === 2) {
        this.onNote(m[1], m[2], e.data.byteLength);
      }
    };
  }
  call(method, params) {
    const id = this.next++;
    return new Promise((res, rej) => {
      this.pending.set(id, { res, rej });
      this.ws.send(mpEncode([0, id, method, params || []]));
    });
  }
  notify(method, params) { this.ws.send(mpEncode([2, method, params || []])); }
}

/* ------------------------------------------------------------ the view */

const POS_STEPS = 16, RADIUS_STEPS = 16, HP_STEPS = 16;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/* Entity ids: Numbers while exact, BigInt above 2^53 (normalised, so one
 * id always has one key in the Map). */
function idAdd(a, b) {
  if (typeof a === 'number' && typeof b === 'number' && a + b <= MAX_SAFE) return a + b;
  const s = BigInt(a) + BigInt(b);
  return s <= BigInt(MAX_SAFE) ? Number(s) : s;
}

class Desync extends Error {}

/* ents: every entity in view by id (what the page draws); cells (protocol
 * 2): the same records by interest cell; moving: the records the last
 * snapshot moved (their o, the interpolation start, is not their pos). */
const view = { tick: null, ents: new Map(), cells: new Map(), moving: [], t: 0, dt: 50, proto: 2 };
const lastSeen = new Map();  /* id -> world position when it left the view */

function uint(v, what) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new Error(what + ': not an unsigned integer');
  return v;
}
function int(v, what) {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new Error(what + ': not an integer');
  return v;
}
function idDelta(v, what) {
  if (!((typeof v === 'number' && Number.isInteger(v) && v >= 1) || (typeof v === 'bigint' && v >= 1n))) {
    throw new Error(what + ' ids not ascending');
  }
  return v;
}

/* Protocol 1's three lists, scoped to one cell, applied to ents (a private
 * copy of the cell's Map: records are replaced by patched copies, never
 * written, so the view's own records stay as they were until commit).
 * Entered and changed records get o (their interpolation start) and go into
 * moved; left records into gone. Throws on anything malformed. */
function applyLists(ents, entered, changed, left, where, moved, goneRecs) {
  if (!Array.isArray(entered) || !Array.isArray(changed) || !Array.isArray(left)) {
    throw new Error(where + 'entered, changed and left must be arrays');
  }
  if (entered.length % 11) throw new Error(where + 'entered is not 11 ints per entity');
  let id = 0;
  for (let i = 0; i < entered.length; i += 11) {
    id = idAdd(id, idDelta(entered[i], where + 'entered'));
    for (let k = 1; k < 11; k++) int(entered[i + k], where + 'entered value');
    if (ents.has(id)) throw new Error(where + 'entered entity ' + id + ' is already in the view');
    const pos = [entered[i + 2], entered[i + 3], entered[i + 4]];
    const r = {
      id, kind: entered[i + 1], pos, o: pos.slice(), vel: [entered[i + 5], entered[i + 6], entered[i + 7]],
      hp: entered[i + 8], owner: entered[i + 9], radius: entered[i + 10],
    };
    ents.set(id, r);
  }
  id = 0;
  for (let i = 0; i < changed.length;) {
    if (i + 1 >= changed.length) throw new Error(where + 'changed entry cut short');
    id = idAdd(id, idDelta(changed[i], where + 'changed'));
    const op = int(changed[i + 1], where + 'changed op');
    i += 2;
    const old = ents.get(id);
    if (!old) throw new Error(where + 'changed entity ' + id + ' not in the view');
    const r = { ...old, pos: old.pos.slice(), o: old.pos.slice(), vel: old.vel.slice() };
    if (op >= 0 && op <= 124) {
      r.pos[0] += Math.floor(op / 25) - 2;
      r.pos[1] += Math.floor(op / 5) % 5 - 2;
      r.pos[2] += op % 5 - 2;
    } else {
      const mask = -op;
      if (mask < 1 || mask > 31) throw new Error(where + 'bad op ' + op);
      const need = (mask & 1 ? 3 : 0) + (mask & 2 ? 3 : 0) + (mask & 4 ? 1 : 0) + (mask & 8 ? 1 : 0) + (mask & 16 ? 1 : 0);
      if (i + need > changed.length) throw new Error(where + 'changed entry for ' + id + ' cut short');
      for (let k = 0; k < need; k++) int(changed[i + k], where + 'changed value');
      if (mask & 1) { r.pos[0] += changed[i]; r.pos[1] += changed[i + 1]; r.pos[2] += changed[i + 2]; i += 3; }
      if (mask & 2) { r.vel[0] += changed[i]; r.vel[1] += changed[i + 1]; r.vel[2] += changed[i + 2]; i += 3; }
      if (mask & 4) { r.hp += changed[i]; i += 1; }
      if (mask & 8) { r.owner = changed[i]; i += 1; }
      if (mask & 16) { r.radius = changed[i]; i += 1; }
    }
    ents.set(id, r);
    moved.push(r);
  }
  id = 0;
  for (const d of left) {
    id = idAdd(id, idDelta(d, where + 'left'));
    const r = ents.get(id);
    if (!r) throw new Error(where + 'left entity ' + id + ' not in the view');
    goneRecs.push(r);
    ents.delete(id);
  }
}

/* Protocol 2 (PROTOCOL.md's reference decoder): [tick, base_tick, chunks,
 * gone, count], chunks [cell, cbase, entered, changed, left, n] ascending.
 * Validates the whole snapshot into copies of the cells it names, then
 * commits: a malformed one (Error) or a desync (Desync) leaves the view
 * exactly as it was. Costs what the snapshot carries plus the cells it
 * names; cells it does not name are not visited (nor are their records). */
function applyCells(params) {
  if (!Array.isArray(params) || params.length < 5) throw new Error('snapshot params: not an array of 5');
  const [tick, base, chunks, gone, count] = params;
  uint(tick, 'tick');
  uint(count, 'count');
  if (!Array.isArray(chunks) || !Array.isArray(gone)) throw new Error('chunks and gone must be arrays');
  let old;
  if (base === null) {
    old = new Map();
  } else {
    uint(base, 'base_tick');
    if (view.tick === null || base !== view.tick) throw new Desync('base ' + base + ' is not ' + view.tick);
    old = view.cells;
  }
  const goneSet = new Set();
  let prev = -1;
  for (const g of gone) {
    if (uint(g, 'gone cell') <= prev) throw new Error('gone cells not ascending');
    prev = g;
    goneSet.add(g);
  }
  const fresh = new Map(), moved = [], goneRecs = [];
  prev = -1;
  for (const ch of chunks) {
    if (!Array.isArray(ch) || ch.length < 6) throw new Error('chunk: not an array of 6');
    const [cell, cbase, entered, changed, left, n] = ch;
    if (uint(cell, 'chunk cell') <= prev) throw new Error('chunk cells not ascending');
    prev = cell;
    uint(n, 'chunk n');
    const where = 'cell ' + cell + ': ';
    let ents;
    if (cbase === null) {
      if (!Array.isArray(changed) || !Array.isArray(left) || changed.length || left.length) {
        throw new Error(where + 'a full chunk carries changed or left entries');
      }
      ents = new Map();
    } else {
      if (cbase !== base) throw new Error(where + 'delta against ' + cbase + ' in a snapshot against ' + base);
      ents = goneSet.has(cell) ? new Map() : new Map(old.get(cell) || []);
    }
    applyLists(ents, entered, changed, left, where, moved, goneRecs);
    if (ents.size !== n) throw new Error(where + 'n ' + n + ' is not ' + ents.size);
    fresh.set(cell, ents);
  }
  let total = 0;
  if (base !== null) {
    total = view.ents.size;
    for (const cell of goneSet) if (!fresh.has(cell)) total -= (old.get(cell) || new Map()).size;
    for (const cell of fresh.keys()) total -= (old.get(cell) || new Map()).size;
  }
  for (const ents of fresh.values()) total += ents.size;
  if (total !== count) throw new Error('count ' + total + ' is not ' + count);
  /* Valid: commit. The records the previous snapshot moved stop
   * interpolating (o = pos); every removal comes before any insertion, so
   * an entity moving between two cells of this snapshot stays in ents. */
  for (const r of view.moving) { r.o[0] = r.pos[0]; r.o[1] = r.pos[1]; r.o[2] = r.pos[2]; }
  for (const r of goneRecs) lastSeen.set(r.id, [r.pos[0] / POS_STEPS, r.pos[1] / POS_STEPS, r.pos[2] / POS_STEPS]);
  if (base === null) {
    view.cells = new Map();
    view.ents = new Map();
  } else {
    for (const cell of [...goneSet, ...fresh.keys()]) {
      const c = view.cells.get(cell);
      if (!c) continue;
      for (const id of c.keys()) view.ents.delete(id);
      view.cells.delete(cell);
    }
  }
  for (const [cell, ents] of fresh) {
    view.cells.set(cell, ents);
    for (const [id, r] of ents) view.ents.set(id, r);
  }
  view.moving = moved;
  view.tick = tick;
  return { chunks: chunks.length, gone: gone.length, moved: moved.length };
}

/* The protocol the daemon speaks (hello's "protocol") picks the decoder. */
function applyAny(params) {
  if (view.proto >= 2) return applyCells(params);
  return applySnapshot(params);
}

/* Protocol 1 (older daemons): the reference algorithm, in place. Before applying, each
 * record's position becomes its interpolation start (o). Throws Desync or
 * Error (malformed); the view is then stale until a full snapshot. */
function applySnapshot(params) {
  const [tick, base, entered, changed, left, count] = params;
  const ents = view.ents;
  if (base === null) {
    ents.clear();
  } else if (base !== view.tick) {
    throw new Desync('base ' + base + ' is not ' + view.tick);
  }
  for (const r of ents.values()) { r.o[0] = r.pos[0]; r.o[1] = r.pos[1]; r.o[2] = r.pos[2]; }
  let id = 0;
  for (let i = 0; i + 11 <= entered.length; i += 11) {
    id = idAdd(id, entered[i]);
    const pos = [entered[i + 2], entered[i + 3], entered[i + 4]];
    ents.set(id, {
      id, kind: entered[i + 1], pos, o: pos.slice(), vel: [entered[i + 5], entered[i + 6], entered[i + 7]],
      hp: entered[i + 8], owner: entered[i + 9], radius: entered[i + 10],
    });
  }
  id = 0;
  for (let i = 0; i < changed.length;) {
    id = idAdd(id, changed[i]);
    const op = changed[i + 1];
    i += 2;
    const r = ents.get(id);
    if (!r) throw new Error('changed entity ' + id + ' not in the view');
    if (op >= 0 && op <= 124) {
      r.pos[0] += Math.floor(op / 25) - 2;
      r.pos[1] += Math.floor(op / 5) % 5 - 2;
      r.pos[2] += op % 5 - 2;
      continue;
    }
    const mask = -op;
    if (mask < 1 || mask > 31) throw new Error('bad op ' + op);
    if (mask & 1) { r.pos[0] += changed[i]; r.pos[1] += changed[i + 1]; r.pos[2] += changed[i + 2]; i += 3; }
    if (mask & 2) { r.vel[0] += changed[i]; r.vel[1] += changed[i + 1]; r.vel[2] += changed[i + 2]; i += 3; }
    if (mask & 4) { r.hp += changed[i]; i += 1; }
    if (mask & 8) { r.owner = changed[i]; i += 1; }
    if (mask & 16) { r.radius = changed[i]; i += 1; }
  }
  id = 0;
  for (const d of left) {
    id = idAdd(id, d);
    const r = ents.get(id);
    if (r) lastSeen.set(id, [r.pos[0] / POS_STEPS, r.pos[1] / POS_STEPS, r.pos[2] / POS_STEPS]);
    ents.delete(id);
  }
  if (ents.size !== count) throw new Error('count ' + ents.size + ' is not ' + count);
  view.tick = tick;
}

/* ------------------------------------------------------------ page state */

const $ = (id) => document.getElementById(id);
const canvas = $('map');
const ctx = canvas.getContext('2d');
const cam = { x: 0, y: 0, scale: 0.2, plane: 'xy', follow: false };
const me = { session: 0, ships: [], admin: false, worldSize: 4000 };
const events = [];           /* {type, t, a: [x,y,z], b: [x,y,z] | null, text} */
const eventCounts = {};      /* events received, by type */
let eventsDrawn = 0;         /* event marks drawn (frames x events) */
let selected = null;
let rpc = null;
let synced = false;
let decodeMs = 0, snapBytes = 0;
const keys = new Set();

function status(s) { $('status').textContent = s; }

function worldPos(r, alpha) {
  return [
    (r.o[0] + (r.pos[0] - r.o[0]) * alpha) / POS_STEPS,
    (r.o[1] + (r.pos[1] - r.o[1]) * alpha) / POS_STEPS,
    (r.o[2] + (r.pos[2] - r.o[2]) * alpha) / POS_STEPS,
  ];
}
function entPos(id) {
  const r = view.ents.get(id);
  if (r) return worldPos(r, alphaNow());
  return lastSeen.get(id) || null;
}
function alphaNow() { return Math.min(1, Math.max(0, (performance.now() - view.t) / view.dt)); }

function toScreen(w) {
  const v = cam.plane === 'xy' ? w[1] : w[2];
  return [(w[0] - cam.x) * cam.scale + canvas.width / 2, canvas.height / 2 - (v - cam.y) * cam.scale];
}
function toWorld(sx, sy) {
  return [(sx - canvas.width / 2) / cam.scale + cam.x, (canvas.height / 2 - sy) / cam.scale + cam.y];
}

function fit() {
  cam.x = 0; cam.y = 0;
  cam.scale = Math.min(canvas.width, canvas.height) / (me.worldSize * 1.05);
}

function onNote(method, params, bytes) {
  if (method === 'snapshot') {
    const t0 = performance.now();
    try {
      applyAny(params);
      synced = true;
    } catch (e) {
      if (synced) { synced = false; rpc.call('resync').catch(() => {}); }
      status('resync: ' + e.message);
      return;
    }
    const now = performance.now();
    view.t = now;
    decodeMs = decodeMs * 0.9 + (now - t0) * 0.1;
    snapBytes = bytes;
    document.body.dataset.view = String(view.ents.size);
    document.body.dataset.tick = String(view.tick);
  } else if (method === 'event') {
    const ev = params[0];
    const t = performance.now();
    if (ev.type === 'WeaponFired') events.push({ type: ev.type, t, a: entPos(ev.ship_id), b: entPos(ev.target_id), hit: ev.hit });
    if (ev.type === 'WeaponFired' && me.ships.includes(ev.ship_id)) {
      document.body.dataset.myShots = String(Number(document.body.dataset.myShots || 0) + 1);
    }
    else if (ev.type === 'ResourceMined') events.push({ type: ev.type, t, a: entPos(ev.ship_id), b: entPos(ev.asteroid_id) });
    else if (ev.type === 'ShipDestroyed') events.push({ type: ev.type, t, a: entPos(ev.ship_id), b: null });
    else if (ev.type === 'SystemAlert') showAlert(ev.message, ev.priority);
    if (ev.type === 'ShipDestroyed') me.ships = me.ships.filter((s) => s !== ev.ship_id);
    eventCounts[ev.type] = (eventCounts[ev.type] || 0) + 1;
    if (events.length > 2000) events.splice(0, events.length - 2000);
  } else if (method === 'error') {
    refused = (params[0] && params[0].message) || 'error';
    status('server: ' + refused);
  }
}

function showAlert(text, prio) {
  const d = document.createElement('div');
  d.textContent = 'ALERT (' + prio + '): ' + text;
  $('alerts').appendChild(d);
  document.body.dataset.lastAlert = text;
  setTimeout(() => d.remove(), 8000);
}

/* Connect, say hello (resuming the session, and so its ships, after a
 * dropped connection or a daemon restart: PROTOCOL.md "Reconnecting"),
 * subscribe to the whole world. A lost connection is retried every 2 s. */
let resumeToken = null;
let refused = null; /* the server's error notification: it closes the connection after it */
async function connect() {
  rpc = new Rpc(onNote, () => {
    document.body.dataset.connected = '0';
    synced = false;
    if (refused) { /* kicked or refused: coming straight back would defeat the kick */
      status('disconnected by the server: ' + refused + ' (reload to connect again)');
      return;
    }
    status('disconnected: reconnecting…');
    setTimeout(connect, 2000);
  });
  try {
    await rpc.opened;
    let h = null;
    if (resumeToken) h = await rpc.call('hello', ['web', null, resumeToken]).catch(() => null);
    if (!h) {
      if (resumeToken) { /* not resumable (expired): a new session, no ships */
        rpc.ws.close();
        resumeToken = null;
        me.ships = [];
        return;
      }
      h = await rpc.call('hello', ['web']);
    }
    resumeToken = h.resume_token;
    me.session = h.session;
    view.proto = typeof h.protocol === 'number' ? h.protocol : 2;
    view.dt = 1000 / (h.snapshot_hz || 20);
    document.body.dataset.session = String(h.session);
    const lim = await rpc.call('limits');
    /* The whole world: the radius that covers a cube of world_size from its centre. */
    const st = await rpc.call('stats');
    me.worldSize = Math.max(1000, estimateWorld());
    await rpc.call('subscribe', [lim.max_radius, [0, 0, 0]]);
    fit();
    hud(st);
    status('connected: session ' + h.session);
    document.body.dataset.connected = '1';
    document.body.dataset.connects = String(Number(document.body.dataset.connects || 0) + 1);
  } catch (e) {
    status('cannot connect: ' + (e.message || JSON.stringify(e)));
  }
}

setInterval(() => {
  if (rpc && rpc.ws.readyState === WebSocket.OPEN && me.session) rpc.call('stats').then(hud).catch(() => {});
}, 1000);

/* The world's edge is not in the protocol: take the view's extent once
 * the first snapshot arrived (until then the default demo world's). */
function estimateWorld() {
  let m = 0;
  for (const r of view.ents.values()) m = Math.max(m, Math.abs(r.pos[0]), Math.abs(r.pos[1]), Math.abs(r.pos[2]));
  return m ? (2 * m) / POS_STEPS : 4000;
}

function hud(st) {
  $('hud-tick').textContent = st.tick;
  $('hud-tickms').textContent = st.tick_ms_p50.toFixed(2) + ' / ' + st.tick_ms_p99.toFixed(2);
  $('hud-dilation').textContent = st.dilation.toFixed(3);
  $('hud-clients').textContent = st.clients;
}

/* ------------------------------------------------------------ drawing */

let frames = 0, fpsT = performance.now(), fps = 0, firstFit = false;

let frameMs = 0;

function draw() {
  const tf = performance.now();
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  if (!firstFit && view.ents.size > 0) { me.worldSize = estimateWorld(); fit(); firstFit = true; }
  const alpha = alphaNow();
  const myShip = me.ships[0];
  if (cam.follow && myShip !== undefined) {
    const r = view.ents.get(myShip);
    if (r) { const p = worldPos(r, alpha); cam.x = p[0]; cam.y = cam.plane === 'xy' ? p[1] : p[2]; }
  }
  ctx.fillStyle = '#05070d';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  let drawn = 0, myDrawn = false;
  const cw = canvas.width, ch = canvas.height, s = cam.scale;
  const plane = cam.plane === 'xy' ? 1 : 2;
  const byColour = { ast: [], npc: [], player: [], proj: [] };
  for (const r of view.ents.values()) {
    const wx = (r.o[0] + (r.pos[0] - r.o[0]) * alpha) / POS_STEPS;
    const wv = (r.o[plane] + (r.pos[plane] - r.o[plane]) * alpha) / POS_STEPS;
    const sx = (wx - cam.x) * s + cw / 2, sy = ch / 2 - (wv - cam.y) * s;
    if (sx < -20 || sy < -20 || sx > cw + 20 || sy > ch + 20) continue;
    drawn++;
    const rad = Math.max(r.kind === 2 ? 1.5 : 2.5, (r.radius / RADIUS_STEPS) * s);
    if (r.kind === 2) byColour.ast.push(sx, sy, rad);
    else if (r.kind === 3) byColour.proj.push(sx, sy, 1.5);
    else if (r.owner === 0) byColour.npc.push(sx, sy, rad);
    else byColour.player.push(sx, sy, rad);
    if (me.ships.includes(r.id)) {
      myDrawn = true;
      ctx.strokeStyle = '#4ff';
      ctx.beginPath(); ctx.arc(sx, sy, rad + 6, 0, 2 * Math.PI); ctx.stroke();
    }
    if (selected !== null && r.id === selected) {
      ctx.strokeStyle = '#ff0';
      ctx.strokeRect(sx - rad - 4, sy - rad - 4, 2 * rad + 8, 2 * rad + 8);
    }
  }
  fill(byColour.ast, '#7c8494'); fill(byColour.npc, '#e0524a');
  fill(byColour.player, '#3fe07a'); fill(byColour.proj, '#ffd23f');
  drawEvents();
  frames++;
  const now = performance.now();
  if (now - fpsT >= 1000) {
    fps = (frames * 1000) / (now - fpsT); frames = 0; fpsT = now;
    $('hud-fps').textContent = fps.toFixed(0);
    document.body.dataset.fps = fps.toFixed(1);
    $('hud-decode').textContent = decodeMs.toFixed(2);
    $('hud-frame').textContent = frameMs.toFixed(2);
    document.body.dataset.frameMs = frameMs.toFixed(3);
    document.body.dataset.decodeMs = decodeMs.toFixed(3);
    $('hud-snapbytes').textContent = snapBytes;
    document.body.dataset.events = JSON.stringify(eventCounts);
    document.body.dataset.eventsDrawn = String(eventsDrawn);
  }
  $('hud-view').textContent = view.ents.size;
  $('hud-drawn').textContent = drawn;
  document.body.dataset.drawn = String(drawn);
  document.body.dataset.myShipDrawn = myDrawn ? '1' : '0';
  frameMs = frameMs * 0.95 + (performance.now() - tf) * 0.05;
  if (myShip !== undefined) {
    const r = view.ents.get(myShip);
    if (r) {
      const p = [r.pos[0] / POS_STEPS, r.pos[1] / POS_STEPS, r.pos[2] / POS_STEPS];
      const t = p.map((v) => v.toFixed(1)).join(', ');
      $('my-ship-pos').textContent = '(' + t + ') hp ' + (r.hp / HP_STEPS).toFixed(0);
      document.body.dataset.myShipPos = p.join(',');
    }
  }
  requestAnimationFrame(draw);
}

function fill(a, colour) {
  ctx.fillStyle = colour;
  ctx.beginPath();
  for (let i = 0; i < a.length; i += 3) {
    const r = a[i + 2];
    if (r < 3) { ctx.rect(a[i] - r, a[i + 1] - r, 2 * r, 2 * r); continue; }
    ctx.moveTo(a[i] + r, a[i + 1]);
    ctx.arc(a[i], a[i + 1], r, 0, 2 * Math.PI);
  }
  ctx.fill();
}

function drawEvents() {
  const now = performance.now();
  let k = 0;
  for (const e of events) {
    const age = (now - e.t) / 700;
    if (age >= 1) continue;
    events[k++] = e;
    if (!e.a) continue;
    const a = toScreen(e.a);
    ctx.globalAlpha = 1 - age;
    eventsDrawn++;
    if (e.type === 'ShipDestroyed') {
      ctx.strokeStyle = '#ff8a3f';
      ctx.beginPath(); ctx.arc(a[0], a[1], 4 + 30 * age, 0, 2 * Math.PI); ctx.stroke();
    } else if (e.b) {
      const b = toScreen(e.b);
      ctx.strokeStyle = e.type === 'WeaponFired' ? (e.hit ? '#ff4f4f' : '#ffb0b0') : '#4fa8ff';
      ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }
  events.length = k;
}

/* ------------------------------------------------------------ input */

let drag = null;
canvas.addEventListener('mousedown', (e) => { drag = { x: e.offsetX, y: e.offsetY, moved: false }; canvas.focus(); });
window.addEventListener('mouseup', (e) => {
  if (drag && !drag.moved && e.target === canvas) pick(e.offsetX, e.offsetY);
  drag = null;
});
canvas.addEventListener('mousemove', (e) => {
  if (!drag) return;
  const dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
  if (!drag.moved) return;
  cam.x -= dx / cam.scale; cam.y += dy / cam.scale;
  drag.x = e.offsetX; drag.y = e.offsetY;
  $('follow').checked = cam.follow = false;
});
canvas.addEventListener('wheel', (e) => {
  e.preventDefault();
  const before = toWorld(e.offsetX, e.offsetY);
  cam.scale *= Math.exp(-e.deltaY * 0.0015);
  cam.scale = Math.min(50, Math.max(0.01, cam.scale));
  const after = toWorld(e.offsetX, e.offsetY);
  cam.x += before[0] - after[0]; cam.y += before[1] - after[1];
}, { passive: false });

/* Click: the entity nearest the pointer (within 12 px) is selected and inspected. */
function pick(sx, sy) {
  const alpha = alphaNow();
  let best = null, bd = 144;
  for (const r of view.ents.values()) {
    const p = toScreen(worldPos(r, alpha));
    const d = (p[0] - sx) ** 2 + (p[1] - sy) ** 2;
    if (d < bd) { bd = d; best = r; }
  }
  selected = best ? best.id : null;
  $('fire').disabled = selected === null || me.ships.length === 0;
  if (!best) { $('inspect').textContent = 'nothing there'; return; }
  inspect(best.id);
}

/* Select an entity by id (as a click on it does). */
function select(id) {
  selected = view.ents.has(id) ? id : null;
  $('fire').disabled = selected === null || me.ships.length === 0;
  if (selected !== null) inspect(selected);
}

function inspect(id) {
  rpc.call('inspect', [id]).then((r) => {
    const lines = [r.kind,
      'id ' + String(r.id), 'pos ' + r.pos.map((v) => v.toFixed(1)).join(', '),
      'vel ' + r.vel.map((v) => v.toFixed(1)).join(', '), 'hp ' + r.hp.toFixed(1) + ' / ' + r.max_hp.toFixed(1),
      'radius ' + r.radius.toFixed(1), 'owner ' + (r.owner === null ? 'server' : r.owner)];
    if (r.resource_type) lines.push(r.resource_type + ' ' + r.amount.toFixed(1));
    for (const k of Object.keys(r.cargo)) if (r.cargo[k] > 0) lines.push('cargo ' + k + ' ' + r.cargo[k].toFixed(1));
    $('inspect').textContent = lines.join('\n');
  }).catch((e) => { $('inspect').textContent = 'inspect: ' + e.message; });
}

$('plane').addEventListener('change', (e) => { cam.plane = e.target.value; cam.y = 0; });
$('fit').addEventListener('click', fit);
$('follow').addEventListener('change', (e) => { cam.follow = e.target.checked; });
$('spawn').addEventListener('click', () => {
  rpc.call('spawn').then((r) => {
    me.ships.unshift(r.ship_id);
    $('my-ship').textContent = String(r.ship_id);
    document.body.dataset.myShip = String(r.ship_id);
    $('follow').checked = cam.follow = true;
    canvas.focus();
  }).catch((e) => status('spawn: ' + e.message));
});
function fire() {
  if (selected === null || !me.ships.length) return;
  rpc.call('fire', [me.ships[0], selected]).then((r) => {
    status(r.hit ? 'hit: ' + r.damage.toFixed(1) + (r.destroyed ? ', destroyed' : '') : 'missed');
    document.body.dataset.lastFire = JSON.stringify(r);
  })
    .catch((e) => status('fire: ' + e.message));
}
$('fire').addEventListener('click', fire);

/* Thrust: the keys held give a desired velocity in the plane shown. */
const SPEED = 60;
function steer() {
  if (!me.ships.length) return;
  const h = (keys.has('d') || keys.has('arrowright') ? 1 : 0) - (keys.has('a') || keys.has('arrowleft') ? 1 : 0);
  const v = (keys.has('w') || keys.has('arrowup') ? 1 : 0) - (keys.has('s') || keys.has('arrowdown') ? 1 : 0);
  const vel = cam.plane === 'xy' ? [h * SPEED, v * SPEED, 0] : [h * SPEED, 0, v * SPEED];
  rpc.notify('move', [me.ships[0], vel]);
}
window.addEventListener('keydown', (e) => {
  if (e.target instanceof HTMLInputElement) return;
  const k = e.key.toLowerCase();
  if (k === 'f') return fire();
  if (k === ' ') { keys.clear(); steer(); e.preventDefault(); return; }
  if (['w', 'a', 's', 'd', 'arrowup', 'arrowdown', 'arrowleft', 'arrowright'].includes(k)) {
    if (!keys.has(k)) { keys.add(k); steer(); }
    e.preventDefault();
  }
});
window.addEventListener('keyup', (e) => {
  const k = e.key.toLowerCase();
  if (keys.delete(k)) steer();
});

/* ------------------------------------------------------------ console */

let admin = null;
let consoleGen = 0; /* a new login stops the old refresh loop */

$('console-login').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('token').value;
  $('token').value = '';
  openConsole(token);
});

async function openConsole(token) {
  if (admin) admin.ws.close();
  consoleGen++;
  $('console-status').textContent = 'connecting…';
  admin = new Rpc((m, p) => {
    if (m === 'event' && p[0].type === 'SystemAlert') document.body.dataset.consoleAlert = p[0].message;
  }, () => { $('console-status').textContent = 'console disconnected'; $('console').hidden = true; });
  try {
    await admin.opened;
    const h = await admin.call('hello', ['console', token]);
    if (!h.admin) throw new Error('not admin');
    await admin.call('subscribe', [0]); /* the console needs no snapshots */
    $('console-status').textContent = 'admin session ' + h.session;
    $('console').hidden = false;
    document.body.dataset.console = '1';
    const lim = await admin.call('limits');
    table($('limits'), lim);
    refreshConsole(false, consoleGen);
  } catch (e) {
    $('console-status').textContent = 'refused: ' + (e.message || JSON.stringify(e));
    document.body.dataset.console = '0';
  }
}

function table(t, obj) {
  const tb = t.tBodies[0];
  tb.textContent = '';
  for (const k of Object.keys(obj)) {
    const tr = tb.insertRow();
    tr.insertCell().textContent = k;
    const v = obj[k];
    tr.insertCell().textContent = typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : String(v);
  }
}

/* The console's tables, every second (once: one refresh now, e.g. after a kick). */
async function refreshConsole(once, gen) {
  if (!admin || admin.ws.readyState !== WebSocket.OPEN || (!once && gen !== consoleGen)) return;
  try {
    const r = await admin.call('clients');
    const tb = $('clients').tBodies[0];
    tb.textContent = '';
    for (const c of r.clients) {
      const tr = tb.insertRow();
      tr.dataset.session = String(c.session);
      tr.dataset.name = c.name;
      for (const v of [c.session, c.name, c.address, c.transport === 'websocket' ? 'ws' : 'tcp', c.ships, c.view,
        c.bytes_out, c.snapshots_skipped]) tr.insertCell().textContent = String(v);
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'kick';
      b.className = 'kick';
      b.addEventListener('click', () => admin.call('kick', [c.session, 'kicked from the web console'])
        .then(() => refreshConsole(true)).catch((e) => { $('console-status').textContent = 'kick: ' + e.message; }));
      tr.insertCell().appendChild(b);
    }
    document.body.dataset.consoleClients = String(r.clients.length);
    table($('counters'), await admin.call('stats'));
  } catch (e) {
    $('console-status').textContent = 'console: ' + (e.message || JSON.stringify(e));
  }
  if (!once) setTimeout(() => refreshConsole(false, gen), 1000);
}

$('alert-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (!admin) return;
  admin.call('alert', [$('alert-text').value, Number($('alert-prio').value) | 0])
    .then(() => { $('alert-text').value = ''; })
    .catch((err) => { $('console-status').textContent = 'alert: ' + err.message; });
});

/* For tests and the console of the browser. */
window.spacesim = {
  view, me, cam, mpDecode, mpEncode, applySnapshot, steer, keys, pick, select, get rpc() { return rpc; },
  fitView() { $('follow').checked = cam.follow = false; fit(); },
};

connect();
requestAnimationFrame(draw);
