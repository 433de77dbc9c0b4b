"""tests/web/browser.py: the web view tested in headless Chromium (run by browser.sh).

argv: spacesimd, source dir, chromium, artifact dir, timeout multiplier.

A real spacesimd (ephemeral RPC port, a free HTTP port, an admin token in the
environment, the page's files from the source tree) and a real browser driven
through the DevTools protocol (python3-websockets). Every wait is for a
condition (polled, with a deadline scaled by the multiplier), never a fixed
sleep. Asserts what a person sees:
  1. the page draws as many entities as the daemon's view of its session
     (the admin method `clients`, over TCP) holds;
  2. "spawn a ship" gives a ship that is drawn, and thrust moves it (the
     page's position and the daemon's `inspect` agree); "fire at selected"
     shoots a ship next to it (result and WeaponFired event);
  3. the operator's console opened with the token lists a TCP client, and
     its kick button removes it from the list and closes its connection; its
     alert is drawn as a banner by the page;
  4. the token is not in the page's URL;
  5. a page whose connection is cut reconnects and resumes its session.
Prints the page's frame rate and snapshot apply time, and saves a screenshot
(web-view.png) into the artifact directory.
"""
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack
import websockets

daemon, srcdir, chrome, artifacts, mult = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
TOKEN = "web-test-token-5e1"
tmp = tempfile.mkdtemp(prefix="spacesim-web.")
procs = []


def log(msg):
    print("browser.py: " + msg, flush=True)


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(tmp, True)


def fail(msg):
    try:
        dl = open(tmp + "/daemon.log").read()[-3000:]
    except OSError:
        dl = ""
    sys.stderr.write("browser.py: FAIL: %s\n--- daemon log (end) ---\n%s\n" % (msg, dl))
    cleanup()
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Rpc:
    """A blocking MessagePack-RPC client over TCP (the daemon's own port)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10 * mult)
        self.up = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.next = 1
        self.closed = False

    def call(self, method, *params):
        mid = self.next
        self.next += 1
        self.s.sendall(msgpack.packb([0, mid, method, list(params)]))
        while True:
            for m in self.up:
                if m[0] == 1 and m[1] == mid:
                    if m[2] is not None:
                        raise RuntimeError("%s: %s" % (method, m[2]))
                    return m[3]
            data = self.s.recv(65536)
            if not data:
                self.closed = True
                raise EOFError(method)
            self.up.feed(data)

    def wait_closed(self, timeout):
        self.s.settimeout(timeout)
        try:
            while self.s.recv(65536):
                pass
        except socket.timeout:
            return False
        except OSError:
            pass
        return True


def wait_for(what, fn, timeout):
    deadline = time.monotonic() + timeout * mult
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    fail("timed out waiting for %s (last: %r)" % (what, last))


# ------------------------------------------------------------ the daemon
for attempt in range(5):
    http = free_port()
    pf = tmp + "/port"
    if os.path.exists(pf):
        os.unlink(pf)
    env = dict(os.environ, SPACESIM_ADMIN_TOKEN=TOKEN)
    d = subprocess.Popen([daemon, "--bind", "127.0.0.1", "--port", "0", "--port-file", pf, "--http-port", str(http),
                          "--web-root", os.path.join(srcdir, "web"), "--checkpoint-every", "0",
                          ], stderr=open(tmp + "/daemon.log", "w"), env=env)
    deadline = time.monotonic() + 20 * mult
    while time.monotonic() < deadline and d.poll() is None and not (os.path.exists(pf) and open(pf).read().strip()):
        time.sleep(0.02)
    if d.poll() is None and os.path.exists(pf):
        procs.append(d)
        break
    st = d.poll()
    if st is None:
        d.kill()
        d.wait()
    if st != 4:
        fail("daemon did not start (exit %s)" % st)
else:
    fail("no free HTTP port after 5 tries")
rpc_port = int(open(pf).read())
page_url = "http://127.0.0.1:%d/" % http
log("daemon on RPC port %d, page %s" % (rpc_port, page_url))
admin = Rpc(rpc_port)
if not admin.call("hello", "test-admin", TOKEN)["admin"]:
    fail("the test's admin session is not admin")

# ------------------------------------------------------------ the browser
profile = tmp + "/profile"
cr = subprocess.Popen([chrome, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                       "--disable-extensions", "--disable-background-timer-throttling",
                       "--disable-renderer-backgrounding", "--remote-debugging-port=0", "--user-data-dir=" + profile,
                       "--window-size=1400,900", "about:blank"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
procs.append(cr)
devtools = None
deadline = time.monotonic() + 30 * mult
while time.monotonic() < deadline and devtools is None:
    line = cr.stderr.readline()
    if not line:
        if cr.poll() is not None:
            fail("chromium exited (%s)" % cr.returncode)
        continue
    if "DevTools listening on " in line:
        devtools = line.split("DevTools listening on ", 1)[1].strip()
if devtools is None:
    fail("chromium printed no DevTools address")
import threading  # noqa: E402  (chromium keeps writing to stderr: drain it, or it blocks)
threading.Thread(target=lambda: [None for _ in cr.stderr], daemon=True).start()
dt_port = int(devtools.split(":")[2].split("/")[0])
targets = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % dt_port, timeout=10).read())
page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")


class Cdp:
    def __init__(self, ws):
        self.ws = ws
        self.next = 1

    async def send(self, method, **params):
        mid = self.next
        self.next += 1
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 30 * mult))
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    async def js(self, expr):
        r = await self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("js %r: %s" % (expr, r["exceptionDetails"].get("text")))
        return r["result"].get("value")

    async def until(self, what, expr, timeout):
        deadline = time.monotonic() + timeout * mult
        last = None
        while time.monotonic() < deadline:
            last = await self.js(expr)
            if last:
                return last
            await asyncio.sleep(0.05)
        fail("timed out waiting for %s (last: %r)" % (what, last))


def daemon_view(session):
    for c in admin.call("clients")["clients"]:
        if c["session"] == session:
            return c
    return None


async def main():
    async with websockets.connect(page_ws, max_size=None) as ws:
        cdp = Cdp(ws)
        await cdp.send("Page.enable")
        await cdp.send("Runtime.enable")
        t0 = time.monotonic()
        await cdp.send("Page.navigate", url=page_url)
        await cdp.until("the page to connect", "document.body && document.body.dataset.connected === '1'", 20)
        session = int(await cdp.js("document.body.dataset.session"))
        # 1. Drawn = the daemon's view of this session (the whole default
        # demo world is fitted into the canvas, so every entity is drawn).
        seen = {}

        async def counts_agree():
            drawn = int(await cdp.js("document.body.dataset.drawn || '0'"))
            shown = int(await cdp.js("document.body.dataset.view || '0'"))
            c = daemon_view(session)
            seen.update(drawn=drawn, view=shown, daemon=c and c["view"])
            return c is not None and drawn > 1000 and drawn == shown == c["view"]

        deadline = time.monotonic() + 30 * mult
        while not await counts_agree():
            if time.monotonic() > deadline:
                fail("entities drawn never matched the daemon's view: %r" % seen)
            await asyncio.sleep(0.05)
        log("view: %d entities drawn = %d in the daemon's view of session %d (%.1f s after load)"
            % (seen["drawn"], seen["daemon"], session, time.monotonic() - t0))
        # Events as they happen: the demo world's NPCs mine (and fight);
        # the page counts what it received and the marks it drew.
        evs = await cdp.until("events drawn", "Number(document.body.dataset.eventsDrawn || 0) > 0 &&"
                              " document.body.dataset.events", 20)
        log("events: %s received, drawn" % evs)
        # 2. Spawn, see it drawn, thrust, see it move (page and daemon agree).
        await cdp.js("document.getElementById('spawn').click()")
        ship = int(await cdp.until("a ship id", "document.body.dataset.myShip", 10))
        await cdp.until("the ship drawn", "document.body.dataset.myShipDrawn === '1'", 10)
        p0 = [float(v) for v in (await cdp.until("its position", "document.body.dataset.myShipPos", 10)).split(",")]
        await cdp.js("spacesim.keys.add('d'); spacesim.steer(); true")
        pos = await cdp.until("the ship moving along +x",
                              "(() => { const p = (document.body.dataset.myShipPos || '').split(',').map(Number);"
                              " return p[0] > %f ? p.join(',') : null; })()" % (p0[0] + 20), 20)
        p1 = [float(v) for v in pos.split(",")]
        srv = admin.call("inspect", ship)["pos"]
        if srv[0] < p0[0] + 20:
            fail("the page shows the ship at x=%.1f but the daemon has it at %.1f" % (p1[0], srv[0]))
        await cdp.js("spacesim.keys.clear(); spacesim.steer(); true")
        # Fire: a target ship (the admin's) 30 units away, selected in the
        # page, the fire button pressed; the result and the page's own
        # WeaponFired event come back.
        here = admin.call("inspect", ship)["pos"]
        target = admin.call("spawn", [here[0] + 30, here[1], here[2]])["ship_id"]
        await cdp.until("the target in the view", "spacesim.view.ents.has(%d)" % target, 10)
        await cdp.js("spacesim.select(%d); document.getElementById('fire').click(); true" % target)
        shot = json.loads(await cdp.until("the shot's result", "document.body.dataset.lastFire", 10))
        await cdp.until("its WeaponFired event", "Number(document.body.dataset.myShots || 0) >= 1", 10)
        log("fired at ship %d from the page: %r" % (target, shot))
        log("ship %d drawn, moved from x=%.1f to x=%.1f (daemon: %.1f)" % (ship, p0[0], p1[0], srv[0]))
        # 3. The console: the token typed into the page (never the URL).
        victim = Rpc(rpc_port)
        vs = victim.call("hello", "victim-%d" % os.getpid())["session"]
        await cdp.js("document.getElementById('token').value = %s;"
                     " document.getElementById('console-open').click(); true" % json.dumps(TOKEN))
        await cdp.until("the console to open", "document.body.dataset.console === '1'", 10)
        row = "document.querySelector('#clients tr[data-session=\"%d\"]')" % vs
        await cdp.until("the victim listed", "!!" + row, 10)
        await cdp.js(row + ".querySelector('button.kick').click(); true")
        await cdp.until("the victim gone from the list", "!" + row, 10)
        if not victim.wait_closed(10 * mult):
            fail("the kicked client's connection stays open")
        if daemon_view(vs) is not None:
            fail("the daemon still lists the kicked session %d" % vs)
        # The console's alert reaches every client: the page's own session
        # draws the banner, and a TCP client gets the SystemAlert event.
        text = "solar storm %d" % os.getpid()
        await cdp.js("document.getElementById('alert-text').value = %s;"
                     " document.querySelector('#alert-form button').click(); true" % json.dumps(text))
        await cdp.until("the alert banner", "document.body.dataset.lastAlert === %s" % json.dumps(text), 10)
        banner = await cdp.js("document.getElementById('alerts').textContent")
        if text not in banner:
            fail("the alert banner shows %r" % banner)
        href = await cdp.js("location.href")
        if TOKEN in href:
            fail("the admin token is in the URL: " + href)
        log("console: session %d listed, kicked from the page, gone from the list and disconnected;"
            " its alert drawn" % vs)
        # 4. The page's own connection dropped (closed under it): it
        # reconnects by itself and resumes its session, ship and all.
        await cdp.js("spacesim.rpc.ws.close(); true")
        await cdp.until("the page to reconnect", "document.body.dataset.connects === '2'", 20)
        again = int(await cdp.js("document.body.dataset.session"))
        if again != session:
            fail("the page came back as session %d, not %d (no resume)" % (again, session))
        await cdp.until("its ship drawn again", "document.body.dataset.myShipDrawn === '1'", 10)
        log("reconnect: the page resumed session %d with its ship after its connection dropped" % session)
        # Figures, then the screenshot.
        fps = await cdp.until("an fps figure", "document.body.dataset.fps", 10)
        dec = await cdp.js("document.body.dataset.decodeMs")
        fms = await cdp.js("document.body.dataset.frameMs")
        log("page: %s frames/s, %s ms of script per frame, snapshot apply %s ms (headless, software rendering)"
            % (fps, fms, dec))
        # The whole world in the picture, the ship selected and inspected.
        await cdp.js("spacesim.fitView(); true")
        await cdp.js("(() => { const c = document.getElementById('map'); const r = spacesim.view.ents.get(%d);"
                     " if (!r) return false; const s = spacesim.cam.scale;"
                     " const x = (r.pos[0] / 16 - spacesim.cam.x) * s + c.width / 2;"
                     " const y = c.height / 2 - (r.pos[1] / 16 - spacesim.cam.y) * s;"
                     " spacesim.pick(x, y); return true; })()" % ship)
        await cdp.until("the inspect panel", "document.getElementById('inspect').textContent.startsWith('ship')", 10)
        shot = await cdp.send("Page.captureScreenshot", format="png")
        import base64
        os.makedirs(artifacts, exist_ok=True)
        out = os.path.join(artifacts, "web-view.png")
        with open(out, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        log("screenshot: " + out)
        try:
            await cdp.send("Browser.close")
        except Exception:
            pass


try:
    asyncio.run(asyncio.wait_for(main(), 120 * mult))
except asyncio.TimeoutError:
    fail("the browser test took over %.0f s" % (120 * mult))
except SystemExit:
    raise
except Exception as e:  # a failed DevTools call or a refused RPC
    fail("%s: %s" % (type(e).__name__, e))
cr.wait(timeout=20 * mult)
d = procs[0]
d.send_signal(signal.SIGTERM)
try:
    st = d.wait(timeout=20 * mult)
except subprocess.TimeoutExpired:
    fail("the daemon did not stop")
if st != 0:
    fail("the daemon exited %d" % st)
if "still has open handles" in open(tmp + "/daemon.log").read():
    fail("uv_loop_close failed at exit")
log("PASS")
cleanup()
