//! Numbers read from byte slices in a given byte order: the one set of
//! helpers every decoder uses. A slice too short for the number gives
//! `None`, never a panic.

pub use byteorder::{BigEndian, ByteOrder, NativeEndian};

/// The `N` bytes at `at`, if the slice holds them.
fn at<const N: usize>(bytes: &[u8], at: usize) -> Option<&[u8]> {
    bytes.get(at..at.checked_add(N)?)
}

pub fn u16_at<B: ByteOrder>(bytes: &[u8], offset: usize) -> Option<u16> {
    at::<2>(bytes, offset).map(B::read_u16)
}

pub fn u32_at<B: ByteOrder>(bytes: &[u8], offset: usize) -> Option<u32> {
    at::<4>(bytes, offset).map(B::read_u32)
}

pub fn u64_at<B: ByteOrder>(bytes: &[u8], offset: usize) -> Option<u64> {
    at::<8>(bytes, offset).map(B::read_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_either_order_and_refuses_short_slices() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u16_at::<BigEndian>(&b, 1), Some(0x0203));
        assert_eq!(u32_at::<BigEndian>(&b, 0), Some(0x0102_0304));
        assert_eq!(u64_at::<BigEndian>(&b, 1), Some(0x0203_0405_0607_0809));
        assert_eq!(u32_at::<NativeEndian>(&b, 0), Some(u32::from_ne_bytes([1, 2, 3, 4])));
        assert_eq!(u64_at::<BigEndian>(&b, 2), None);
        assert_eq!(u16_at::<BigEndian>(&b, 8), None);
        assert_eq!(u16_at::<BigEndian>(&b, usize::MAX), None);
    }
}
