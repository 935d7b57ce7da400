//! The dense array of slots, in anonymous memory reserved without swap accounting.
//!
//! The mapping is as large as the shard's share of `--capacity`, but Linux backs a page only
//! when it is first written: untouched slots cost address space, not memory. A 2^32-slot
//! store reserves 32 GiB of address space on a machine with less RAM; MAP_NORESERVE keeps the
//! kernel's overcommit heuristic from refusing that.

use memmap2::{MmapMut, MmapOptions};

use super::slot::Slot;

/// Slots per 4 KiB page: the unit in which memory is touched, and in which `SCAN` skips
/// untouched memory.
pub const SLOTS_PER_PAGE: usize = 512;

/// Bytes of one page of slots: what the kernel backs when a slot in it is first written.
pub const PAGE_BYTES: u64 = (SLOTS_PER_PAGE * std::mem::size_of::<u64>()) as u64;

/// Whether new slot arrays ask for transparent huge pages (`--huge-pages`), set once at start.
pub static HUGE_PAGES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub struct SlotArray {
    map: MmapMut,
    len: usize,
    /// One bit per page of slots ever written: 2^31 slots need 512 KiB of bits. Lets a scan
    /// skip the (zero) pages no user ever touched instead of reading them.
    touched_pages: Vec<u64>,
}

impl SlotArray {
    pub fn new(len: usize) -> std::io::Result<Self> {
        let bytes = len.checked_mul(8).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "capacity overflow")
        })?;
        // memmap2 refuses a zero-length mapping; one page keeps the code free of special cases.
        let map = MmapOptions::new()
            .len(bytes.max(4096))
            .no_reserve_swap()
            .map_anon()?;
        if HUGE_PAGES.load(std::sync::atomic::Ordering::Relaxed) {
            // Random slot writes over gigabytes miss the TLB on almost every access with 4 KiB
            // pages; 2 MiB pages cut those misses. The cost: memory is touched 2 MiB at a time,
            // so it is opt-in (--huge-pages) for stores whose IDs are dense.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        let pages = len.div_ceil(SLOTS_PER_PAGE);
        Ok(Self {
            map,
            len,
            touched_pages: vec![0; pages.div_ceil(64)],
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn get(&self, index: usize) -> Slot {
        Slot(self.slots()[index])
    }

    #[inline]
    pub fn set(&mut self, index: usize, slot: Slot) {
        let page = index / SLOTS_PER_PAGE;
        self.touched_pages[page / 64] |= 1 << (page % 64);
        self.slots_mut()[index] = slot.0;
    }

    /// Whether the page holding `index` was ever written.
    #[inline]
    pub fn page_touched(&self, index: usize) -> bool {
        let page = index / SLOTS_PER_PAGE;
        self.touched_pages[page / 64] & (1 << (page % 64)) != 0
    }

    /// Pages ever written. A popcount over the bitmap: 2^32 slots are 128 Ki words, counted in
    /// tens of microseconds, so it is computed when asked (`INFO`) rather than kept on the
    /// write path.
    pub fn touched_page_count(&self) -> usize {
        self.touched_pages
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    /// The slots `[start, end)` as a byte image (little-endian `u64`s), for snapshots.
    pub fn copy_out(&self, start: usize, end: usize, out: &mut [u8]) {
        for (slot, bytes) in self.slots()[start..end].iter().zip(out.chunks_exact_mut(8)) {
            bytes.copy_from_slice(&slot.to_le_bytes());
        }
    }

    /// The first index at or after `index` in a page that was ever written, if any.
    pub fn next_touched(&self, index: usize) -> Option<usize> {
        let mut page = index / SLOTS_PER_PAGE;
        let pages = self.len.div_ceil(SLOTS_PER_PAGE);
        while page < pages {
            let word = self.touched_pages[page / 64] >> (page % 64);
            if word == 0 {
                page = (page / 64 + 1) * 64;
                continue;
            }
            page += word.trailing_zeros() as usize;
            if page >= pages {
                return None;
            }
            return Some(index.max(page * SLOTS_PER_PAGE));
        }
        None
    }

    fn slots(&self) -> &[u64] {
        // SAFETY: the mapping is page-aligned (so 8-byte aligned), at least `len * 8` bytes long,
        // zero-filled by the kernel (a valid u64 everywhere), and borrowed for `&self`'s lifetime.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<u64>(), self.len) }
    }

    fn slots_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `slots`, and `&mut self` makes this the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().cast::<u64>(), self.len) }
    }
}
