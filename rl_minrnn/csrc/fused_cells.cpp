// minGRU / minLSTM training kernels for the CPU: the recurrence coefficients and the step recurrence
// h_t = a_t * h_{t-1} + b_t in one pass over memory, forward and backward (rl_minrnn/fused.py builds and
// calls this; the equations are in rl_minrnn/cells.py).
//
// Every value is computed with the operations, in the order, that the PyTorch path computes it with
// (cells._MinGRUCoefficients / _MinLSTMCoefficients, then scan._ChunkedScan at chunk 1), so that the
// results are the same to the bit where torch vectorises the same elements:
//   sigmoid(x)    = 1 / (1 + exp(0 - x)), exp = SLEEF's expf (u10), as torch's vectorised sigmoid;
//   logsigmoid(x) = min(x, 0) - log1p(exp(-|x|)), as torch's log_sigmoid kernel;
//   maximum / minimum propagate NaN, as torch.maximum / torch.minimum;
//   addcmul(b, a, h) = fma(a, h, b), one rounding, as torch's CPU addcmul.
// Elements past the last full vector of 8 use the scalar forms with the C library's expf / log1pf, as
// torch's loops do for their tails; torch's vector width may differ (16 with AVX-512, in pairs), so
// widths that are not a multiple of 32 can differ from it in the last bit of those elements.
// Needs AVX2 and FMA (compiled with -mavx2 -mfma); rl_minrnn/fused.py checks the CPU first.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <vector>

extern "C" __m256 Sleef_expf8_u10(__m256);    // exported by libtorch_cpu (torch's own vector exp)
extern "C" __m256 Sleef_log1pf8_u10(__m256);

namespace {

using V = __m256;
constexpr int64_t kLanes = 8;

inline V vzero() { return _mm256_setzero_ps(); }
inline V vone() { return _mm256_set1_ps(1.f); }
inline V vneg(V x) { return _mm256_xor_ps(x, _mm256_set1_ps(-0.f)); }
inline V vsigmoid(V x) { return _mm256_div_ps(vone(), _mm256_add_ps(Sleef_expf8_u10(_mm256_sub_ps(vzero(), x)), vone())); }
inline V vmaximum(V a, V b) { return _mm256_or_ps(_mm256_max_ps(a, b), _mm256_cmp_ps(a, b, _CMP_UNORD_Q)); }
inline V vminimum(V a, V b) { return _mm256_or_ps(_mm256_min_ps(a, b), _mm256_cmp_ps(a, b, _CMP_UNORD_Q)); }
inline V vlogsigmoid(V x) {
  V abs_x = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
  return _mm256_sub_ps(vminimum(x, vzero()), Sleef_log1pf8_u10(Sleef_expf8_u10(vneg(abs_x))));
}
// g'(k_h) = max(1[k_h >= 0], s (1 - s)) with s = sigmoid(k_h)
inline V vg_derivative(V k_h, V s) {
  V step = _mm256_and_ps(_mm256_cmp_ps(k_h, vzero(), _CMP_GE_OQ), vone());
  return vmaximum(step, _mm256_mul_ps(s, _mm256_sub_ps(vone(), s)));
}

inline float ssigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
inline float smaximum(float a, float b) { return (std::isnan(a) || std::isnan(b)) ? NAN : (a > b ? a : b); }
inline float sminimum(float a, float b) { return (std::isnan(a) || std::isnan(b)) ? NAN : (a < b ? a : b); }
inline float slogsigmoid(float x) { return sminimum(x, 0.f) - std::log1p(std::exp(-std::abs(x))); }
inline float sg_derivative(float k_h, float s) { return smaximum(k_h >= 0.f ? 1.f : 0.f, s * (1.f - s)); }

// The slots both cells save: a, m (the factor of the candidate in b), the candidate, g'(k_h).
inline void vstore_common(float* slots, int64_t H, int64_t j, V a, V m, V candidate, V k_h, V s) {
  _mm256_storeu_ps(slots + j, a);
  _mm256_storeu_ps(slots + H + j, m);
  _mm256_storeu_ps(slots + 2 * H + j, candidate);
  _mm256_storeu_ps(slots + 3 * H + j, vg_derivative(k_h, s));
}
inline void sstore_common(float* slots, int64_t H, int64_t j, float a, float m, float candidate, float k_h, float s) {
  slots[j] = a; slots[H + j] = m; slots[2 * H + j] = candidate; slots[3 * H + j] = sg_derivative(k_h, s);
}

// What the backward pass needs, per element, in slots of H numbers per (b, t) row:
// minGRU a, z, candidate, g'; minLSTM a, i', candidate, g', sigmoid(-k_i), sigmoid(-k_f).
// The recurrence's b is m * candidate with m = z (minGRU) or i' (minLSTM).
struct MinGRU {
  static constexpr int kProjections = 2, kSlots = 4;
  // k: the row's pre-activations [k_z | k_h]; writes a, b and (when saving) the slots
  static void vcoefficients(const float* k, int64_t H, int64_t j, V& a, V& b, float* slots) {
    V k_z = _mm256_loadu_ps(k + j), k_h = _mm256_loadu_ps(k + H + j);
    V z = vsigmoid(k_z), s = vsigmoid(k_h);
    a = vsigmoid(vneg(k_z));
    V candidate = vmaximum(_mm256_add_ps(k_h, _mm256_set1_ps(0.5f)), s);
    b = _mm256_mul_ps(z, candidate);
    if (slots) vstore_common(slots, H, j, a, z, candidate, k_h, s);
  }
  static void scoefficients(const float* k, int64_t H, int64_t j, float& a, float& b, float* slots) {
    float k_z = k[j], k_h = k[H + j];
    float z = ssigmoid(k_z), s = ssigmoid(k_h);
    a = ssigmoid(-k_z);
    float candidate = smaximum(k_h + 0.5f, s);
    b = z * candidate;
    if (slots) sstore_common(slots, H, j, a, z, candidate, k_h, s);
  }
  // dL/d(the gate's pre-activation) -> the row's gradient [dk_z | dk_h]
  static void vgate_grads(V grad_d, V grad_h, const float*, int64_t H, int64_t j, float* grad_k) {
    _mm256_storeu_ps(grad_k + j, grad_d);
    _mm256_storeu_ps(grad_k + H + j, grad_h);
  }
  static void sgate_grads(float grad_d, float grad_h, const float*, int64_t H, int64_t j, float* grad_k) {
    grad_k[j] = grad_d;
    grad_k[H + j] = grad_h;
  }
};

struct MinLSTM {
  static constexpr int kProjections = 3, kSlots = 6;
  static void vcoefficients(const float* k, int64_t H, int64_t j, V& a, V& b, float* slots) {
    V k_f = _mm256_loadu_ps(k + j), k_i = _mm256_loadu_ps(k + H + j), k_h = _mm256_loadu_ps(k + 2 * H + j);
    V d = _mm256_sub_ps(vlogsigmoid(k_i), vlogsigmoid(k_f));
    a = vsigmoid(vneg(d));
    V i = vsigmoid(d), s = vsigmoid(k_h);
    V candidate = vmaximum(_mm256_add_ps(k_h, _mm256_set1_ps(0.5f)), s);
    b = _mm256_mul_ps(i, candidate);
    if (slots) {
      vstore_common(slots, H, j, a, i, candidate, k_h, s);
      _mm256_storeu_ps(slots + 4 * H + j, vsigmoid(vneg(k_i)));
      _mm256_storeu_ps(slots + 5 * H + j, vsigmoid(vneg(k_f)));
    }
  }
  static void scoefficients(const float* k, int64_t H, int64_t j, float& a, float& b, float* slots) {
    float k_f = k[j], k_i = k[H + j], k_h = k[2 * H + j];
    float d = slogsigmoid(k_i) - slogsigmoid(k_f);
    a = ssigmoid(-d);
    float i = ssigmoid(d), s = ssigmoid(k_h);
    float candidate = smaximum(k_h + 0.5f, s);
    b = i * candidate;
    if (slots) {
      sstore_common(slots, H, j, a, i, candidate, k_h, s);
      slots[4 * H + j] = ssigmoid(-k_i); slots[5 * H + j] = ssigmoid(-k_f);
    }
  }
  // dk_f = -(dL/dd sigmoid(-k_f)), dk_i = dL/dd sigmoid(-k_i)
  static void vgate_grads(V grad_d, V grad_h, const float* slots, int64_t H, int64_t j, float* grad_k) {
    _mm256_storeu_ps(grad_k + j, vneg(_mm256_mul_ps(grad_d, _mm256_loadu_ps(slots + 5 * H + j))));
    _mm256_storeu_ps(grad_k + H + j, _mm256_mul_ps(grad_d, _mm256_loadu_ps(slots + 4 * H + j)));
    _mm256_storeu_ps(grad_k + 2 * H + j, grad_h);
  }
  static void sgate_grads(float grad_d, float grad_h, const float* slots, int64_t H, int64_t j, float* grad_k) {
    grad_k[j] = -(grad_d * slots[5 * H + j]);
    grad_k[H + j] = grad_d * slots[4 * H + j];
    grad_k[2 * H + j] = grad_h;
  }
};

void check_input(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous(),
              name, " must be a contiguous float32 CPU tensor");
}

// k (B, T, P*H) -> states (B, T, H) and, when save, the backward's slots (B, T, S*H)
template <typename Cell>
std::vector<torch::Tensor> forward(const torch::Tensor& k, const c10::optional<torch::Tensor>& h0_opt, bool save) {
  check_input(k, "k");
  TORCH_CHECK(k.dim() == 3 && k.size(2) % Cell::kProjections == 0, "k must be (batch, time, projections * hidden)");
  const int64_t B = k.size(0), T = k.size(1), H = k.size(2) / Cell::kProjections;
  const float* h0 = nullptr;
  if (h0_opt.has_value()) {
    check_input(*h0_opt, "h0");
    TORCH_CHECK(h0_opt->dim() == 2 && h0_opt->size(0) == B && h0_opt->size(1) == H, "h0 must be (batch, hidden)");
    h0 = h0_opt->data_ptr<float>();
  }
  torch::Tensor states = torch::empty({B, T, H}, k.options());
  torch::Tensor slots = torch::empty({save ? B : 0, T, Cell::kSlots * H}, k.options());
  const float* kp = k.data_ptr<float>();
  float* out = states.data_ptr<float>();
  float* sp = save ? slots.data_ptr<float>() : nullptr;
  const int64_t full = H - H % kLanes;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> h(H);
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t j = 0; j < H; ++j) h[j] = h0 ? h0[b * H + j] : 0.f;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t row = b * T + t;
        const float* k_row = kp + row * Cell::kProjections * H;
        float* s_row = sp ? sp + row * Cell::kSlots * H : nullptr;
        float* o = out + row * H;
        int64_t j = 0;
        for (; j < full; j += kLanes) {
          V a, bb;
          Cell::vcoefficients(k_row, H, j, a, bb, s_row);
          V hv = _mm256_fmadd_ps(a, _mm256_loadu_ps(h.data() + j), bb);
          _mm256_storeu_ps(h.data() + j, hv);
          _mm256_storeu_ps(o + j, hv);
        }
        for (; j < H; ++j) {
          float a, bb;
          Cell::scoefficients(k_row, H, j, a, bb, s_row);
          h[j] = o[j] = std::fma(a, h[j], bb);
        }
      }
    }
  });
  return {states, slots};
}

// The adjoint recurrence g_t = dL/dh_t + a_{t+1} g_{t+1}, then da_t = g_t h_{t-1}, db_t = g_t and the
// coefficients' chain rule: dL/dd = (db cand - da) (a m), dk_h = (db m) g'; dh0 = a_0 g_0.
template <typename Cell>
std::vector<torch::Tensor> backward(const torch::Tensor& grad_states, const torch::Tensor& slots,
                                    const torch::Tensor& states, const c10::optional<torch::Tensor>& h0_opt) {
  check_input(grad_states, "grad_states");
  check_input(slots, "slots");
  check_input(states, "states");
  const int64_t B = states.size(0), T = states.size(1), H = states.size(2);
  TORCH_CHECK(grad_states.sizes() == states.sizes() && slots.size(0) == B && slots.size(2) == Cell::kSlots * H,
              "grad_states, slots and states do not match");
  torch::Tensor grad_k = torch::empty({B, T, Cell::kProjections * H}, states.options());
  torch::Tensor grad_h0;
  const float* h0 = nullptr;
  if (h0_opt.has_value()) {
    check_input(*h0_opt, "h0");
    h0 = h0_opt->data_ptr<float>();
    grad_h0 = torch::empty_like(*h0_opt);
  }
  float* gh0 = h0 ? grad_h0.data_ptr<float>() : nullptr;
  const float* sp = slots.data_ptr<float>();
  const float* hp = states.data_ptr<float>();
  const float* gp = grad_states.data_ptr<float>();
  float* gk = grad_k.data_ptr<float>();
  const int64_t full = H - H % kLanes;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> g(H), a_next(H);
    for (int64_t b = begin; b < end; ++b) {
      std::fill(g.begin(), g.end(), 0.f);
      std::fill(a_next.begin(), a_next.end(), 0.f);
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t row = b * T + t;
        const float* s_row = sp + row * Cell::kSlots * H;
        const float* go = gp + row * H;
        const float* h_prev = t > 0 ? hp + (row - 1) * H : (h0 ? h0 + b * H : nullptr);
        float* gk_row = gk + row * Cell::kProjections * H;
        int64_t j = 0;
        for (; j < full; j += kLanes) {
          V a = _mm256_loadu_ps(s_row + j), m = _mm256_loadu_ps(s_row + H + j);
          V candidate = _mm256_loadu_ps(s_row + 2 * H + j), g_deriv = _mm256_loadu_ps(s_row + 3 * H + j);
          V gv = _mm256_fmadd_ps(_mm256_loadu_ps(a_next.data() + j), _mm256_loadu_ps(g.data() + j), _mm256_loadu_ps(go + j));
          _mm256_storeu_ps(g.data() + j, gv);
          _mm256_storeu_ps(a_next.data() + j, a);
          V grad_a = h_prev ? _mm256_mul_ps(gv, _mm256_loadu_ps(h_prev + j)) : vzero();
          V grad_d = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(gv, candidate), grad_a), _mm256_mul_ps(a, m));
          V grad_h = _mm256_mul_ps(_mm256_mul_ps(gv, m), g_deriv);
          Cell::vgate_grads(grad_d, grad_h, s_row, H, j, gk_row);
        }
        for (; j < H; ++j) {
          float a = s_row[j], m = s_row[H + j], candidate = s_row[2 * H + j], g_deriv = s_row[3 * H + j];
          float gv = std::fma(a_next[j], g[j], go[j]);
          g[j] = gv;
          a_next[j] = a;
          float grad_a = h_prev ? gv * h_prev[j] : 0.f;
          Cell::sgate_grads((gv * candidate - grad_a) * (a * m), (gv * m) * g_deriv, s_row, H, j, gk_row);
        }
      }
      if (gh0)
        for (int64_t j = 0; j < H; ++j) gh0[b * H + j] = a_next[j] * g[j];
    }
  });
  return {grad_k, grad_h0};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("mingru_forward", &forward<MinGRU>);
  m.def("mingru_backward", &backward<MinGRU>);
  m.def("minlstm_forward", &forward<MinLSTM>);
  m.def("minlstm_backward", &backward<MinLSTM>);
}
