/* tests/web/decode.js: the web view's snapshot decoder (web/app.js) on
 * hand-built messages, in node, without a daemon or a browser (run by
 * decode.sh). app.js is a page script (it draws on a canvas at load), so the
 * test takes its two DOM-free sections, "MessagePack" and "the view", from
 * the file itself and runs them in a fresh context: the code tested is the
 * code served.
 *
 * Protocol 2 (issue 9, PROTOCOL.md "Snapshots"): full and delta chunks, every
 * list kind, gone cells, moves between cells, desync, and every malformed
 * case leaves the view exactly as it was (the page then asks for a resync).
 * Exits 0 when every case passed, 1 otherwise, printing one line per case. */
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const src = fs.readFileSync(path.join(process.argv[2] || path.join(__dirname, '..', '..'), 'web', 'app.js'), 'utf8');
function section(name, next) {
  const a = src.indexOf('/* ------------------------------------------------------------ ' + name + ' */');
  const b = src.indexOf('/* ------------------------------------------------------------ ' + next + ' */');
  assert.ok(a >= 0 && b > a, 'app.js has no section "' + name + '" before "' + next + '"');
  return src.slice(a, b);
}

/* A fresh copy of the decoder (its own view) per call, in this realm (so its
 * arrays and errors compare with ours). */
function load() {
  const code = "(function () {\n'use strict';\n" + section('MessagePack', 'RPC client') + section('the view', 'page state') +
    '\nreturn { view, lastSeen, applyCells, applySnapshot, applyAny, Desync, mpEncode, mpDecode };\n})()';
  return vm.runInThisContext(code, { filename: 'web/app.js (sections)' });
}

function ent(d, kind = 2, pos = [0, 0, 0], vel = [0, 0, 0], hp = 1600, owner = 0, radius = 32) {
  return [d, kind, pos[0], pos[1], pos[2], vel[0], vel[1], vel[2], hp, owner, radius];
}
const cat = (...recs) => [].concat(...recs);

/* Cells 3 (ids 5, 9) and 10 (id 12) at tick 100, as in tests/python/test_world.py. */
const FULL = [100, null, [
  [3, null, cat(ent(5, 1, [16, 32, 48], [64, 0, 0], 1600, 7, 32), ent(4, 2, [100, 0, 0])), [], [], 2],
  [10, null, ent(12, 3, [0, 0, 800], [0, 0, 640], 16, 7, 2), [], [], 1],
], [], 3];

/* Everything the view holds, by value. */
function state(m) {
  const rec = (r) => [r.kind, r.pos.join(), r.vel.join(), r.hp, r.owner, r.radius].join('/');
  const cells = [...m.view.cells].sort((a, b) => a[0] - b[0])
    .map(([c, ents]) => c + ':' + [...ents].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([i, r]) => i + '=' + rec(r)).join(' '));
  const flat = [...m.view.ents].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([i, r]) => i + '=' + rec(r));
  return JSON.stringify({ tick: m.view.tick, cells, flat });
}
const ids = (map) => [...map.keys()].sort((a, b) => (a < b ? -1 : 1));

function fresh() {
  const m = load();
  m.view.proto = 2;
  m.applyAny(FULL);
  return m;
}

const cases = [];
const test = (name, fn) => cases.push([name, fn]);

test('full snapshot builds the cells and the flat index', () => {
  const m = fresh();
  assert.equal(m.view.tick, 100);
  assert.deepEqual(ids(m.view.cells), [3, 10]);
  assert.deepEqual(ids(m.view.cells.get(3)), [5, 9]);
  assert.deepEqual(ids(m.view.ents), [5, 9, 12]);
  const s = m.view.ents.get(5);
  assert.deepEqual([s.kind, s.pos, s.vel, s.hp, s.owner, s.radius], [1, [16, 32, 48], [64, 0, 0], 1600, 7, 32]);
  assert.deepEqual(m.view.ents.get(9).pos, [100, 0, 0]);
  assert.equal(m.view.ents.get(12), m.view.cells.get(10).get(12));
});

test('delta chunk applies entered, small move, every mask field and left; other cells untouched', () => {
  const m = fresh();
  const cell10 = m.view.cells.get(10), rec12 = m.view.ents.get(12), old9 = m.view.ents.get(9);
  m.applyAny([101, 100, [[3, 100, ent(20, 2, [1, 2, 3]), [5, 87, 4, -31, 1, 2, 3, 4, 5, 6, -160, 9, 48], [5], 2]],
    [], 3]);
  assert.equal(m.view.tick, 101);
  assert.deepEqual(ids(m.view.cells.get(3)), [9, 20]);
  assert.deepEqual(ids(m.view.ents), [9, 12, 20]);
  const e9 = m.view.ents.get(9);
  assert.deepEqual([e9.pos, e9.vel, e9.hp, e9.owner, e9.radius], [[101, 2, 3], [4, 5, 6], 1440, 9, 48]);
  assert.deepEqual(e9.o, [100, 0, 0], 'a moved record interpolates from where it was');
  assert.deepEqual(old9.pos, [100, 0, 0], 'records are copied before they change');
  assert.deepEqual(m.view.ents.get(20).pos, [1, 2, 3]);
  assert.equal(m.view.cells.get(10), cell10, 'a cell not named is the same Map');
  assert.equal(m.view.ents.get(12), rec12, 'and the same records');
  assert.deepEqual(m.lastSeen.get(5), [17 / 16, 2, 3], 'a left entity is remembered where it was (after its move)');
  m.applyAny([102, 101, [], [], 3]);
  assert.deepEqual(e9.o, e9.pos, 'the next snapshot ends the interpolation');
});

test('small move ops cover every offset', () => {
  const seen = new Set();
  for (let op = 0; op < 125; op++) {
    const m = load();
    m.applyCells([1, null, [[0, null, ent(7), [], [], 1]], [], 1]);
    m.applyCells([2, 1, [[0, 1, [], [7, op], [], 1]], [], 1]);
    const d = m.view.ents.get(7).pos;
    assert.equal(op, (d[0] + 2) * 25 + (d[1] + 2) * 5 + (d[2] + 2));
    seen.add(d.join());
  }
  assert.equal(seen.size, 125);
});

test('a full chunk in a delta replaces its cell; a newly seen cell is added', () => {
  const m = fresh();
  m.applyAny([101, 100, [[3, null, ent(9, 2, [7, 7, 7]), [], [], 1], [4, null, ent(30), [], [], 1]], [], 3]);
  assert.deepEqual(ids(m.view.cells), [3, 4, 10]);
  assert.deepEqual(ids(m.view.ents), [9, 12, 30]);
  assert.deepEqual(m.view.ents.get(9).pos, [7, 7, 7]);
  assert.equal(m.view.ents.get(5), undefined);
});

test('gone cells forget their entities (an unknown gone cell is nothing)', () => {
  const m = fresh();
  m.applyAny([101, 100, [], [3], 1]);
  assert.deepEqual(ids(m.view.cells), [10]);
  assert.deepEqual(ids(m.view.ents), [12]);
  m.applyAny([102, 101, [], [3, 99], 1]);
  assert.deepEqual(ids(m.view.ents), [12]);
});

test('an entity moving between cells stays in view, either direction', () => {
  const m = fresh();
  m.applyAny([101, 100, [[3, 100, [], [], [5], 1], [10, 100, ent(5, 1, [16, 32, 2000]), [], [], 2]], [], 3]);
  assert.deepEqual(ids(m.view.cells.get(10)), [5, 12]);
  assert.deepEqual(m.view.ents.get(5).pos, [16, 32, 2000]);
  m.applyAny([102, 101, [[3, 101, ent(5), [], [], 2], [10, 101, [], [], [5], 1]], [], 3]);
  assert.deepEqual(ids(m.view.cells.get(3)), [5, 9]);
  assert.deepEqual(ids(m.view.ents), [5, 9, 12]);
});

test('a full snapshot clears the whole view; later versions may append elements', () => {
  const m = fresh();
  m.applyAny([101, 100, [[10, 100, [], [12, 62], [], 1, 'more']], [], 3, { extra: 1 }]);
  assert.equal(m.view.tick, 101);
  m.applyAny([200, null, [[50, null, ent(77), [], [], 1]], [], 1]);
  assert.deepEqual(ids(m.view.cells), [50]);
  assert.deepEqual(ids(m.view.ents), [77]);
});

test('ids above 2^53 survive MessagePack and the id deltas (BigInt)', () => {
  const m = load();
  const big = (1n << 60n) + 5n;
  const bytes = m.mpEncode([2, 'snapshot', [1, null, [[0, null, cat(ent(big), ent(2)), [], [], 2]], [], 2]]);
  const msg = m.mpDecode(bytes);
  m.applyCells(msg[2]);
  assert.deepEqual(ids(m.view.ents), [big, big + 2n]);
  m.applyCells([2, 1, [[0, 1, [], [big, 87], [big + 2n], 1]], [], 1]);
  assert.deepEqual(m.view.ents.get(big).pos, [1, 0, 0]);
});

test('a delta against another tick is a desync and keeps the view', () => {
  const m = fresh();
  const before = state(m);
  assert.throws(() => m.applyAny([102, 101, [[3, 101, [], [5, 87], [], 2]], [], 3]), m.Desync);
  assert.equal(state(m), before);
  const n = load();
  assert.throws(() => n.applyCells([101, 100, [], [], 0]), n.Desync);
});

const BAD = [
  ['params too short', [101, 100, [], []]],
  ['params not an array', { tick: 101 }],
  ['chunks not an array', [101, 100, 5, [], 3]],
  ['gone not an array', [101, 100, [], null, 3]],
  ['negative tick', [-1, 100, [], [], 3]],
  ['count mismatch', [101, 100, [], [], 4]],
  ['count mismatch after gone', [101, 100, [], [3], 3]],
  ['gone not ascending', [101, 100, [], [10, 3], 0]],
  ['gone repeated', [101, 100, [], [3, 3], 1]],
  ['gone not an int', [101, 100, [], ['3'], 1]],
  ['chunk not an array', [101, 100, [7], [], 3]],
  ['chunk too short', [101, 100, [[3, 100, [], [], []]], [], 3]],
  ['chunks not ascending', [101, 100, [[10, 100, [], [], [], 1], [3, 100, [], [], [], 2]], [], 3]],
  ['chunk repeated', [101, 100, [[3, 100, [], [], [], 2], [3, 100, [], [], [], 2]], [], 3]],
  ['cell id not an int', [101, 100, [[3.5, 100, [], [], [], 2]], [], 3]],
  ['chunk base is not base_tick', [101, 100, [[3, 99, [], [], [], 2]], [], 3]],
  ['delta chunk in a full snapshot', [101, null, [[3, 100, [], [], [], 0]], [], 0]],
  ['chunk n mismatch', [101, 100, [[3, 100, [], [], [], 3]], [], 3]],
  ['changed id of another cell', [101, 100, [[3, 100, [], [12, 87], [], 2]], [], 3]],
  ['left id of another cell', [101, 100, [[10, 100, [], [], [5], 0]], [], 2]],
  ['entered id already in the cell', [101, 100, [[3, 100, ent(5), [], [], 3]], [], 4]],
  ['full chunk with a changed list', [101, 100, [[3, null, ent(5), [5, 87], [], 1]], [], 2]],
  ['full chunk with a left list', [101, 100, [[3, null, ent(5), [], [5], 0]], [], 1]],
  ['delta chunk for a gone cell', [101, 100, [[3, 100, [], [5, 87], [], 2]], [3], 3]],
  ['op out of range', [101, 100, [[3, 100, [], [5, 125], [], 2]], [], 3]],
  ['mask out of range', [101, 100, [[3, 100, [], [5, -32, 0], [], 2]], [], 3]],
  ['values cut short', [101, 100, [[3, 100, [], [5, -1, 5], [], 2]], [], 3]],
  ['changed entry cut short', [101, 100, [[3, 100, [], [5], [], 2]], [], 3]],
  ['changed ids not ascending', [101, 100, [[3, 100, [], [9, 87, 0, 87], [], 2]], [], 3]],
  ['entered not 11 ints', [101, 100, [[3, 100, [1, 2, 3], [], [], 3]], [], 4]],
  ['entered not ascending', [101, 100, [[4, null, cat(ent(7), ent(0)), [], [], 2]], [], 5]],
  ['float op', [101, 100, [[3, 100, [], [5, 1.5], [], 2]], [], 3]],
  ['a string value', [101, 100, [[3, 100, [], [5, -4, 'x'], [], 2]], [], 3]],
  ['lists not arrays', [101, 100, [[3, 100, null, [], [], 2]], [], 3]],
  ['bad last chunk after good ones', [101, 100, [[3, 100, [], [5, 87], [5], 1], [10, 100, [], [12, 200], [], 1]], [], 2]],
];

test('every malformed snapshot throws and leaves the view exactly as it was', () => {
  const m = fresh();
  const before = state(m);
  const rec9 = m.view.ents.get(9);
  const lastSeen = m.lastSeen.size;
  for (const [what, b] of BAD) {
    assert.throws(() => m.applyAny(b), (e) => e instanceof Error && !(e instanceof m.Desync), what);
    assert.equal(state(m), before, what);
  }
  assert.equal(m.view.ents.get(9), rec9);
  assert.equal(m.lastSeen.size, lastSeen, 'nothing remembered from a rejected snapshot');
  m.applyAny([101, 100, [[3, 100, [], [5, 87], [], 2]], [], 3]);   /* and the view still works */
  assert.deepEqual(m.view.ents.get(5).pos, [17, 32, 48]);
});

test('protocol 1 daemons: hello says 1, the whole-view decoder runs', () => {
  const m = load();
  m.view.proto = 1;
  m.applyAny([300, null, cat(ent(5, 1, [1600, -160, 0])), [], [], 1]);
  m.applyAny([303, 300, [], [5, 87], [], 1]);
  assert.deepEqual(m.view.ents.get(5).pos, [1601, -160, 0]);
});

let failed = 0;
for (const [name, fn] of cases) {
  try {
    fn();
    console.log('ok   ' + name);
  } catch (e) {
    failed++;
    console.log('FAIL ' + name + ': ' + (e && e.stack ? e.stack : e));
  }
}
console.log('web decoder: ' + cases.length + ' cases (' + BAD.length + ' malformed snapshots), ' + failed + ' failed');
process.exit(failed ? 1 : 0);
