// tap's coverage map (package.json "tap": `coverage-map`): which source files a test file's
// coverage counts for. [] is every file (tap's default); null is none, and tap then runs the file
// without V8's coverage counters. The two volume tests, 20,000 requests (e2e/audit-load) and
// 10,000 hostile ones (e2e/metrics), run the request path thousands of times over code the other
// tests cover line for line; with the counters on they take about twice the CPU. They still run
// and assert everything; they only do not count towards the coverage figure.
const VOLUME = new Set(['dist/test/e2e/audit-load.test.js', 'dist/test/e2e/metrics.test.js']);

export default function coverageMap(testFile) {
  return VOLUME.has(testFile.replace(/\\/g, '/')) ? null : [];
}
