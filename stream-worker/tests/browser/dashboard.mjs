// Drives the dashboard in Debian's Chromium (headless) with playwright-core.
// Run by tests/browser.rs:  node dashboard.mjs BASE_URL WIDTH HEIGHT ARTIFACT_DIR
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
  page.on("requestfailed", (r) => {
    // Replacing the <img> source aborts the previous stream: that is expected.
    if (!r.url().includes("/stream/video")) errors.push("request failed: " + r.url());
  });
  await page.goto(base + "/", { waitUntil: "domcontentloaded" });

  // The live image decodes at the configured size.
  await page.waitForFunction(() => document.getElementById("stream").naturalWidth > 0, null, { timeout: 20000 });
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
  await page.waitForFunction(() => document.getElementById("stream").naturalWidth > 0, null, { timeout: 20000 });
  // The replaced streams were closed: one video client remains (plus the page's socket).
  const deadline = Date.now() + 15000;
  let s = null;
  for (;;) {
    s = await (await page.request.get(base + "/api/stream")).json();
    if (s.clients - s.ws_clients === 1 && s.ws_clients === 1 && s.variants === 1) break;
    if (Date.now() > deadline) fail("after changing the stream: " + JSON.stringify(s));
    await page.waitForTimeout(200);
  }
  if (await drawn() !== "7") fail("balls drawn after the stream change: " + await drawn());
  await page.waitForTimeout(1500); // a few frames and one status refresh
  await page.screenshot({ path: join(artifacts, "dashboard.png"), fullPage: true });

  // Without WebSocket the page says so, polls instead, and still draws the balls.
  const fallback = await context.newPage();
  fallback.on("pageerror", (e) => errors.push("fallback page: " + String(e)));
  await fallback.addInitScript(() => {
    window.WebSocket = class { constructor() { throw new Error("WebSocket blocked by the test"); } };
  });
  await fallback.goto(base + "/", { waitUntil: "domcontentloaded" });
  await fallback.waitForFunction(() => document.getElementById("push").dataset.mode === "polling", null, { timeout: 20000 });
  const note = await fallback.$eval("#push-note", (n) => n.textContent);
  if (!note.includes("polling") || !note.includes("WebSocket blocked by the test")) fail("fallback note says " + note);
  await fallback.waitForFunction(() => document.getElementById("overlay-canvas").dataset.ballsDrawn === "7", null, { timeout: 20000 });
  await fallback.waitForFunction(() => document.querySelectorAll("#workers tbody tr").length === 3, null, { timeout: 20000 });
  await fallback.screenshot({ path: join(artifacts, "dashboard-polling.png"), fullPage: true });
  await fallback.close();

  // Video worker down: a clear banner; back: the banner goes and the stream resumes.
  await ask("OUTAGE?");
  await page.waitForFunction(() => document.getElementById("banner").classList.contains("show"), null, { timeout: 20000 });
  const banner = await page.$eval("#banner", (b) => b.textContent);
  if (!banner.includes("Video worker is down")) fail("banner says " + banner);
  await page.screenshot({ path: join(artifacts, "dashboard-video-down.png"), fullPage: true });
  await ask("RESUME?");
  await page.waitForFunction(() => !document.getElementById("banner").classList.contains("show"), null, { timeout: 20000 });
  const clients = (await (await page.request.get(base + "/api/stream")).json()).clients;
  if (clients !== 2) fail("the page's stream and socket did not survive the outage: clients = " + clients);
  await page.waitForFunction(() => document.getElementById("overlay-canvas").dataset.ballsDrawn === "7", null, { timeout: 20000 });

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
