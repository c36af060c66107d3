// Installs and builds the JupyterLab test front end only when its inputs changed since the last build
// (a stamp of package.json, package-lock.json and the shell's sources). `.ci/run` runs it once; the
// JupyterLab test runs it too, so a local run installs on first use and reuses the build after.
const { spawnSync } = require("node:child_process");
const { createHash } = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const HERE = __dirname;
const STAMP = path.join(HERE, "build", ".stamp");
const INPUTS = ["package.json", "package-lock.json", ".npmrc", "index.js", "build.js", "templates/index.html"];

function digest() {
  const hash = createHash("sha256");
  for (const file of INPUTS) hash.update(file).update(fs.readFileSync(path.join(HERE, file)));
  return hash.digest("hex");
}

function run(command, args) {
  const r = spawnSync(command, args, { cwd: HERE, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} failed in ${HERE} (exit ${r.status ?? r.signal})`);
}

function main() {
  const want = digest();
  if (fs.existsSync(STAMP) && fs.readFileSync(STAMP, "utf8") === want) {
    console.log("JupyterLab test front end: up to date");
    return;
  }
  const installed = path.join(HERE, "node_modules", ".stamp");
  const lockHash = createHash("sha256").update(fs.readFileSync(path.join(HERE, "package-lock.json"))).digest("hex");
  if (!fs.existsSync(installed) || fs.readFileSync(installed, "utf8") !== lockHash) {
    // npm ci: exactly the lock file's versions (about 1m40 and 450 MB on a 2-core machine).
    run("npm", ["ci", "--no-audit", "--no-fund"]);
    fs.writeFileSync(installed, lockHash);
  }
  run(process.execPath, ["build.js"]);
  fs.writeFileSync(STAMP, want);
}

main();
