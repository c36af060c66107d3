// The smallest JupyterLab 4 that streambook's browser test needs: notebooks, the completer, the
// toolbar, and the Vega-Lite renderer JupyterLab ships (@jupyterlab/vega5-extension).
import { JupyterLab } from "@jupyterlab/application";
import { PageConfig } from "@jupyterlab/coreutils";

// Chunks and assets load from where the server mounts this build.
// eslint-disable-next-line no-undef
__webpack_public_path__ = PageConfig.getOption("fullStaticUrl") + "/";

/** Application plugins: [package, its styles]. Every package's schemas are copied by build.js. */
const EXTENSIONS = [
  [import("@jupyterlab/application-extension"), import("@jupyterlab/application-extension/style/index.js")],
  [import("@jupyterlab/apputils-extension"), import("@jupyterlab/apputils-extension/style/index.js")],
  [import("@jupyterlab/codemirror-extension"), import("@jupyterlab/codemirror-extension/style/index.js")],
  [import("@jupyterlab/completer-extension"), import("@jupyterlab/completer-extension/style/index.js")],
  [import("@jupyterlab/docmanager-extension"), import("@jupyterlab/docmanager-extension/style/index.js")],
  [import("@jupyterlab/filebrowser-extension"), import("@jupyterlab/filebrowser-extension/style/index.js")],
  [import("@jupyterlab/markedparser-extension"), import("@jupyterlab/markedparser-extension/style/index.js")],
  [import("@jupyterlab/notebook-extension"), import("@jupyterlab/notebook-extension/style/index.js")],
  [import("@jupyterlab/rendermime-extension"), import("@jupyterlab/rendermime-extension/style/index.js")],
  [import("@jupyterlab/services-extension")],
  // Keyboard shortcuts (Tab for the completer, Shift+Enter) come from the schemas through this plugin.
  [import("@jupyterlab/shortcuts-extension"), import("@jupyterlab/shortcuts-extension/style/index.js")],
  [import("@jupyterlab/theme-light-extension")],
  [import("@jupyterlab/translation-extension"), import("@jupyterlab/translation-extension/style/index.js")],
  [import("@jupyterlab/ui-components-extension"), import("@jupyterlab/ui-components-extension/style/index.js")],
];

/** Renderers for MIME types. */
const MIME_EXTENSIONS = [[import("@jupyterlab/vega5-extension"), import("@jupyterlab/vega5-extension/style/index.js")]];

/**
 * Plugins left out: language servers (this server runs none), and those needing a status bar, search,
 * a table of contents or the metadata form, which this shell does not include; and the news announcements
 * (a pop-up that would cover the toolbar, and a request to the internet).
 */
const UNUSED = /:language-server|lsp|:kernel-status$|:running-sessions-status$|notebook-extension:(search|toc|update-raw-mimetype)$|apputils-extension:announcements$/;

function pluginsOf(module) {
  const exported = module.default ?? module;
  return (Array.isArray(exported) ? exported : [exported]).filter((p) => !UNUSED.test(p.id ?? ""));
}

async function main() {
  await Promise.all([...EXTENSIONS, ...MIME_EXTENSIONS].flatMap(([, ...styles]) => styles));
  const mimeExtensions = (await Promise.all(MIME_EXTENSIONS.map(([m]) => m))).map((m) => m.default ?? m);
  const lab = new JupyterLab({ mimeExtensions });
  lab.registerPlugins((await Promise.all(EXTENSIONS.map(([m]) => m))).flatMap(pluginsOf));
  await lab.start({ ignorePlugins: [] });
  await lab.restored;
  // The test waits for this flag before it drives the page.
  window.streambookLab = lab;
}

window.addEventListener("load", () => {
  main().catch((err) => {
    console.error("JupyterLab failed to start", err);
    document.body.dataset.labError = String(err && err.stack ? err.stack : err);
  });
});
