// edgedet.QuadraConv for OpenVINO: y = (Wa*x) . (Wb*x) + Wc*x + b, depthwise, fp32, NCHW.
//
// One pass over each k x k window with three accumulators: x is read once per output tile
// and y written once (the decomposed form reads x three times and writes four tensors).
// Work is split over (batch, channel, row block) with OpenVINO's own parallel_for, so the
// CPU plugin's thread limit (INFERENCE_NUM_THREADS) applies. Each work item copies the
// input rows it needs into a zero-padded, thread-local buffer; the inner loops then have no
// bounds checks and a fixed trip count the compiler turns into vector FMAs.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "openvino/core/parallel.hpp"
#include "ov_op_common.hpp"

namespace edgedet {

struct Geometry {
    int64_t n, c, h, w, kh, kw, oh, ow;
    int64_t sh, sw, dh, dw, pt, pl;
};

// Output tile width in floats: two 8-lane vectors per accumulator (6 accumulator registers).
constexpr int64_t kTile = 16;

// GCC/Clang vector extension: 8 floats, one ymm register with AVX2 (lowered to SSE/NEON or
// scalar code on other ISAs by the compiler).
typedef float v8 __attribute__((vector_size(32)));

template <int64_t SW>
static inline v8 load8(const float* p, int64_t sw) {
    v8 v;
    if (SW == 1) {
        std::memcpy(&v, p, sizeof v);
    } else {
        for (int t = 0; t < 8; ++t)
            v[t] = p[t * sw];
    }
    return v;
}

// R output rows x V vectors of 8 outputs; the 3*R*V accumulators stay in registers over all
// k*k taps, and each tap's three weights are broadcast once for the R rows.
template <int V, int R, int64_t SW>
static inline void tile(const float* buf, int64_t wp, int64_t r0, const Geometry& g, const float* wa,
                        const float* wb, const float* wc, float* acc_a, float* acc_b, float* acc_c) {
    v8 a[R][V], b[R][V], l[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v)
            a[r][v] = b[r][v] = l[r][v] = v8{};
    const int64_t sw = SW > 0 ? SW : g.sw;
    const int64_t rstep = g.sh * wp;
    for (int64_t i = 0; i < g.kh; ++i) {
        const float* row = buf + (r0 + i * g.dh) * wp;
        for (int64_t j = 0; j < g.kw; ++j) {
            const float va = wa[i * g.kw + j], vb = wb[i * g.kw + j], vc = wc[i * g.kw + j];
            const float* p = row + j * g.dw;
            for (int r = 0; r < R; ++r)
                for (int v = 0; v < V; ++v) {
                    const v8 x = load8<SW>(p + r * rstep + 8 * v * sw, sw);
                    a[r][v] += va * x;
                    b[r][v] += vb * x;
                    l[r][v] += vc * x;
                }
        }
    }
    std::memcpy(acc_a, a, sizeof a);
    std::memcpy(acc_b, b, sizeof b);
    std::memcpy(acc_c, l, sizeof l);
}

// One (batch, channel, rows [r_begin, r_end)) work item.
template <int64_t SW>
static void plane_rows(const float* x, const float* wa, const float* wb, const float* wc, float bias, float* y,
                       const Geometry& g, int64_t r_begin, int64_t r_end) {
    thread_local std::vector<float> buf;
    const int64_t tiles = (g.ow + kTile - 1) / kTile;
    const int64_t wp = (tiles * kTile - 1) * g.sw + (g.kw - 1) * g.dw + 1;  // padded row length
    const int64_t rows = (r_end - r_begin - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    buf.assign(static_cast<size_t>(rows * wp), 0.0f);
    const int64_t ih0 = r_begin * g.sh - g.pt;
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t ih = ih0 + r;
        if (ih < 0 || ih >= g.h)
            continue;
        const int64_t col0 = std::max<int64_t>(0, g.pl);
        const int64_t src0 = std::max<int64_t>(0, -g.pl);
        const int64_t len = std::min<int64_t>(g.w - src0, wp - col0);
        if (len > 0)
            std::memcpy(&buf[r * wp + col0], x + ih * g.w + src0, static_cast<size_t>(len) * sizeof(float));
    }
    // Rows wider than 8: tiles of 16 (or a last tile of 8) outputs on two rows at a time; narrow
    // rows (<= 8 outputs, the late stages): one vector per row, three rows at a time. Each
    // weight broadcast serves two or three rows; a last odd row runs alone.
    constexpr int kRows = 3;
    float a[kRows * kTile], b[kRows * kTile], l[kRows * kTile];
    for (int64_t orow = r_begin; orow < r_end;) {
        const int64_t r0 = (orow - r_begin) * g.sh;
        int64_t nrows = 1;
        for (int64_t t0 = 0; t0 < g.ow; t0 += kTile) {
            const int64_t n = std::min<int64_t>(kTile, g.ow - t0);
            const float* base = buf.data() + t0 * g.sw;
            int64_t stride = kTile;  // floats between rows in a, b, l
            if (g.ow <= kTile / 2 && r_end - orow >= kRows) {
                tile<1, kRows, SW>(base, wp, r0, g, wa, wb, wc, a, b, l);
                nrows = kRows;
                stride = kTile / 2;
            } else if (r_end - orow >= 2 && n > kTile / 2) {
                tile<2, 2, SW>(base, wp, r0, g, wa, wb, wc, a, b, l);
                nrows = 2;
            } else if (r_end - orow >= 2 && g.ow > kTile / 2) {
                tile<1, 2, SW>(base, wp, r0, g, wa, wb, wc, a, b, l);
                nrows = 2;
                stride = kTile / 2;
            } else if (n <= kTile / 2) {
                tile<1, 1, SW>(base, wp, r0, g, wa, wb, wc, a, b, l);
            } else {
                tile<2, 1, SW>(base, wp, r0, g, wa, wb, wc, a, b, l);
            }
            for (int64_t r = 0; r < nrows; ++r) {
                float* out = y + (orow + r) * g.ow + t0;
                for (int64_t t = 0; t < n; ++t)
                    out[t] = a[r * stride + t] * b[r * stride + t] + l[r * stride + t] + bias;
            }
        }
        orow += nrows;
    }
}

static void quadraconv(const float* x, const float* wa, const float* wb, const float* wc, const float* bias,
                       float* y, const Geometry& g) {
    // Row blocks only when there are too few planes to keep every thread busy.
    const int64_t planes = g.n * g.c;
    const int64_t threads = std::max(1, parallel_get_max_threads());
    const int64_t blocks = std::min<int64_t>(g.oh, std::max<int64_t>(1, (4 * threads + planes - 1) / planes));
    const int64_t per_block = (g.oh + blocks - 1) / blocks;
    const int64_t taps = g.kh * g.kw;
    ov::parallel_for3d(g.n, g.c, blocks, [&](int64_t n, int64_t c, int64_t blk) {
        const int64_t r0 = blk * per_block, r1 = std::min(g.oh, r0 + per_block);
        if (r0 >= r1)
            return;
        const float* xp = x + (n * g.c + c) * g.h * g.w;
        float* yp = y + (n * g.c + c) * g.oh * g.ow;
        const float* a = wa + c * taps;
        const float* b = wb + c * taps;
        const float* l = wc + c * taps;
        if (g.sw == 1)
            plane_rows<1>(xp, a, b, l, bias[c], yp, g, r0, r1);
        else
            plane_rows<0>(xp, a, b, l, bias[c], yp, g, r0, r1);
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
