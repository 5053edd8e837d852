// Times one ONNX model with ONNX Runtime (CPU, 2 intra-op threads, all graph
// optimizations) on random inputs; prints the median latency in ms.
// usage: node ort_time.js MODEL.onnx ITERS name:1x3x224x224 [name:dims ...]
const ort = require('onnxruntime-node');
async function main() {
  const [model, iters, ...shapes] = process.argv.slice(2);
  const sess = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const feeds = {};
  for (const s of shapes) {
    const [name, dims] = s.split(':');
    const shape = dims.split('x').map(Number);
    const n = shape.reduce((a, b) => a * b, 1);
    const meta = sess.inputMetadata ? sess.inputMetadata.find?.((m) => m.name === name) : undefined;
    const isInt = /ids|mask/.test(name) || (meta && meta.type === 'int64');
    if (isInt) {
      const d = new BigInt64Array(n);
      for (let i = 0; i < n; i++) d[i] = BigInt(/mask/.test(name) ? 1 : Math.floor(Math.random() * 64));
      feeds[name] = new ort.Tensor('int64', d, shape);
    } else {
      const d = new Float32Array(n);
      for (let i = 0; i < n; i++) d[i] = Math.random() * 2 - 1;
      feeds[name] = new ort.Tensor('float32', d, shape);
    }
  }
  for (let i = 0; i < 5; i++) await sess.run(feeds);
  const t = [];
  for (let i = 0; i < Number(iters); i++) {
    const t0 = process.hrtime.bigint();
    await sess.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((a, b) => a - b);
  console.log(t[Math.floor(t.length / 2)].toFixed(3));
}
main().catch((e) => { console.error(e); process.exit(2); });
