// Per-node profile of one ONNX model under ONNX Runtime (CPU, 2 intra-op
// threads, all graph optimizations): runs it ITERS times on random inputs with
// the session's profiler on and prints, per node of the optimized graph, its op
// type and median kernel time in microseconds, then the sum per op type.
// usage: node ort_profile.js MODEL.onnx ITERS name:1x3x224x224 [name:dims ...]
const ort = require('onnxruntime-node');
const fs = require('fs');
const os = require('os');
const path = require('path');
async function main() {
  const [model, iters, ...shapes] = process.argv.slice(2);
  const prefix = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ortprof-')), 'p');
  const sess = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
    enableProfiling: true, profileFilePrefix: prefix,
  });
  const feeds = {};
  for (const s of shapes) {
    const [name, dims] = s.split(':');
    const shape = dims.split('x').map(Number);
    const n = shape.reduce((a, b) => a * b, 1);
    if (/ids|mask/.test(name)) {
      const d = new BigInt64Array(n);
      for (let i = 0; i < n; i++) d[i] = BigInt(/mask/.test(name) ? 1 : Math.floor(Math.random() * 64));
      feeds[name] = new ort.Tensor('int64', d, shape);
    } else {
      const d = new Float32Array(n);
      for (let i = 0; i < n; i++) d[i] = Math.random() * 2 - 1;
      feeds[name] = new ort.Tensor('float32', d, shape);
    }
  }
  for (let i = 0; i < 5 + Number(iters); i++) await sess.run(feeds);
  sess.endProfiling();
  const dir = path.dirname(prefix);
  const file = path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.json')));
  const events = JSON.parse(fs.readFileSync(file, 'utf8'));
  const per = new Map(); // node name -> {op, durs}
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const name = e.name.slice(0, -'_kernel_time'.length);
    if (!per.has(name)) per.set(name, { op: e.args.op_name, durs: [] });
    per.get(name).durs.push(e.dur);
  }
  const byOp = new Map();
  let total = 0;
  console.log('node\top\tmedian_us');
  for (const [name, v] of per) {
    const d = v.durs.slice(-Number(iters)).sort((a, b) => a - b);
    const med = d[Math.floor(d.length / 2)];
    total += med;
    byOp.set(v.op, (byOp.get(v.op) || 0) + med);
    console.log(`${name}\t${v.op}\t${med}`);
  }
  console.log('\nop\tsum_median_us\tshare');
  for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1])) {
    console.log(`${op}\t${us}\t${(100 * us / total).toFixed(1)}%`);
  }
  console.log(`total\t${total}`);
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
}
main().catch((e) => { console.error(e); process.exit(2); });
