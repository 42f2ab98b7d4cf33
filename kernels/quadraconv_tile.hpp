// The quadratic conv's forward over the rows of one plane, y = (Wa*x).(Wb*x) + Wc*x + b
// (depthwise, NCHW), shared by edgedet's OpenVINO op (ov_quadraconv.cpp, float) and its
// PyTorch CPU op (torch_quadraconv.cpp, float and double).
//
// The input rows a work item needs are copied into a zero-padded buffer, so the taps need no
// bounds checks; then R output rows x V vectors x 3 accumulators stay in registers over all
// k x k taps (GCC/Clang vector extensions, 32 bytes: one ymm register with AVX2, lowered to
// SSE/NEON/scalar code elsewhere), each tap's three weights broadcast once for the R rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace edgedet {
namespace quadratic {

// One plane's geometry: input h x w, kernel kh x kw, output oh x ow, strides, dilations and
// the top/left pads (the bottom/right ones are implied by oh, ow).
struct Plane {
    int64_t h, w, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl;
};

template <typename T>
struct Vec;
template <>
struct Vec<float> {
    typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec<double> {
    typedef double type __attribute__((vector_size(32)));
};

// One vector of outputs' inputs at column stride S (S = 0: the runtime stride `s`).
template <typename T, int64_t S>
inline typename Vec<T>::type load_vec(const T* p, int64_t s) {
    typename Vec<T>::type v;
    if (S == 1) {
        std::memcpy(&v, p, sizeof v);
    } else {
        for (int t = 0; t < static_cast<int>(sizeof v / sizeof(T)); ++t)
            v[t] = p[t * s];
    }
    return v;
}

// R output rows x V vectors from the padded rows `buf` (row length wp, first output row at
// buffer row r0); writes (R, V*L) accumulators to a, b, l.
template <typename T, int V, int R, int64_t S>
inline void tile(const T* buf, int64_t wp, int64_t r0, const Plane& g, const T* wa, const T* wb, const T* wc,
                 T* a, T* b, T* l) {
    typedef typename Vec<T>::type vec;
    constexpr int L = sizeof(vec) / sizeof(T);
    vec va[R][V], vb[R][V], vl[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v)
            va[r][v] = vb[r][v] = vl[r][v] = vec{};
    const int64_t s = S > 0 ? S : g.sw, rstep = g.sh * wp;
    for (int64_t i = 0; i < g.kh; ++i) {
        const T* row = buf + (r0 + i * g.dh) * wp;
        for (int64_t j = 0; j < g.kw; ++j) {
            const T ka = wa[i * g.kw + j], kb = wb[i * g.kw + j], kc = wc[i * g.kw + j];
            const T* p = row + j * g.dw;
            for (int r = 0; r < R; ++r)
                for (int v = 0; v < V; ++v) {
                    const vec x = load_vec<T, S>(p + r * rstep + L * v * s, s);
                    va[r][v] += ka * x;
                    vb[r][v] += kb * x;
                    vl[r][v] += kc * x;
                }
        }
    }
    std::memcpy(a, va, sizeof va);
    std::memcpy(b, vb, sizeof vb);
    std::memcpy(l, vl, sizeof vl);
}

// Copies the input rows that output rows [r0, r1) read into `buf`, zero-padded; returns the
// padded row length.
template <typename T>
int64_t pad_rows(const T* x, const Plane& g, int64_t r0, int64_t r1, int64_t tile_width, std::vector<T>& buf) {
    const int64_t tiles = (g.ow + tile_width - 1) / tile_width;
    const int64_t wp = (tiles * tile_width - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    const int64_t rows = (r1 - r0 - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    buf.assign(static_cast<size_t>(rows * wp), T(0));
    const int64_t col0 = std::max<int64_t>(0, g.pl), src0 = std::max<int64_t>(0, -g.pl);
    const int64_t len = std::min<int64_t>(g.w - src0, wp - col0);
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t ih = r0 * g.sh - g.pt + r;
        if (ih >= 0 && ih < g.h && len > 0)
            std::memcpy(&buf[r * wp + col0], x + ih * g.w + src0, static_cast<size_t>(len) * sizeof(T));
    }
    return wp;
}

// Output rows [r0, r1) of one plane x (h, w) -> y (oh, ow). Rows wider than L: tiles of 2L
// (or a last one of L) outputs, two rows at a time; rows of <= L outputs (the late stages):
// one vector per row, three rows at a time; a last odd row alone.
template <typename T, int64_t S>
void plane_rows(const T* x, const T* wa, const T* wb, const T* wc, T bias, T* y, const Plane& g, int64_t r0,
                int64_t r1, std::vector<T>& buf) {
    constexpr int L = sizeof(typename Vec<T>::type) / sizeof(T), kTile = 2 * L, kRows = 3;
    const int64_t wp = pad_rows(x, g, r0, r1, kTile, buf);
    T a[kRows * kTile], b[kRows * kTile], l[kRows * kTile];
    for (int64_t o = r0; o < r1;) {
        const int64_t br = (o - r0) * g.sh;
        int64_t nrows = 1;
        for (int64_t t0 = 0; t0 < g.ow; t0 += kTile) {
            const int64_t n = std::min<int64_t>(kTile, g.ow - t0);
            const T* base = buf.data() + t0 * g.sw;
            int64_t stride = kTile;  // elements between rows in a, b, l
            if (g.ow <= L && r1 - o >= kRows) {
                tile<T, 1, kRows, S>(base, wp, br, g, wa, wb, wc, a, b, l);
                nrows = kRows, stride = L;
            } else if (r1 - o >= 2 && n > L) {
                tile<T, 2, 2, S>(base, wp, br, g, wa, wb, wc, a, b, l);
                nrows = 2;
            } else if (r1 - o >= 2 && g.ow > L) {  // the last, narrow tile of wide rows
                tile<T, 1, 2, S>(base, wp, br, g, wa, wb, wc, a, b, l);
                nrows = 2, stride = L;
            } else if (n <= L) {
                tile<T, 1, 1, S>(base, wp, br, g, wa, wb, wc, a, b, l);
            } else {
                tile<T, 2, 1, S>(base, wp, br, g, wa, wb, wc, a, b, l);
            }
            for (int64_t r = 0; r < nrows; ++r) {
                T* out = y + (o + r) * g.ow + t0;
                const T *ar = a + r * stride, *bq = b + r * stride, *lr = l + r * stride;
                for (int64_t t = 0; t < n; ++t)
                    out[t] = ar[t] * bq[t] + lr[t] + bias;
            }
        }
        o += nrows;
    }
}

}  // namespace quadratic
}  // namespace edgedet
