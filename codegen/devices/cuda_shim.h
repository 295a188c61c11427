/* graphflow CUDA shim: the CUDA C kernel language on the host, for the CPU emulator.
 *
 * One header, three uses:
 *   - under nvcc (__CUDACC__ defined) only the small "CUDA prelude" block below is active;
 *     codegen inlines that block (codegen.devices.prelude("cuda")) so a dumped .cu compiles alone;
 *   - under g++ it defines __global__, threadIdx, __syncthreads, shuffles, atomics, math...
 *     so the same kernel text compiles into a host shared library run by emulator.py;
 *   - with GF_EMU_RUNTIME_IMPL defined it also holds the emulator runtime (thread pool,
 *     fibers, barriers), compiled once per process into its own library.
 *
 * Portable spellings that generated code must use:
 *   GF_DYNAMIC_SHARED(type, name);
 *       Inside a kernel body: declares `type* name` pointing at the launch's dynamic shared
 *       memory (the `shared=` bytes of the launch), 16-byte aligned. Use it at most once per
 *       kernel and carve several arrays out of it by offset. (Under nvcc it is an
 *       `extern __shared__` byte array cast to type*, so kernels of different element types
 *       can live in one translation unit.)
 *   Float math: use the f-suffixed C names (expf, sqrtf, ...); there are no float overloads
 *   of exp/sqrt/... on the host (abs, min, max are overloaded as in CUDA). Kernel sources
 *   must not #include <math.h>, <cmath>, <stdlib.h> or <cstdlib>: this header declares what
 *   CUDA offers, and libstdc++'s overloads would clash with it.
 *   Kernels are launched by name: declare them `extern "C" __global__ void name(...)` or let
 *   SourceModule wrap the source in extern "C" (the default, as in PyCUDA).
 *
 * Emulator semantics: blocks run in parallel on a pool of OS threads, one block at a time
 * per OS thread, so __shared__ (thread-local storage) is per block. Threads of a block run
 * in order as a plain loop, or as fibers that switch at __syncthreads/__syncwarp/shuffles
 * when the kernel uses them. A warp is 32 consecutive linear thread ids.
 */
#ifndef GRAPHFLOW_CUDA_SHIM_H
#define GRAPHFLOW_CUDA_SHIM_H
#define GRAPHFLOW_SHIM_VERSION 2

#ifdef __CUDACC__
/* >>> graphflow cuda prelude */
#ifndef GF_DYNAMIC_SHARED
#define GF_DYNAMIC_SHARED(type, name)                                  \
  extern __shared__ __align__(16) unsigned char gf_dynamic_smem_[];    \
  type* name = reinterpret_cast<type*>(gf_dynamic_smem_)
#endif
#ifdef __CUDACC__ /* nvcc only: under g++ the host part of this header defines these */
#include <cuda_fp16.h> /* float16 tensors are __half in memory; kernels compute on floats */
/* gf_bool: a bool tensor's element in memory (0 or 1, numpy's bool_) */
typedef unsigned char gf_bool;
/* gf_simd<T>: 32 bytes of T, the cpu GEMM schedule's register tile (see the host version
 * below). That schedule never runs on a GPU, but its kernels must stay valid CUDA: here a
 * plain struct whose lanes nvcc keeps in registers once the loops are unrolled. */
#ifndef GF_SIMD_DEFINED /* a unit may hold the prelude twice: inlined, and this header's */
#define GF_SIMD_DEFINED
template <typename T> struct gf_simd { T lane[32 / sizeof(T)]; };
template <typename T> __device__ inline gf_simd<T> gf_simd_load(const T* p) {
  gf_simd<T> v;
  for (int i = 0; i < 32 / (int)sizeof(T); ++i) v.lane[i] = p[i];
  return v;
}
template <typename T> __device__ inline void gf_simd_store(T* p, const gf_simd<T>& v) {
  for (int i = 0; i < 32 / (int)sizeof(T); ++i) p[i] = v.lane[i];
}
template <typename T> __device__ inline void gf_simd_fma(gf_simd<T>& acc, T a, const gf_simd<T>& b) {
  for (int i = 0; i < 32 / (int)sizeof(T); ++i) acc.lane[i] += a * b.lane[i];
}
#endif
#endif
/* <<< graphflow cuda prelude */
#else /* host */

#include <float.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GF_EXPORT __attribute__((visibility("default")))
#define GF_TLS __thread __attribute__((tls_model("initial-exec")))
#define GF_INLINE static inline __attribute__((always_inline))

/* ---- qualifiers ---- */
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* Static shared memory: one copy per OS thread, and an OS thread runs one block at a time. */
#define __shared__ static __thread
#define GF_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(gf_dynamic_shared)

/* ---- vector types ---- */
#define GF_VEC2(T, N, A) struct __attribute__((aligned(A))) N##2 { T x, y; }; \
  GF_INLINE N##2 make_##N##2(T x, T y) { N##2 v = {x, y}; return v; }
#define GF_VEC3(T, N) struct N##3 { T x, y, z; }; \
  GF_INLINE N##3 make_##N##3(T x, T y, T z) { N##3 v = {x, y, z}; return v; }
#define GF_VEC4(T, N, A) struct __attribute__((aligned(A))) N##4 { T x, y, z, w; }; \
  GF_INLINE N##4 make_##N##4(T x, T y, T z, T w) { N##4 v = {x, y, z, w}; return v; }
GF_VEC2(float, float, 8) GF_VEC3(float, float) GF_VEC4(float, float, 16)
GF_VEC2(double, double, 16) GF_VEC3(double, double) GF_VEC4(double, double, 16)
GF_VEC2(int, int, 8) GF_VEC3(int, int) GF_VEC4(int, int, 16)
GF_VEC2(unsigned, uint, 8) GF_VEC3(unsigned, uint) GF_VEC4(unsigned, uint, 16)
GF_VEC2(long long, longlong, 16) GF_VEC2(unsigned char, uchar, 2) GF_VEC4(unsigned char, uchar, 4)
GF_VEC4(signed char, char, 4)

/* ---- gf_bool: a bool tensor's element in memory (0 or 1, numpy's bool_); kernels compute on
 * bool. A byte, not C++ bool, because g++ vectorizes loops that load bytes but not ones that
 * load bools (-fopt-info-vec: "no vectype"). ---- */
typedef unsigned char gf_bool;

/* ---- gf_simd<T>: 32 bytes of T (eight floats, four doubles) as one GCC vector ----
 * The cpu GEMM schedule's register tile is an array of these: g++ keeps each in one AVX
 * register and turns gf_simd_fma into one vfmadd (-ffp-contract=fast, as nvcc contracts),
 * where plain scalar loops left it re-loading B for every row of the tile. Without AVX, g++
 * splits each into narrower vectors. */
template <typename T> struct gf_simd_of { typedef T type __attribute__((vector_size(32))); };
template <typename T> using gf_simd = typename gf_simd_of<T>::type;
template <typename T> GF_INLINE gf_simd<T> gf_simd_load(const T* p) {
  gf_simd<T> v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
template <typename T> GF_INLINE void gf_simd_store(T* p, gf_simd<T> v) { __builtin_memcpy(p, &v, sizeof v); }
template <typename T> GF_INLINE void gf_simd_fma(gf_simd<T>& acc, T a, gf_simd<T> b) { acc += a * b; }

/* ---- __half: cuda_fp16.h's float16 storage type, minimal (kernels compute on floats) ---- */
struct __half {
  _Float16 __x; /* IEEE binary16; conversions round to nearest even, as __float2half */
  __half() = default;
  __half(float v) : __x((_Float16)v) {}
  __half(double v) : __x((_Float16)v) {}
  __half(int v) : __x((_Float16)v) {}
  __half(unsigned v) : __x((_Float16)v) {}
  __half(long long v) : __x((_Float16)v) {}
  __half(unsigned long long v) : __x((_Float16)v) {}
  operator float() const { return (float)__x; }
};
GF_INLINE float __half2float(__half h) { return (float)h.__x; }
GF_INLINE __half __float2half(float v) { return __half(v); }

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

/* ---- built-in variables and the runtime interface (defined in the runtime library) ---- */
extern "C" {
/* blockDim/gridDim are uint3 (not dim3) so that the thread-locals need no constructor. */
extern GF_TLS uint3 threadIdx;
extern GF_TLS uint3 blockIdx;
extern GF_TLS uint3 blockDim;
extern GF_TLS uint3 gridDim;
extern GF_TLS unsigned char* gf_dynamic_shared;
int gf_syncthreads_op(int op, int pred);
unsigned long long gf_warp_shfl(unsigned mask, unsigned long long value, int src_lane);
unsigned gf_warp_vote(unsigned mask, int pred, unsigned* participants);
unsigned gf_activemask(void);
}
static const int warpSize = 32;

GF_INLINE void __syncthreads(void) { gf_syncthreads_op(0, 0); }
GF_INLINE int __syncthreads_count(int p) { return gf_syncthreads_op(1, p); }
GF_INLINE int __syncthreads_and(int p) { return gf_syncthreads_op(2, p); }
GF_INLINE int __syncthreads_or(int p) { return gf_syncthreads_op(3, p); }
GF_INLINE void __syncwarp(unsigned mask = 0xffffffffu) { gf_warp_vote(mask, 0, 0); }
GF_INLINE unsigned __ballot_sync(unsigned mask, int p) { return gf_warp_vote(mask, p, 0); }
GF_INLINE int __any_sync(unsigned mask, int p) { return gf_warp_vote(mask, p, 0) != 0; }
GF_INLINE int __all_sync(unsigned mask, int p) {
  unsigned who;
  return gf_warp_vote(mask, p, &who) == who;
}
GF_INLINE unsigned __activemask(void) { return gf_activemask(); }
GF_INLINE void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
GF_INLINE void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

GF_INLINE int gf_lane_(void) {
  return (int)((threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31u);
}
/* Shuffles move up to 8 bytes through the runtime's warp rendezvous; src -1 = own value. */
template <class T> GF_INLINE T gf_shfl_(unsigned mask, T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  unsigned long long bits = 0;
  __builtin_memcpy(&bits, &v, sizeof(T));
  bits = gf_warp_shfl(mask, bits, src);
  __builtin_memcpy(&v, &bits, sizeof(T));
  return v;
}
template <class T> GF_INLINE T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  int lane = gf_lane_();
  return gf_shfl_(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T> GF_INLINE T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = gf_lane_();
  return gf_shfl_(mask, v, (lane & (width - 1)) >= (int)delta ? lane - (int)delta : -1);
}
template <class T> GF_INLINE T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = gf_lane_();
  return gf_shfl_(mask, v, (lane & (width - 1)) + (int)delta < width ? lane + (int)delta : -1);
}
template <class T> GF_INLINE T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  int lane = gf_lane_(), src = lane ^ lane_mask;
  return gf_shfl_(mask, v, (src < 32 && src < (lane & ~(width - 1)) + width) ? src : -1);
}

/* ---- atomics: relaxed, and atomic across the OS threads that run blocks ---- */
#define GF_RLX __ATOMIC_RELAXED
#define GF_ATOMIC_INT(T)                                                                        \
  GF_INLINE T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, GF_RLX); }                 \
  GF_INLINE T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, GF_RLX); }               \
  GF_INLINE T atomicCAS(T* a, T cmp, T v) {                                                     \
    __atomic_compare_exchange_n(a, &cmp, v, false, GF_RLX, GF_RLX);                             \
    return cmp;                                                                                 \
  }                                                                                             \
  GF_INLINE T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, GF_RLX); }                 \
  GF_INLINE T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, GF_RLX); }                   \
  GF_INLINE T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, GF_RLX); }
GF_ATOMIC_INT(int)
GF_ATOMIC_INT(unsigned)
GF_ATOMIC_INT(unsigned long long)
GF_INLINE int atomicSub(int* a, int v) { return __atomic_fetch_sub(a, v, GF_RLX); }
GF_INLINE unsigned atomicSub(unsigned* a, unsigned v) { return __atomic_fetch_sub(a, v, GF_RLX); }

/* Read-modify-write through a compare-and-swap loop, for float adds and min/max. */
#define GF_ATOMIC_RMW(name, T, expr)                                                 \
  GF_INLINE T name(T* a, T v) {                                                      \
    T old;                                                                           \
    __atomic_load(a, &old, GF_RLX);                                                  \
    T nw;                                                                            \
    do {                                                                             \
      nw = (expr);                                                                   \
    } while (!__atomic_compare_exchange(a, &old, &nw, true, GF_RLX, GF_RLX));        \
    return old;                                                                      \
  }
GF_ATOMIC_RMW(atomicAdd, float, old + v)
GF_ATOMIC_RMW(atomicAdd, double, old + v)
GF_ATOMIC_RMW(atomicMax, int, old > v ? old : v)
GF_ATOMIC_RMW(atomicMin, int, old < v ? old : v)
GF_ATOMIC_RMW(atomicMax, unsigned, old > v ? old : v)
GF_ATOMIC_RMW(atomicMin, unsigned, old < v ? old : v)
GF_ATOMIC_RMW(atomicMax, long long, old > v ? old : v)
GF_ATOMIC_RMW(atomicMin, long long, old < v ? old : v)
GF_ATOMIC_RMW(atomicMax, unsigned long long, old > v ? old : v)
GF_ATOMIC_RMW(atomicMin, unsigned long long, old < v ? old : v)
GF_INLINE float atomicExch(float* a, float v) {
  float old;
  __atomic_exchange(a, &v, &old, GF_RLX);
  return old;
}

/* ---- math: declared by hand because <math.h> costs ~0.15 s per compile under g++ ---- */
#define GF_MATH1(n) float n##f(float) noexcept; double n(double) noexcept;
#define GF_MATH2(n) float n##f(float, float) noexcept; double n(double, double) noexcept;
extern "C" {
GF_MATH1(exp) GF_MATH1(exp2) GF_MATH1(exp10) GF_MATH1(expm1) GF_MATH1(log) GF_MATH1(log2)
GF_MATH1(log10) GF_MATH1(log1p) GF_MATH1(sqrt) GF_MATH1(cbrt) GF_MATH1(sin) GF_MATH1(cos)
GF_MATH1(tan) GF_MATH1(asin) GF_MATH1(acos) GF_MATH1(atan) GF_MATH1(sinh) GF_MATH1(cosh)
GF_MATH1(tanh) GF_MATH1(asinh) GF_MATH1(acosh) GF_MATH1(atanh) GF_MATH1(erf) GF_MATH1(erfc)
GF_MATH1(lgamma) GF_MATH1(tgamma) GF_MATH1(fabs) GF_MATH1(floor) GF_MATH1(ceil)
GF_MATH1(trunc) GF_MATH1(round) GF_MATH1(rint) GF_MATH1(nearbyint)
GF_MATH2(pow) GF_MATH2(atan2) GF_MATH2(fmax) GF_MATH2(fmin) GF_MATH2(fmod) GF_MATH2(copysign)
GF_MATH2(hypot) GF_MATH2(remainder) GF_MATH2(fdim)
float fmaf(float, float, float) noexcept;
double fma(double, double, double) noexcept;
float ldexpf(float, int) noexcept;
double ldexp(double, int) noexcept;
float frexpf(float, int*) noexcept;
double frexp(double, int*) noexcept;
void sincosf(float, float*, float*) noexcept;
void sincos(double, double*, double*) noexcept;
int abs(int) noexcept;
long long llabs(long long) noexcept;
}
#undef GF_MATH1
#undef GF_MATH2
#ifndef INFINITY
#define INFINITY (__builtin_inff())
#endif
#ifndef NAN
#define NAN (__builtin_nanf(""))
#endif
#ifndef HUGE_VALF
#define HUGE_VALF (__builtin_huge_valf())
#define HUGE_VAL (__builtin_huge_val())
#endif
#ifndef M_PI
#define M_PI 3.14159265358979323846
#define M_E 2.7182818284590452354
#define M_LN2 0.69314718055994530942
#define M_SQRT2 1.41421356237309504880
#define M_SQRT1_2 0.70710678118654752440
#endif

/* ---- vectorizable expf and tanhf, in float, within CUDA's bounds (2 ulp) ----
 * glibc's scalar expf/tanhf calls keep g++ from vectorizing elementwise loops (softmax, GELU,
 * sigmoid): ~20-60 ns per element. These are branch-free (with -fno-trapping-math, both sides
 * of a select may be computed), so loops calling them vectorize, eight floats per AVX2
 * register. Cody-Waite reduction and Cephes's polynomials: on every 97th float bit pattern
 * the largest error against the exact value was 1.01 ulp for expf and 1.33 ulp for tanhf
 * (CUDA documents 2 ulp for both; tests/test_emulator.py holds them to it). Not fast-math: NaN,
 * infinities, overflow to inf and underflow to subnormals/0 are right (2^n is applied in two
 * halves, so a subnormal result is rounded once). The macros send kernel code's expf/tanhf
 * here (nvcc builds use the CUDA library's). */
/* const: a call's value depends only on its argument, so g++ merges two calls on the same value
 * (a GELU and its gradient in one kernel each ask for tanh of the same x: always_inline had
 * inlined both before any merging); simd: where a long expression leaves a call out of line,
 * the loop still vectorizes, calling the function's AVX clone. */
#define GF_MATH static inline __attribute__((const, simd("notinbranch")))
GF_MATH float gf_expf(float x) {
  x = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x); /* beyond: 0 or inf; NaN stays */
  const float shifter = 12582912.0f;                  /* 1.5 * 2^23: adding it rounds to an integer */
  const float kn = x * 1.44269504088896341f + shifter;
  int32_t bits;
  __builtin_memcpy(&bits, &kn, sizeof bits);
  const float n = kn - shifter;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f; /* ln 2 in two parts: |r| <= 0.35 */
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t whole = (int32_t)((uint32_t)bits << 10) >> 10; /* n: kn's low mantissa bits */
  const int32_t half = whole >> 1;
  const int32_t e1 = (half + 127) << 23, e2 = (whole - half + 127) << 23;
  float s1, s2;
  __builtin_memcpy(&s1, &e1, sizeof s1);
  __builtin_memcpy(&s2, &e2, sizeof s2);
  return p * s1 * s2;
}
GF_MATH float gf_tanhf(float x) {
  float a = x < 0 ? -x : x;
  a = a > 9.1f ? 9.1f : a; /* tanh(9.1) rounds to 1.0f */
  const float z = a * a;   /* |x| < 0.625: an odd polynomial, no cancellation */
  const float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                        1.33314422036e-1f) * z - 3.33332819422e-1f) * z * a + a;
  const float big = 1.0f - 2.0f / (gf_expf(2.0f * a) + 1.0f);
  return __builtin_copysignf(a < 0.625f ? small : big, x);
}
#define expf gf_expf
#define tanhf gf_tanhf

GF_INLINE float rsqrtf(float x) { return 1.0f / sqrtf(x); }
GF_INLINE double rsqrt(double x) { return 1.0 / sqrt(x); }
GF_INLINE float rcbrtf(float x) { return 1.0f / cbrtf(x); }
GF_INLINE float __expf(float x) { return expf(x); }
GF_INLINE float __exp10f(float x) { return exp10f(x); }
GF_INLINE float __logf(float x) { return logf(x); }
GF_INLINE float __log2f(float x) { return log2f(x); }
GF_INLINE float __log10f(float x) { return log10f(x); }
GF_INLINE float __sinf(float x) { return sinf(x); }
GF_INLINE float __cosf(float x) { return cosf(x); }
GF_INLINE float __tanf(float x) { return tanf(x); }
GF_INLINE float __powf(float x, float y) { return powf(x, y); }
GF_INLINE void __sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
GF_INLINE float __fdividef(float x, float y) { return x / y; }
GF_INLINE float __frcp_rn(float x) { return 1.0f / x; }
GF_INLINE float __fsqrt_rn(float x) { return sqrtf(x); }
GF_INLINE float __fadd_rn(float x, float y) { return x + y; }
GF_INLINE float __fmul_rn(float x, float y) { return x * y; }
GF_INLINE float __fdiv_rn(float x, float y) { return x / y; }
GF_INLINE float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
GF_INLINE float __saturatef(float x) { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }
GF_INLINE int __float2int_rn(float x) { return (int)rintf(x); }
GF_INLINE int __float2int_rz(float x) { return (int)x; }
GF_INLINE int __float2int_rd(float x) { return (int)floorf(x); }
GF_INLINE int __float2int_ru(float x) { return (int)ceilf(x); }
GF_INLINE unsigned __float2uint_rn(float x) { return (unsigned)rintf(x); }
GF_INLINE float __int2float_rn(int x) { return (float)x; }
GF_INLINE float __uint2float_rn(unsigned x) { return (float)x; }
GF_INLINE float __double2float_rn(double x) { return (float)x; }

#define GF_MINMAX(T)                                       \
  GF_INLINE T min(T a, T b) { return a < b ? a : b; }      \
  GF_INLINE T max(T a, T b) { return a > b ? a : b; }
GF_MINMAX(int) GF_MINMAX(unsigned) GF_MINMAX(long) GF_MINMAX(unsigned long)
GF_MINMAX(long long) GF_MINMAX(unsigned long long)
GF_INLINE float min(float a, float b) { return fminf(a, b); }
GF_INLINE float max(float a, float b) { return fmaxf(a, b); }
GF_INLINE double min(double a, double b) { return fmin(a, b); }
GF_INLINE double max(double a, double b) { return fmax(a, b); }
#undef GF_MINMAX

/* CUDA's abs is overloaded; the C one alone would truncate floats silently. */
GF_INLINE long abs(long x) { return x < 0 ? -x : x; }
GF_INLINE long long abs(long long x) { return x < 0 ? -x : x; }
GF_INLINE float abs(float x) { return fabsf(x); }
GF_INLINE double abs(double x) { return fabs(x); }

#define GF_CLASSIFY(name, builtin) \
  GF_INLINE bool name(float x) { return builtin(x); } GF_INLINE bool name(double x) { return builtin(x); }
GF_CLASSIFY(isnan, __builtin_isnan) GF_CLASSIFY(isinf, __builtin_isinf)
GF_CLASSIFY(isfinite, __builtin_isfinite) GF_CLASSIFY(signbit, __builtin_signbit)
#undef GF_CLASSIFY

/* ---- bit intrinsics and reinterpretation ---- */
GF_INLINE int __popc(unsigned x) { return __builtin_popcount(x); }
GF_INLINE int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
GF_INLINE int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
GF_INLINE int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
GF_INLINE int __ffs(int x) { return __builtin_ffs(x); }
GF_INLINE int __ffsll(long long x) { return __builtin_ffsll(x); }
GF_INLINE unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
GF_INLINE unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
GF_INLINE int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
GF_INLINE unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
GF_INLINE long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
template <class To, class From> GF_INLINE To gf_bitcast_(From v) {
  To r;
  __builtin_memcpy(&r, &v, sizeof(r));
  return r;
}
GF_INLINE int __float_as_int(float x) { return gf_bitcast_<int>(x); }
GF_INLINE unsigned __float_as_uint(float x) { return gf_bitcast_<unsigned>(x); }
GF_INLINE float __int_as_float(int x) { return gf_bitcast_<float>(x); }
GF_INLINE float __uint_as_float(unsigned x) { return gf_bitcast_<float>(x); }
GF_INLINE long long __double_as_longlong(double x) { return gf_bitcast_<long long>(x); }
GF_INLINE double __longlong_as_double(long long x) { return gf_bitcast_<double>(x); }
template <class T> GF_INLINE T __ldg(const T* p) { return *p; }

/* ---- launch glue: gf_body_<k>(args) calls kernel k with its parameters unpacked ---- */
template <int...> struct gf_seq_ {};
template <int N, int... I> struct gf_mkseq_ : gf_mkseq_<N - 1, N - 1, I...> {};
template <int... I> struct gf_mkseq_<0, I...> { typedef gf_seq_<I...> type; };
template <class... A, int... I>
GF_INLINE void gf_invoke_(void (*f)(A...), void** a, gf_seq_<I...>) {
  (void)a;
  f(*static_cast<A*>(a[I])...);
}
template <class... A> static inline void gf_invoke(void (*f)(A...), void** a) {
  gf_invoke_(f, a, typename gf_mkseq_<sizeof...(A)>::type());
}
template <class... A> static inline int gf_argsizes(void (*)(A...), unsigned* out) {
  const unsigned sizes[] = {(unsigned)sizeof(A)..., 0u};
  for (unsigned i = 0; i < sizeof...(A); i++) out[i] = sizes[i];
  return (int)sizeof...(A);
}
#define GF_KERNEL_GLUE(k)                                                              \
  extern "C" GF_EXPORT void gf_body_##k(void** a) { gf_invoke(&k, a); }                \
  extern "C" GF_EXPORT int gf_argsizes_##k(unsigned* out) { return gf_argsizes(&k, out); }

/* >>> graphflow emulator runtime */
#ifdef GF_EMU_RUNTIME_IMPL
/* Built once per process into its own library (see emulator.py). */
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
/* Not <stdlib.h>: libstdc++'s wrapper declares std::abs overloads that clash with CUDA's above. */
extern "C" {
void* malloc(size_t) noexcept;
void* calloc(size_t, size_t) noexcept;
void free(void*) noexcept;
int posix_memalign(void**, size_t, size_t) noexcept;
}

#if defined(__SANITIZE_ADDRESS__)
extern "C" void __sanitizer_start_switch_fiber(void**, const void*, size_t);
extern "C" void __sanitizer_finish_switch_fiber(void*, const void**, size_t*);
extern "C" void __asan_set_error_report_callback(void (*)(const char*));
#define GF_ASAN_START(save, lo, n) __sanitizer_start_switch_fiber(save, lo, n)
#define GF_ASAN_FINISH(save, lo, n) __sanitizer_finish_switch_fiber(save, lo, n)
#define GF_STACK_BYTES (256u << 10) /* ASan frames and reports need room */
#else
#define GF_ASAN_START(save, lo, n) ((void)0)
#define GF_ASAN_FINISH(save, lo, n) ((void)0)
#define GF_STACK_BYTES (64u << 10)
#endif
#define GF_GUARD_BYTES 4096u /* PROT_NONE page under each fiber stack: overflow faults */
#define GF_MAX_BLOCK 1024u
#define GF_HIDDEN __attribute__((visibility("hidden")))

extern "C" {
GF_EXPORT __thread uint3 threadIdx __attribute__((tls_model("initial-exec")));
GF_EXPORT __thread uint3 blockIdx __attribute__((tls_model("initial-exec")));
GF_EXPORT __thread uint3 blockDim __attribute__((tls_model("initial-exec")));
GF_EXPORT __thread uint3 gridDim __attribute__((tls_model("initial-exec")));
GF_EXPORT __thread unsigned char* gf_dynamic_shared __attribute__((tls_model("initial-exec")));
}

/* Must match _Launch in emulator.py. */
struct gf_launch {
  const char* name;
  void (*body)(void**);
  void** args;
  unsigned grid[3], block[3];
  unsigned long long shared_bytes;
  int fibers, nthreads, shuffle, kind; /* kind: 0 a kernel, GF_HOST_CALL see gf_emu_launch_seq */
  unsigned long long seed;
};

enum { GF_RUN, GF_AT_BLOCK, GF_AT_WARP, GF_DONE };
struct gf_fiber {
  void* sp;
  int state, pred;
  unsigned mask, gen;                /* warp rendezvous: lanes released together share gen */
  unsigned long long deposit, snap;  /* value offered / value visible after the release */
  uint3 tid;
  void* fake; /* ASan fake stack */
  char* stack;
#if !defined(__x86_64__)
  ucontext_t uc;
#endif
};
struct gf_worker { /* one per OS thread, reused across launches */
  void* sched_sp;
  gf_fiber* fib;
  unsigned* order;
  char* stacks;
  size_t stacks_bytes;
  unsigned nstacks, nthr, gen;
  int fiber_mode, bar_count, bar_n;
  gf_fiber* cur;
  const gf_launch* p;
  unsigned long long rng;
  unsigned fpenv[2];
  const void* sched_lo;
  size_t sched_n;
  void* sched_fake;
#if !defined(__x86_64__)
  ucontext_t sched_uc;
#endif
};
static __thread gf_worker* gf_tw __attribute__((tls_model("initial-exec")));
static const char* volatile gf_cur_kernel;
static char gf_err_msg[1024];
static int gf_err_flag;

static void gf_fail(const char* fmt, ...) {
  if (__atomic_exchange_n(&gf_err_flag, 1, __ATOMIC_ACQ_REL)) return; /* first error wins */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(gf_err_msg, sizeof gf_err_msg, fmt, ap);
  va_end(ap);
}

/* ---- context switch ---- */
extern "C" GF_HIDDEN void gf_fiber_main(void);
#if defined(__x86_64__)
/* Saves callee-saved registers, mxcsr and the x87 control word on the old stack, stores its
 * sp in *save and resumes the stack `to`. ~30x cheaper than swapcontext (no syscall). */
extern "C" GF_HIDDEN void gf_switch(void** save, void* to);
extern "C" GF_HIDDEN void gf_fiber_entry(void);
asm(R"(
  .text
  .p2align 4
  .globl gf_switch
  .hidden gf_switch
  .type gf_switch, @function
gf_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gf_switch, .-gf_switch
  .p2align 4
  .globl gf_fiber_entry
  .hidden gf_fiber_entry
  .type gf_fiber_entry, @function
gf_fiber_entry:
  call gf_fiber_main
  ud2
  .size gf_fiber_entry, .-gf_fiber_entry
)");
static void gf_fiber_prepare(gf_worker* w, gf_fiber* f) {
  /* Frame popped by gf_switch: fp env, r15..rbp, return address (at 8 mod 16, so the
   * call in gf_fiber_entry leaves gf_fiber_main with an ABI-aligned stack). */
  void** sp = (void**)(f->stack + (GF_STACK_BYTES - GF_GUARD_BYTES) - 64);
  memset(sp, 0, 64);
  memcpy(sp, w->fpenv, 8);
  sp[7] = (void*)&gf_fiber_entry;
  f->sp = sp;
}
#define GF_TO_FIBER(w, f) gf_switch(&(w)->sched_sp, (f)->sp)
#define GF_TO_SCHED(w, f) gf_switch(&(f)->sp, (w)->sched_sp)
#else /* portable fallback */
static void gf_fiber_prepare(gf_worker*, gf_fiber* f) {
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack;
  f->uc.uc_stack.ss_size = GF_STACK_BYTES - GF_GUARD_BYTES;
  f->uc.uc_link = 0;
  makecontext(&f->uc, gf_fiber_main, 0);
}
#define GF_TO_FIBER(w, f) swapcontext(&(w)->sched_uc, &(f)->uc)
#define GF_TO_SCHED(w, f) swapcontext(&(f)->uc, &(w)->sched_uc)
#endif

static void gf_resume(gf_worker* w, gf_fiber* f) {
  w->cur = f;
  threadIdx = f->tid;
  GF_ASAN_START(&w->sched_fake, f->stack, GF_STACK_BYTES - GF_GUARD_BYTES);
  GF_TO_FIBER(w, f);
  GF_ASAN_FINISH(w->sched_fake, 0, 0);
}
static void gf_yield(gf_worker* w, int state) {
  gf_fiber* f = w->cur;
  f->state = state;
  GF_ASAN_START(&f->fake, w->sched_lo, w->sched_n);
  GF_TO_SCHED(w, f);
  GF_ASAN_FINISH(f->fake, 0, 0);
}
extern "C" GF_HIDDEN __attribute__((used)) void gf_fiber_main(void) {
  gf_worker* w = gf_tw;
  GF_ASAN_FINISH(0, &w->sched_lo, &w->sched_n);
  w->p->body(w->p->args);
  gf_fiber* f = w->cur;
  f->state = GF_DONE;
  GF_ASAN_START(0, w->sched_lo, w->sched_n);
  GF_TO_SCHED(w, f);
  __builtin_trap(); /* a finished fiber is never resumed */
}

static int gf_ensure_stacks(gf_worker* w, unsigned n) {
  if (w->nstacks >= n) return 1;
  unsigned want = 32;
  while (want < n) want *= 2;
  if (w->stacks) munmap(w->stacks, w->stacks_bytes);
  w->stacks_bytes = (size_t)want * GF_STACK_BYTES;
  void* m = mmap(0, w->stacks_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    w->stacks = 0;
    w->nstacks = 0;
    return 0;
  }
  w->stacks = (char*)m;
  w->nstacks = want;
  for (unsigned i = 0; i < want; i++) {
    mprotect(w->stacks + (size_t)i * GF_STACK_BYTES, GF_GUARD_BYTES, PROT_NONE);
    w->fib[i].stack = w->stacks + (size_t)i * GF_STACK_BYTES + GF_GUARD_BYTES;
  }
  return 1;
}

static gf_worker* gf_worker_get(void) {
  if (!gf_tw) {
    gf_worker* w = (gf_worker*)calloc(1, sizeof(gf_worker));
    w->fib = (gf_fiber*)calloc(GF_MAX_BLOCK, sizeof(gf_fiber));
    w->order = (unsigned*)malloc(GF_MAX_BLOCK * sizeof(unsigned));
    gf_tw = w;
  }
  return gf_tw;
}

static unsigned long long gf_splitmix(unsigned long long* s) {
  unsigned long long z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static void gf_permute(gf_worker* w, unsigned n) {
  for (unsigned i = 0; i < n; i++) w->order[i] = i;
  for (unsigned i = n; i > 1; i--) {
    unsigned j = (unsigned)(gf_splitmix(&w->rng) % i), t = w->order[i - 1];
    w->order[i - 1] = w->order[j];
    w->order[j] = t;
  }
}

static void gf_not_fiber(gf_worker* w, const char* what) {
  gf_fail("kernel '%s' reached %s but the emulator ran its threads as a plain loop "
          "(the barrier scan in emulator.py missed it)", w->p->name, what);
}

/* ---- barriers and warp operations called from kernels ---- */
extern "C" GF_EXPORT int gf_syncthreads_op(int op, int pred) {
  gf_worker* w = gf_tw;
  int count = pred != 0, n = 1;
  if (w->fiber_mode) {
    w->cur->pred = pred != 0;
    gf_yield(w, GF_AT_BLOCK);
    count = w->bar_count; /* valid until the next release, which needs this thread again */
    n = w->bar_n;
  } else if (w->nthr > 1) {
    gf_not_fiber(w, "__syncthreads");
  }
  return op == 1 ? count : op == 2 ? count == n : op == 3 ? count > 0 : 0;
}
static gf_fiber* gf_warp_wait(gf_worker* w, unsigned mask, unsigned long long v) {
  gf_fiber* f = w->cur;
  f->mask = mask;
  f->deposit = v;
  gf_yield(w, GF_AT_WARP);
  return f;
}
extern "C" GF_EXPORT unsigned long long gf_warp_shfl(unsigned mask, unsigned long long v, int src) {
  gf_worker* w = gf_tw;
  if (!w->fiber_mode) {
    if (w->nthr > 1) gf_not_fiber(w, "a warp shuffle");
    return v;
  }
  gf_fiber* f = gf_warp_wait(w, mask, v);
  if (src < 0) return v;
  unsigned i = ((unsigned)(f - w->fib) & ~31u) + (unsigned)src;
  return (i < w->nthr && w->fib[i].gen == f->gen) ? w->fib[i].snap : v;
}
extern "C" GF_EXPORT unsigned gf_warp_vote(unsigned mask, int pred, unsigned* participants) {
  gf_worker* w = gf_tw;
  unsigned ballot = 0, who = 0;
  if (!w->fiber_mode) {
    if (w->nthr > 1) gf_not_fiber(w, "a warp vote or __syncwarp");
    ballot = pred != 0;
    who = 1;
  } else {
    gf_fiber* f = gf_warp_wait(w, mask, pred != 0);
    unsigned base = (unsigned)(f - w->fib) & ~31u;
    for (unsigned l = 0; l < 32 && base + l < w->nthr; l++) {
      const gf_fiber* g = &w->fib[base + l];
      if (g->gen == f->gen) {
        who |= 1u << l;
        if (g->snap) ballot |= 1u << l;
      }
    }
  }
  if (participants) *participants = who;
  return ballot;
}
extern "C" GF_EXPORT unsigned gf_activemask(void) {
  gf_worker* w = gf_tw;
  if (!w->fiber_mode) return 1u;
  unsigned base = (unsigned)(w->cur - w->fib) & ~31u, m = 0;
  for (unsigned l = 0; l < 32 && base + l < w->nthr; l++)
    if (w->fib[base + l].state != GF_DONE) m |= 1u << l;
  return m;
}

/* ---- running a block ---- */
static void gf_run_fibers(gf_worker* w) {
  const unsigned n = w->nthr;
  const int shuffle = w->p->shuffle;
  for (unsigned i = 0; i < n; i++) {
    w->fib[i].state = GF_RUN;
    w->fib[i].gen = 0;
    gf_fiber_prepare(w, &w->fib[i]);
  }
  for (;;) {
    /* Run every runnable thread until it blocks; then release whatever can go on. */
    if (shuffle) gf_permute(w, n);
    for (unsigned k = 0; k < n; k++) {
      gf_fiber* f = &w->fib[shuffle ? w->order[k] : k];
      if (f->state == GF_RUN) gf_resume(w, f);
    }
    int released = 0, count = 0;
    unsigned alive = 0, at_block = 0;
    for (unsigned base = 0; base < n; base += 32) {
      unsigned lanes = n - base < 32 ? n - base : 32, live = 0, waiting = 0, go = 0;
      for (unsigned l = 0; l < lanes; l++) {
        const gf_fiber* f = &w->fib[base + l];
        if (f->state != GF_DONE) live |= 1u << l;
        if (f->state == GF_AT_WARP) waiting |= 1u << l;
        if (f->state == GF_AT_BLOCK) {
          at_block++;
          count += f->pred;
        }
      }
      alive += (unsigned)__builtin_popcount(live);
      /* A waiting lane goes on once every live lane named in its mask is waiting too. */
      for (unsigned l = 0; l < lanes; l++)
        if ((waiting >> l & 1u) && !(w->fib[base + l].mask & live & ~waiting)) go |= 1u << l;
      if (go) {
        unsigned g = ++w->gen;
        for (unsigned l = 0; l < lanes; l++) {
          if (!(go >> l & 1u)) continue;
          gf_fiber* f = &w->fib[base + l];
          f->snap = f->deposit;
          f->gen = g;
          f->state = GF_RUN;
        }
        released = 1;
      }
    }
    if (released) continue;
    if (alive == 0) return;
    if (at_block == alive) {
      w->bar_count = count;
      w->bar_n = (int)alive;
      for (unsigned i = 0; i < n; i++)
        if (w->fib[i].state == GF_AT_BLOCK) w->fib[i].state = GF_RUN;
      continue;
    }
    gf_fail("kernel '%s', block (%u,%u,%u): threads wait at different barriers (a __syncthreads "
            "or warp operation that not all threads of the block or warp reach)",
            w->p->name, blockIdx.x, blockIdx.y, blockIdx.z);
    return;
  }
}

static void gf_run_block(gf_worker* w, unsigned long long b) {
  const gf_launch* p = w->p;
  blockIdx.x = (unsigned)(b % p->grid[0]);
  blockIdx.y = (unsigned)(b / p->grid[0] % p->grid[1]);
  blockIdx.z = (unsigned)(b / ((unsigned long long)p->grid[0] * p->grid[1]));
  if (p->shuffle) {
    w->rng = p->seed ^ (b * 0xd1b54a32d192ed03ull);
    if (gf_dynamic_shared) memset(gf_dynamic_shared, 0xff, p->shared_bytes); /* expose stale reads */
  }
  if (w->fiber_mode) {
    gf_run_fibers(w);
  } else if (p->shuffle) {
    gf_permute(w, w->nthr);
    for (unsigned k = 0; k < w->nthr; k++) {
      threadIdx = w->fib[w->order[k]].tid;
      p->body(p->args);
    }
  } else {
    for (unsigned z = 0; z < p->block[2]; z++)
      for (unsigned y = 0; y < p->block[1]; y++)
        for (unsigned x = 0; x < p->block[0]; x++) {
          threadIdx.x = x;
          threadIdx.y = y;
          threadIdx.z = z;
          p->body(p->args);
        }
  }
}

static unsigned long long gf_next_block, gf_total_blocks;

static void gf_work(const gf_launch* p) {
  gf_worker* w = gf_worker_get();
  w->p = p;
  w->nthr = p->block[0] * p->block[1] * p->block[2];
  w->fiber_mode = p->fibers != 0;
  blockDim.x = p->block[0], blockDim.y = p->block[1], blockDim.z = p->block[2];
  gridDim.x = p->grid[0], gridDim.y = p->grid[1], gridDim.z = p->grid[2];
  for (unsigned i = 0; i < w->nthr; i++) {
    w->fib[i].tid.x = i % p->block[0];
    w->fib[i].tid.y = i / p->block[0] % p->block[1];
    w->fib[i].tid.z = i / (p->block[0] * p->block[1]);
  }
  if (w->fiber_mode) {
    if (!gf_ensure_stacks(w, w->nthr)) {
      gf_fail("kernel '%s': cannot map fiber stacks", p->name);
      return;
    }
#if defined(__x86_64__)
    unsigned short fcw; /* fibers start with the launching thread's rounding and FTZ modes */
    asm volatile("stmxcsr %0" : "=m"(w->fpenv[0]));
    asm volatile("fnstcw %0" : "=m"(fcw));
    w->fpenv[1] = fcw;
#endif
  }
  void* dyn = 0; /* exact size, so AddressSanitizer sees overruns of dynamic shared memory */
  if (p->shared_bytes && posix_memalign(&dyn, 64, p->shared_bytes)) {
    gf_fail("kernel '%s': cannot allocate %llu bytes of shared memory", p->name, p->shared_bytes);
    return;
  }
  gf_dynamic_shared = (unsigned char*)dyn;
  for (;;) {
    if (__atomic_load_n(&gf_err_flag, __ATOMIC_RELAXED)) break;
    unsigned long long b = __atomic_fetch_add(&gf_next_block, 1, __ATOMIC_RELAXED);
    if (b >= gf_total_blocks) break;
    gf_run_block(w, b);
  }
  gf_dynamic_shared = 0;
  free(dyn);
}

/* ---- a process-wide pool of OS threads; the launching thread works too ---- */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t wake, done;
  unsigned spawned, want, finished;
  unsigned long long epoch;
  const gf_launch* job;
} gf_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0};
static pthread_mutex_t gf_launch_mu = PTHREAD_MUTEX_INITIALIZER;

struct gf_pool_arg {
  unsigned id;
  unsigned long long epoch;
};
static void* gf_pool_main(void* arg) {
  gf_pool_arg a = *(gf_pool_arg*)arg;
  free(arg);
  for (;;) {
    pthread_mutex_lock(&gf_pool.mu);
    while (gf_pool.epoch == a.epoch) pthread_cond_wait(&gf_pool.wake, &gf_pool.mu);
    a.epoch = gf_pool.epoch;
    const gf_launch* job = gf_pool.job;
    unsigned want = gf_pool.want;
    pthread_mutex_unlock(&gf_pool.mu);
    if (a.id + 1 >= want) continue;
    gf_work(job);
    pthread_mutex_lock(&gf_pool.mu);
    if (++gf_pool.finished == want - 1) pthread_cond_signal(&gf_pool.done);
    pthread_mutex_unlock(&gf_pool.mu);
  }
  return 0;
}
static unsigned gf_pool_start(const gf_launch* p, unsigned nt) {
  pthread_mutex_lock(&gf_pool.mu);
  while (gf_pool.spawned < nt - 1) {
    gf_pool_arg* a = (gf_pool_arg*)malloc(sizeof *a);
    a->id = gf_pool.spawned;
    a->epoch = gf_pool.epoch;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, gf_pool_main, a);
    pthread_attr_destroy(&attr);
    if (rc) {
      free(a);
      break;
    }
    gf_pool.spawned++;
  }
  if (nt > gf_pool.spawned + 1) nt = gf_pool.spawned + 1;
  gf_pool.job = p;
  gf_pool.want = nt;
  gf_pool.finished = 0;
  gf_pool.epoch++;
  pthread_cond_broadcast(&gf_pool.wake);
  pthread_mutex_unlock(&gf_pool.mu);
  return nt;
}
static void gf_pool_wait(unsigned nt) {
  pthread_mutex_lock(&gf_pool.mu);
  while (gf_pool.finished < nt - 1) pthread_cond_wait(&gf_pool.done, &gf_pool.mu);
  pthread_mutex_unlock(&gf_pool.mu);
}

extern "C" GF_EXPORT int gf_emu_launch(const gf_launch* p) {
  pthread_mutex_lock(&gf_launch_mu);
  gf_err_flag = 0;
  gf_err_msg[0] = 0;
  unsigned long long total = (unsigned long long)p->grid[0] * p->grid[1] * p->grid[2];
  unsigned long long nthr = (unsigned long long)p->block[0] * p->block[1] * p->block[2];
  if (nthr == 0 || nthr > GF_MAX_BLOCK) {
    gf_fail("kernel '%s': block of %llu threads (1 to %u allowed)", p->name, nthr, GF_MAX_BLOCK);
  } else if (total) {
    unsigned nt = p->nthreads < 1 ? 1u : p->nthreads > 256 ? 256u : (unsigned)p->nthreads;
    if (nt > total) nt = (unsigned)total;
    gf_cur_kernel = p->name;
    gf_next_block = 0;
    gf_total_blocks = total;
    if (nt > 1) nt = gf_pool_start(p, nt);
    gf_work(p);
    if (nt > 1) gf_pool_wait(nt);
    gf_cur_kernel = 0;
  }
  int rc = gf_err_flag ? -1 : 0;
  pthread_mutex_unlock(&gf_launch_mu);
  return rc;
}
/* A launch table run in one native call (a whole graph step): launches in order, stopping
   at the first that fails. Returns 0, or 1 + the index of the failed launch. An entry of kind
   GF_HOST_CALL is a host function, int body(void* args, char* error, int error_bytes) (e.g. an
   MPI collective), called once on this thread: nonzero means it failed, with the reason in error. */
enum { GF_HOST_CALL = 1 };
typedef int (*gf_host_call)(void*, char*, int);
extern "C" GF_EXPORT int gf_emu_launch_seq(const gf_launch* p, int n) {
  for (int i = 0; i < n; i++) {
    if (p[i].kind == GF_HOST_CALL) {
      gf_err_msg[0] = 0;
      if (((gf_host_call)(void*)p[i].body)((void*)p[i].args, gf_err_msg, (int)sizeof gf_err_msg)) {
        if (!gf_err_msg[0]) snprintf(gf_err_msg, sizeof gf_err_msg, "host call '%s' failed", p[i].name);
        return i + 1;
      }
    } else if (gf_emu_launch(p + i) != 0) {
      return i + 1;
    }
  }
  return 0;
}
extern "C" GF_EXPORT const char* gf_emu_error(void) { return gf_err_msg; }

#if defined(__SANITIZE_ADDRESS__)
static void gf_asan_report(const char*) {
  const char* k = gf_cur_kernel;
  if (k)
    fprintf(stderr, "graphflow emulator: the memory error above happened in kernel '%s' "
            "(blockIdx=(%u,%u,%u), threadIdx=(%u,%u,%u))\n", k, blockIdx.x, blockIdx.y,
            blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
}
#endif
static void gf_after_fork_child(void) { /* the pool's threads do not exist in the child */
  pthread_mutex_init(&gf_pool.mu, 0);
  pthread_cond_init(&gf_pool.wake, 0);
  pthread_cond_init(&gf_pool.done, 0);
  pthread_mutex_init(&gf_launch_mu, 0);
  gf_pool.spawned = 0;
}
__attribute__((constructor)) static void gf_runtime_init(void) {
  pthread_atfork(0, 0, gf_after_fork_child);
#if defined(__SANITIZE_ADDRESS__)
  __asan_set_error_report_callback(gf_asan_report);
#endif
}
#endif /* GF_EMU_RUNTIME_IMPL */
/* <<< graphflow emulator runtime */

#endif /* __CUDACC__ */
/* >>> graphflow cpu gemm */
/* The cpu GEMM schedule's building blocks (codegen/emit/gemm.py, CpuTiling): packing strided
 * operands into panels, and the 6 x (2 vectors) register tile over a row panel. Written once,
 * for both compilers: nvcc defines them in every unit (the schedule never runs on a GPU, but its
 * kernels stay valid CUDA); g++ compiles them once, into the emulator's runtime, and a kernel
 * calls them there: a GEMM kernel then leaves g++ little more than its epilogue to optimize.
 * NR = 2 vectors = 16 floats or int32s, 8 doubles or int64s; a strip of B is [kc][NR]. */
#ifndef GF_CPU_GEMM_DEFINED
#define GF_CPU_GEMM_DEFINED
#define GF_GEMM_MR 6
#define GF_GEMM_NV 2
#if defined(__CUDACC__) || defined(GF_EMU_RUNTIME_IMPL)
#ifdef __CUDACC__
#define GF_GEMM_API __device__ inline
#else
#define GF_GEMM_API GF_EXPORT
#endif
/* Ct[i][j] += sum over kk < kc of Ap[kk][i] * strip_{j / NR}[kk][j % NR], for the MR rows of
 * Ct (row stride ldc) and the strips of Bp (each `strip` apart) covering `cols` columns. */
template <typename T>
GF_GEMM_API void gf_gemm_panel(const T* __restrict__ Ap, const T* __restrict__ Bp, long long strip,
                               T* __restrict__ Ct, int ldc, int kc, int cols) {
  const int lanes = 32 / (int)sizeof(T), nr = GF_GEMM_NV * lanes;
  for (int jp = 0; jp * nr < cols; ++jp) {
    T* __restrict__ ct = Ct + jp * nr;
    const T* __restrict__ bp = Bp + jp * strip;
    gf_simd<T> acc[GF_GEMM_MR][GF_GEMM_NV];
#pragma unroll
    for (int i = 0; i < GF_GEMM_MR; ++i)
#pragma unroll
      for (int v = 0; v < GF_GEMM_NV; ++v) acc[i][v] = gf_simd_load(ct + i * ldc + v * lanes);
    for (int kk = 0; kk < kc; ++kk) {
      gf_simd<T> b[GF_GEMM_NV];
#pragma unroll
      for (int v = 0; v < GF_GEMM_NV; ++v) b[v] = gf_simd_load(bp + kk * nr + v * lanes);
#pragma unroll
      for (int i = 0; i < GF_GEMM_MR; ++i)
#pragma unroll
        for (int v = 0; v < GF_GEMM_NV; ++v) gf_simd_fma(acc[i][v], Ap[kk * GF_GEMM_MR + i], b[v]);
    }
#pragma unroll
    for (int i = 0; i < GF_GEMM_MR; ++i)
#pragma unroll
      for (int v = 0; v < GF_GEMM_NV; ++v) gf_simd_store(ct + i * ldc + v * lanes, acc[i][v]);
  }
}
/* Strips of B(k, n) = B[k * ks + n * ns] (ks or ns is 1) for k in [k0, k0 + kc) and n in
 * [n0, n0 + cols): strip jp at Bp + jp * strip, zero past column `cols`; the contiguous
 * coordinate innermost, so reads have unit stride. Unless null, col_sums[j] adds up column j
 * of what was packed (a bias gradient's column sums, while the strip is in cache). */
template <typename T>
GF_GEMM_API void gf_gemm_pack_b(T* __restrict__ Bp, long long strip, const T* __restrict__ B,
                                long long ks, long long ns, long long k0, int kc, long long n0,
                                int cols, T* __restrict__ col_sums) {
  const int nr = GF_GEMM_NV * 32 / (int)sizeof(T);
  for (int jp = 0; jp * nr < cols; ++jp) {
    T* __restrict__ dst = Bp + jp * strip;
    const int width = cols - jp * nr < nr ? cols - jp * nr : nr;
    const T* __restrict__ src = B + k0 * ks + (n0 + jp * nr) * ns;
    if (ns == 1) {
      for (int kk = 0; kk < kc; ++kk) {
        if (width == nr) {
          for (int j = 0; j < nr; ++j) dst[kk * nr + j] = src[kk * ks + j];
        } else {
          for (int j = 0; j < nr; ++j) dst[kk * nr + j] = j < width ? src[kk * ks + j] : (T)0;
        }
      }
    } else {
      for (int j = 0; j < nr; ++j) {
        if (j < width) {
          for (int kk = 0; kk < kc; ++kk) dst[kk * nr + j] = src[j * ns + kk];
        } else {
          for (int kk = 0; kk < kc; ++kk) dst[kk * nr + j] = (T)0;
        }
      }
    }
    if (col_sums)
      for (int kk = 0; kk < kc; ++kk)
        for (int j = 0; j < nr; ++j) col_sums[jp * nr + j] += dst[kk * nr + j];
  }
}
/* The micro-panel Ap[kk][i] = A(m + i, k0 + kk) of A(m, k) = A[m * ms + k * ks] (ms or ks is
 * 1), zero for rows m + i >= M. */
template <typename T>
GF_GEMM_API void gf_gemm_pack_a(T* __restrict__ Ap, const T* __restrict__ A, long long ms,
                                long long ks, long long m, long long M, long long k0, int kc) {
  const T* __restrict__ src = A + m * ms + k0 * ks;
  if (ks == 1) {
    for (int i = 0; i < GF_GEMM_MR; ++i) {
      if (m + i < M) {
        for (int kk = 0; kk < kc; ++kk) Ap[kk * GF_GEMM_MR + i] = src[i * ms + kk];
      } else {
        for (int kk = 0; kk < kc; ++kk) Ap[kk * GF_GEMM_MR + i] = (T)0;
      }
    }
  } else {
    for (int kk = 0; kk < kc; ++kk)
      for (int i = 0; i < GF_GEMM_MR; ++i)
        Ap[kk * GF_GEMM_MR + i] = m + i < M ? src[kk * ks + i] : (T)0;
  }
}
#ifndef __CUDACC__ /* the runtime: one copy of each, for the GEMM's element types */
#define GF_GEMM_INSTANTIATE(T)                                                                 \
  template void gf_gemm_panel<T>(const T*, const T*, long long, T*, int, int, int);             \
  template void gf_gemm_pack_b<T>(T*, long long, const T*, long long, long long, long long, int, \
                                  long long, int, T*);                                          \
  template void gf_gemm_pack_a<T>(T*, const T*, long long, long long, long long, long long,     \
                                  long long, int);
GF_GEMM_INSTANTIATE(float)
GF_GEMM_INSTANTIATE(double)
GF_GEMM_INSTANTIATE(int)
GF_GEMM_INSTANTIATE(long long)
#endif
#else /* a kernel compiled by g++: the runtime defines them */
template <typename T>
GF_EXPORT void gf_gemm_panel(const T*, const T*, long long, T*, int, int, int);
template <typename T>
GF_EXPORT void gf_gemm_pack_b(T*, long long, const T*, long long, long long, long long, int,
                              long long, int, T*);
template <typename T>
GF_EXPORT void gf_gemm_pack_a(T*, const T*, long long, long long, long long, long long,
                              long long, int);
#endif
#endif
/* <<< graphflow cpu gemm */
#endif /* GRAPHFLOW_CUDA_SHIM_H */
