// edgedet's PyTorch CPU op for the depthwise quadratic conv y = (Wa*x).(Wb*x) + Wc*x + b.
//
// forward: one pass over each k x k window; R output rows x V vectors x 3 accumulators stay in
// registers over all taps, reading the input rows from a zero-padded copy (quadraconv_tile.hpp,
// the OpenVINO op's kernel too). Work is split over (batch, channel, row block) with
// at::parallel_for, so torch.set_num_threads applies; row blocks only when planes are fewer
// than 4 x threads.
// backward: recomputes Wa*x and Wb*x from x (nothing but x and the weights is kept), then in
// one pass per plane scatters ga = g.(Wb*x), gb = g.(Wa*x), g into dx and correlates them
// with x for dWa, dWb, dWc. Planes are split over channels (weights' gradients need no
// atomics: each channel's sum over the batch stays in one thread). float and double.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include "quadraconv_tile.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

struct Geo {
    int64_t n, c, h, w, k, oh, ow, s, p, d, hp, wp;
};

Geo geometry(const at::Tensor& x, const at::Tensor& wa, int64_t s, int64_t p, int64_t d) {
    Geo g{};
    g.n = x.size(0), g.c = x.size(1), g.h = x.size(2), g.w = x.size(3), g.k = wa.size(-1);
    g.s = s, g.p = p, g.d = d;
    g.oh = (g.h + 2 * p - d * (g.k - 1) - 1) / s + 1;
    g.ow = (g.w + 2 * p - d * (g.k - 1) - 1) / s + 1;
    g.hp = g.h + 2 * p, g.wp = g.w + 2 * p;
    return g;
}

template <typename T>
void pad_plane(const T* x, const Geo& g, std::vector<T>& buf) {
    buf.assign(static_cast<size_t>(g.hp * g.wp), T(0));
    for (int64_t i = 0; i < g.h; ++i)
        std::copy(x + i * g.w, x + (i + 1) * g.w, buf.data() + (i + g.p) * g.wp + g.p);
}

// a, b, l: (oh*ow) accumulators of one plane from its padded input (the backward's recompute).
template <typename T>
void branches(const T* xp, const T* wa, const T* wb, const T* wc, const Geo& g, T* a, T* b, T* l) {
    for (int64_t o = 0; o < g.oh; ++o) {
        T* ar = a + o * g.ow;
        T* br = b + o * g.ow;
        T* lr = l + o * g.ow;
        for (int64_t t = 0; t < g.ow; ++t)
            ar[t] = br[t] = lr[t] = T(0);
        for (int64_t i = 0; i < g.k; ++i) {
            const T* row = xp + (o * g.s + i * g.d) * g.wp;
            for (int64_t j = 0; j < g.k; ++j) {
                const T va = wa[i * g.k + j], vb = wb[i * g.k + j], vc = wc[i * g.k + j];
                const T* src = row + j * g.d;
                for (int64_t t = 0; t < g.ow; ++t) {
                    const T v = src[t * g.s];
                    ar[t] += va * v;
                    br[t] += vb * v;
                    lr[t] += vc * v;
                }
            }
        }
    }
}

}  // namespace

at::Tensor quadraconv_forward(const at::Tensor& x_, const at::Tensor& wa_, const at::Tensor& wb_,
                              const at::Tensor& wc_, const at::Tensor& bias_, int64_t s, int64_t p, int64_t d) {
    auto x = x_.contiguous(), wa = wa_.contiguous(), wb = wb_.contiguous(), wc = wc_.contiguous();
    auto bias = bias_.contiguous();
    const Geo g = geometry(x, wa, s, p, d);
    auto y = at::empty({g.n, g.c, g.oh, g.ow}, x.options());
    if (g.oh <= 0 || g.ow <= 0 || g.n * g.c == 0)
        return y;
    // Row blocks only when there are too few planes to keep every thread busy.
    const int64_t planes = g.n * g.c, threads = std::max<int64_t>(1, at::get_num_threads());
    const int64_t blocks = std::min<int64_t>(g.oh, std::max<int64_t>(1, (4 * threads + planes - 1) / planes));
    const int64_t per_block = (g.oh + blocks - 1) / blocks;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "quadraconv_forward", [&] {
        const scalar_t *X = x.data_ptr<scalar_t>(), *A = wa.data_ptr<scalar_t>(), *B = wb.data_ptr<scalar_t>();
        const scalar_t *C = wc.data_ptr<scalar_t>(), *Bi = bias.data_ptr<scalar_t>();
        scalar_t* Y = y.data_ptr<scalar_t>();
        const int64_t taps = g.k * g.k, m = g.oh * g.ow;
        const edgedet::quadratic::Plane plane{g.h, g.w, g.k, g.k, g.oh, g.ow, g.s, g.s, g.d, g.d, g.p, g.p};
        at::parallel_for(0, planes * blocks, 1, [&](int64_t begin, int64_t end) {
            std::vector<scalar_t> buf;
            for (int64_t item = begin; item < end; ++item) {
                const int64_t nc = item / blocks, r0 = (item % blocks) * per_block;
                const int64_t r1 = std::min(g.oh, r0 + per_block), c = nc % g.c;
                if (r0 >= r1)
                    continue;
                const scalar_t *xp = X + nc * g.h * g.w, *a = A + c * taps, *b = B + c * taps, *l = C + c * taps;
                if (g.s == 1)
                    edgedet::quadratic::plane_rows<scalar_t, 1>(xp, a, b, l, Bi[c], Y + nc * m, plane, r0, r1, buf);
                else
                    edgedet::quadratic::plane_rows<scalar_t, 0>(xp, a, b, l, Bi[c], Y + nc * m, plane, r0, r1, buf);
            }
        });
    });
    return y;
}

std::vector<at::Tensor> quadraconv_backward(const at::Tensor& g_, const at::Tensor& x_, const at::Tensor& wa_,
                                            const at::Tensor& wb_, const at::Tensor& wc_, int64_t s, int64_t p,
                                            int64_t d) {
    auto gy = g_.contiguous(), x = x_.contiguous();
    auto wa = wa_.contiguous(), wb = wb_.contiguous(), wc = wc_.contiguous();
    const Geo g = geometry(x, wa, s, p, d);
    auto gx = at::zeros_like(x);
    auto gwa = at::zeros_like(wa), gwb = at::zeros_like(wb), gwc = at::zeros_like(wc);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "quadraconv_backward", [&] {
        const scalar_t *X = x.data_ptr<scalar_t>(), *G = gy.data_ptr<scalar_t>();
        const scalar_t *A = wa.data_ptr<scalar_t>(), *B = wb.data_ptr<scalar_t>(), *C = wc.data_ptr<scalar_t>();
        scalar_t *GX = gx.data_ptr<scalar_t>(), *GA = gwa.data_ptr<scalar_t>(), *GB = gwb.data_ptr<scalar_t>();
        scalar_t* GC = gwc.data_ptr<scalar_t>();
        const int64_t taps = g.k * g.k, m = g.oh * g.ow;
        at::parallel_for(0, g.c, 1, [&](int64_t begin, int64_t end) {
            std::vector<scalar_t> buf, gbuf, a(m), b(m), l(m);
            for (int64_t c = begin; c < end; ++c) {
                const scalar_t *wa_c = A + c * taps, *wb_c = B + c * taps, *wc_c = C + c * taps;
                for (int64_t n = 0; n < g.n; ++n) {
                    const int64_t nc = n * g.c + c;
                    pad_plane(X + nc * g.h * g.w, g, buf);
                    branches(buf.data(), wa_c, wb_c, wc_c, g, a.data(), b.data(), l.data());
                    const scalar_t* go = G + nc * m;
                    for (int64_t t = 0; t < m; ++t) {  // a <- g.(Wb*x) (= dL/d(Wa*x)), b <- g.(Wa*x)
                        const scalar_t ga = go[t] * b[t], gb = go[t] * a[t];
                        a[t] = ga, b[t] = gb;
                    }
                    gbuf.assign(static_cast<size_t>(g.hp * g.wp), scalar_t(0));
                    for (int64_t o = 0; o < g.oh; ++o) {
                        const scalar_t *ar = a.data() + o * g.ow, *br = b.data() + o * g.ow, *gr = go + o * g.ow;
                        for (int64_t i = 0; i < g.k; ++i) {
                            const scalar_t* row = buf.data() + (o * g.s + i * g.d) * g.wp;
                            scalar_t* grow = gbuf.data() + (o * g.s + i * g.d) * g.wp;
                            for (int64_t j = 0; j < g.k; ++j) {
                                const int64_t q = i * g.k + j;
                                const scalar_t va = wa_c[q], vb = wb_c[q], vc = wc_c[q];
                                const scalar_t* src = row + j * g.d;
                                scalar_t* dst = grow + j * g.d;
                                scalar_t sa = 0, sb = 0, sc = 0;
                                for (int64_t t = 0; t < g.ow; ++t) {
                                    const scalar_t v = src[t * g.s];
                                    sa += ar[t] * v;
                                    sb += br[t] * v;
                                    sc += gr[t] * v;
                                    dst[t * g.s] += va * ar[t] + vb * br[t] + vc * gr[t];
                                }
                                GA[c * taps + q] += sa;
                                GB[c * taps + q] += sb;
                                GC[c * taps + q] += sc;
                            }
                        }
                    }
                    scalar_t* gxo = GX + nc * g.h * g.w;
                    for (int64_t i = 0; i < g.h; ++i)
                        std::copy(gbuf.data() + (i + g.p) * g.wp + g.p, gbuf.data() + (i + g.p) * g.wp + g.p + g.w,
                                  gxo + i * g.w);
                }
            }
        });
    });
    return {gx, gwa, gwb, gwc};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &quadraconv_forward, "fused depthwise quadratic conv (CPU)");
    m.def("backward", &quadraconv_backward, "its memory-saving backward: dx, dWa, dWb, dWc");
}
