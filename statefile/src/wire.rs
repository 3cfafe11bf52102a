//! Little-endian primitives for the fixed parts of the format (header, index,
//! trailer). Reading is bounded by the slice: a short input is an error, never
//! a panic, and string lengths are checked against what is left.

/// Appends little-endian values to a buffer.
#[derive(Default)]
pub(crate) struct Put(pub Vec<u8>);

impl Put {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// A string with a u32 length prefix. Callers check lengths before.
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Reads little-endian values from a slice; every read says what was being
/// read so that errors name the field.
pub(crate) struct Get<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Why a `Get` read failed; turned into a typed error by the caller.
#[derive(Debug)]
pub(crate) struct Short(pub String);

impl<'a> Get<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Get { data, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Short> {
        if n > self.remaining() {
            return Err(Short(format!(
                "{what} needs {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self, what: &str) -> Result<u8, Short> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, Short> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(b))
    }
    pub fn i32(&mut self, what: &str) -> Result<i32, Short> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4, what)?);
        Ok(i32::from_le_bytes(b))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, Short> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(b))
    }
    /// A u32-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, what: &str, max: usize) -> Result<String, Short> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(Short(format!("{what} is {len} bytes, limit {max}")));
        }
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| Short(format!("{what} is not UTF-8")))
    }
}
