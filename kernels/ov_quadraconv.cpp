// edgedet.QuadraConv for OpenVINO: y = (Wa*x) . (Wb*x) + Wc*x + b, depthwise, fp32, NCHW.
//
// One pass over each k x k window with three accumulators: x is read once per output tile
// and y written once (the decomposed form reads x three times and writes four tensors).
// The per-plane kernel is quadraconv_tile.hpp's (shared with the PyTorch op); work is split
// over (batch, channel, row block) with OpenVINO's own parallel_for, so the CPU plugin's
// thread limit (INFERENCE_NUM_THREADS) applies.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "openvino/core/parallel.hpp"
#include "ov_op_common.hpp"
#include "quadraconv_tile.hpp"

namespace edgedet {

struct Geometry {
    int64_t n, c, h, w, kh, kw, oh, ow;
    int64_t sh, sw, dh, dw, pt, pl;
};

static void quadraconv(const float* x, const float* wa, const float* wb, const float* wc, const float* bias,
                       float* y, const Geometry& g) {
    // Row blocks only when there are too few planes to keep every thread busy.
    const int64_t planes = g.n * g.c;
    const int64_t threads = std::max(1, parallel_get_max_threads());
    const int64_t blocks = std::min<int64_t>(g.oh, std::max<int64_t>(1, (4 * threads + planes - 1) / planes));
    const int64_t per_block = (g.oh + blocks - 1) / blocks;
    const int64_t taps = g.kh * g.kw;
    const quadratic::Plane plane{g.h, g.w, g.kh, g.kw, g.oh, g.ow, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl};
    ov::parallel_for3d(g.n, g.c, blocks, [&](int64_t n, int64_t c, int64_t blk) {
        thread_local std::vector<float> buf;
        const int64_t r0 = blk * per_block, r1 = std::min(g.oh, r0 + per_block);
        if (r0 >= r1)
            return;
        const float* xp = x + (n * g.c + c) * g.h * g.w;
        float* yp = y + (n * g.c + c) * g.oh * g.ow;
        const float* a = wa + c * taps;
        const float* b = wb + c * taps;
        const float* l = wc + c * taps;
        if (g.sw == 1)
            quadratic::plane_rows<float, 1>(xp, a, b, l, bias[c], yp, plane, r0, r1, buf);
        else
            quadratic::plane_rows<float, 0>(xp, a, b, l, bias[c], yp, plane, r0, r1, buf);
    });
}

class QuadraConv : public F32Op {
public:
    OPENVINO_OP("QuadraConv", "edgedet");

    QuadraConv() = default;

    QuadraConv(const ov::OutputVector& args, std::vector<int64_t> strides, std::vector<int64_t> pads,
               std::vector<int64_t> dilations, int64_t group)
        : F32Op(args), m_strides(std::move(strides)), m_pads(std::move(pads)), m_dilations(std::move(dilations)),
          m_group(group) {
        constructor_validate_and_infer_types();
    }

    void validate_and_infer_types() override {
        NODE_VALIDATION_CHECK(this, get_input_size() == 5, "QuadraConv takes x, wa, wb, wc, bias");
        NODE_VALIDATION_CHECK(this, m_strides.size() == 2 && m_dilations.size() == 2 && m_pads.size() == 4,
                              "QuadraConv needs 2 strides, 2 dilations and 4 pads");
        const auto& xs = get_input_partial_shape(0);
        const auto& ws = get_input_partial_shape(1);
        ov::PartialShape out = ov::PartialShape::dynamic(4);
        if (xs.rank().is_static() && ws.rank().is_static()) {
            NODE_VALIDATION_CHECK(this, xs.rank().get_length() == 4 && ws.rank().get_length() == 4,
                                  "QuadraConv expects x (N,C,H,W) and weights (C,1,kh,kw)");
            NODE_VALIDATION_CHECK(this, !xs[1].is_static() || m_group == 0 || m_group == xs[1].get_length(),
                                  "QuadraConv is depthwise: group must equal the channel count");
            out[0] = xs[0];
            out[1] = xs[1];
            for (int d = 0; d < 2; ++d) {
                if (xs[2 + d].is_static() && ws[2 + d].is_static()) {
                    const int64_t len = xs[2 + d].get_length() + m_pads[d] + m_pads[2 + d] -
                                        m_dilations[d] * (ws[2 + d].get_length() - 1) - 1;
                    out[2 + d] = len / m_strides[d] + 1;
                }
            }
        }
        set_output_type(0, get_input_element_type(0), out);
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        return std::make_shared<QuadraConv>(args, m_strides, m_pads, m_dilations, m_group);
    }

    bool visit_attributes(ov::AttributeVisitor& v) override {
        return visit_all(v, "strides", m_strides, "pads", m_pads, "dilations", m_dilations, "group", m_group);
    }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const auto& xs = inputs[0].get_shape();
        const auto& ws = inputs[1].get_shape();
        if (xs.size() != 4 || ws.size() != 4 || ws[0] != xs[1] || ws[1] != 1)
            return false;
        Geometry g{};
        g.n = static_cast<int64_t>(xs[0]);
        g.c = static_cast<int64_t>(xs[1]);
        g.h = static_cast<int64_t>(xs[2]);
        g.w = static_cast<int64_t>(xs[3]);
        g.kh = static_cast<int64_t>(ws[2]);
        g.kw = static_cast<int64_t>(ws[3]);
        g.sh = m_strides[0];
        g.sw = m_strides[1];
        g.dh = m_dilations[0];
        g.dw = m_dilations[1];
        g.pt = m_pads[0];
        g.pl = m_pads[1];
        g.oh = (g.h + m_pads[0] + m_pads[2] - g.dh * (g.kh - 1) - 1) / g.sh + 1;
        g.ow = (g.w + m_pads[1] + m_pads[3] - g.dw * (g.kw - 1) - 1) / g.sw + 1;
        if (g.oh <= 0 || g.ow <= 0)
            return false;
        outputs[0].set_shape(ov::Shape{xs[0], xs[1], static_cast<size_t>(g.oh), static_cast<size_t>(g.ow)});
        quadraconv(inputs[0].data<const float>(), inputs[1].data<const float>(), inputs[2].data<const float>(),
                   inputs[3].data<const float>(), inputs[4].data<const float>(), outputs[0].data<float>(), g);
        return true;
    }

private:
    std::vector<int64_t> m_strides{1, 1};
    std::vector<int64_t> m_pads{0, 0, 0, 0};
    std::vector<int64_t> m_dilations{1, 1};
    int64_t m_group = 0;
};

std::vector<ov::Extension::Ptr> quadraconv_extensions() {
    return op_extensions<QuadraConv>("QuadraConv");
}

}  // namespace edgedet
