//! The sub-allocation pattern of a GPU upload heap, over offsets: one 256 MiB buffer, and every
//! frame a few dozen uploads of 256 B to 4 MiB (256-byte aligned, as buffer bindings want) that
//! live for one to three frames. The manager never touches the buffer: it only hands out offsets
//! (a renderer would copy each upload to `buffer + offset`). Every fit policy runs the same
//! frames; the table shows what each leaves usable.
//!
//! `cargo run --release -p fit --example offsets_gpu_heap`

use std::collections::VecDeque;

use allocator_traits::OffsetManager;
use allocator_traits::offset::largest_request;
use fit::Config;
use fit::offsets::FitOffsets;

const HEAP: usize = 256 << 20;
const FRAMES: usize = 2_000;

/// A small deterministic generator (xorshift), so every policy sees the same frames.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// 256 B to 4 MiB, most of them small (log-uniform).
    fn upload_size(&mut self) -> usize {
        let shift = 8 + self.next() % 15; // 2^8 .. 2^22
        let base = 1usize << shift;
        base + (self.next() as usize % base)
    }
}

fn run(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut heap = FitOffsets::new(0..HEAP, name.parse::<Config>()?, 256)?;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    // Per frame still in flight: the offsets to free when it retires.
    let mut in_flight: VecDeque<Vec<usize>> = VecDeque::new();
    let (mut uploads, mut refused, mut bytes) = (0u64, 0u64, 0u64);
    for frame in 0..FRAMES {
        // A frame retires three frames later: its uploads are free again.
        if in_flight.len() == 3 {
            for offset in in_flight.pop_front().expect("three frames") {
                heap.free(offset)?;
            }
        }
        let mut this_frame = Vec::new();
        for _ in 0..(16 + rng.next() % 48) {
            let size = rng.upload_size();
            match heap.allocate(size, 256) {
                Ok(offset) => {
                    // copy_to_gpu(buffer, offset, &data[..size]);
                    assert!(offset % 256 == 0 && offset + size <= HEAP);
                    this_frame.push(offset);
                    uploads += 1;
                    bytes += size as u64;
                }
                // A renderer would wait for the GPU to retire a frame, or flush and retry.
                Err(_) => refused += 1,
            }
        }
        in_flight.push_back(this_frame);
        if frame % 500 == 0 {
            heap.check_invariants()?;
        }
    }
    let s = heap.stats();
    let largest = largest_request(&mut heap, 256);
    println!(
        "{name:>10}  {uploads:>7} uploads ({:>6.1} GiB), {refused:>4} refused; peak live {:>6.1} MiB, \
         peak footprint {:>6.1} MiB; now {:>4} live, largest free request {:>6.1} MiB",
        bytes as f64 / (1u64 << 30) as f64,
        s.peak_live_requested as f64 / (1 << 20) as f64,
        s.peak_footprint as f64 / (1 << 20) as f64,
        s.live_blocks,
        largest as f64 / (1 << 20) as f64,
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{FRAMES} frames of 16-63 uploads (256 B - 4 MiB, 256-aligned) in a 256 MiB heap:");
    for name in ["best-fit", "first-fit", "next-fit", "worst-fit"] {
        run(name)?;
    }
    Ok(())
}
