// Transparent huge pages for large CPU buffers that a kernel is about to write for the first time.
//
// A fresh large tensor is mapped by the allocator and faulted in 4 KiB at a time on its first
// write: for wiener_bank's 94 MB output (B = 8, S = 15, 3x256x256) that was a third of the
// forward's time on these CPUs. Where the kernel's transparent-huge-page mode is "madvise" (the
// common default), asking for huge pages turns 512 faults into one. A hint only: without Linux, or
// when the kernel declines, nothing changes.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pydeblur {

inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHugePage = std::uintptr_t{2} << 20;
  if (!t.device().is_cpu() || t.nbytes() < 2 * kHugePage) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(t.const_data_ptr());
  const std::uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t last = (begin + t.nbytes()) & ~(kHugePage - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace pydeblur
