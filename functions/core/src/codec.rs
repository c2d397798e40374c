// placeholder until the codec lands
#[derive(Debug, Clone, Default)]
pub struct CodecLimits { pub max_pixels: u64, pub max_alloc_bytes: u64 }
pub struct Compressed { pub jpeg: Vec<u8>, pub width: u32, pub height: u32 }
#[derive(Debug, thiserror::Error)]
pub enum CodecError { #[error("not an image")] NotAnImage, #[error("decode {0}")] Decode(String) }
impl CodecError { pub fn code(&self) -> &'static str { "x" } }
pub fn compress(_: &[u8], _: &CodecLimits) -> Result<Compressed, CodecError> { Err(CodecError::NotAnImage) }
