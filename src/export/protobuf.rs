//! A minimal protocol-buffers writer: enough to emit ONNX models without a code generator.

/// A message under construction.
#[derive(Default)]
pub struct Msg(pub Vec<u8>);

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Msg {
    fn key(&mut self, field: u32, wire: u32) {
        varint(&mut self.0, ((field << 3) | wire) as u64);
    }
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, 0);
        varint(&mut self.0, v as u64);
        self
    }
    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, 2);
        varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }
    pub fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
    /// Packed repeated int64.
    pub fn ints(&mut self, field: u32, v: &[i64]) -> &mut Self {
        let mut b = Vec::new();
        for &x in v {
            varint(&mut b, x as u64);
        }
        self.bytes(field, &b)
    }
}
