// Person segmentation: MediaPipe's selfie segmentation (the legacy
// "solution", npm @mediapipe/selfie_segmentation, Apache-2.0), served from
// /vendor/ like the rest of the page, so it works with no internet. See
// web/vendor/selfie_segmentation/NOTICE and tools/web-vendor/update.sh.
//
// Why this package: it ships its model files (tasks-vision's npm package
// ships none, and the demo must not fetch from other hosts), its runtime is
// 5.7 MB against tasks-vision's 13 MB, and it has the landscape model, made
// for 16:9 video at a 256x144 input: ~1.8x fewer pixels than the square
// general model, so fewer milliseconds per frame on a laptop CPU.
//
// One instance per page: each holds a WebGL context and its WebAssembly
// memory, which browsers cap and free late, so turning the effect on and off
// reuses it rather than making a new one.
const BASE = '/vendor/selfie_segmentation/';
// Landscape (256x144); 0 would be the general model, which is not shipped.
const MODEL_LANDSCAPE = 1;
// A runtime that neither loads nor fails (a stalled download) must not
// leave the menu saying "loading" for ever.
const LOAD_TIMEOUT_MS = 30000;

let loading = null;

// Resolves with the page's Segmenter; rejects with an Error whose message
// says why the effect is unavailable. A failure is not cached: the next call
// tries again.
export function loadSegmenter() {
  if (!loading) {
    loading = load().catch((err) => {
      loading = null;
      throw err;
    });
  }
  return loading;
}

class Segmenter {
  constructor(solution) {
    this.solution = solution;
    this.draw = null;
    this.queue = Promise.resolve();
    // The mask lives in the solution's WebGL canvas, valid only during this
    // callback: the caller composites inside it.
    solution.onResults((results) => this.draw?.(results.segmentationMask));
  }

  // Runs the model on `image` (a canvas) and calls draw(mask) before
  // resolving; in the mask, alpha is the probability of "person". Calls are
  // serialized: the solution keeps one result listener.
  segment(image, draw) {
    const run = async () => {
      this.draw = draw;
      try {
        await this.solution.send({ image });
      } finally {
        this.draw = null;
      }
    };
    this.queue = this.queue.then(run, run);
    return this.queue;
  }
}

function hasWebGL() {
  const canvas = document.createElement('canvas');
  return !!(canvas.getContext('webgl2') || canvas.getContext('webgl'));
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.addEventListener('load', () => resolve());
    script.addEventListener('error', () => reject(new Error('the segmentation runtime did not load')));
    document.head.append(script);
  });
}

function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function load() {
  if (typeof WebAssembly !== 'object') throw new Error('this browser has no WebAssembly');
  // Checked here because the solution itself answers a missing WebGL with
  // alert().
  if (!hasWebGL()) throw new Error('this browser has WebGL turned off');
  if (!window.SelfieSegmentation) await loadScript(`${BASE}selfie_segmentation.js`);
  const solution = new window.SelfieSegmentation({ locateFile: (file) => `${BASE}${file}` });
  // selfieMode would mirror the output; our own tile mirrors with CSS and
  // the others must see us unmirrored.
  solution.setOptions({ modelSelection: MODEL_LANDSCAPE, selfieMode: false });
  try {
    await withTimeout(solution.initialize(), LOAD_TIMEOUT_MS, 'the segmentation model did not load in time');
  } catch (err) {
    solution.close().catch(() => {});
    throw new Error(`the segmentation model did not load (${err?.message || err})`);
  }
  return new Segmenter(solution);
}
