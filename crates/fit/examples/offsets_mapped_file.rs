//! A database-style free-space map over a memory-mapped file: records of any size are placed at
//! offsets chosen by best fit, written and read back through the mapping, freed and replaced;
//! when the file is full it is extended (the manager's space grows with it) and mapped again.
//! The free-space map lives in the process (out of band): nothing of it is written to the file.
//!
//! `cargo run -p fit --example offsets_mapped_file`

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use allocator_traits::OffsetManager;
use fit::Config;
use fit::offsets::FitOffsets;

/// A shared, writable mapping of a whole file.
struct Mapped {
    ptr: *mut u8,
    len: usize,
}

impl Mapped {
    fn new(file: &std::fs::File, len: usize) -> std::io::Result<Self> {
        // SAFETY: a new shared mapping of `len` bytes of an open file descriptor; the kernel
        // picks the address; failure is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped {
            ptr: ptr.cast(),
            len,
        })
    }

    fn bytes(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset + len <= self.len, "a range inside the file");
        // SAFETY: `offset..offset+len` lies inside the mapping (asserted), which lives as long
        // as `self`; the borrow of `self` keeps any other slice of it from existing.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The bytes of record `id` (its length and a pattern from its id).
fn record(id: u64) -> Vec<u8> {
    let len = 20 + (id.wrapping_mul(2_654_435_761) % 3000) as usize;
    (0..len).map(|i| (id as usize * 31 + i) as u8).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("fit-offsets-{}.db", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let mut len = 1 << 20;
    file.set_len(len as u64)?;
    let mut map = Mapped::new(&file, len)?;
    // Offsets are file offsets; 16-byte granules.
    let mut space = FitOffsets::new(0..len, Config::best_fit(), 16)?;
    // The index of the database: record id -> (offset, length).
    let mut records: Vec<(u64, usize, usize)> = Vec::new();

    for id in 0..20_000u64 {
        let data = record(id);
        let offset = match space.allocate(data.len(), 8) {
            Ok(o) => o,
            Err(_) => {
                // Full: extend the file and the space by half, map it again.
                let more = len / 2;
                file.set_len((len + more) as u64)?;
                space.grow(more)?;
                len += more;
                map = Mapped::new(&file, len)?;
                space.allocate(data.len(), 8)?
            }
        };
        map.bytes(offset, data.len()).copy_from_slice(&data);
        records.push((id, offset, data.len()));
        // Delete every third record as we go: the holes are reused by later records.
        if id % 3 == 2 {
            let (_, o, _) = records.swap_remove((id as usize * 7) % records.len());
            space.free(o)?;
        }
    }

    // Read every live record back through its offset.
    for &(id, offset, n) in &records {
        assert_eq!(map.bytes(offset, n), &record(id)[..], "record {id}");
    }
    space.check_invariants()?;
    let s = space.stats();
    println!(
        "{} records ({} bytes) in a file of {} bytes: {} free ranges, highest record ends at {} \
         ({:.1}% beyond the live bytes)",
        records.len(),
        s.live_requested,
        len,
        space.free_ranges().count(),
        s.footprint,
        100.0 * (s.footprint as f64 / s.live_requested as f64 - 1.0),
    );
    drop(map);
    std::fs::remove_file(&path)?;
    Ok(())
}
