// edgedet.BoxRPBAttention for OpenVINO: Plain-DETR cross-attention with the box-to-pixel
// relative position bias, fp32, the node exactly as exporters/boxrpb_onnx.py defines it
// (the maths: kernels/boxrpb_functional.py).
//
//   out = Wo · softmax(scale·q·kᵀ + By[q,i] + Bx[q,j] − 100·mask[i·W+j]) v + bo
//
// The axial tables Bx (Q×W) and By (Q×H) per head come from the two small MLPs; the
// attention then walks the H×W keys in tiles (one row i, up to kKeys columns) with an
// online softmax (running max, running sum, rescaled accumulator), adding By[q,i] + Bx[q,j]
// to each tile's logits, so the Q×H×W bias and logits are never formed: the extra memory is
// q, k, v, the context (Q·C, H·W·C), the tables (heads·Q·(H+W)) and per-thread tiles.
// Work is split over (batch, head, query block) with OpenVINO's parallel_for3d; the inner
// loops run over contiguous keys or channels with fixed strides (compiler-vectorised).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "openvino/core/parallel.hpp"
#include "ov_op_common.hpp"

namespace edgedet {

constexpr int64_t kQueries = 8;  // queries per work item (share each packed key tile)
constexpr int64_t kKeys = 64;    // keys per tile (columns of one feature-map row)

struct Sizes {
    int64_t b, q, c, hw, h, w, heads, d, hidden, mask_b;
};

// 4 rows x 16 outputs of y: 8 vector accumulators kept in registers over the whole input
// dimension, each weight vector loaded once for 4 rows.
constexpr int64_t kRowBlock = 4, kOutBlock = 16;

static inline void linear_tile(const float* __restrict__ x, const float* __restrict__ wt, float* __restrict__ y,
                               int64_t rows, int64_t in, int64_t out, int64_t o0) {
    float acc[kRowBlock][kOutBlock] = {};
    for (int64_t i = 0; i < in; ++i) {
        const float* wr = wt + i * out + o0;
        for (int64_t r = 0; r < kRowBlock; ++r) {
            const float xi = r < rows ? x[r * in + i] : 0.f;
            for (int64_t o = 0; o < kOutBlock; ++o)
                acc[r][o] += xi * wr[o];
        }
    }
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < kOutBlock; ++o)
            y[r * out + o0 + o] += acc[r][o];
}

// y (rows, out) = (x (rows, in) · wᵀ + bias) · scale; w (out, in) transposed once so the
// inner loops run over contiguous outputs (tiles of 4 rows x 16 outputs, a scalar tail).
static void linear(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t in,
                   int64_t out, float scale) {
    std::vector<float> wt(static_cast<size_t>(in * out));
    for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i)
            wt[i * out + o] = w[o * in + i];
    const int64_t full = out / kOutBlock * kOutBlock;
    ov::parallel_for((rows + kRowBlock - 1) / kRowBlock, [&](int64_t blk) {
        const int64_t r0 = blk * kRowBlock, nr = std::min(kRowBlock, rows - r0);
        const float* xb = x + r0 * in;
        float* yb = y + r0 * out;
        for (int64_t r = 0; r < nr; ++r)
            for (int64_t o = 0; o < out; ++o)
                yb[r * out + o] = bias[o];
        for (int64_t o0 = 0; o0 < full; o0 += kOutBlock)
            linear_tile(xb, wt.data(), yb, nr, in, out, o0);
        for (int64_t r = 0; r < nr; ++r)
            for (int64_t o = full; o < out; ++o)
                for (int64_t i = 0; i < in; ++i)
                    yb[r * out + o] += xb[r * in + i] * wt[i * out + o];
        for (int64_t r = 0; r < nr; ++r)
            for (int64_t o = 0; o < out; ++o)
                yb[r * out + o] *= scale;
    });
}

static inline float encode(float delta, bool log8) {
    if (!log8)
        return delta;
    const float s = delta > 0.f ? 1.f : (delta < 0.f ? -1.f : 0.f);
    return s * std::log2(std::fabs(delta) + 1.f) / 3.f;
}

// table (B, heads, Q, n): MLP([lo − p_j, hi − p_j]) for pixel centres p_j = (j + 0.5)·stride,
// box corners lo/hi = (centre ∓ size/2)·n·stride; MLP = w2 · relu(w1 · [·,·] + b1).
static void axial_table(const float* boxes, int64_t centre, int64_t n, const float* w1, const float* b1,
                        const float* w2, const Sizes& s, float stride, bool log8, float* table) {
    ov::parallel_for2d(s.b, s.q, [&](int64_t bi, int64_t qi) {
        const float* box = boxes + (bi * s.q + qi) * 4;
        const float ext = static_cast<float>(n) * stride;
        const float lo = (box[centre] - 0.5f * box[centre + 2]) * ext;
        const float hi = (box[centre] + 0.5f * box[centre + 2]) * ext;
        std::vector<float> hid(static_cast<size_t>(s.hidden));
        for (int64_t j = 0; j < n; ++j) {
            const float p = (static_cast<float>(j) + 0.5f) * stride;
            const float e0 = encode(lo - p, log8), e1 = encode(hi - p, log8);
            for (int64_t u = 0; u < s.hidden; ++u)
                hid[u] = std::max(0.f, w1[2 * u] * e0 + w1[2 * u + 1] * e1 + b1[u]);
            for (int64_t m = 0; m < s.heads; ++m) {
                float acc = 0.f;
                for (int64_t u = 0; u < s.hidden; ++u)
                    acc += w2[m * s.hidden + u] * hid[u];
                table[((bi * s.heads + m) * s.q + qi) * n + j] = acc;
            }
        }
    });
}

// Running state of one query's online softmax.
struct Row {
    float max = -std::numeric_limits<float>::infinity();
    float sum = 0.f;
};

// One (batch, head, query block): ctx[q, head] = softmax(logits) v over all H×W keys, tiles
// of one row and up to kKeys columns; k tile packed transposed (d × keys) for the q·k loop.
static void attend_block(const float* q, const float* k, const float* v, const float* bx, const float* by,
                         const float* mask, const Sizes& s, int64_t bi, int64_t m, int64_t q0, int64_t q1,
                         float* ctx) {
    thread_local std::vector<float> kt, logits, acc;
    kt.resize(static_cast<size_t>(s.d * kKeys));
    logits.resize(static_cast<size_t>(kKeys));
    acc.assign(static_cast<size_t>(kQueries * s.d), 0.f);
    Row rows[kQueries];
    const float* kb = k + bi * s.hw * s.c + m * s.d;
    const float* vb = v + bi * s.hw * s.c + m * s.d;
    const float* mk = mask + (s.mask_b == 1 ? 0 : bi) * s.hw;
    for (int64_t i = 0; i < s.h; ++i) {
        for (int64_t j0 = 0; j0 < s.w; j0 += kKeys) {
            const int64_t nk = std::min(kKeys, s.w - j0);
            const int64_t key0 = i * s.w + j0;
            for (int64_t jj = 0; jj < nk; ++jj)
                for (int64_t t = 0; t < s.d; ++t)
                    kt[t * kKeys + jj] = kb[(key0 + jj) * s.c + t];
            for (int64_t qi = q0; qi < q1; ++qi) {
                const float* qr = q + (bi * s.q + qi) * s.c + m * s.d;
                const float* bxr = bx + ((bi * s.heads + m) * s.q + qi) * s.w + j0;
                const float byv = by[((bi * s.heads + m) * s.q + qi) * s.h + i];
                float* lg = logits.data();
                for (int64_t jj = 0; jj < nk; ++jj)
                    lg[jj] = byv + bxr[jj] - 100.f * mk[key0 + jj];
                for (int64_t t = 0; t < s.d; ++t) {
                    const float qt = qr[t];
                    const float* kr = kt.data() + t * kKeys;
                    for (int64_t jj = 0; jj < nk; ++jj)
                        lg[jj] += qt * kr[jj];
                }
                Row& row = rows[qi - q0];
                float tmax = row.max;
                for (int64_t jj = 0; jj < nk; ++jj)
                    tmax = std::max(tmax, lg[jj]);
                const float corr = std::exp(row.max - tmax);  // 0 on the first tile
                float* a = acc.data() + (qi - q0) * s.d;
                for (int64_t t = 0; t < s.d; ++t)
                    a[t] *= corr;
                float sum = row.sum * corr;
                for (int64_t jj = 0; jj < nk; ++jj) {
                    const float p = std::exp(lg[jj] - tmax);
                    sum += p;
                    const float* vr = vb + (key0 + jj) * s.c;
                    for (int64_t t = 0; t < s.d; ++t)
                        a[t] += p * vr[t];
                }
                row.max = tmax;
                row.sum = sum;
            }
        }
    }
    for (int64_t qi = q0; qi < q1; ++qi) {
        const float inv = 1.f / rows[qi - q0].sum;
        const float* a = acc.data() + (qi - q0) * s.d;
        float* out = ctx + (bi * s.q + qi) * s.c + m * s.d;
        for (int64_t t = 0; t < s.d; ++t)
            out[t] = a[t] * inv;
    }
}

// Input order of the node (exporters/boxrpb_onnx.py): query, boxes, memory_k, memory_v, mask,
// wq, bq, wk, bk, wv, bv, wo, bo, x1w, x1b, x2w, y1w, y1b, y2w.
static void boxrpb(const ov::TensorVector& in, float* y, const Sizes& s, float scale, float stride, bool log8) {
    auto f = [&](size_t i) { return in[i].data<const float>(); };
    std::vector<float> q(static_cast<size_t>(s.b * s.q * s.c)), ctx(q.size());
    std::vector<float> k(static_cast<size_t>(s.b * s.hw * s.c)), v(k.size());
    std::vector<float> bx(static_cast<size_t>(s.b * s.heads * s.q * s.w));
    std::vector<float> by(static_cast<size_t>(s.b * s.heads * s.q * s.h));
    linear(f(0), f(5), f(6), q.data(), s.b * s.q, s.c, s.c, scale);
    linear(f(2), f(7), f(8), k.data(), s.b * s.hw, s.c, s.c, 1.f);
    linear(f(3), f(9), f(10), v.data(), s.b * s.hw, s.c, s.c, 1.f);
    axial_table(f(1), 0, s.w, f(13), f(14), f(15), s, stride, log8, bx.data());
    axial_table(f(1), 1, s.h, f(16), f(17), f(18), s, stride, log8, by.data());
    const int64_t blocks = (s.q + kQueries - 1) / kQueries;
    ov::parallel_for3d(s.b, s.heads, blocks, [&](int64_t bi, int64_t m, int64_t blk) {
        const int64_t q0 = blk * kQueries, q1 = std::min(s.q, q0 + kQueries);
        attend_block(q.data(), k.data(), v.data(), bx.data(), by.data(), f(4), s, bi, m, q0, q1, ctx.data());
    });
    linear(ctx.data(), f(11), f(12), y, s.b * s.q, s.c, s.c, 1.f);
}

class BoxRPBAttention : public F32Op {
public:
    OPENVINO_OP("BoxRPBAttention", "edgedet");

    BoxRPBAttention() = default;

    BoxRPBAttention(const ov::OutputVector& args, int64_t num_heads, int64_t height, int64_t width, float stride,
                    float scale, int64_t log8)
        : F32Op(args), m_heads(num_heads), m_height(height), m_width(width), m_stride(stride), m_scale(scale),
          m_log8(log8) {
        constructor_validate_and_infer_types();
    }

    void validate_and_infer_types() override {
        NODE_VALIDATION_CHECK(this, get_input_size() == 19,
                              "BoxRPBAttention takes query, boxes, memory_k, memory_v, mask and 14 weights");
        NODE_VALIDATION_CHECK(this, m_heads > 0 && m_height > 0 && m_width > 0,
                              "BoxRPBAttention needs num_heads, height and width > 0");
        const auto& qs = get_input_partial_shape(0);
        NODE_VALIDATION_CHECK(this, qs.rank().is_dynamic() || qs.rank().get_length() == 3,
                              "BoxRPBAttention expects query (B,Q,C)");
        set_output_type(0, get_input_element_type(0), qs);
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        return std::make_shared<BoxRPBAttention>(args, m_heads, m_height, m_width, m_stride, m_scale, m_log8);
    }

    bool visit_attributes(ov::AttributeVisitor& v) override {
        return visit_all(v, "num_heads", m_heads, "height", m_height, "width", m_width, "stride", m_stride, "scale",
                         m_scale, "log8", m_log8);
    }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const auto& qs = inputs[0].get_shape();
        const auto& ks = inputs[2].get_shape();
        const auto& ms = inputs[4].get_shape();
        const auto& w1 = inputs[13].get_shape();
        if (qs.size() != 3 || ks.size() != 3 || ms.size() != 2 || w1.size() != 2)
            return false;
        Sizes s{};
        s.b = static_cast<int64_t>(qs[0]);
        s.q = static_cast<int64_t>(qs[1]);
        s.c = static_cast<int64_t>(qs[2]);
        s.hw = static_cast<int64_t>(ks[1]);
        s.h = m_height;
        s.w = m_width;
        s.heads = m_heads;
        s.d = s.c / m_heads;
        s.hidden = static_cast<int64_t>(w1[0]);
        s.mask_b = static_cast<int64_t>(ms[0]);
        if (s.hw != s.h * s.w || s.d * s.heads != s.c || static_cast<int64_t>(ks[0]) != s.b ||
            static_cast<int64_t>(ms[1]) != s.hw || (s.mask_b != 1 && s.mask_b != s.b))
            return false;
        outputs[0].set_shape(qs);
        boxrpb(inputs, outputs[0].data<float>(), s, m_scale, m_stride, m_log8 != 0);
        return true;
    }

private:
    int64_t m_heads = 1;
    int64_t m_height = 1;
    int64_t m_width = 1;
    float m_stride = 1.f;
    float m_scale = 1.f;
    int64_t m_log8 = 0;
};

std::vector<ov::Extension::Ptr> boxrpb_extensions() {
    return op_extensions<BoxRPBAttention>("BoxRPBAttention");
}

}  // namespace edgedet
