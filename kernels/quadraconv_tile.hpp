// The quadratic conv's forward over the rows of one plane, y = (Wa*x).(Wb*x) + Wc*x + b
// (depthwise, NCHW), shared by edgedet's OpenVINO op (ov_quadraconv.cpp, float) and its
// PyTorch CPU op (torch_quadraconv.cpp, float and double).
//
// The input rows a work item needs are copied into a zero-padded buffer, so the taps need no
// bounds checks; then R output rows x V vectors x 3 accumulators stay in registers over all
// k x k taps (GCC/Clang vector extensions, 32 bytes: one ymm register with AVX2 or AVX-512VL,
// lowered to SSE/NEON/scalar code elsewhere), each tap's three weights broadcast once for the R rows.
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

// Where a tile's outputs go: row 0 at `y`, rows `stride` apart, the first `n` of its V*L
// columns (the rest fall past the plane's right edge), plus the bias.
template <typename T>
struct Out {
    T* y;
    int64_t stride, n;
    T bias;
};

// R output rows x V vectors from the padded rows `buf` (row length wp, first output row at
// buffer row r0): three accumulators each over the k x k taps, then y = a.b + l + bias.
template <typename T, int V, int R, int64_t S>
inline void tile(const T* buf, int64_t wp, int64_t r0, const Plane& g, const T* wa, const T* wb, const T* wc,
                 const Out<T>& out) {
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
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) {
            const vec y = va[r][v] * vb[r][v] + vl[r][v] + out.bias;
            const int64_t n = std::min<int64_t>(L, out.n - v * L);
            std::memcpy(out.y + r * out.stride + v * L, &y, static_cast<size_t>(n) * sizeof(T));
        }
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

// Vector registers the compiler may allocate: AVX-512VL gives 32 ymm registers, AVX2 (and a
// 32-byte vector on NEON, two q registers each) 16. A tile keeps R x V x 3 accumulators, the
// tap's three weights and one input vector live, so the widest tile is chosen to fit them.
#if defined(__AVX512VL__)
constexpr int kVecRegs = 32;
#else
constexpr int kVecRegs = 16;
#endif
constexpr int kWideRows = kVecRegs >= 32 ? 4 : 2;   // rows of a two-vector tile: 24 or 12 accumulators
constexpr int kSmallRows = kVecRegs >= 32 ? 7 : 3;  // rows of a one-vector tile (planes of <= L columns)

// The most rows a tile may take (of 7, 4, 3, 2, 1) with `left` rows to go and `most` allowed.
inline int tile_rows(int64_t left, int most) {
    for (int r : {7, 4, 3, 2, 1})
        if (r <= most && r <= left)
            return r;
    return 1;
}

// One tile of `rows` rows (as tile_rows returns; at most kWideRows when V = 2) x V vectors.
template <typename T, int V, int64_t S>
inline void tile_any(int rows, const T* buf, int64_t wp, int64_t r0, const Plane& g, const T* wa, const T* wb,
                     const T* wc, const Out<T>& out) {
    if constexpr (V == 1) {
        if (rows == 7)
            return tile<T, 1, 7, S>(buf, wp, r0, g, wa, wb, wc, out);
    }
    switch (rows) {
    case 4: return tile<T, V, 4, S>(buf, wp, r0, g, wa, wb, wc, out);
    case 3: return tile<T, V, 3, S>(buf, wp, r0, g, wa, wb, wc, out);
    case 2: return tile<T, V, 2, S>(buf, wp, r0, g, wa, wb, wc, out);
    default: return tile<T, V, 1, S>(buf, wp, r0, g, wa, wb, wc, out);
    }
}

// Output rows [r0, r1) of one plane x (h, w) -> y (oh, ow). Rows wider than L: tiles of 2L
// (or a last one of L) outputs, kWideRows rows at a time; rows of <= L outputs (the late
// stages): one vector per row, kSmallRows rows at a time; fewer rows where fewer are left.
template <typename T, int64_t S>
void plane_rows(const T* x, const T* wa, const T* wb, const T* wc, T bias, T* y, const Plane& g, int64_t r0,
                int64_t r1, std::vector<T>& buf) {
    constexpr int L = sizeof(typename Vec<T>::type) / sizeof(T), kTile = 2 * L;
    const int64_t wp = pad_rows(x, g, r0, r1, kTile, buf);
    const int most = g.ow <= L ? kSmallRows : kWideRows;
    for (int64_t o = r0; o < r1;) {
        const int64_t br = (o - r0) * g.sh;
        const int nrows = tile_rows(r1 - o, most);
        for (int64_t t0 = 0; t0 < g.ow; t0 += kTile) {
            const Out<T> out{y + o * g.ow + t0, g.ow, std::min<int64_t>(kTile, g.ow - t0), bias};
            const T* base = buf.data() + t0 * g.sw;
            if (out.n > L)
                tile_any<T, 2, S>(nrows, base, wp, br, g, wa, wb, wc, out);
            else
                tile_any<T, 1, S>(nrows, base, wp, br, g, wa, wb, wc, out);
        }
        o += nrows;
    }
}

}  // namespace quadratic
}  // namespace edgedet
