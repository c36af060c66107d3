import { configDefaults, defineConfig } from "vitest/config";

// Tests that measure the kernel's own responsiveness (a p99, an event-loop gap) or start hundreds of kernels
// run alone, after the others: `npm test` runs the project "shared" two files at a time, then "alone".
const ALONE = ["test/overload-kernel.test.ts", "test/engine-responsiveness.test.ts", "test/kernel-shutdown-cycles.test.ts"];

export default defineConfig({
  test: {
    projects: [
      { extends: true, test: { name: "shared", include: ["test/**/*.test.ts"], exclude: [...configDefaults.exclude, ...ALONE] } },
      { extends: true, test: { name: "alone", include: ALONE, fileParallelism: false } },
    ],
  },
});
