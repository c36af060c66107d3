// Builds the test front end into build/: the settings schemas and theme that jupyterlab_server serves,
// then the bundle (rspack). Run by `npm run build` here; test/support/jupyterlab.ts calls it when needed.
const fs = require("node:fs");
const path = require("node:path");
const { rspack } = require("@rspack/core");

const HERE = __dirname;
const BUILD = path.join(HERE, "build");
const pkg = require("./package.json");

/** Every @jupyterlab extension this front end lists, with its package.json. */
function extensions() {
  return Object.keys(pkg.dependencies)
    .filter((name) => name.endsWith("-extension"))
    .map((name) => ({ name, dir: path.dirname(require.resolve(`${name}/package.json`)), json: require(`${name}/package.json`) }));
}

/** Schemas: build/schemas/<package>/<plugin>.json, plus the package.json the settings handler reads. */
function copySchemas() {
  for (const ext of extensions()) {
    const schemaDir = ext.json.jupyterlab?.schemaDir;
    if (!schemaDir) continue;
    const to = path.join(BUILD, "schemas", ext.name);
    fs.cpSync(path.join(ext.dir, schemaDir), to, { recursive: true });
    fs.writeFileSync(path.join(to, "package.json.orig"), JSON.stringify(ext.json));
  }
}

/** Themes: build/themes/<package>/index.css, which the theme manager loads from the themes URL. */
function copyThemes() {
  for (const ext of extensions()) {
    const themePath = ext.json.jupyterlab?.themePath;
    if (!themePath) continue;
    const to = path.join(BUILD, "themes", ext.name);
    fs.cpSync(path.join(ext.dir, path.dirname(themePath)), to, { recursive: true });
    fs.writeFileSync(path.join(to, "index.css"), `@import url("./${path.basename(themePath)}");\n`);
  }
}

const config = {
  mode: "development",
  devtool: false,
  context: HERE,
  entry: "./index.js",
  output: { path: BUILD, filename: "bundle.js", chunkFilename: "[name].[contenthash:8].js", clean: false },
  bail: true,
  module: {
    rules: [
      // @jupyter/web-components imports extension-less paths from .js files.
      { test: /\.m?js$/, resolve: { fullySpecified: false } },
      { test: /\.css$/, exclude: /\.raw\.css$/, use: ["style-loader", "css-loader"] },
      { test: /\.raw\.css$/, type: "asset/source" },
      { test: /\.(html|md)$/, type: "asset/source" },
      { test: /\.(jpg|png|gif|eot|woff2?|ttf)(\?.*)?$/, type: "asset/resource" },
      // SVG: data URIs in CSS, raw strings for the icons in code.
      { test: /\.svg(\?.*)?$/, issuer: /\.css$/, type: "asset/inline" },
      { test: /\.svg(\?.*)?$/, issuer: /\.js$/, type: "asset/source" },
    ],
  },
  plugins: [new rspack.DefinePlugin({ process: { cwd: () => "/", env: {} } })],
  performance: { hints: false },
  stats: "errors-warnings",
};

function bundle() {
  return new Promise((resolve, reject) => {
    rspack(config, (err, stats) => {
      if (err) return reject(err);
      if (stats.hasErrors()) return reject(new Error(stats.toString({ all: false, errors: true })));
      resolve();
    });
  });
}

async function main() {
  const started = Date.now();
  fs.rmSync(BUILD, { recursive: true, force: true });
  fs.mkdirSync(BUILD, { recursive: true });
  copySchemas();
  copyThemes();
  await bundle();
  console.log(`built the JupyterLab test front end in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
