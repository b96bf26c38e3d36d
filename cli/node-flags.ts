// V8 flags for the processes that train. V8 reads them only at start, so they go on node's
// command line wherever a training process starts: the shebang of bin/edgetune.mjs (npx, the
// container's `npx edgetune job`), `npm start`, the local system's job child and the benches
// (test/node-flags.test.ts keeps those in step with this list).
//
// --max-semi-space-size=32: a young generation of 2 x 32 MiB instead of 2 x 16. The tail's steps
// allocate many short-lived tensors and arrays on the main thread; with the default, scavenges
// and the promotions they force took ~5-10% of a default alpha 1.0 run (4 alternating runs,
// seed 7: 53.6 and 54.9 s against 56.6 and 60.7 s; same weights.bin).
export const TRAINING_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
