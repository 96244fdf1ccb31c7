// Drives the dashboard in Debian's Chromium (headless) with playwright-core.
// Run by tests/browser.rs:  node dashboard.mjs BASE_URL WIDTH HEIGHT ARTIFACT_DIR
// First in H.264 mode (the default where the browser plays H.264): the <video> plays at the
// live edge; then the switch to MJPEG, remembered across a reload, and the MJPEG checks; then
// a second page in H.264 mode rides through the video outage with the first.
// Protocol with the Rust test: prints "OUTAGE?" and waits for a line on stdin once the video
// feed is stopped, then "RESUME?" and waits for a line once it is back. Exits non-zero with a
// message on the first failed check.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [base, width, height, artifacts] = process.argv.slice(2);
const W = Number(width), H = Number(height);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const ask = async (q) => { console.log(q); await lines.next(); };
const fail = (msg) => { throw new Error(msg); };

const profile = mkdtempSync(join(tmpdir(), "billiards-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 1100 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let code = 0;
try {
  const page = context.pages()[0] ?? await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  let reloading = false;
  page.on("requestfailed", (r) => {
    // Replacing the <img> source aborts the previous stream, a new MediaSource the old one's
    // blob URL, and the reload the requests in flight: that is expected.
    if (r.url().includes("/stream/video") || r.url().startsWith("blob:") || reloading) return;
    errors.push("request failed: " + r.url() + " (" + (r.failure() && r.failure().errorText) + ")");
  });
  const stats = async () => (await page.request.get(base + "/api/stream")).json();
  // Waits until the server counts `want` clients ({mjpeg, h264, ws}), or fails with what it has.
  const waitClients = async (want, what) => {
    const deadline = Date.now() + 15000;
    for (;;) {
      const s = await stats();
      const have = { mjpeg: s.clients - s.ws_clients - s.h264_clients, h264: s.h264_clients, ws: s.ws_clients };
      if (have.mjpeg === want.mjpeg && have.h264 === want.h264 && have.ws === want.ws) return s;
      if (Date.now() > deadline) fail(what + ": expected clients " + JSON.stringify(want) + ", the server has " + JSON.stringify(have));
      await page.waitForTimeout(200);
    }
  };
  await page.goto(base + "/", { waitUntil: "domcontentloaded" });

  // This Chromium plays H.264 through Media Source Extensions, so the page starts in H.264.
  const codecs = await page.evaluate(() => ({
    mse: !!window.MediaSource,
    avc: window.MediaSource ? MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01F"') : false,
  }));
  console.log("chromium MSE " + codecs.mse + ", H.264 (avc1.42E01F) " + codecs.avc);
  if (!codecs.avc) fail("this Chromium cannot play H.264 through MSE (isTypeSupported avc1.42E01F is false); the H.264 view cannot be tested");
  await page.waitForFunction(() => document.getElementById("video").dataset.mode, null, { timeout: 20000 });
  if (await page.$eval("#mode", (s) => s.value) !== "h264") fail("the page did not start in H.264 mode: " + await page.$eval("#mode-note", (n) => n.textContent));
  if (!await page.$eval("#stream", (i) => i.hidden)) fail("the MJPEG image is visible in H.264 mode");

  // The video plays at the configured size, and video.currentTime advances.
  await page.waitForFunction(() => { const v = document.getElementById("video"); return v.videoWidth > 0 && v.currentTime > 0; }, null, { timeout: 30000 });
  const vsize = await page.$eval("#video", (v) => [v.videoWidth, v.videoHeight]);
  if (vsize[0] !== W || vsize[1] !== H) fail(`H.264 video is ${vsize}, expected ${W}x${H}`);
  // video.currentTime advances by more than a second from `since` (default: now) on page `p`.
  const played = async (p, what, since) => {
    const t0 = since ?? await p.$eval("#video", (v) => v.currentTime);
    await p.waitForFunction((t) => document.getElementById("video").currentTime > t + 1, t0, { timeout: 30000 })
      .catch(() => p.$eval("#video", (v) => [v.currentTime, v.dataset.state, v.error && v.error.message]).then((x) => fail(what + ": video.currentTime stays near " + t0 + " (now, state, error: " + x + ")")));
  };
  await played(page, "H.264 playback");
  // One H.264 stream and the push socket; no MJPEG stream behind the hidden image.
  await waitClients({ mjpeg: 0, h264: 1, ws: 1 }, "in H.264 mode");
  // The figures are the H.264 stream's.
  await page.waitForFunction(() => document.getElementById("k-lat").textContent.startsWith("H.264") && document.getElementById("f-enc").textContent !== "0.0", null, { timeout: 20000 });
  // The overlay is drawn over the video from the pushed detections.
  await page.waitForFunction(() => document.getElementById("overlay-canvas").dataset.ballsDrawn === "7", null, { timeout: 20000 });

  // Kept at the live edge: after several seconds the buffer stays small behind the playhead,
  // and the playhead stays close to the newest frame.
  const started = await page.$eval("#video", (v) => v.currentTime);
  await page.waitForFunction((t) => document.getElementById("video").currentTime > t + 6, started, { timeout: 40000 });
  let minLag = Infinity, maxBehind = 0;
  for (let i = 0; i < 10; i++) {
    const [behind, lag] = await page.$eval("#video", (v) => {
      const b = v.buffered;
      return b.length ? [v.currentTime - b.start(0), b.end(b.length - 1) - v.currentTime] : [0, Infinity];
    });
    minLag = Math.min(minLag, lag); maxBehind = Math.max(maxBehind, behind);
    await page.waitForTimeout(100);
  }
  console.log(`H.264 buffer: at most ${maxBehind.toFixed(2)} s behind the playhead, playhead at least ${minLag.toFixed(2)} s from the newest frame`);
  // The player keeps 3 s, cut at a keyframe (one at least every h264_keyframe_sec = 2 s).
  if (maxBehind > 6.5) fail(`the H.264 buffer grows: ${maxBehind.toFixed(2)} s kept behind the playhead`);
  if (minLag > 1.0) fail(`H.264 playback is not at the live edge: ${minLag.toFixed(2)} s behind the newest frame`);
  await page.screenshot({ path: join(artifacts, "dashboard-h264.png"), fullPage: true });

  // The switch to MJPEG closes the H.264 stream, shows the image, and is remembered.
  await page.selectOption("#mode", "mjpeg");
  await page.waitForFunction((w) => document.getElementById("stream").naturalWidth === w, W, { timeout: 20000 });
  if (!await page.$eval("#video", (v) => v.hidden)) fail("the video is visible in MJPEG mode");
  await waitClients({ mjpeg: 1, h264: 0, ws: 1 }, "after switching to MJPEG");
  reloading = true;
  await page.reload({ waitUntil: "domcontentloaded" });
  reloading = false;
  await page.waitForFunction(() => document.getElementById("video").dataset.mode, null, { timeout: 20000 });
  if (await page.$eval("#mode", (s) => s.value) !== "mjpeg") fail("the MJPEG choice was not remembered across a reload");

  // The live image decodes at the configured size.
  await page.waitForFunction((w) => document.getElementById("stream").naturalWidth === w, W, { timeout: 20000 });
  const size = await page.$eval("#stream", (i) => [i.naturalWidth, i.naturalHeight]);
  if (size[0] !== W || size[1] !== H) fail(`stream image is ${size}, expected ${W}x${H}`);

  // The worker table lists the three workers of the status.
  await page.waitForFunction(() => document.querySelectorAll("#workers tbody tr").length === 3, null, { timeout: 20000 });
  const workers = await page.$$eval("#workers tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  const names = workers.map((r) => r[0]).join(",");
  if (names !== "video,vision,stream") fail("worker table lists " + names);
  if (workers[0][1] !== "running" || workers[0][4] !== "3") fail("video row is " + workers[0]);
  if (!workers[0][9].includes("killed by SIGKILL")) fail("video last exit is " + workers[0][9]);

  // The detections panel counts balls by kind.
  await page.waitForFunction(() => document.querySelector('#detections tr[data-kind="solid"] td:nth-child(2)')?.textContent === "3", null, { timeout: 20000 });
  const counts = await page.$$eval("#detections tbody tr", (rows) => Object.fromEntries(rows.map((r) => [r.dataset.kind, r.cells[1].textContent])));
  if (counts.cue !== "1" || counts.eight !== "1" || counts.stripe !== "2") fail("detection counts " + JSON.stringify(counts));

  // Figures are filled in.
  await page.waitForFunction(() => document.getElementById("f-fps").textContent !== "–", null, { timeout: 20000 });

  // Detections and status come pushed over the WebSocket, and the canvas draws the 7 balls.
  await page.waitForFunction(() => document.getElementById("push").dataset.mode === "live", null, { timeout: 20000 });
  const drawn = () => page.$eval("#overlay-canvas", (c) => c.dataset.ballsDrawn);
  await page.waitForFunction(() => document.getElementById("overlay-canvas").dataset.ballsDrawn === "7", null, { timeout: 20000 });
  // Pushed, not polled: the frame drawn keeps changing at the writer's rate (10 results/s).
  const f0 = Number(await page.$eval("#overlay-canvas", (c) => c.dataset.frame));
  await page.waitForTimeout(1000);
  const f1 = Number(await page.$eval("#overlay-canvas", (c) => c.dataset.frame));
  if (!(f1 - f0 >= 5)) fail(`the overlay went from frame ${f0} to ${f1} in 1 s`);
  const polled = await page.evaluate(() => performance.getEntriesByType("resource").filter((e) => /\/api\/(detections|status)/.test(e.name)).length);
  if (polled !== 0) fail(polled + " requests polled /api/detections or /api/status while the socket was live");

  // The overlay toggle clears and redraws the canvas without touching the stream.
  const src0 = await page.$eval("#stream", (i) => i.src);
  if (!src0.includes("overlay=0")) fail("initial stream URL " + src0);
  await page.click("#overlay");
  await page.waitForFunction(() => document.getElementById("overlay-canvas").dataset.ballsDrawn === "0", null, { timeout: 5000 });
  await page.click("#overlay");
  await page.waitForFunction(() => document.getElementById("overlay-canvas").dataset.ballsDrawn === "7", null, { timeout: 5000 });
  const src1 = await page.$eval("#stream", (i) => i.src);
  if (src1 !== src0) fail("toggling the overlay changed the stream URL to " + src1);

  // The quality selector changes the stream URL.
  await page.selectOption("#quality", "50");
  const src2 = await page.$eval("#stream", (i) => i.src);
  if (!src2.includes("quality=50") || !src2.includes("overlay=0")) fail("after the quality change the stream URL is " + src2);
  await page.waitForFunction((w) => document.getElementById("stream").naturalWidth === w, W, { timeout: 20000 });
  // The replaced streams were closed: one video client remains (plus the page's socket).
  const deadline = Date.now() + 15000;
  let s = null;
  for (;;) {
    s = await stats();
    if (s.clients - s.ws_clients === 1 && s.ws_clients === 1 && s.h264_clients === 0 && s.variants === 1) break;
    if (Date.now() > deadline) fail("after changing the stream: " + JSON.stringify(s));
    await page.waitForTimeout(200);
  }
  if (await drawn() !== "7") fail("balls drawn after the stream change: " + await drawn());
  await page.waitForTimeout(1500); // a few frames and one status refresh
  await page.screenshot({ path: join(artifacts, "dashboard.png"), fullPage: true });

  // Without WebSocket the page says so, polls instead, and still draws the balls; it shows
  // MJPEG although H.264 is the stored choice.
  const fallback = await context.newPage();
  fallback.on("pageerror", (e) => errors.push("fallback page: " + String(e)));
  await fallback.addInitScript(() => {
    window.WebSocket = class { constructor() { throw new Error("WebSocket blocked by the test"); } };
    localStorage.setItem("billiards.view", "h264");
  });
  await fallback.goto(base + "/", { waitUntil: "domcontentloaded" });
  await fallback.waitForFunction(() => document.getElementById("push").dataset.mode === "polling", null, { timeout: 20000 });
  const note = await fallback.$eval("#push-note", (n) => n.textContent);
  if (!note.includes("polling") || !note.includes("WebSocket blocked by the test")) fail("fallback note says " + note);
  await fallback.waitForFunction(() => document.getElementById("overlay-canvas").dataset.ballsDrawn === "7", null, { timeout: 20000 });
  await fallback.waitForFunction(() => document.querySelectorAll("#workers tbody tr").length === 3, null, { timeout: 20000 });
  await fallback.waitForFunction((w) => document.getElementById("stream").naturalWidth === w && document.getElementById("video").dataset.mode === "mjpeg", W, { timeout: 20000 });
  const modeNote = await fallback.$eval("#mode-note", (n) => n.textContent);
  if (!modeNote.includes("H.264 is unavailable") || !modeNote.includes("WebSocket")) fail("without WebSocket the H.264 note says " + modeNote);
  await fallback.screenshot({ path: join(artifacts, "dashboard-polling.png"), fullPage: true });
  await fallback.close();

  // A second page, switched back to H.264, rides through the outage with the MJPEG page.
  const live = await context.newPage();
  live.on("pageerror", (e) => errors.push("H.264 page: " + String(e)));
  await live.goto(base + "/", { waitUntil: "domcontentloaded" });
  await live.waitForFunction(() => document.getElementById("video").dataset.mode, null, { timeout: 20000 });
  await live.evaluate(() => localStorage.setItem("billiards.view", "mjpeg"));
  await live.selectOption("#mode", "h264");
  await live.waitForFunction(() => document.getElementById("video").currentTime > 0, null, { timeout: 30000 });
  if (await live.evaluate(() => localStorage.getItem("billiards.view")) !== "h264") fail("the H.264 choice was not stored");
  await waitClients({ mjpeg: 1, h264: 1, ws: 2 }, "with the MJPEG page and the H.264 page");

  // Video worker down: a clear banner; back: the banner goes and the streams resume.
  await ask("OUTAGE?");
  await page.waitForFunction(() => document.getElementById("banner").classList.contains("show"), null, { timeout: 20000 });
  const banner = await page.$eval("#banner", (b) => b.textContent);
  if (!banner.includes("Video worker is down")) fail("banner says " + banner);
  await live.waitForFunction(() => document.getElementById("banner").classList.contains("show"), null, { timeout: 20000 });
  await page.screenshot({ path: join(artifacts, "dashboard-video-down.png"), fullPage: true });
  const stalledAt = await live.$eval("#video", (v) => v.currentTime);
  await ask("RESUME?");
  await page.waitForFunction(() => !document.getElementById("banner").classList.contains("show"), null, { timeout: 20000 });
  await waitClients({ mjpeg: 1, h264: 1, ws: 2 }, "the pages' streams and sockets did not survive the outage");
  await page.waitForFunction(() => document.getElementById("overlay-canvas").dataset.ballsDrawn === "7", null, { timeout: 20000 });
  // The H.264 page gets past the frames it had before the outage, then keeps playing.
  await played(live, "H.264 after the outage", stalledAt);
  await played(live, "H.264 after the outage");
  console.log("H.264 page after the outage: player state " + await live.evaluate(() => document.getElementById("video").dataset.state + ", reconnects " + (player.reconnects || 0)));
  // A closed socket (as when the stream worker restarts) is opened again with a new
  // MediaSource, and playback goes on.
  await live.evaluate(() => player.ws.close());
  await live.waitForFunction(() => player.reconnects >= 1 && document.getElementById("video").dataset.state === "connected" && document.getElementById("video").currentTime > 0, null, { timeout: 30000 });
  await played(live, "H.264 after the socket was closed");
  await waitClients({ mjpeg: 1, h264: 1, ws: 2 }, "after the H.264 socket was opened again");
  await live.close();

  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log("OK");
} catch (e) {
  console.error("dashboard check failed: " + (e && e.message ? e.message : e));
  code = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
