// Takes the dashboard screenshot of the docs from a running tree (real video and vision
// workers), once the canvas overlay has drawn pushed balls:
//   node screenshot.mjs http://127.0.0.1:8080 ../../../docs/dashboard.png
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, out] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "billiards-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  await page.goto(base + "/", { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => document.getElementById("push").dataset.mode === "live", null, { timeout: 20000 });
  await page.waitForFunction(() => Number(document.getElementById("overlay-canvas").dataset.ballsDrawn) > 0, null, { timeout: 20000 });
  await page.waitForTimeout(2500); // the figures and the worker table fill in
  await page.screenshot({ path: out, fullPage: true });
  console.log("balls drawn: " + await page.$eval("#overlay-canvas", (c) => c.dataset.ballsDrawn));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
