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

  // The overlay toggle and the quality selector change the stream URL.
  const src0 = await page.$eval("#stream", (i) => i.src);
  if (!src0.includes("overlay=0")) fail("initial stream URL " + src0);
  await page.click("#overlay");
  const src1 = await page.$eval("#stream", (i) => i.src);
  if (!src1.includes("overlay=1")) fail("after the toggle the stream URL is " + src1);
  await page.selectOption("#quality", "50");
  const src2 = await page.$eval("#stream", (i) => i.src);
  if (!src2.includes("quality=50") || !src2.includes("overlay=1")) fail("after the quality change the stream URL is " + src2);
  await page.waitForFunction(() => document.getElementById("stream").naturalWidth > 0, null, { timeout: 20000 });
  // The replaced streams were closed: one client remains, on the overlay variant.
  const deadline = Date.now() + 15000;
  let s = null;
  for (;;) {
    s = await (await page.request.get(base + "/api/stream")).json();
    if (s.clients === 1 && s.variants === 1) break;
    if (Date.now() > deadline) fail("after changing the stream: " + JSON.stringify(s));
    await page.waitForTimeout(200);
  }
  await page.waitForTimeout(1500); // a few overlay frames and one status refresh
  await page.screenshot({ path: join(artifacts, "dashboard.png"), fullPage: true });

  // Video worker down: a clear banner; back: the banner goes and the stream resumes.
  await ask("OUTAGE?");
  await page.waitForFunction(() => document.getElementById("banner").classList.contains("show"), null, { timeout: 20000 });
  const banner = await page.$eval("#banner", (b) => b.textContent);
  if (!banner.includes("Video worker is down")) fail("banner says " + banner);
  await page.screenshot({ path: join(artifacts, "dashboard-video-down.png"), fullPage: true });
  await ask("RESUME?");
  await page.waitForFunction(() => !document.getElementById("banner").classList.contains("show"), null, { timeout: 20000 });
  const clients = (await (await page.request.get(base + "/api/stream")).json()).clients;
  if (clients !== 1) fail("the page's stream did not survive the outage: clients = " + clients);

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
