// AdamW with PyTorch semantics (torch.optim.AdamW, amsgrad=False), one invocation per element of one tensor:
//   g = grad·clip (clip from the grad-norm result when HAS_CLIP)
//   p = p·(1 − lr·wd);  m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²;  p = p − stepSize·m/(√v/√(1 − β2ᵗ) + eps)
// stepSize = lr/(1 − β1ᵗ), √(1 − β2ᵗ) and 1 − lr·wd are computed on the host in float64 each step (β^t in f32 would lose
// digits) and written into the shared step uniform with queue.writeBuffer: no readback.

struct StepParams {
  decay: f32,        // 1 − lr·wd
  beta1: f32,
  beta2: f32,
  eps: f32,
  stepSize: f32,     // lr / (1 − β1ᵗ)
  bc2Sqrt: f32,      // √(1 − β2ᵗ)
  _pad0: u32,
  _pad1: u32,
}

struct TensorParams {
  length: u32,
  clipIndex: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> sp: StepParams;
@group(0) @binding(1) var<uniform> tp: TensorParams;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
#if ZERO_GRAD
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
#else
@group(0) @binding(3) var<storage, read> grad: array<f32>;
#endif
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
#if HAS_CLIP
@group(0) @binding(6) var<storage, read> clip: array<f32>;
#endif

@compute @workgroup_size(WG)
fn adamw_step(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = (wid.y * nwg.x + wid.x) * WG + li;
  if (i >= tp.length) {
    return;
  }
  var g = grad[i];
#if HAS_CLIP
  g = g * clip[tp.clipIndex];
#endif
#if ZERO_GRAD
  // The grad is consumed here: zeroing it saves the trainer a separate pass before the next accumulation.
  grad[i] = 0.0;
#endif
  let w = param[i] * sp.decay;
  let mi = fma(sp.beta1, m[i], (1.0 - sp.beta1) * g);
  let vi = fma(sp.beta2, v[i], (1.0 - sp.beta2) * g * g);
  m[i] = mi;
  v[i] = vi;
  param[i] = w - sp.stepSize * mi / (sqrt(vi) / sp.bc2Sqrt + sp.eps);
}
