/**
 * BaseConv (spec §3.1), the layer-0 mixer of every model but `attention`: y = conv3(u) ⊙ (u·W_pᵀ + b_p) + u, a
 * depthwise causal 3-tap convolution gated by a linear projection, with its own skip. GPU builder: base_conv_gpu.ts.
 */
import { baseConvBackwardRef, baseConvForwardRef, type BaseConvParams } from "../reference/short_conv.ts";
import { conv1dDefault, type LayerDescriptor, linearFlops } from "./descriptor.ts";

export const SHORT_CONV_KERNEL = 3;

export const baseConvLayer: LayerDescriptor<null> = {
  kind: "base_conv",
  label: "BaseConv",
  options: null,
  params(m, cfg) {
    const d = cfg.dModel;
    m.linear("projection", d, d, true);
    const conv = conv1dDefault(SHORT_CONV_KERNEL); // depthwise: fan_in = (in/groups) * k = 3
    m.add("conv.conv.weight", [d, 1, SHORT_CONV_KERNEL], conv);
    m.add("conv.conv.bias", [d], conv);
  },
  reference(ctx, u) {
    const params: BaseConvParams = {
      projWeight: ctx.param("projection.weight"),
      projBias: ctx.param("projection.bias"),
      convWeight: ctx.param("conv.conv.weight"),
      convBias: ctx.param("conv.conv.bias"),
    };
    const shape = { batch: ctx.batch, seqLen: ctx.cfg.seqLen, width: ctx.cfg.dModel };
    const { y } = baseConvForwardRef(u, params, shape);
    return {
      y,
      backward: (dy) => {
        const g = baseConvBackwardRef(u, params, dy, shape);
        return {
          du: g.du,
          grads: new Map([
            [ctx.name("projection.weight"), g.dprojWeight],
            [ctx.name("projection.bias"), g.dprojBias],
            [ctx.name("conv.conv.weight"), g.dconvWeight],
            [ctx.name("conv.conv.bias"), g.dconvBias],
          ]),
        };
      },
    };
  },
  flops({ cfg, rows, label }) {
    const d = cfg.dModel, conv = 2 * SHORT_CONV_KERNEL * rows * d;
    return [linearFlops(`${label}.projection`, rows, d, d), {
      name: `${label}.conv`,
      kind: "conv",
      forward: conv,
      backward: 2 * conv,
    }];
  },
  activations({ cfg, rows, label, training }, act) {
    act(`${label}.proj`, rows * cfg.dModel);
    if (training) act(`${label}.dproj`, rows * cfg.dModel);
  },
  stateFloats: (cfg) => (SHORT_CONV_KERNEL - 1) * cfg.dModel,
  // u_conv[t] = u[t−1]: tap 1 of the 3 (tap 0 multiplies u[t−2], tap 2 u[t]) is 1, the bias 0.
  previousTokenParams(cfg) {
    const weight = new Float32Array(cfg.dModel * SHORT_CONV_KERNEL);
    for (let c = 0; c < cfg.dModel; c++) weight[c * SHORT_CONV_KERNEL + 1] = 1;
    return { "conv.conv.weight": weight, "conv.conv.bias": new Float32Array(cfg.dModel) };
  },
};
