//! ChaCha8 one block at a time: the same words as `rand_chacha`'s
//! `ChaCha8Rng`, from a generator that costs nothing to make.
//!
//! The simulator makes a stream per downstream call and per send, keyed by
//! its identity, and draws a few words from it. `ChaCha8Rng` computes four
//! blocks (64 words) on its first draw and is 320 bytes to copy; this type
//! computes the one block (16 words) a draw needs, when it is needed. The
//! keystream is the same sequence of words, so every draw is the same: the
//! tests hold it against `rand_chacha` word for word.

use rand::RngCore;

/// Words in one ChaCha block.
const BLOCK_WORDS: u64 = 16;

/// "expand 32-byte k".
const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A ChaCha8 keystream (the original variant: 64-bit block counter, 64-bit
/// stream id), read from word `pos` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    key: [u32; 8],
    stream: u64,
    /// The next word to hand out.
    pos: u64,
    /// The block `words` holds, `None` before the first draw.
    block: Option<u64>,
    words: [u32; 16],
}

impl Stream {
    /// Stream `stream` of `key`, from word `pos`: no block is computed yet.
    #[inline]
    pub fn new(key: &[u8; 32], stream: u64, pos: u64) -> Stream {
        Stream {
            key: std::array::from_fn(|i| {
                u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
            }),
            stream,
            pos,
            block: None,
            words: [0; 16],
        }
    }

    #[inline]
    fn word(&mut self) -> u32 {
        let block = self.pos / BLOCK_WORDS;
        if self.block != Some(block) {
            self.words = chacha8_block(&self.key, block, self.stream);
            self.block = Some(block);
        }
        let w = self.words[(self.pos % BLOCK_WORDS) as usize];
        self.pos += 1;
        w
    }
}

impl RngCore for Stream {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        self.word()
    }

    /// Two words, the first the low half, as `rand_core`'s block RNG reads
    /// them.
    #[inline]
    fn next_u64(&mut self) -> u64 {
        let lo = u64::from(self.word());
        lo | u64::from(self.word()) << 32
    }

    /// Whole words, little-endian; a partly used last word is spent, as
    /// `rand_core`'s block RNG spends it.
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(4) {
            let bytes = self.word().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// One row of the 4×4 state, four lanes computed alike: in one SSE2
/// register where there is one, in an array elsewhere.
trait Row: Copy {
    fn load(words: [u32; 4]) -> Self;
    fn store(self) -> [u32; 4];
    fn add(self, other: Self) -> Self;
    /// `(self ^ other).rotate_left(L)`, with `R = 32 - L`.
    fn xor_rotate<const L: i32, const R: i32>(self, other: Self) -> Self;
    /// Lane `i` takes lane `(MASK >> 2i) & 3`, as SSE2's `pshufd` reads it.
    fn shuffle<const MASK: i32>(self) -> Self;
}

impl Row for [u32; 4] {
    #[inline(always)]
    fn load(words: [u32; 4]) -> Self {
        words
    }
    #[inline(always)]
    fn store(self) -> [u32; 4] {
        self
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        std::array::from_fn(|i| self[i].wrapping_add(other[i]))
    }
    #[inline(always)]
    fn xor_rotate<const L: i32, const R: i32>(self, other: Self) -> Self {
        std::array::from_fn(|i| (self[i] ^ other[i]).rotate_left(L as u32))
    }
    #[inline(always)]
    fn shuffle<const MASK: i32>(self) -> Self {
        std::array::from_fn(|i| self[((MASK >> (2 * i)) & 3) as usize])
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl Row for safe_arch::m128i {
    #[inline(always)]
    fn load(words: [u32; 4]) -> Self {
        words.into()
    }
    #[inline(always)]
    fn store(self) -> [u32; 4] {
        self.into()
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        safe_arch::add_i32_m128i(self, other)
    }
    #[inline(always)]
    fn xor_rotate<const L: i32, const R: i32>(self, other: Self) -> Self {
        use safe_arch::{bitor_m128i, bitxor_m128i, shl_imm_u32_m128i, shr_imm_u32_m128i};
        let x = bitxor_m128i(self, other);
        bitor_m128i(shl_imm_u32_m128i::<L>(x), shr_imm_u32_m128i::<R>(x))
    }
    #[inline(always)]
    fn shuffle<const MASK: i32>(self) -> Self {
        safe_arch::shuffle_ai_f32_all_m128i::<MASK>(self)
    }
}

/// The rows the block function runs on here.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
type Fast = safe_arch::m128i;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
type Fast = [u32; 4];

/// Four quarter rounds at once, one per column of the rows.
#[inline(always)]
fn quarter_rounds<V: Row>(s: &mut [V; 4]) {
    s[0] = s[0].add(s[1]);
    s[3] = s[3].xor_rotate::<16, 16>(s[0]);
    s[2] = s[2].add(s[3]);
    s[1] = s[1].xor_rotate::<12, 20>(s[2]);
    s[0] = s[0].add(s[1]);
    s[3] = s[3].xor_rotate::<8, 24>(s[0]);
    s[2] = s[2].add(s[3]);
    s[1] = s[1].xor_rotate::<7, 25>(s[2]);
}

/// Lanes turned left by one, two and three places.
const LEFT_1: i32 = 0b00_11_10_01;
const LEFT_2: i32 = 0b01_00_11_10;
const LEFT_3: i32 = 0b10_01_00_11;

/// Block `counter` of stream `stream`: 8 rounds, then the input added.
#[inline]
fn chacha8_block(key: &[u32; 8], counter: u64, stream: u64) -> [u32; 16] {
    block_on::<Fast>(key, counter, stream)
}

#[inline(always)]
fn block_on<V: Row>(key: &[u32; 8], counter: u64, stream: u64) -> [u32; 16] {
    let input: [V; 4] = [
        V::load(CONSTANTS),
        V::load([key[0], key[1], key[2], key[3]]),
        V::load([key[4], key[5], key[6], key[7]]),
        V::load([
            counter as u32,
            (counter >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ]),
    ];
    let mut s = input;
    for _ in 0..4 {
        // A column round, then a diagonal round: the diagonals become
        // columns by turning rows 1-3 left by one, two and three lanes.
        quarter_rounds(&mut s);
        s[1] = s[1].shuffle::<LEFT_1>();
        s[2] = s[2].shuffle::<LEFT_2>();
        s[3] = s[3].shuffle::<LEFT_3>();
        quarter_rounds(&mut s);
        s[1] = s[1].shuffle::<LEFT_3>();
        s[2] = s[2].shuffle::<LEFT_2>();
        s[3] = s[3].shuffle::<LEFT_1>();
    }
    let rows: [[u32; 4]; 4] = std::array::from_fn(|r| s[r].add(input[r]).store());
    std::array::from_fn(|i| rows[i / 4][i % 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn reference(key: [u8; 32], stream: u64, pos: u64) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::from_seed(key);
        r.set_stream(stream);
        r.set_word_pos(u128::from(pos));
        r
    }

    fn key(n: u64) -> [u8; 32] {
        ChaCha8Rng::seed_from_u64(n).get_seed()
    }

    #[test]
    fn words_are_rand_chachas_across_block_and_buffer_edges() {
        for (n, stream, pos) in [
            (1, 0, 0),
            (2, 7, 15),
            (3, (7 << 48) | 12345, 64 * 3),
            (4, u64::MAX, 63),
            (5, 1 << 40, (1 << 32) * 16 - 5),
        ] {
            let mut ours = Stream::new(&key(n), stream, pos);
            let mut theirs = reference(key(n), stream, pos);
            for i in 0..200 {
                assert_eq!(
                    ours.next_u32(),
                    theirs.next_u32(),
                    "key {n} stream {stream} word {i}"
                );
            }
        }
    }

    #[test]
    fn draws_of_every_width_match_at_odd_offsets() {
        let k = key(9);
        let mut ours = Stream::new(&k, 42, 13);
        let mut theirs = reference(k, 42, 13);
        for round in 0..100 {
            assert_eq!(ours.next_u64(), theirs.next_u64(), "u64, round {round}");
            assert_eq!(
                ours.random::<f64>(),
                theirs.random::<f64>(),
                "f64, round {round}"
            );
            assert_eq!(ours.next_u32(), theirs.next_u32(), "u32, round {round}");
            assert_eq!(
                ours.random_range(0..1000u64),
                theirs.random_range(0..1000u64),
                "range, round {round}"
            );
            let (mut a, mut b) = ([0u8; 7], [0u8; 7]);
            ours.fill_bytes(&mut a);
            theirs.fill_bytes(&mut b);
            assert_eq!(a, b, "bytes, round {round}");
        }
    }

    #[test]
    fn the_vector_rows_compute_what_the_portable_rows_compute() {
        for n in 0..50u64 {
            let k: [u32; 8] =
                std::array::from_fn(|i| (n as u32).wrapping_mul(0x9e37_79b9) ^ i as u32);
            let (counter, stream) = (n.wrapping_mul(0x1234_5678_9abc), !n << 7);
            assert_eq!(
                block_on::<Fast>(&k, counter, stream),
                block_on::<[u32; 4]>(&k, counter, stream),
                "block {n}"
            );
        }
    }

    #[test]
    fn making_a_stream_computes_nothing_until_a_draw() {
        let s = Stream::new(&key(1), 3, 64);
        assert_eq!(s.block, None);
        assert!(
            std::mem::size_of::<Stream>() <= 128,
            "{}",
            std::mem::size_of::<Stream>()
        );
    }
}
