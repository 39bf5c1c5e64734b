//! The options of a heap: tiny combining and how many empty spans each class keeps.

/// Options of a [`Segregated`](crate::Segregated) heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Let requests under 16 bytes with alignment at most 8 share 16-byte blocks (Go's tiny
    /// allocator). On by default.
    pub tiny: bool,
    /// Empty spans each class keeps instead of returning them to the page level at once.
    pub keep_empty: u32,
}

impl Config {
    /// Tiny combining on, one empty span kept per class.
    pub const DEFAULT: Config = Config {
        tiny: true,
        keep_empty: 1,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}
