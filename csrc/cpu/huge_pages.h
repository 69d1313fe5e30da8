// Transparent huge pages for large, freshly allocated CPU outputs (shared by the CPU kernels).
#pragma once
#include <cstddef>
#include <cstdint>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace sgfast {

// Large outputs are fresh memory that is written once: first-touch faults on 4 KiB pages cost about a
// quarter of a 4096-stroke rasterize call, and about as much as the kernel itself in aligned_crop.
// Asking for transparent huge pages (where the kernel allows it, e.g. THP "madvise" mode) cuts the
// faults 512-fold. Only the 2 MiB-aligned interior is advised; outputs under 8 MiB are left alone.
inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < 4 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // a hint: errors ignored
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace sgfast
