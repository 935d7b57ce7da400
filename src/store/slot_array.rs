//! The dense array of slots, in anonymous memory reserved without swap accounting.
//!
//! The mapping is as large as the shard's share of `--capacity`, but Linux backs a page only
//! when it is first written: untouched slots cost address space, not memory. A 2^32-slot
//! store reserves 32 GiB of address space on a machine with less RAM; MAP_NORESERVE keeps the
//! kernel's overcommit heuristic from refusing that.

use memmap2::{MmapMut, MmapOptions};

use super::slot::Slot;

pub struct SlotArray {
    map: MmapMut,
    len: usize,
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
        Ok(Self { map, len })
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
        self.slots_mut()[index] = slot.0;
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
